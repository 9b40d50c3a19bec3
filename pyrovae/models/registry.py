"""The registered models and guides, by name.

``MODELS[name](spec)`` builds a model; ``GUIDES[name](spec, model)`` builds a guide for
that model (most guides ignore the model; the exact FA posterior and the semi-supervised
guide read parameters from it). Programs a user writes are found by
``package.module:attr`` instead (see :mod:`pyrovae.runs.programs`).
"""

from collections.abc import Callable

from torch import nn

from pyrovae.errors import PyrovaeError
from pyrovae.models.autoencoders import (
    DeltaGuide,
    DenoisingDeltaGuide,
    LinearAE,
    LinearDeltaGuide,
    SparseDeltaGuide,
)
from pyrovae.models.factor_analysis import (
    PPCA,
    BayesianFactorAnalysis,
    BayesianFAGuide,
    ExactPosteriorGuide,
    FactorAnalysis,
    LinearNormalGuide,
)
from pyrovae.models.gumbel_vae import GumbelGuide, GumbelVAE
from pyrovae.models.rich_guides import IAFGuide, LowRankNormalGuide
from pyrovae.models.spec import ModelSpec
from pyrovae.models.ssvae import SSVAE, SSVAEGuide
from pyrovae.models.vae import VAE, MLPNormalGuide


def spec_only(cls: Callable[[ModelSpec], nn.Module]) -> Callable[[ModelSpec, nn.Module], nn.Module]:
    """A guide class built from the spec alone, as a ``(spec, model)`` factory."""

    def factory(spec: ModelSpec, model: nn.Module) -> nn.Module:
        return cls(spec)

    factory.__name__ = factory.__qualname__ = cls.__name__
    factory.__doc__ = cls.__doc__
    return factory


#: Registered model name (``--model``) -> a factory ``(spec) -> nn.Module`` whose
#: ``forward`` is the model p(z) p(x|z).
MODELS: dict[str, Callable[[ModelSpec], nn.Module]] = {
    "vae": VAE,
    "ssvae": SSVAE,
    "fa": FactorAnalysis,
    "ppca": PPCA,
    "bayesian-fa": BayesianFactorAnalysis,
    "ae": VAE,  # the autoencoders are the VAE's program with a Delta guide
    "dae": VAE,
    "sae": VAE,
    "linear-ae": LinearAE,
    "gumbel-vae": GumbelVAE,
}
#: Registered guide name (``--guide``) -> a factory ``(spec, model) -> nn.Module`` whose
#: ``forward`` is the guide q(z|x).
GUIDES: dict[str, Callable[[ModelSpec, nn.Module], nn.Module]] = {
    "mlp-normal": spec_only(MLPNormalGuide),
    "linear-normal": spec_only(LinearNormalGuide),
    "exact-posterior": ExactPosteriorGuide,
    "bayesian-fa": BayesianFAGuide,
    "ssvae": SSVAEGuide,
    "delta": DeltaGuide,  # reads the model's latent sites
    "delta-denoising": spec_only(DenoisingDeltaGuide),
    "delta-sparse": spec_only(SparseDeltaGuide),
    "delta-linear": spec_only(LinearDeltaGuide),
    "lowrank": spec_only(LowRankNormalGuide),
    "iaf": spec_only(IAFGuide),
    "gumbel": spec_only(GumbelGuide),
}


def _lookup(name: str, registry: dict, kind: str) -> Callable:
    if name not in registry:
        raise PyrovaeError(
            f"unknown {kind} {name!r}; choose one of {', '.join(sorted(registry))} "
            "or give your own as package.module:attr"
        )
    return registry[name]


def build_model(name: str, spec: ModelSpec) -> nn.Module:
    """The model registered as ``name``, built for ``spec``."""
    return _lookup(name, MODELS, "model")(spec)


def build_guide(name: str, spec: ModelSpec, model: nn.Module) -> nn.Module:
    """The guide registered as ``name``, built for ``spec`` and ``model``."""
    return _lookup(name, GUIDES, "guide")(spec, model)
