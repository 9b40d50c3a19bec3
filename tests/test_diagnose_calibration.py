"""Calibration parts of ``diagnose``: SBC of q(z|x) and the calibration error of a categorical
q(y|x), against truths: the exact FA posterior is calibrated, a point-mass guide is
overconfident in every coordinate, and the ECE of the semi-supervised VAE's q(y|x) is its
definition computed from the classifier."""

import json
import warnings

import pytest
import torch

import pyrovae
from pyrovae.cli.diagnose import main as diagnose_main
from pyrovae.plots import diagnostics as diagnostics_plots
from pyrovae.recipes import ssvae as ssvae_recipe
from tests.test_cli import assert_one_error_line
from tests.test_factor_analysis import FAST, fa_npz
from tests.test_plots import keep_figures
from tests.test_reliability import ece_by_definition

ONLY_CALIBRATION = dict(iwae_samples=0, nuts_points=0, amortization_points=0)


def _train(tmp_path, name, **options):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return pyrovae.train(**{"quiet": True, **options}, out=str(tmp_path / name))


def test_diagnose_writes_sbc_and_its_figure(tmp_path, monkeypatch):
    drawn = keep_figures(monkeypatch, diagnostics_plots)
    run = _train(tmp_path, "vae", epochs=3, hidden=(32,), latent_dim=3)
    out = pyrovae.diagnose(
        run, **ONLY_CALIBRATION, sbc_simulations=300, sbc_draws=19, max_points=50
    )
    saved = json.loads((run.folder.path / "diagnostics.json").read_text())
    names = ["z[0]", "z[1]", "z[2]", "log p(z)", "pc1", "pc2"]
    assert list(saved["sbc_verdicts"]) == names
    assert saved["sbc_simulations"] == 300 and saved["sbc_draws"] == 19
    assert saved["sbc_rejected"] == sum(v != "calibrated" for v in saved["sbc_verdicts"].values())
    assert saved["sbc_min_p_value"] == min(saved["sbc_p_values"].values())
    assert saved["sbc_level"] == pytest.approx(0.05 / (3 * len(names)))
    assert "sbc" in saved["seconds"] and "sbc_ecdf.png" in saved["files"]
    assert saved["ece"] is None  # digits have labels, but the VAE has no class site
    # The figure shows one panel per statistic, titled with its verdict.
    panels = [ax for ax in drawn["sbc_ecdf.png"].axes if ax.get_visible()]
    assert [ax.get_title() for ax in panels] == [
        f"{k}: {v}" for k, v in out["sbc_verdicts"].items()
    ]
    assert "SBC: " in pyrovae.runs.diagnose.one_line_summary(out)


def test_sbc_finds_the_exact_fa_posterior_calibrated_and_a_point_mass_overconfident(tmp_path):
    path, _ = fa_npz(tmp_path / "fa.npz")
    exact = _train(
        tmp_path,
        "fa",
        model="fa",
        guide="exact-posterior",
        dataset=str(path),
        latent_dim=2,
        **FAST,
    )
    out = pyrovae.diagnose(exact, **ONLY_CALIBRATION, write=False)
    assert out["sbc_verdict"] == "calibrated", out["sbc_verdicts"]
    assert out["sbc_simulations"] == 1000 and out["sbc_draws"] == 99  # the defaults
    ae = _train(tmp_path, "ae", model="ae", epochs=2, hidden=(32,), latent_dim=3)
    out = pyrovae.diagnose(ae, **ONLY_CALIBRATION, sbc_simulations=200, write=False)
    for name in ("z[0]", "z[1]", "z[2]"):
        assert out["sbc_verdicts"][name] == "overconfident", name
        assert out["sbc_spread_z"][name] > 10


def test_the_semi_supervised_vae_gets_the_calibration_error_of_its_classifier(
    tmp_path, monkeypatch
):
    monkeypatch.setattr(ssvae_recipe, "BASELINE_MAX_EPOCHS", 5)  # the baseline is not tested
    run = _train(tmp_path, "ssvae", model="ssvae", labels=50, epochs=2, hidden=(16,), latent_dim=2)
    rows = 300
    out = pyrovae.diagnose(
        run, **ONLY_CALIBRATION, sbc_simulations=100, sbc_draws=19, max_points=rows, ece_bins=10
    )
    x, y = run.data.x_test[:rows], run.data.y_test[:rows]
    with torch.no_grad():
        probs = run.model.classifier(x).softmax(-1)
    assert out["ece_site"] == "y" and out["ece_rows"] == rows and out["ece_bins"] == 10
    assert out["ece"] == pytest.approx(ece_by_definition(probs.numpy(), y.numpy(), 10), abs=1e-5)
    assert out["ece_accuracy"] == pytest.approx(float((probs.argmax(1) == y).float().mean()))
    assert "reliability.png" in out["files"]
    assert out["sbc_verdicts"]["y"]  # the class is ranked by its randomized PIT
    assert "ECE of q(y|x)" in pyrovae.runs.diagnose.one_line_summary(out)


@pytest.mark.parametrize(
    "flags, words",
    [
        (["--sbc-simulations", "5"], "--sbc-simulations"),
        (["--sbc-simulations", "-1"], "--sbc-simulations"),
        (["--sbc-draws", "0"], "--sbc-draws"),
        (["--ece-bins", "0"], "--ece-bins"),
    ],
)
def test_impossible_calibration_sizes_are_one_line_errors(flags, words, tmp_path, capsys):
    code = diagnose_main([str(tmp_path), *flags])
    assert_one_error_line(code, capsys.readouterr().err, words)


def test_no_sbc_skips_it(tmp_path, capsys):
    run = _train(tmp_path, "vae", epochs=1, hidden=(16,), latent_dim=2)
    flags = ["--iwae-samples", "0", "--nuts-points", "0", "--amortization-points", "0"]
    assert diagnose_main([str(run.folder.path), *flags, "--no-sbc", "--quiet"]) == 0
    saved = json.loads((run.folder.path / "diagnostics.json").read_text())
    assert saved["sbc_verdict"] is None and "sbc" not in saved["seconds"]
    assert "sbc_ecdf.png" not in saved["files"]
