"""Calibration of a discrete q(y|x): the expected calibration error against its definition,
a calibrated synthetic classifier against an overconfident one, and the class site found
from traces (the semi-supervised VAE's y, not the Gumbel VAE's codes)."""

import numpy as np
import pytest
import torch

from pyrovae.errors import PyrovaeError
from pyrovae.inference.diagnostics.reliability import label_sites, reliability
from pyrovae.inference.diagnostics.structure import inspect_pair
from pyrovae.models import ModelSpec
from pyrovae.models.gumbel_vae import GumbelGuide, GumbelVAE
from pyrovae.plots.diagnostics import reliability_figure
from tests.test_diagnostics import tiny_ssvae


def ece_by_definition(probs: np.ndarray, labels: np.ndarray, bins: int) -> float:
    """sum over equal bins [b_i, b_i+1) of confidence (the last closed) of
    (n_i / N) |accuracy_i - mean confidence_i|, one row at a time."""
    total = 0.0
    n = len(labels)
    members: dict[int, list[tuple[float, bool]]] = {}
    for p, y in zip(probs, labels, strict=True):
        confidence = float(p.max())
        b = min(int(confidence * bins), bins - 1)
        members.setdefault(b, []).append((confidence, int(p.argmax()) == int(y)))
    for rows in members.values():
        conf = sum(c for c, _ in rows) / len(rows)
        acc = sum(ok for _, ok in rows) / len(rows)
        total += len(rows) / n * abs(acc - conf)
    return total


def synthetic(n: int, classes: int, sharpen: float, seed: int):
    """Labels drawn from softmax(logits); the classifier reports softmax(sharpen * logits):
    calibrated at sharpen 1, overconfident above."""
    g = torch.Generator().manual_seed(seed)
    logits = 2.0 * torch.randn(n, classes, generator=g, dtype=torch.float64)
    labels = torch.multinomial(logits.softmax(-1), 1, generator=g).squeeze(-1)
    return (sharpen * logits).softmax(-1), labels


def test_ece_is_its_definition_and_the_bins_are_the_diagram_s():
    probs, labels = synthetic(500, 4, 1.5, seed=0)
    result = reliability(probs, labels, bins=10)
    expected = ece_by_definition(probs.numpy(), labels.numpy(), 10)
    assert result.ece == pytest.approx(expected, abs=1e-6)
    assert result.counts.sum() == 500 and len(result.counts) == 10
    filled = result.counts > 0
    weights = result.counts[filled] / 500
    gaps = np.abs(result.bin_accuracy[filled] - result.bin_confidence[filled])
    assert float((weights * gaps).sum()) == pytest.approx(expected, abs=1e-9)
    assert result.accuracy == pytest.approx(float((probs.argmax(1) == labels).double().mean()))
    assert result.mean_confidence == pytest.approx(float(probs.max(1).values.mean()))
    assert result.summary()["ece_overconfidence"] == pytest.approx(
        result.mean_confidence - result.accuracy
    )


def test_a_calibrated_classifier_has_ece_near_zero_and_an_overconfident_one_more():
    calibrated = reliability(*synthetic(20_000, 5, 1.0, seed=1))
    overconfident = reliability(*synthetic(20_000, 5, 3.0, seed=1))
    assert calibrated.ece < 0.02
    assert overconfident.ece > 0.1
    assert overconfident.mean_confidence - overconfident.accuracy > 0.1
    # below the diagonal in the diagram: each well-filled bin is less often right than sure
    full = overconfident.counts > 200
    assert (overconfident.bin_accuracy[full] < overconfident.bin_confidence[full]).mean() > 0.8


def test_impossible_inputs_are_one_line_errors():
    probs, labels = synthetic(10, 3, 1.0, seed=2)
    with pytest.raises(PyrovaeError, match="N labels"):
        reliability(probs, labels[:5])
    with pytest.raises(PyrovaeError, match="0..2"):
        reliability(probs, labels + 3)
    with pytest.raises(PyrovaeError, match="--ece-bins"):
        reliability(probs, labels, bins=0)


def test_the_class_site_of_the_semi_supervised_vae_is_found_from_its_traces():
    model, guide, x = tiny_ssvae(classes=3)
    y = torch.tensor([0, 1, 2, 0, 1, 2, 0, 1])
    structure = inspect_pair(model, guide, x)
    with torch.no_grad():
        sites = label_sites(model, guide, x, y, structure)
        expected = model.classifier(x).softmax(-1)
    assert list(sites) == ["y"]
    torch.testing.assert_close(sites["y"], expected)


def test_the_gumbel_vae_s_codes_are_no_class():
    spec = ModelSpec(x_dim=6, latent_dim=1, hidden=(16,), options={"categories": 3})
    model, guide = GumbelVAE(spec).eval(), GumbelGuide(spec).eval()
    x = torch.bernoulli(torch.full((5, 6), 0.5))
    structure = inspect_pair(model, guide, x)
    with torch.no_grad():
        assert label_sites(model, guide, x, torch.tensor([0, 1, 2, 0, 1]), structure) == {}


def test_the_reliability_diagram_draws_the_bins():
    result = reliability(*synthetic(300, 3, 2.0, seed=3), bins=8)
    fig = reliability_figure(
        result.edges, result.counts, result.bin_accuracy, result.bin_confidence, result.ece
    )
    top, bottom = fig.axes
    filled = result.counts > 0
    heights = [p.get_height() for p in top.patches]
    np.testing.assert_allclose(heights, result.bin_accuracy[filled])
    np.testing.assert_allclose([p.get_height() for p in bottom.patches], result.counts)
    assert f"{result.ece:.3f}" in top.get_title()
