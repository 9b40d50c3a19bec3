"""Posterior predictive checks and sample quality against independent truths.

- PPC: a decoder whose logits are shifted on purpose fails the mean-intensity check that the
  trained one passes; statistics against numpy's definitions; ``az.plot_ppc`` draws from the
  written ``predictive.nc``.
- Fréchet distance: torchmetrics against scipy's matrix square root on the same features, and
  against the closed form for two Gaussians.
- Precision/recall: point clouds with known overlap, and the k-NN radii against
  scikit-learn's ``NearestNeighbors``.
"""

import copy
import json
import shutil
import warnings

import numpy as np
import pytest
import scipy.linalg
import torch
from sklearn.neighbors import NearestNeighbors

import pyrovae
from pyrovae.cli.diagnose import main as diagnose_main
from pyrovae.inference.diagnostics import quality
from pyrovae.inference.diagnostics.predictive import (
    check_passes,
    p_values,
    predictive_check,
    statistics,
)
from pyrovae.inference.diagnostics.structure import inspect_pair
from tests.test_cli import assert_one_error_line


@pytest.fixture(autouse=True)
def one_thread():
    torch.set_num_threads(1)


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "vae"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # The default VAE: a smaller or less trained one still pulls its posterior predictive
        # toward the training rows' intensity, and fails the check on the test rows.
        pyrovae.train(epochs=30, quiet=True, out=str(out))
    return out


def shifted(model, by: float):
    """A copy of the model whose decoder's output logits are shifted by ``by``."""
    model = copy.deepcopy(model)
    last = [m for m in model.decoder.modules() if isinstance(m, torch.nn.Linear)][-1]
    with torch.no_grad():
        last.bias += by
    return model


# ------------------------------------------------------------------------------ statistics


def test_statistics_follow_their_definitions():
    generator = np.random.default_rng(0)
    x = generator.uniform(size=(7, 3, 12))  # (S, n, H*W) with H, W = 3, 4
    labels = torch.tensor([0, 1, 1])
    got = statistics(torch.as_tensor(x), (3, 4), labels, classes=2)
    np.testing.assert_allclose(got["mean_intensity"], x.mean((1, 2)))
    np.testing.assert_allclose(got["fraction_on"], (x > 0.5).mean((1, 2)))
    images = x.reshape(7, 3, 3, 4)
    for name, a, b in (
        ("horizontal", images[..., :, :-1], images[..., :, 1:]),
        ("vertical", images[..., :-1, :], images[..., 1:, :]),
    ):
        truth = [np.corrcoef(a[s].ravel(), b[s].ravel())[0, 1] for s in range(7)]
        np.testing.assert_allclose(got[f"neighbor_correlation_{name}"], truth)
    np.testing.assert_allclose(got["mean_intensity_class_1"], x[:, 1:].mean((1, 2)))
    observed = {"t": torch.tensor(0.5)}
    assert p_values(observed, {"t": torch.tensor([0.1, 0.5, 0.9, 0.7])}) == {"t": 0.75}
    assert check_passes(0.5) and not check_passes(1.0) and not check_passes(0.01)


def test_shifted_logits_fail_the_mean_intensity_check_the_trained_model_passes(digits_run):
    run = pyrovae.load_run(digits_run)
    x = run.data.x_test
    structure = inspect_pair(run.model, run.guide, x)
    trained = predictive_check(run.model, run.guide, x, structure, draws=100, image_shape=(8, 8))
    wrong_model = shifted(run.model, 2.0)
    wrong = predictive_check(wrong_model, run.guide, x, structure, draws=100, image_shape=(8, 8))
    assert check_passes(trained.posterior_p_values["mean_intensity"])
    assert wrong.posterior_p_values["mean_intensity"] == 1.0
    assert "mean_intensity" in wrong.summary()["ppc_failed"]
    assert "mean_intensity" not in trained.summary()["ppc_failed"]
    # The replicates are drawn, not the observed rows handed back (as Predictive would).
    samples = trained.posterior_replicates.samples
    assert samples.shape == (100, 360, 64) and not torch.equal(samples[0], x)
    assert set(samples.unique().tolist()) == {0.0, 1.0}
    assert trained.summary()["ppc_pixel_max_abs_difference"] < 0.15
    assert wrong.summary()["ppc_pixel_max_abs_difference"] > 0.2


def test_diagnose_writes_a_predictive_file_that_arviz_plots(digits_run, tmp_path):
    az = pytest.importorskip("arviz")
    run_dir = tmp_path / "run"
    shutil.copytree(digits_run, run_dir)
    options = dict(iwae_samples=0, nuts_points=0, amortization_points=0, ppc_draws=30)
    out = pyrovae.diagnose(run_dir, max_points=80, **options)
    assert {"ppc_statistics.png", "ppc_pixels.png", "predictive.nc"} <= set(out["files"])
    saved = json.loads((run_dir / "diagnostics.json").read_text())
    assert saved["ppc_rows"] == 80 and saved["ppc_draws"] == 30
    idata = az.from_netcdf(run_dir / "predictive.nc")
    assert {"posterior_predictive", "prior_predictive", "observed_data", "log_likelihood"} <= set(
        idata.groups()
    )
    run = pyrovae.load_run(run_dir)
    np.testing.assert_array_equal(idata.observed_data["x"].values, run.data.x_test[:80].numpy())
    assert dict(idata.posterior_predictive["x"].sizes) == {
        "chain": 1, "draw": 30, "row": 80, "pixel": 64
    }  # fmt: skip
    intensity = idata.posterior_predictive["mean_intensity"].values.mean(-1)  # (1, S)
    observed = float(idata.observed_data["mean_intensity"].mean())
    assert saved["ppc_observed"]["mean_intensity"] == pytest.approx(observed)
    assert saved["ppc_p_values"]["mean_intensity"] == pytest.approx((intensity >= observed).mean())
    assert (idata.log_likelihood["x"].values < 0).all()
    axes = np.ravel(az.plot_ppc(idata, var_names=["mean_intensity"], num_pp_samples=30))
    lines = axes[0].get_lines()
    assert len(lines) >= 30  # one per replicate, the observed and the mean
    axes = np.ravel(az.plot_ppc(az.from_netcdf(run_dir / "predictive.nc")))
    assert len(axes) == 3  # x, mean_intensity, fraction_on


def test_flags_switch_the_checks_off_and_bad_sizes_are_one_line(digits_run, tmp_path, capsys):
    run_dir = tmp_path / "run"
    shutil.copytree(digits_run, run_dir)
    skip = ["--iwae-samples", "0", "--nuts-points", "0", "--amortization-points", "0"]
    off = ["--no-ppc", "--no-sample-quality", "--no-sbc", "--quiet"]
    assert diagnose_main([str(run_dir), *skip, *off]) == 0
    saved = json.loads((run_dir / "diagnostics.json").read_text())
    assert "ppc_p_values" not in saved and "sample_quality" not in saved
    assert saved["sbc_verdict"] is None
    # Left: the latents' health, and the search for a class site to calibrate (none here).
    assert set(saved["seconds"]) == {"latents", "ece"} and saved["ece"] is None
    assert not (run_dir / "predictive.nc").exists()
    capsys.readouterr()
    for flag, value in (("--ppc-rows", "1"), ("--ppc-draws", "0"), ("--quality-rows", "3")):
        code = diagnose_main([str(run_dir), *skip, flag, value])
        assert_one_error_line(code, capsys.readouterr().err, flag)


def test_a_run_without_labels_gets_no_sample_quality_and_says_why(tmp_path):
    out = tmp_path / "spiral"
    pyrovae.train(dataset="spiral", epochs=2, quiet=True, out=str(out))
    result = pyrovae.diagnose(out, iwae_samples=0, nuts_points=0, amortization_points=0)
    assert "sample_quality" not in result and "ppc_p_values" in result
    assert (
        "no sample quality: it needs the data set's labels, to train its classifier"
        in (result["notes"])
    )
    assert "neighbor_correlation_horizontal" not in result["ppc_p_values"]  # no image shape


# --------------------------------------------------------------------------- sample quality


def test_frechet_distance_is_the_closed_form_for_two_gaussians():
    generator = torch.Generator().manual_seed(0)
    a = torch.randn(400, 5, generator=generator, dtype=torch.float64)
    b = 1.5 * torch.randn(300, 5, generator=generator, dtype=torch.float64) + 0.3
    # On the same features: the definition with scipy's matrix square root.
    s1, s2 = np.cov(a.numpy().T), np.cov(b.numpy().T)
    root = scipy.linalg.sqrtm(s1 @ s2).real
    truth = ((a.mean(0) - b.mean(0)) ** 2).sum().item() + np.trace(s1 + s2 - 2 * root)
    assert quality.frechet_distance(a, b) == pytest.approx(truth, rel=1e-8)
    # Many draws of N(0, I) and N(m, s^2 I): ||m||^2 + d (1 - s)^2.
    a = torch.randn(200_000, 3, generator=generator, dtype=torch.float64)
    b = 2.0 * torch.randn(200_000, 3, generator=generator, dtype=torch.float64) + 1.0
    assert quality.frechet_distance(a, b) == pytest.approx(3 * 1.0 + 3 * 1.0, abs=0.05)


def test_precision_and_recall_on_point_clouds_of_known_overlap():
    generator = torch.Generator().manual_seed(0)
    real = torch.rand(600, 2, generator=generator)
    assert quality.precision_recall(real, real.clone()) == (1.0, 1.0)
    far = torch.rand(600, 2, generator=generator) + 10.0
    assert quality.precision_recall(real, far) == (0.0, 0.0)
    # Fake points in the left quarter of the square: they look real, they cover a quarter.
    corner = torch.rand(600, 2, generator=generator) * torch.tensor([0.25, 1.0])
    precision, recall = quality.precision_recall(real, corner)
    assert precision > 0.95 and 0.2 < recall < 0.4
    same = torch.rand(600, 2, generator=generator)
    precision, recall = quality.precision_recall(real, same)
    assert precision > 0.9 and recall > 0.9
    # The radii are the distances to the k-th other neighbor, as scikit-learn finds them.
    distances, _ = NearestNeighbors(n_neighbors=4).fit(real.numpy()).kneighbors(real.numpy())
    radii = quality._kth_radius(real.double(), 3, batch=100)
    np.testing.assert_allclose(radii.numpy(), distances[:, 3], rtol=1e-6)


def test_the_classifier_is_cached_and_a_bad_cache_file_is_retrained(tmp_path, monkeypatch):
    monkeypatch.setenv("PYROVAE_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(quality, "STEPS", 50)
    generator = torch.Generator().manual_seed(0)
    x = torch.rand(200, 16, generator=generator)
    y = (x[:, 0] > 0.5).long()
    net, cached = quality.feature_classifier(x, y, 2)
    assert not cached
    (path,) = (tmp_path / "cache").iterdir()
    assert path.name == f"classifier-{quality.data_digest(x, y)}.pt"
    again, cached = quality.feature_classifier(x, y, 2)
    assert cached
    torch.testing.assert_close(quality.embed(again, x), quality.embed(net, x))

    class Hostile:
        def __reduce__(self):
            return (exec, ("import pathlib; pathlib.Path('" + str(tmp_path) + "/ran').touch()",))

    torch.save(Hostile(), path)
    _, cached = quality.feature_classifier(x, y, 2)
    assert not cached and not (tmp_path / "ran").exists()
    path.write_bytes(b"not a checkpoint")
    _, cached = quality.feature_classifier(x, y, 2)
    assert not cached
    assert quality.feature_classifier(x, y, 2)[1]  # rewritten whole


def test_sample_quality_in_diagnose_orders_the_reference_rows(digits_run, tmp_path):
    run_dir = tmp_path / "run"
    shutil.copytree(digits_run, run_dir)
    out = pyrovae.diagnose(run_dir, iwae_samples=0, nuts_points=0, amortization_points=0)
    rows = out["sample_quality"]
    assert list(rows) == ["test_vs_train", "prior_samples", "reconstructions", "noise"]
    assert out["quality_rows"] == 360 and out["quality_classifier_test_accuracy"] > 0.85
    fd = {name: row["frechet_distance"] for name, row in rows.items()}
    assert fd["test_vs_train"] < fd["reconstructions"] < fd["noise"]
    assert fd["test_vs_train"] < fd["prior_samples"] < fd["noise"]
    assert rows["noise"]["precision"] < 0.4 < rows["prior_samples"]["precision"]
    assert (run_dir / "sample_quality.png").stat().st_size > 10_000


@pytest.mark.slow
def test_fréchet_distance_orders_floor_trained_and_one_epoch_models(tmp_path):
    rows = {}
    for epochs in (1, 50):
        out = tmp_path / f"vae{epochs}"
        pyrovae.train(epochs=epochs, quiet=True, out=str(out))
        result = pyrovae.diagnose(out, iwae_samples=0, nuts_points=0, amortization_points=0)
        rows[epochs] = result["sample_quality"]["prior_samples"]
        rows["floor"], rows["noise"] = (
            result["sample_quality"][k] for k in ("test_vs_train", "noise")
        )
    fd = {name: row["frechet_distance"] for name, row in rows.items()}
    recall = {name: row["recall"] for name, row in rows.items()}
    assert fd["floor"] < fd[50] < fd[1] and fd[50] < fd["noise"]
    assert recall["floor"] > recall[50] > recall[1] and recall[50] > recall["noise"]
