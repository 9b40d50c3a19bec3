"""Colour images from an .npz in either layout: read, trained, drawn in RGB, resumed,
reloaded and diagnosed."""

import re

import numpy as np
import pytest
import torch
from PIL import Image

import pyrovae
from pyrovae.data.npz import load_npz
from pyrovae.errors import PyrovaeError
from tests.colour_images import shapes

FAST_DIAGNOSIS = dict(
    iwae_samples=10, nuts_points=0, amortization_points=0, max_points=20, progress=False,
    sbc_simulations=100, sbc_draws=19, ppc_draws=20,
)  # fmt: skip


def _npz(path, layout="HWC", n=300, dtype=np.uint8):
    images, labels = shapes(n)
    if layout == "CHW":
        images = np.moveaxis(images, 3, 1)
    images = images.astype(dtype)
    np.savez(path, x_train=images[:250], x_test=images[250:], y_train=labels[:250],
             y_test=labels[250:])  # fmt: skip
    return path


@pytest.mark.parametrize("layout", ["HWC", "CHW"])
def test_both_layouts_read_as_the_same_channel_first_rows(tmp_path, layout):
    images, _ = shapes(300)
    dataset = load_npz(_npz(tmp_path / f"{layout}.npz", layout))
    assert dataset.image_shape == (3, 16, 16)
    expected = torch.from_numpy(np.moveaxis(images[:250], 3, 1).reshape(250, -1) / 255.0)
    assert torch.allclose(dataset.x_train.double(), expected, atol=1e-7)
    assert f"read as (n, {'H, W, C' if layout == 'HWC' else 'C, H, W'})" in dataset.layout
    assert "uint8 / 255" in dataset.layout


def test_ambiguous_rgba_and_unscaled_8_bit_arrays_are_one_line(tmp_path):
    for name, array, words in (
        ("tiny", np.zeros((10, 3, 3, 3), np.uint8), "cannot tell its channels"),
        ("rgba", np.zeros((10, 8, 8, 4), np.uint8), "4 channels (RGBA?)"),
        ("bytes", np.full((10, 8, 8), 200.0, np.float32), "8-bit pixels not scaled?"),
    ):
        np.savez(tmp_path / f"{name}.npz", x_train=array, x_test=array)
        with pytest.raises(PyrovaeError, match=re.escape(words)):
            load_npz(tmp_path / f"{name}.npz")


def _colour_share(png) -> float:
    """Share of pixels whose channels differ: 0 for a grayscale picture."""
    rgb = np.asarray(Image.open(png).convert("RGB")).astype(int)
    return float((rgb.max(-1) - rgb.min(-1) > 30).mean())


@pytest.mark.parametrize("net", ["mlp", "conv"])
def test_a_colour_run_trains_draws_rgb_resumes_reloads_and_diagnoses(tmp_path, net, capsys):
    data = _npz(tmp_path / "shapes.npz", "CHW" if net == "conv" else "HWC")
    out = tmp_path / "run"
    common = dict(dataset=str(data), net=net, latent_dim=4, hidden=(64,),
                  likelihood="discretized-logistic")  # fmt: skip
    run = pyrovae.train(**common, epochs=2, out=str(out), quiet=False)
    stored = "(250, 3, 16, 16) read as (n, C, H, W)" if net == "conv" else "(250, 16, 16, 3)"
    assert f"data: shapes.npz: x_train {stored}" in capsys.readouterr().out
    assert run.summary["data_layout"].startswith("shapes.npz")
    assert run.data.dataset.image_shape == (3, 16, 16)
    assert run.model.likelihood.levels == 256
    assert np.isfinite(run.summary["test_bits_per_dim"])
    # Drawn in colour (a grayscale figure has no pixel whose channels differ).
    for figure in ("reconstructions.png", "samples.png", "traversals.png"):
        assert _colour_share(out / figure) > 0, figure
    resumed = pyrovae.train(resume=str(out), epochs=3, quiet=True)
    assert resumed.summary["epochs"] == 3
    loaded = pyrovae.load_run(out)
    numbers = pyrovae.diagnose(loaded, **FAST_DIAGNOSIS)
    assert np.isfinite(numbers["iwae_log_likelihood"])
    # The predictive checks and sample quality take colour images too.
    assert "neighbor_correlation_horizontal" in numbers["ppc_p_values"]
    assert np.isfinite(numbers["sample_quality"]["prior_samples"]["frechet_distance"])
