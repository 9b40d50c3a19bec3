"""Recipes of the autoencoder family: a VAE's model trained with a point-mass (Delta) guide.

Their loss is ``-log p(x | z) - log p(z)`` at ``z = encoder(x)``: maximum a posteriori codes,
not a bound on ``log p(x)``, which summary.json says under ``objective``. The report adds
``features.png`` for image data: for each unit i of the guide's first linear layer, the
unit-norm input ``W_i / ||W_i||`` that activates it most.
"""

from pathlib import Path

from torch import nn

from pyrovae import plots
from pyrovae.inference.parameters import owner_module
from pyrovae.models.linear_gaussian import largest_principal_angle_deg, pca_svd
from pyrovae.recipes.base import MAP_OBJECTIVE, Recipe, RecipeOption, Report, in_range

MAX_FEATURES = 100


def first_linear_layer(program) -> nn.Linear | None:
    """The first ``nn.Linear`` of the program's module (its encoder's input layer), if any."""
    module = owner_module(program)
    if module is None:
        return None
    return next((m for m in module.modules() if isinstance(m, nn.Linear)), None)


def features_report(guide, data, out_dir, max_features: int = MAX_FEATURES) -> Report:
    """``features.png``: the first layer's unit-norm inputs ``W_i / ||W_i||`` as images."""
    shape = data.dataset.image_shape
    layer = first_linear_layer(guide)
    if shape is None or layer is None or layer.in_features != data.dataset.x_dim:
        return Report()
    weight = layer.weight.detach().cpu()[:max_features]  # (units, D)
    features = weight / weight.norm(dim=1, keepdim=True).clamp_min(1e-12)
    path = plots.plot_loadings(
        features, shape, Path(out_dir) / "features.png", title="Inputs maximizing hidden units"
    )
    return Report({"features_drawn": int(features.shape[0])}, [path])


class AERecipe(Recipe):
    """``--model ae``: an MLP autoencoder as a pair (the VAE's model, guide ``delta``)."""

    default_guide = "delta"
    objective = MAP_OBJECTIVE

    def report(self, model, guide, data, config, out_dir, history) -> Report:
        report = super().report(model, guide, data, config, out_dir, history)
        return report.update(features_report(guide, data, out_dir))


class DAERecipe(AERecipe):
    """``--model dae``: the guide sees inputs with ``--corruption`` of their entries masked."""

    default_guide = "delta-denoising"
    options = (
        RecipeOption(
            "corruption",
            float,
            0.3,
            "dae: fraction of each row's entries the guide sees set to 0 in training steps",
            in_range(0, 1),
        ),
    )


class SAERecipe(AERecipe):
    """``--model sae``: a sigmoid first layer and a KL sparsity penalty on its activations."""

    default_guide = "delta-sparse"
    options = (
        RecipeOption(
            "sparsity_target",
            float,
            0.05,
            "sae: target mean activation rho of the first hidden layer's units",
            in_range(0, 1, low_open=True),
        ),
        RecipeOption(
            "sparsity_weight",
            float,
            1.0,
            "sae: weight of the KL(rho || rho_hat) penalty, per example",
            in_range(0, float("inf")),
        ),
    )


class LinearAERecipe(AERecipe):
    """``--model linear-ae``: linear encoder and decoder, one Gaussian noise scale: a squared
    error whose optimal k-dimensional subspace is PCA's (reported as the largest principal
    angle between the decoder's columns and PCA's top-k components, degrees)."""

    default_guide = "delta-linear"
    likelihood = "gaussian"

    def report(self, model, guide, data, config, out_dir, history) -> Report:
        report = super().report(model, guide, data, config, out_dir, history)
        report.summary["observation_sigma"] = float(model.scale().detach())
        W = model.decoder.weight.detach().cpu()  # (D, k)
        if model.latent_dim < W.shape[0]:
            components, _, _ = pca_svd(data.x_train.cpu(), model.latent_dim)
            angle = largest_principal_angle_deg(W, components.T)
            report.summary["pca_largest_principal_angle_deg"] = angle
        return report
