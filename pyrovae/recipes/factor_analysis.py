"""Recipes of factor analysis, probabilistic PCA and Bayesian factor analysis.

Before training, the model's data scale is set from the training rows
(:meth:`~pyrovae.models.factor_analysis.FactorAnalysis.standardize`). After it, the report
gives the exact log-likelihood ``log N(x; mu, W W^T + Psi)`` of every split (nats per
example), the noise variances, ``loadings.png``, and the closed-form fit on the same
training rows: scikit-learn's ``FactorAnalysis`` for FA, Tipping & Bishop's maximum-likelihood
solution for PPCA, with the gap between the two test log-likelihoods in percent and the
largest principal angle between their loading subspaces.
"""

import math
from pathlib import Path

import pyro.poutine as poutine
import torch

from pyrovae import plots
from pyrovae.inference.diagnostics.structure import global_means, inspect_pair
from pyrovae.models.linear_gaussian import fa_log_likelihood, largest_principal_angle_deg, ppca_ml
from pyrovae.recipes.base import Recipe, Report


class FARecipe(Recipe):
    """``--model fa``: Gaussian observations only; guide ``exact-posterior`` by default."""

    default_guide = "exact-posterior"
    likelihood = "gaussian"
    reference_name = "sklearn.decomposition.FactorAnalysis"
    # sklearn's FactorAnalysis iterates SVDs of the data: skipped above this many training
    # values (n * D), where it would take minutes (e.g. on MNIST).
    reference_max_values = 2_000_000

    def setup(self, model, guide, data, config) -> None:
        model.standardize(data.x_train)

    def reference(self, model, x_train: torch.Tensor, x_test: torch.Tensor, seed: int):
        """The closed-form fit on the same training rows: ``(W, test log-lik per example,
        train log-lik per example, extras)``."""
        from sklearn.decomposition import FactorAnalysis as SklearnFA
        from threadpoolctl import threadpool_limits

        fa = SklearnFA(model.latent_dim, svd_method="lapack", random_state=seed)
        # One BLAS thread: on a small, busy machine threaded SVDs of thin matrices crawl.
        with threadpool_limits(limits=1):
            fa.fit(x_train.double().numpy())
        psi = fa.noise_variance_
        extras = {"noise_variance_min": float(psi.min()), "noise_variance_mean": float(psi.mean())}
        x_test = x_test.double().numpy()
        return fa.components_.T, fa.score(x_test), fa.score(x_train.double().numpy()), extras

    def report(self, model, guide, data, config, out_dir, history) -> Report:
        report = super().report(model, guide, data, config, out_dir, history)
        return report.update(self.linear_gaussian_report(model, data, out_dir, config.seed))

    def linear_gaussian_report(self, model, data, out_dir, seed: int, W=None) -> Report:
        """Exact log-likelihoods, noise variances, the reference fit and ``loadings.png``.

        :param W: loadings ``(D, k)`` in data units (default: the model's own).
        """
        with torch.no_grad():
            W = model.loadings() if W is None else W
            W, mu, psi = (
                t.detach().double().cpu() for t in (W, model.mean(), model.noise_variance())
            )
        out = {"log_likelihood": "exact log N(x; mu, W W^T + Psi), nats per example"}
        for split in ("train", "val", "test"):
            x = getattr(data, f"x_{split}").detach().cpu()
            value = float(fa_log_likelihood(x, W, mu, psi).mean()) if x.shape[0] else math.nan
            out[f"{split}_log_likelihood"] = value
        out["noise_variance"] = {
            "min": float(psi.min()),
            "mean": float(psi.mean()),
            "max": float(psi.max()),
        }
        out["reference"] = self._reference(model, data, W, out["test_log_likelihood"], seed)
        figures = []
        if data.dataset.x_dim > 2:
            figures.append(
                plots.plot_loadings(
                    W.T,
                    data.dataset.image_shape,
                    Path(out_dir) / "loadings.png",
                    title="Loadings W[:, j]",
                )
            )
        return Report(out, figures)

    def _reference(self, model, data, W, test_log_likelihood: float, seed: int) -> dict:
        x_train = data.x_train.detach().cpu().double()
        x_test = data.x_test.detach().cpu().double()
        k, D = W.shape[1], W.shape[0]
        if not k < D:
            return {"skipped": f"no closed form to compare with for k = {k} >= D = {D}"}
        if x_train.numel() > self.reference_max_values:
            return {"skipped": f"more than {self.reference_max_values} training values"}
        ref_W, ref_test, ref_train, extras = self.reference(model, x_train, x_test, seed)
        floor = model.min_variance
        if extras.get("noise_variance_min", extras.get("noise_variance", floor)) < floor:
            extras["note"] = (
                f"the reference has noise variances below this model's floor {floor:g} (e.g. "
                "pixels that never vary), so its log-likelihood is higher by construction"
            )
        return {
            "method": self.reference_name,
            "fitted_on": "the same training rows",
            "test_log_likelihood": float(ref_test),
            "train_log_likelihood": float(ref_train),
            "test_gap_percent": 100
            * (float(ref_test) - test_log_likelihood)
            / abs(float(ref_test)),
            "largest_principal_angle_deg": largest_principal_angle_deg(W, ref_W),
            **extras,
        }


class PPCARecipe(FARecipe):
    """``--model ppca``: one noise variance; the reference is the closed-form ML solution."""

    reference_name = "ppca_ml (Tipping & Bishop closed form)"
    reference_max_values = 100_000_000  # one D x D covariance and its eigenvectors

    def reference(self, model, x_train, x_test, seed):
        W, mu, sigma2 = ppca_ml(x_train, model.latent_dim)
        test = float(fa_log_likelihood(x_test, W, mu, sigma2).mean())
        train = float(fa_log_likelihood(x_train, W, mu, sigma2).mean())
        return W, test, train, {"noise_variance": sigma2}


class BayesianFARecipe(FARecipe):
    """``--model bayesian-fa``: the loadings W are a global latent. The report and figures
    take W at its mean under q (a plug-in estimate: the marginal over W has no closed form),
    and say so under ``log_likelihood_at``."""

    default_guide = "bayesian-fa"
    reference_name = "sklearn.decomposition.FactorAnalysis (ours: W at its posterior mean)"

    def report(self, model, guide, data, config, out_dir, history) -> Report:
        x = data.x_train[:2]
        structure = inspect_pair(model, guide, x)
        values = global_means(guide, structure, x)  # {"W": E_q[W'] standardized, (D, k)}
        plug_model = poutine.condition(model, data=values)
        plug_guide = poutine.condition(guide, data=values)
        report = Recipe.report(self, plug_model, plug_guide, data, config, out_dir, history)
        W = model.data_scale.unsqueeze(-1) * values["W"]
        report.update(self.linear_gaussian_report(model, data, out_dir, config.seed, W=W))
        report.summary["log_likelihood_at"] = "posterior mean of W"
        return report
