"""Posterior diagnostics against independent truths.

- Factor analysis: log p(x) and p(z | x) in closed form (scipy's dense Gaussian density and
  Gaussian conditioning). With the exact posterior as guide every importance weight is p(x).
- A VAE and a semi-supervised VAE with a 1-D latent: log p(x), the ELBO and the posterior
  moments by numerical quadrature over z (and an exact sum over the class y).
- KL of Gaussians and Categoricals written out by hand; Pyro's own pooled importance weights.
"""

import json
import math
import warnings

import numpy as np
import pyro
import pyro.distributions as dist
import pytest
import torch
import torch.nn.functional as F
from pyro.infer import Trace_ELBO
from pyro.infer.importance import vectorized_importance_weights
from scipy.stats import multivariate_normal

import pyrovae
from pyrovae.cli.diagnose import main as diagnose_main
from pyrovae.inference.diagnostics.amortization import amortization_gap
from pyrovae.inference.diagnostics.importance import importance_weights, point_terms
from pyrovae.inference.diagnostics.latents import latent_health
from pyrovae.inference.diagnostics.pareto import khat_summary, pareto_khat
from pyrovae.inference.diagnostics.reference import nuts_reference
from pyrovae.inference.diagnostics.structure import (
    condition_on_globals,
    global_means,
    inspect_pair,
)
from pyrovae.models import ModelSpec, build_guide, build_model
from pyrovae.models.linear_gaussian import fa_log_likelihood, random_fa_parameters, sample_fa
from pyrovae.plots import diagnostics as diagnostics_plots
from pyrovae.recipes import build_pair
from tests.test_cli import assert_one_error_line
from tests.test_factor_analysis import FAST, fa_npz
from tests.test_plots import keep_figures, legend

D, K = 10, 3


@pytest.fixture(autouse=True)
def one_thread():
    torch.set_num_threads(1)


def fa_pair(guide="exact-posterior", dtype=torch.float64):
    """FA model set to known parameters (W, mu, psi) and a guide; data drawn from it."""
    W, mu, psi = random_fa_parameters(D, K, seed=1)
    spec = ModelSpec(x_dim=D, latent_dim=K, likelihood="gaussian")
    model = build_model("fa", spec).to(dtype)
    with torch.no_grad():
        model.weight.copy_(W)
        model.loc.copy_(mu)
        model.raw_variance.copy_((psi - model.min_variance).expm1().log())
    x = sample_fa(40, W, mu, psi, seed=5).to(dtype)
    return model, build_guide(guide, spec, model).to(dtype), x, (W, mu, psi)


def scipy_log_p(x, W, mu, psi) -> np.ndarray:
    cov = (W @ W.T + torch.diag(psi)).numpy()
    return multivariate_normal(mu.numpy(), cov).logpdf(x.double().numpy())


class ShrunkPosterior(torch.nn.Module):
    """The exact FA posterior with its scale multiplied by ``factor``: a poor proposal."""

    def __init__(self, model, factor):
        super().__init__()
        self.model, self.factor = (model,), factor

    def forward(self, x, y=None):
        loc, scale_tril = self.model[0].posterior(x)
        with pyro.plate("data", x.shape[0]):
            pyro.sample("z", dist.MultivariateNormal(loc, scale_tril=self.factor * scale_tril))


# --------------------------------------------------------------------------- importance weights


def test_exact_posterior_weights_are_the_log_likelihood_at_every_k():
    model, guide, x, truth = fa_pair()
    structure = inspect_pair(model, guide, x)
    weights = importance_weights(model, guide, x, 200, structure)
    exact = torch.as_tensor(scipy_log_p(x, *truth))
    assert weights.log_weights.shape == (40, 200)
    torch.testing.assert_close(weights.log_weights, exact[:, None].expand(40, 200))
    for k in (1, 10, 100, 200):
        torch.testing.assert_close(weights.iwae(k), exact)
    torch.testing.assert_close(weights.elbo, exact)


def test_per_row_weights_sum_to_pyros_pooled_weights_which_are_not_iwae():
    model, _, x, truth = fa_pair()
    x = x[:2]
    guide = ShrunkPosterior(model, 2.5)  # wider than p(z|x): variable weights
    structure = inspect_pair(model, guide, x)
    with torch.no_grad():
        pyro.set_rng_seed(3)
        ours = point_terms(model, guide, x, 2000, structure).log_weight  # (K, 2)
        pyro.set_rng_seed(3)
        pooled, _, _ = vectorized_importance_weights(
            model, guide, x, num_samples=2000, max_plate_nesting=1
        )
    torch.testing.assert_close(ours.sum(-1), pooled)
    # 200 bounds with K = 10 each: per row, and Pyro's pooled weight on log p(x1, x2).
    per_row = (ours.reshape(200, 10, 2).logsumexp(1) - math.log(10)).sum(-1)
    pooled_bound = pooled.reshape(200, 10).logsumexp(-1) - math.log(10)
    difference = per_row - pooled_bound
    assert float(difference.mean()) > 4 * float(difference.std() / math.sqrt(200))
    assert float(per_row.mean()) < scipy_log_p(x, *truth).sum()


def tiny_vae(latent_dim=1, x_dim=6, seed=0):
    torch.manual_seed(seed)
    spec = ModelSpec(x_dim=x_dim, latent_dim=latent_dim, hidden=(8,))
    model, guide = build_pair("vae", spec)
    with torch.no_grad():
        for p in model.decoder.parameters():
            p.mul_(3.0)  # a decoder that depends clearly on z
    x = (torch.rand(12, x_dim, generator=torch.Generator().manual_seed(seed)) < 0.5).float()
    return model, guide, x


GRID = torch.linspace(-9.0, 9.0, 6001, dtype=torch.float64)


def quadrature_log_p(log_joint: torch.Tensor) -> torch.Tensor:
    """log of the integral over GRID of exp(log_joint (..., G)): trapezoid in log space."""
    step = float(GRID[1] - GRID[0])
    return log_joint.logsumexp(-1) + math.log(step)


def vae_log_joint(model, x) -> torch.Tensor:
    """log p(x_i, z) on GRID, ``(N, G)``, written out from the decoder."""
    with torch.no_grad():
        logits = model.decoder(GRID[:, None].float()).double()  # (G, D)
    log_px = -F.binary_cross_entropy_with_logits(
        logits[None].expand(x.shape[0], -1, -1),
        x.double()[:, None].expand(-1, len(GRID), -1),
        reduction="none",
    ).sum(-1)
    return log_px + (-0.5 * GRID**2 - 0.5 * math.log(2 * math.pi))


def test_vae_iwae_converges_to_log_p_by_quadrature():
    model, guide, x = tiny_vae()
    structure = inspect_pair(model, guide, x)
    weights = importance_weights(model, guide, x, 20_000, structure)
    exact = quadrature_log_p(vae_log_joint(model, x))
    torch.testing.assert_close(weights.iwae(), exact, atol=0.01, rtol=0)
    # A bound: the few-sample estimates sit below log p(x), and rise with K.
    assert (weights.iwae(1) < exact).all()
    assert float(weights.iwae(1).mean()) < float(weights.iwae(10).mean()) < float(exact.mean())


def tiny_ssvae(classes=3, x_dim=6, seed=0):
    torch.manual_seed(seed)
    spec = ModelSpec(
        x_dim=x_dim,
        latent_dim=1,
        hidden=(8,),
        num_classes=classes,
        num_data=30,
        options={"labels": classes},
    )
    model, guide = build_pair("ssvae", spec)
    with torch.no_grad():
        for p in model.decoder.parameters():
            p.mul_(3.0)
    x = (torch.rand(8, x_dim, generator=torch.Generator().manual_seed(seed)) < 0.5).float()
    return model, guide, x


def ssvae_log_joint(model, x) -> torch.Tensor:
    """log p(x_i, y, z) on GRID for every class: ``(N, C, G)``."""
    classes = model.num_classes
    rows = []
    for y in range(classes):
        one_hot = F.one_hot(torch.full((len(GRID),), y), classes).float()
        with torch.no_grad():
            logits = model.decoder(torch.cat([GRID[:, None].float(), one_hot], -1)).double()
        log_px = -F.binary_cross_entropy_with_logits(
            logits[None].expand(x.shape[0], -1, -1),
            x.double()[:, None].expand(-1, len(GRID), -1),
            reduction="none",
        ).sum(-1)
        rows.append(log_px - 0.5 * GRID**2 - 0.5 * math.log(2 * math.pi) - math.log(classes))
    return torch.stack(rows, 1)


def test_enumerated_class_is_summed_out_exactly_inside_each_weight():
    model, guide, x = tiny_ssvae()
    structure = inspect_pair(model, guide, x)
    assert structure.enumerated_sites == ("y",) and structure.local_sites == ("y", "z")
    weights = importance_weights(model, guide, x, 20_000, structure)
    log_joint = ssvae_log_joint(model, x)  # (N, C, G)
    exact = quadrature_log_p(log_joint).logsumexp(-1)
    torch.testing.assert_close(weights.iwae(), exact, atol=0.01, rtol=0)
    # The per-row ELBO, summed over y under q(y|x) and integrated over q(z|x,y) on the grid.
    with torch.no_grad():
        q_y = F.softmax(model.classifier(x).double(), -1)  # (N, C)
        labels = torch.arange(model.num_classes)
        loc, scale = guide.encode(x[:, None, :], labels)  # (N, C, 1)
    q_z = dist.Normal(loc.double(), scale.double())
    log_q_z = q_z.log_prob(GRID)  # (N, C, G)
    step = float(GRID[1] - GRID[0])
    inner = (log_q_z.exp() * (log_joint - log_q_z)).sum(-1) * step  # E_q(z|x,y)[...]
    elbo = (q_y * (inner - q_y.log())).sum(-1)
    torch.testing.assert_close(weights.elbo, elbo, atol=0.02, rtol=0)


def test_global_latents_are_fixed_at_their_mean_under_q():
    spec = ModelSpec(x_dim=D, latent_dim=K, likelihood="gaussian", num_data=40)
    model, guide = build_pair("bayesian-fa", spec)
    x = sample_fa(40, *random_fa_parameters(D, K, seed=1), seed=5).float()
    structure = inspect_pair(model, guide, x)
    assert structure.global_sites == ("W",) and structure.local_sites == ("z",)
    values = global_means(guide, structure, x)
    conditioned_model, conditioned_guide = condition_on_globals(model, guide, values)
    weights = importance_weights(conditioned_model, conditioned_guide, x, 20, structure)
    # The guide of z given W is exact: every weight is log p(x | W = E_q[W]).
    W = model.data_scale.unsqueeze(-1) * values["W"]
    exact = fa_log_likelihood(x, W.detach(), model.mean().detach(), model.noise_variance().detach())
    torch.testing.assert_close(
        weights.log_weights, exact[:, None].expand(40, 20), atol=1e-3, rtol=0
    )


def test_a_point_mass_guide_gets_one_line_instead_of_weights():
    spec = ModelSpec(x_dim=D, latent_dim=K)
    model, guide = build_pair("ae", spec)
    x = torch.rand(5, D).round()
    structure = inspect_pair(model, guide, x)
    assert structure.point_mass_sites == ("z",) and not structure.guide_is_density
    with pytest.raises(pyrovae.PyrovaeError, match="point mass"):
        importance_weights(model, guide, x, 10, structure)


def test_a_model_without_a_data_plate_is_refused():
    def model(x, y=None):
        z = pyro.sample("z", dist.Normal(torch.zeros(x.shape[0], 2), 1.0).to_event(2))
        pyro.sample("x", dist.Normal(z.sum(-1, keepdim=True).expand_as(x), 1.0).to_event(2), obs=x)

    def guide(x, y=None):
        pyro.sample("z", dist.Normal(torch.zeros(x.shape[0], 2), 1.0).to_event(2))

    with pytest.raises(pyrovae.PyrovaeError, match=r"pyro.plate\('data'"):
        inspect_pair(model, guide, torch.zeros(4, 3))


# --------------------------------------------------------------------------- Pareto k-hat


def test_khat_is_small_for_the_exact_guide_and_large_for_a_shrunk_one():
    model, exact_guide, x, _ = fa_pair()
    structure = inspect_pair(model, exact_guide, x)
    exact = pareto_khat(importance_weights(model, exact_guide, x, 1000, structure).log_weights)
    assert (exact < 0.5).all()
    shrunk = ShrunkPosterior(model, 0.3)
    khat = pareto_khat(importance_weights(model, shrunk, x, 1000, structure).log_weights)
    summary = khat_summary(khat, worst=3)
    assert summary["pareto_k_share_above_0.7"] > 0.8
    assert summary["pareto_k_worst"][0]["k"] == pytest.approx(khat.max())
    # A mildly wider proposal has bounded weights: k-hat below 0.5 for most rows.
    wide = pareto_khat(
        importance_weights(model, ShrunkPosterior(model, 1.2), x, 1000, structure).log_weights
    )
    assert (wide < 0.5).mean() > 0.9


# --------------------------------------------------------------------------- latent health


def test_kl_per_dimension_and_active_units_match_the_closed_forms():
    model, guide, x = tiny_vae(latent_dim=3, x_dim=8)
    x = torch.cat([x] * 5)
    structure = inspect_pair(model, guide, x)
    health = latent_health(model, guide, x, structure, num_particles=2, batch_size=25)
    with torch.no_grad():
        loc, scale = guide.encode(x)
    kl = 0.5 * (loc**2 + scale**2 - 1) - scale.log()  # KL(N(loc, scale^2) || N(0, 1))
    assert health.kl_method == {"z": "closed form"}
    np.testing.assert_allclose(health.kl_per_dim["z"], kl.mean(0).numpy(), rtol=1e-5)
    assert health.kl_total == pytest.approx(float(kl.sum(-1).mean()), rel=1e-5)
    variance = loc.double().var(0)
    np.testing.assert_allclose(health.mean_variance["z"], variance.numpy(), rtol=1e-5)
    assert health.active_units == int((variance > 0.01).sum()) and health.latent_dims == 3


def test_collapse_is_flagged_when_the_encoder_ignores_x():
    model, guide, x = tiny_vae(latent_dim=4, x_dim=8)
    with torch.no_grad():
        guide.encoder[-1].weight.zero_()  # q(z|x) is the same for every x
    health = latent_health(model, guide, x, inspect_pair(model, guide, x))
    assert health.active_units == 0 and health.latent_dims == 4
    assert "posterior collapse: only 0 of 4" in health.collapse_warning


def test_kl_of_a_correlated_gaussian_q_by_marginals_and_in_total():
    model, guide, x, _ = fa_pair()
    health = latent_health(model, guide, x, inspect_pair(model, guide, x), num_particles=1)
    with torch.no_grad():
        loc, scale_tril = model.posterior(x)
    cov = scale_tril @ scale_tril.T
    marginal = 0.5 * (loc**2 + cov.diagonal() - 1 - cov.diagonal().log())
    np.testing.assert_allclose(health.kl_per_dim["z"], marginal.mean(0).numpy(), rtol=1e-8)
    total = 0.5 * (cov.trace() + (loc**2).sum(-1) - K - torch.logdet(cov))
    assert health.kl_total == pytest.approx(float(total.mean()), rel=1e-8)
    assert "marginal" in health.kl_method["z"]


def test_kl_of_the_enumerated_class_is_the_categorical_kl():
    model, guide, x = tiny_ssvae()
    health = latent_health(model, guide, x, inspect_pair(model, guide, x))
    with torch.no_grad():
        q = F.softmax(model.classifier(x), -1)
    kl_y = (q * (q.log() + math.log(model.num_classes))).sum(-1).mean()
    assert health.kl_per_dim["y"] == [pytest.approx(float(kl_y), rel=1e-5)]
    assert list(health.mean_variance) == ["z"]  # a class has no posterior mean to vary


# --------------------------------------------------------------------------- NUTS reference


@pytest.mark.slow
def test_nuts_reference_matches_the_exact_fa_posterior():
    model, guide, x, (W, mu, psi) = fa_pair(dtype=torch.float32)
    structure = inspect_pair(model, guide, x)
    rows = [0, 7]
    ref = nuts_reference(
        model,
        guide,
        x,
        rows,
        structure,
        num_samples=400,
        warmup_steps=200,
        seed=1,
        jit_compile=True,
    )
    assert ref.nuts["z"].shape == (2, 400, 2, K) and ref.guide["z"].shape == (1, 800, 2, K)
    assert ref.max_rhat < 1.05 and ref.min_ess > 150
    assert all(0.6 < a < 1.0 for a in ref.acceptance)  # NUTS adapts its step to 0.8
    loc = (x[rows].double() - mu) @ torch.linalg.solve(W @ W.T + torch.diag(psi), W)
    cov = torch.eye(K, dtype=torch.float64) - W.T @ torch.linalg.solve(W @ W.T + torch.diag(psi), W)
    sd = cov.diagonal().sqrt().numpy()
    draws = ref.nuts["z"].reshape(-1, 2, K)
    assert np.abs((draws.mean(0) - loc.numpy()) / sd).max() < 0.25
    np.testing.assert_allclose(draws.std(0) / sd, 1.0, atol=0.15)
    # q is exact here: its mean error and sd ratio against NUTS are Monte Carlo noise.
    assert np.abs(ref.mean_error_sd["z"]).max() < 0.25
    np.testing.assert_allclose(ref.sd_ratio["z"], 1.0, atol=0.15)
    idata = ref.inference_data()
    assert set(idata.groups()) == {"posterior", "sample_stats", "approximate_posterior"}
    assert dict(idata.posterior["z"].sizes) == {"chain": 2, "draw": 400, "point": 2, "z_dim_0": K}
    assert list(idata.posterior["point"].values) == rows


@pytest.mark.slow
def test_recorded_nuts_statistics_against_a_known_density():
    """On a standard normal in 3 dimensions: ``lp`` is its log density at each draw, the
    energy exceeds the previous draw's potential energy by a kinetic energy of mean d/2, and
    the per-draw acceptance rates average to Pyro's own running mean."""
    from pyro.infer import MCMC

    from pyrovae.inference.diagnostics.reference import RecordingNUTS

    def model():
        pyro.sample("a", dist.Normal(torch.zeros(3), 1.0).to_event(1))

    pyro.set_rng_seed(0)
    stats, running = {}, []

    def record(kernel, samples, stage, i):
        if stage == "Sample":
            for key, value in kernel.last_stats.items():
                stats.setdefault(key, []).append(value)
            running[:] = [float(kernel.logging()["acc. prob"]), kernel._mean_accept_prob]

    mcmc = MCMC(RecordingNUTS(model), 400, warmup_steps=200, hook_fn=record, disable_progbar=True)
    mcmc.run()
    stats = {k: np.asarray(v) for k, v in stats.items()}
    a = mcmc.get_samples()["a"].numpy()
    log_density = -0.5 * (a**2).sum(1) - 1.5 * math.log(2 * math.pi)
    np.testing.assert_allclose(stats["lp"], log_density, atol=1e-5)
    kinetic = stats["energy"][1:] + stats["lp"][:-1]  # H = K + U, with U = -lp before the step
    assert (kinetic >= 0).all() and abs(kinetic.mean() - 1.5) < 0.3
    assert stats["acceptance_rate"].mean() == pytest.approx(running[0], abs=5e-4)  # 3 places
    assert stats["acceptance_rate"].mean() == pytest.approx(running[1], abs=1e-6)
    assert ((stats["acceptance_rate"] >= 0) & (stats["acceptance_rate"] <= 1)).all()
    assert set(np.unique(stats["tree_depth"])) <= set(range(1, 11))
    assert np.unique(stats["step_size"]).size == 1  # fixed after warm-up


def test_nuts_sums_out_the_class_and_matches_quadrature():
    model, guide, x = tiny_ssvae()
    structure = inspect_pair(model, guide, x)
    ref = nuts_reference(
        model,
        guide,
        x,
        [2],
        structure,
        num_samples=600,
        warmup_steps=300,
        seed=0,
        jit_compile=False,
    )
    log_joint = ssvae_log_joint(model, x[2:3])[0].logsumexp(0)  # log p(x, z) on GRID
    weights = (log_joint - log_joint.logsumexp(0)).exp()
    mean = float((weights * GRID).sum())
    sd = float((weights * (GRID - mean) ** 2).sum().sqrt())
    draws = ref.nuts["z"].reshape(-1)
    assert abs(draws.mean() - mean) / sd < 0.2
    assert draws.std() / sd == pytest.approx(1.0, abs=0.15)


# --------------------------------------------------------------------------- amortization gap


def test_amortization_gap_of_the_exact_posterior_is_zero():
    model, guide, x, _ = fa_pair()
    gap = amortization_gap(
        model,
        guide,
        x,
        list(range(8)),
        inspect_pair(model, guide, x),
        steps=200,
        eval_samples=200,
    ).summary()
    assert abs(gap["amortization_gap"]) < 0.01
    assert abs(gap["approximation_gap"]) < 0.01
    assert gap["iwae_minus_elbo"] == pytest.approx(0.0, abs=1e-9)


def test_optimized_diagonal_gaussian_reaches_the_closed_form_optimum():
    """The best diagonal Gaussian q for a Gaussian posterior N(m, L^-1) has precisions L_dd:
    ELBO* = log p(x) - (sum_d log L_dd - log det L) / 2 (Turner & Sahani, 2011)."""
    model, guide, x, (W, mu, psi) = fa_pair(guide="linear-normal")
    rows = list(range(10))
    gap = amortization_gap(
        model,
        guide,
        x,
        rows,
        inspect_pair(model, guide, x),
        steps=2000,
        lr=0.05,
        num_particles=32,
        eval_samples=5000,
    )
    precision = torch.eye(K, dtype=torch.float64) + W.T @ (W / psi[:, None])
    kl = 0.5 * (precision.diagonal().log().sum() - torch.logdet(precision))
    optimum = torch.as_tensor(scipy_log_p(x[rows], W, mu, psi)) - kl
    # Each row's ELBO is a 5000-draw Monte Carlo estimate (sd about 0.02 nats).
    torch.testing.assert_close(gap.elbo_optimized, optimum, atol=0.1, rtol=0)
    assert float(gap.elbo_optimized.mean()) == pytest.approx(float(optimum.mean()), abs=0.02)
    # The untrained encoder is far from it: a large amortization gap.
    assert gap.summary()["amortization_gap"] > 1.0


# --------------------------------------------------------------------------- the command


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "vae"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pyrovae.train(epochs=5, hidden=(32,), latent_dim=4, quiet=True, out=str(out))
    return out


SMALL = dict(
    iwae_samples=100,
    nuts_points=2,
    nuts_samples=100,
    nuts_warmup=100,
    amortization_points=10,
    amortization_steps=50,
    max_points=60,
)


def test_diagnose_writes_json_netcdf_and_figures(digits_run, monkeypatch):
    drawn = keep_figures(monkeypatch, diagnostics_plots)
    out = pyrovae.diagnose(digits_run, **SMALL)
    saved = json.loads((digits_run / "diagnostics.json").read_text())
    for key in (
        "iwae_log_likelihood",
        "iwae_standard_error",
        "iwae_by_k",
        "pareto_k_share_above_0.5",
        "pareto_k_share_above_0.7",
        "kl_per_dim",
        "active_units",
        "amortization_gap",
        "nuts_max_rhat",
        "nuts_min_ess",
        "seconds",
    ):
        assert saved[key] is not None, key
        assert saved[key] == json.loads(json.dumps(out[key])), key
    assert set(saved["seconds"]) == {
        "iwae",
        "pareto_k",
        "latents",
        "nuts",
        "amortization",
        "ppc",
        "sample_quality",
        "sbc",
        "ece",
    }
    assert list(saved["iwae_by_k"]) == ["1", "10", "100"]
    assert saved["iwae_by_k"]["100"]["estimate"] == pytest.approx(saved["iwae_log_likelihood"])
    # K = 1 is the ELBO: Pyro's Trace_ELBO on the same rows agrees within Monte Carlo error.
    run = pyrovae.load_run(digits_run)
    x = run.data.x_test[:60]
    with torch.no_grad():
        elbo = (
            -Trace_ELBO(num_particles=200, vectorize_particles=True).loss(run.model, run.guide, x)
            / 60
        )
    assert saved["iwae_by_k"]["1"]["estimate"] == pytest.approx(elbo, abs=0.05)
    assert saved["iwae_by_k"]["1"]["estimate"] < saved["iwae_log_likelihood"]
    assert saved["num_points"] == 60 and len(saved["kl_per_dim"]["z"]) == 4
    for name in ("pareto_khat.png", "iwae_vs_k.png", "kl_per_dim.png", "nuts_vs_q.png"):
        assert (digits_run / name).stat().st_size > 10_000, name
    # The figures show what diagnostics.json reports.
    (ax,) = drawn["pareto_khat.png"].axes
    assert len(ax.collections[0].get_offsets()) == 60
    assert legend(ax) == [
        f"k = {level}: {saved[f'pareto_k_share_above_{level}']:.1%} above" for level in (0.5, 0.7)
    ]
    (ax,) = drawn["iwae_vs_k.png"].axes
    estimates = ax.containers[0].lines[0]
    assert list(estimates.get_xdata()) == [1, 10, 100]
    expected = [saved["iwae_by_k"][k]["estimate"] for k in ("1", "10", "100")]
    assert list(estimates.get_ydata()) == pytest.approx(expected)
    (ax,) = drawn["kl_per_dim.png"].axes
    heights = [bar.get_height() for bar in ax.patches]
    assert heights == pytest.approx(sorted(saved["kl_per_dim"]["z"], reverse=True))
    assert ax.get_title().endswith(f"{saved['active_units']} of 4 active (gray: inactive)")
    panels = drawn["nuts_vs_q.png"].axes
    assert len(panels) == 2 * 4  # a row per NUTS point, a column per latent dimension
    titles = [ax.get_title().split(",")[0] for ax in panels[::4]]
    assert titles == [f"point {row}" for row in saved["nuts_points"]]
    az = pytest.importorskip("arviz")
    idata = az.from_netcdf(digits_run / "posterior.nc")
    assert {"posterior", "sample_stats", "approximate_posterior", "importance"} <= set(
        idata.groups()
    )
    assert dict(idata.importance["log_weights"].sizes) == {"point": 60, "sample": 100}
    assert list(idata.posterior["point"].values) == saved["nuts_points"]
    khat = idata.importance["pareto_k"].values
    assert float((khat > 0.7).mean()) == pytest.approx(saved["pareto_k_share_above_0.7"])
    stats = idata.sample_stats
    for name in ("diverging", "energy", "lp", "step_size", "acceptance_rate", "tree_depth"):
        assert dict(stats[name].sizes) == {"chain": 2, "draw": 100}, name
    accept = stats["acceptance_rate"].values.mean(axis=1)
    assert accept == pytest.approx(saved["nuts_mean_accept_prob"], abs=1e-6)
    import matplotlib

    matplotlib.use("Agg")
    assert az.plot_energy(idata) is not None  # ArviZ's energy plot reads the written file


def test_diagnose_a_point_mass_guide_explains_and_runs_the_rest(tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        run = pyrovae.train(
            model="ae", epochs=2, hidden=(32,), latent_dim=3, quiet=True, out=str(tmp_path / "r")
        )
    out = pyrovae.diagnose(run, **SMALL)
    assert out["iwae_log_likelihood"] is None and out["amortization_gap"] is None
    assert any("point mass" in note for note in out["notes"])
    assert out["kl_per_dim"] == {"z": None} and out["latent_dims"] == 3
    assert out["nuts_max_rhat"] is not None  # NUTS needs only the model


def test_fa_runs_iwae_against_the_exact_log_likelihood(tmp_path):
    """The closing figures of a trained FA run: with the exact posterior as guide the IWAE is
    test_log_likelihood at every K (float32 rounding) and no row's k-hat is above 0.5; with
    trained amortized guides it is within 0.05 nats of it at K = 1000."""
    path, _ = fa_npz(tmp_path / "fa.npz")
    for guide in ("exact-posterior", "linear-normal", "mlp-normal"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            run = pyrovae.train(
                model="fa",
                guide=guide,
                dataset=str(path),
                latent_dim=K,
                out=str(tmp_path / guide),
                **FAST,
            )
        out = pyrovae.diagnose(
            run, iwae_samples=1000, nuts_points=0, amortization_points=0, write=False
        )
        exact = run.summary["test_log_likelihood"]
        if guide == "exact-posterior":
            for k, value in out["iwae_by_k"].items():
                assert value["estimate"] == pytest.approx(exact, abs=1e-4), k
            assert out["pareto_k_share_above_0.5"] == 0.0
        assert exact - 0.05 < out["iwae_log_likelihood"] < exact + 0.005, guide


def test_cli_errors_are_one_line(tmp_path, capsys):
    code = diagnose_main([str(tmp_path / "nowhere")])
    assert_one_error_line(code, capsys.readouterr().err, "no run folder")
    code = diagnose_main([str(tmp_path), "--nuts-chains", "1"])
    assert_one_error_line(code, capsys.readouterr().err, "--nuts-chains")
    code = diagnose_main([str(tmp_path), "--iwae-samples", "-1"])
    assert_one_error_line(code, capsys.readouterr().err, "--iwae-samples")
