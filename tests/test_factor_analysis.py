"""Factor analysis and PPCA: closed forms against sklearn, trained pairs against closed forms.

The references are independent of the code under test: sklearn's PCA, PCA.score (the PPCA
likelihood) and FactorAnalysis.score (mean log-likelihood per example), and scipy's dense
multivariate normal density.
"""

import math

import numpy as np
import pyro.infer as infer
import pytest
import torch
from scipy.stats import multivariate_normal
from sklearn.decomposition import PCA
from sklearn.decomposition import FactorAnalysis as SklearnFA

import pyrovae
from pyrovae.errors import PyrovaeError
from pyrovae.models import ModelSpec, build_guide, build_model
from pyrovae.models.linear_gaussian import (
    fa_log_likelihood,
    fa_posterior,
    largest_principal_angle_deg,
    pca_svd,
    ppca_ml,
    random_fa_parameters,
    sample_fa,
)

D, K = 10, 3


@pytest.fixture(autouse=True)
def one_thread():
    """These models are tiny: one thread is faster than two, and far faster on a busy machine
    (the conftest fixture sets two again before the next test)."""
    torch.set_num_threads(1)


FAST = dict(epochs=25, lr=0.05, batch_size=256, quiet=True)


def true_model(isotropic=False, seed=1):
    return random_fa_parameters(D, K, isotropic, seed)


def fa_npz(path, isotropic=False, n_train=1500, n_test=500):
    W, mu, psi = true_model(isotropic)
    x = sample_fa(n_train + n_test, W, mu, psi, seed=2).float().numpy()
    np.savez(path, x_train=x[:n_train], x_test=x[n_train:])
    return path, W


def scipy_log_likelihood(x, W, mu, psi) -> float:
    """Mean log N(x; mu, W W^T + diag(psi)) from scipy's dense density (nats per example)."""
    W, mu, psi = (np.asarray(t, dtype=np.float64) for t in (W, mu, psi))
    cov = W @ W.T + np.diag(np.broadcast_to(psi, mu.shape))
    return float(multivariate_normal(mu, cov).logpdf(np.asarray(x, dtype=np.float64)).mean())


@pytest.fixture(scope="module")
def data():
    W, mu, psi = true_model()
    return sample_fa(800, W, mu, psi, seed=3).numpy()


# --------------------------------------------------------------------------- closed forms


def test_pca_svd_matches_sklearn(data):
    components, variance, mean = pca_svd(data, K)
    pca = PCA(K).fit(data)
    # Same directions up to sign, same variances.
    cosines = (components.numpy() * pca.components_).sum(1)
    np.testing.assert_allclose(np.abs(cosines), 1.0, atol=1e-8)
    np.testing.assert_allclose(variance.numpy(), pca.explained_variance_, rtol=1e-8)
    np.testing.assert_allclose(mean.numpy(), pca.mean_, atol=1e-12)


def test_ppca_ml_is_tipping_bishop_and_matches_sklearn(data):
    n = data.shape[0]
    W, mu, sigma2 = ppca_ml(data, K)
    pca = PCA(K).fit(data)
    # sklearn normalizes the covariance by n - 1; the ML solution by n.
    assert sigma2 == pytest.approx(pca.noise_variance_ * (n - 1) / n, rel=1e-8)
    cov_ml = W @ W.T + sigma2 * torch.eye(D, dtype=W.dtype)
    np.testing.assert_allclose(cov_ml.numpy(), pca.get_covariance() * (n - 1) / n, atol=1e-8)
    # PCA.score is the PPCA log-likelihood: the same formula at sklearn's parameters ...
    sk_W = pca.components_.T * np.sqrt(pca.explained_variance_ - pca.noise_variance_)
    ours = fa_log_likelihood(data, sk_W, pca.mean_, pca.noise_variance_).mean()
    assert float(ours) == pytest.approx(pca.score(data), rel=1e-10)
    # ... and the ML solution beats sklearn's (n - 1) one and any perturbation of it.
    best = float(fa_log_likelihood(data, W, mu, sigma2).mean())
    assert best > pca.score(data)
    g = torch.Generator().manual_seed(0)
    for _ in range(5):
        dW = 0.05 * torch.randn(W.shape, generator=g, dtype=W.dtype)
        assert best > float(fa_log_likelihood(data, W + dW, mu, sigma2 * 1.05).mean())


def test_fa_log_likelihood_matches_sklearn_score_and_scipy(data):
    fa = SklearnFA(K, random_state=0).fit(data)
    ours = fa_log_likelihood(data, fa.components_.T, fa.mean_, fa.noise_variance_)
    assert ours.shape == (data.shape[0],) and ours.dtype == torch.float64
    assert float(ours.mean()) == pytest.approx(fa.score(data), rel=1e-10)
    reference = scipy_log_likelihood(data, fa.components_.T, fa.mean_, fa.noise_variance_)
    assert float(ours.mean()) == pytest.approx(reference, rel=1e-10)


def test_fa_posterior_is_gaussian_conditioning(data):
    W, mu, psi = true_model()
    x = torch.as_tensor(data[:5])
    loc, cov = fa_posterior(x, W, mu, psi)
    # Joint Gaussian of (z, x): z | x has mean W^T C^-1 (x - mu), cov I - W^T C^-1 W.
    C = W @ W.T + torch.diag(psi)
    gain = torch.linalg.solve(C, W).T  # W^T C^-1: (k, D)
    torch.testing.assert_close(loc, (x - mu) @ gain.T)
    torch.testing.assert_close(cov, torch.eye(K, dtype=W.dtype) - gain @ W)


def test_principal_angles():
    basis = torch.eye(4, dtype=torch.float64)
    mixed = basis[:, :2] @ torch.randn(2, 2, dtype=torch.float64)  # same plane, new basis
    assert largest_principal_angle_deg(basis[:, :2], mixed) < 1e-6
    assert largest_principal_angle_deg(basis[:, :2], basis[:, 1:3]) == pytest.approx(90)
    tilted = torch.stack([basis[:, 0], math.cos(0.3) * basis[:, 1] + math.sin(0.3) * basis[:, 2]])
    assert largest_principal_angle_deg(basis[:, :2], tilted.T) == pytest.approx(math.degrees(0.3))


# --------------------------------------------------------------------------- ELBO identity


def elbo_per_example(model, guide, x, particles=10):
    elbo = infer.Trace_ELBO(num_particles=particles, vectorize_particles=True)
    with torch.no_grad():
        return -elbo.loss(model, guide, x) / x.shape[0]


@pytest.mark.parametrize("name", ["fa", "ppca"])
def test_exact_posterior_elbo_is_the_log_likelihood(name, data):
    """For any parameters, log p(x, z) - log q(z|x) = log p(x) when q is the exact
    posterior: the Monte Carlo ELBO equals the log-likelihood (here: up to float32)."""
    spec = ModelSpec(x_dim=D, latent_dim=K)
    model = build_model(name, spec)
    model.standardize(torch.as_tensor(data[:100], dtype=torch.float32))
    with torch.no_grad():
        model.weight.normal_()  # arbitrary, far from any optimum
    guide = build_guide("exact-posterior", spec, model)
    x = torch.as_tensor(data[100:300], dtype=torch.float32)
    exact = scipy_log_likelihood(x, *model.parameters_f64())
    assert elbo_per_example(model, guide, x) == pytest.approx(exact, rel=1e-5)
    # A guide that is not the posterior gives a strictly lower bound.
    other = build_guide("linear-normal", spec, model)
    assert elbo_per_example(model, other, x, particles=200) < exact - 1.0


def test_exact_posterior_needs_a_linear_gaussian_model():
    spec = ModelSpec(x_dim=D, latent_dim=K)
    with pytest.raises(PyrovaeError, match="exact-posterior needs"):
        build_guide("exact-posterior", spec, build_model("vae", spec))


# --------------------------------------------------------------------------- trained pairs


def test_trained_fa_recovers_the_true_model(tmp_path):
    path, W_true = fa_npz(tmp_path / "fa.npz")
    run = pyrovae.train(
        model="fa", dataset=str(path), latent_dim=K, out=str(tmp_path / "r"), **FAST
    )
    s = run.summary
    x_train = run.data.x_train.double().numpy()
    x_test = run.data.x_test.double().numpy()
    sk = SklearnFA(K, random_state=0).fit(x_train)  # on the very rows the run trained on
    assert s["test_log_likelihood"] == pytest.approx(sk.score(x_test), rel=0.005)
    W, mu, psi = run.model.parameters_f64()
    sk_angle = largest_principal_angle_deg(sk.components_.T, W_true)
    assert largest_principal_angle_deg(W, W_true) < sk_angle + 2.0
    assert largest_principal_angle_deg(W, sk.components_.T) < 3.0
    # The exact-posterior guide (the default): the final ELBO is the exact log-likelihood,
    # both as the model reports it and from scipy's density at the learned parameters.
    assert s["guide"] == "exact-posterior"
    assert s["test_elbo"] == pytest.approx(scipy_log_likelihood(x_test, W, mu, psi), rel=1e-5)
    assert s["test_elbo"] == pytest.approx(s["test_log_likelihood"], rel=1e-5)
    assert s["reference"]["test_gap_percent"] < 0.5
    assert (run.folder.path / "loadings.png").is_file()


def test_trained_ppca_matches_the_closed_form(tmp_path):
    path, W_true = fa_npz(tmp_path / "ppca.npz", isotropic=True)
    run = pyrovae.train(
        model="ppca", dataset=str(path), latent_dim=K, out=str(tmp_path / "r"), **FAST
    )
    W_ml, mu_ml, sigma2_ml = ppca_ml(run.data.x_train, K)
    closed_form = float(fa_log_likelihood(run.data.x_test, W_ml, mu_ml, sigma2_ml).mean())
    s = run.summary
    assert s["test_log_likelihood"] == pytest.approx(closed_form, rel=0.005)
    W, _, psi = run.model.parameters_f64()
    assert torch.allclose(psi, psi[0].expand_as(psi))  # one noise variance
    assert float(psi[0]) == pytest.approx(sigma2_ml, rel=0.05)
    assert largest_principal_angle_deg(W, W_ml) < 3.0
    assert s["reference"]["largest_principal_angle_deg"] == pytest.approx(
        largest_principal_angle_deg(W, W_ml), abs=1e-6
    )


def test_bayesian_fa_trains_through_the_runner(tmp_path):
    path, W_true = fa_npz(tmp_path / "fa.npz")
    run = pyrovae.train(
        model="bayesian-fa", dataset=str(path), latent_dim=K, out=str(tmp_path / "r"), **FAST
    )
    s = run.summary
    assert s["guide"] == "bayesian-fa" and s["log_likelihood_at"] == "posterior mean of W"
    sk = SklearnFA(K, random_state=0).fit(run.data.x_train.double().numpy())
    assert s["test_log_likelihood"] == pytest.approx(sk.score(run.data.x_test.numpy()), rel=0.01)
    # The ELBO also pays for the uncertainty in W: below the plug-in log-likelihood.
    assert s["test_elbo"] < s["test_log_likelihood"]
    # W at the mean of q(W) (AutoNormal's loc, in standardized units).
    W = run.model.data_scale.unsqueeze(-1) * run.guide.weights.median()["W"]
    assert largest_principal_angle_deg(W.detach(), W_true) < 8.0
    # q(W) lives in the guide's AutoNormal and is checkpointed with it.
    loaded = pyrovae.load_run(tmp_path / "r")
    torch.testing.assert_close(loaded.guide.weights.median()["W"], run.guide.weights.median()["W"])


@pytest.mark.parametrize(("model", "width"), [("fa", 1), ("ppca", 3)])
def test_fa_and_ppca_take_npz_of_any_width(model, width, tmp_path):
    x = np.random.default_rng(0).normal(size=(200, width)).astype(np.float32) * 3 + 5
    np.savez(tmp_path / "w.npz", x_train=x[:150], x_test=x[150:])
    run = pyrovae.train(
        model=model,
        dataset=str(tmp_path / "w.npz"),
        latent_dim=1,
        epochs=1,
        quiet=True,
        out=str(tmp_path / "r"),
    )
    assert run.summary["likelihood"] == "Normal"
    assert math.isfinite(run.summary["test_log_likelihood"])
    if width == 1:
        assert "skipped" in run.summary["reference"]  # k >= D: no closed form to compare


def test_fa_on_digits_models_gray_levels(tmp_path, monkeypatch):
    from pyrovae.plots import run as run_plots
    from tests.test_autoencoders import grid_panel
    from tests.test_plots import keep_figures

    drawn = keep_figures(monkeypatch, run_plots)
    run = pyrovae.train(
        model="fa", dataset="digits", latent_dim=4, epochs=1, quiet=True, out=str(tmp_path / "r")
    )
    assert run.summary["likelihood"] == "Normal"
    assert not run.data.dynamic_binarization
    gray = run.data.x_test
    assert ((gray > 0) & (gray < 1)).any()  # not binarized
    assert math.isfinite(run.summary["test_log_likelihood"])
    # loadings.png: column j of W (data units) as an 8x8 image, rescaled on its own.
    figure = drawn["loadings.png"]
    assert figure.axes[0].get_title() == "Loadings W[:, j]"
    grid = figure.axes[0].images[0].get_array()
    W = run.model.loadings().detach()
    for j in range(4):
        w = W[:, j].reshape(8, 8).numpy()
        np.testing.assert_allclose(grid_panel(grid, j, 2), (w - w.min()) / (w.max() - w.min()),
                                   atol=1e-5)  # fmt: skip


def test_fa_refuses_another_likelihood(tmp_path):
    with pytest.raises(PyrovaeError, match="--likelihood gaussian"):
        pyrovae.train(
            model="fa", likelihood="bernoulli", epochs=1, quiet=True, out=str(tmp_path / "r")
        )
