"""The autoencoder family as model/guide pairs: the Delta-guide objective, the sparsity
penalty's sign, the denoising corruption, CLI training, and the linear AE against PCA."""

import json
import math
import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pyro.infer as infer
import pytest
import torch
from sklearn.decomposition import PCA
from torch import nn

import pyrovae
from pyrovae.cli.train import main
from pyrovae.models import ModelSpec, build_guide, build_model
from pyrovae.models.autoencoders import sparsity_kl
from pyrovae.models.linear_gaussian import largest_principal_angle_deg
from pyrovae.recipes import build_pair

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def one_thread():
    """These models are tiny: one thread is faster than two, and far faster on a busy machine
    (the conftest fixture sets two again before the next test)."""
    torch.set_num_threads(1)


SPEC = ModelSpec(x_dim=12, latent_dim=3, hidden=(16,), likelihood="bernoulli")


def loss_of(model, guide, x) -> float:
    with torch.no_grad():
        return infer.Trace_ELBO().loss(model, guide, x)


def map_objective(model, code, x) -> float:
    """Hand-computed -log p(x | z) - log p(z) at z = code, summed over rows."""
    logits = model.decoder(code)
    log_lik = -torch.nn.functional.binary_cross_entropy_with_logits(logits, x, reduction="sum")
    log_prior = torch.distributions.Normal(0.0, 1.0).log_prob(code).sum()
    return float(-(log_lik + log_prior))


@pytest.fixture
def x():
    return torch.bernoulli(torch.full((20, 12), 0.4))


def test_delta_guide_loss_is_the_map_objective(x):
    model, guide = build_pair("ae", SPEC)
    with torch.no_grad():
        expected = map_objective(model, guide.encode(x), x)
    assert loss_of(model, guide, x) == pytest.approx(expected, rel=1e-5)


def test_sparsity_kl_is_the_bernoulli_kl():
    rho_hat = torch.tensor([0.01, 0.05, 0.3, 0.9])
    expected = torch.distributions.kl_divergence(
        torch.distributions.Bernoulli(torch.full((4,), 0.05)),
        torch.distributions.Bernoulli(rho_hat),
    ).sum()
    assert float(sparsity_kl(0.05, rho_hat)) == pytest.approx(float(expected), rel=1e-5)
    assert float(sparsity_kl(0.05, torch.full((3,), 0.05))) == pytest.approx(0.0, abs=1e-7)


def test_sparse_penalty_adds_weight_times_kl_to_the_loss(x):
    spec = ModelSpec(**{**SPEC.__dict__, "options": {"sparsity_weight": 2.5}})
    model, guide = build_pair("sae", spec)
    with torch.no_grad():
        rho_hat = guide.activations(x).mean(0)
        kl = float(sparsity_kl(0.05, rho_hat))
        expected = map_objective(model, guide.encode(x), x) + x.shape[0] * 2.5 * kl
    assert kl > 0.1  # sigmoid units start near 0.5, far from the target 0.05
    assert loss_of(model, guide, x) == pytest.approx(expected, rel=1e-5)
    # Minimizing the loss pushes the mean activations down towards the target.
    optimizer = torch.optim.Adam(guide.hidden_layer.parameters(), lr=0.05)
    for _ in range(30):
        optimizer.zero_grad()
        infer.Trace_ELBO().differentiable_loss(model, guide, x).backward()
        optimizer.step()
    with torch.no_grad():
        assert float(guide.activations(x).mean()) < float(rho_hat.mean()) - 0.2


def test_denoising_guide_masks_the_configured_fraction():
    spec = ModelSpec(x_dim=40, latent_dim=3, hidden=(16,), options={"corruption": 0.3})
    guide = build_guide("delta-denoising", spec, build_model("dae", spec))
    x = torch.ones(500, 40)
    corrupted = guide.corrupt(x, torch.Generator().manual_seed(0))
    assert ((corrupted == 0).sum(1) == 12).all()  # round(0.3 * 40) entries in every row
    assert len({tuple(row.nonzero().flatten().tolist()) for row in corrupted}) > 400
    # Masked during training steps only: held-out ELBOs and figures encode clean rows.
    with torch.no_grad():
        torch.testing.assert_close(guide.encode(x), guide.encoder(x))
    assert not torch.allclose(guide.encode(x), guide.encoder(x))


def run_cli(argv):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return main([str(a) for a in argv])


def grid_panel(grid, i: int, nrow: int, shape=(8, 8), pad: int = 2):
    """Image ``i`` of a tiled grid (``pad`` pixels around and between the images)."""
    h, w = shape
    r, c = divmod(i, nrow)
    top, left = pad + r * (h + pad), pad + c * (w + pad)
    return grid[top : top + h, left : left + w]


@pytest.mark.parametrize("model", ["ae", "dae", "sae", "linear-ae"])
def test_each_autoencoder_trains_from_the_cli(model, tmp_path, monkeypatch):
    import pyrovae
    from pyrovae.plots import run as run_plots
    from tests.test_plots import keep_figures

    drawn = keep_figures(monkeypatch, run_plots)
    run = tmp_path / "run"
    argv = ["--model", model, "--epochs", "1", "--quiet", "--hidden", "32", "--latent-dim", "4"]
    assert run_cli([*argv, "--out", run]) == 0
    summary = json.loads((run / "summary.json").read_text())
    assert summary["model"] == model and summary["epochs"] == 1
    assert summary["objective"].startswith("MAP")
    assert math.isfinite(summary["test_elbo"])
    expected = "Normal" if model == "linear-ae" else "Bernoulli"
    assert summary["likelihood"] == expected
    # features.png (digits are images): unit i is the first linear layer's row W_i, each
    # rescaled to [0, 1] on its own, in a grid of ceil(sqrt(units)) columns.
    guide = pyrovae.load_run(run).guide
    weight = next(m for m in guide.modules() if isinstance(m, nn.Linear)).weight.detach()
    units = weight.shape[0]
    grid = drawn["features.png"].axes[0].images[0].get_array()
    nrow = math.ceil(math.sqrt(units))
    assert summary["features_drawn"] == units == (4 if model == "linear-ae" else 32)
    for i in (0, units - 1):
        w = weight[i].reshape(8, 8).numpy()
        expected_image = (w - w.min()) / (w.max() - w.min())
        np.testing.assert_allclose(grid_panel(grid, i, nrow), expected_image, atol=1e-5)


@pytest.mark.slow
def test_dae_corruption_flag_reaches_the_guide_in_a_real_process(tmp_path):
    run = tmp_path / "run"
    args = ["--model", "dae", "--corruption", "0.5", "--epochs", "1", "--quiet", "--hidden", "16"]
    proc = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "train_svi.py"), *args, "--out", str(run)],
        env={**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert pyrovae.load_run(run).guide.corruption == 0.5


def test_linear_ae_subspace_matches_pca(tmp_path):
    rng = np.random.default_rng(0)
    basis = np.linalg.qr(rng.normal(size=(8, 2)))[0]
    x = rng.normal(size=(1200, 2)) * [3.0, 2.0] @ basis.T + 0.3 * rng.normal(size=(1200, 8))
    np.savez(tmp_path / "lin.npz", x_train=x[:1000], x_test=x[1000:])
    run = pyrovae.train(
        model="linear-ae",
        dataset=str(tmp_path / "lin.npz"),
        latent_dim=2,
        epochs=30,
        lr=0.02,
        quiet=True,
        out=str(tmp_path / "r"),
    )
    pca = PCA(2).fit(run.data.x_train.numpy())
    W = run.model.decoder.weight.detach()
    angle = largest_principal_angle_deg(W, pca.components_.T)
    assert angle < 2.0
    assert run.summary["pca_largest_principal_angle_deg"] == pytest.approx(angle, abs=1e-4)
    # A control: the first epoch's random decoder is far from PCA's subspace.
    torch.manual_seed(0)
    fresh = build_model("linear-ae", ModelSpec(x_dim=8, latent_dim=2))
    assert largest_principal_angle_deg(fresh.decoder.weight.detach(), pca.components_.T) > 20
