"""The spiral numbers: checked on decoders whose answers are known, then through the API."""

import math
from types import SimpleNamespace

import pyro
import pyro.distributions as dist
import pytest
import torch
from torch import nn

import pyrovae
from pyrovae.data import SPIRAL_T_RANGE, spiral_curve
from pyrovae.plots import run as plots_run
from pyrovae.recipes.spiral import nearest_on_curve, sweep, sweep_numbers
from tests.test_plots import keep_figures


@pytest.fixture(autouse=True)
def one_thread():
    """These models are tiny: one thread is faster than two, and far faster on a busy machine
    (the conftest fixture sets two again before the next test)."""
    torch.set_num_threads(1)


class CurvePair(nn.Module):
    """A model decoding z to ``decoder(z)`` and a guide encoding a noise-free spiral point to
    its t (r = t / 3pi), so the sweep's answers are known."""

    latent_site, obs_site = "z", "x"

    def __init__(self, decoder):
        super().__init__()
        self.decoder = decoder

    def forward(self, x, y=None):
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", dist.Normal(x.new_zeros(1), 1.0).to_event(1))
            pyro.sample("x", dist.Normal(self.decoder(z[:, 0]), 0.05).to_event(1), obs=x)

    def guide(self, x, y=None):
        with pyro.plate("data", x.shape[0]):
            t = 3 * math.pi * x.norm(dim=-1, keepdim=True)
            pyro.sample("z", dist.Delta(t).to_event(1))


def fake_data(n=500):
    t = torch.linspace(*SPIRAL_T_RANGE, n, dtype=torch.float64)
    x = spiral_curve(t).float()
    dataset = SimpleNamespace(extras={"t_range": SPIRAL_T_RANGE}, x_dim=2, image_shape=None)
    return SimpleNamespace(x_train=x, x_test=x[::5], dataset=dataset)


def test_nearest_on_curve_finds_distance_and_t():
    t = torch.tensor([2.0, 5.0, 11.0], dtype=torch.float64)
    distance, nearest_t = nearest_on_curve(spiral_curve(t))
    assert distance.max() < 1e-3
    assert nearest_t == pytest.approx(t.numpy(), abs=1e-2)
    far, _ = nearest_on_curve(torch.tensor([[5.0, 0.0]]))
    assert far[0] > 3.5  # the curve stays within radius 4/3


def test_a_decoder_that_is_the_spiral_interpolates_and_extrapolates():
    pair, data = CurvePair(lambda z: spiral_curve(z)), fake_data()
    # extend 0.2 widens t in [pi/2, 3pi] to [0, 3.5pi], inside the measured curve.
    numbers = sweep_numbers(sweep(pair, pair.guide, data, extend=0.2), SPIRAL_T_RANGE)
    inside, outer, inner = numbers["inside"], numbers["beyond_outer"], numbers["beyond_inner"]
    assert inside["max_distance"] < 1e-3
    assert inside["coverage"] == 1.0 and inside["backtrack_fraction"] == 0.0
    assert inside["t_span"] == pytest.approx(SPIRAL_T_RANGE, abs=0.01)
    # Equal steps in t; the speed along the spiral, |dx/dt|, grows as sqrt(1 + t^2).
    t_max, t_median = SPIRAL_T_RANGE[1], sum(SPIRAL_T_RANGE) / 2
    speed_ratio = math.sqrt(1 + t_max**2) / math.sqrt(1 + t_median**2)
    assert inside["max_step_ratio"] == pytest.approx(speed_ratio, rel=0.01)
    assert outer["t_end"] == pytest.approx(3.5 * math.pi, abs=0.01)
    assert outer["distance_end"] < 1e-3 and outer["mean_distance"] < 1e-3
    assert inner["t_end"] == pytest.approx(0.0, abs=0.01)
    assert numbers["test_reconstruction_rmse"] < 1e-5


def test_a_straight_decoder_is_far_from_the_spiral():
    def line(z):
        return torch.stack([z / 10 - 0.5, torch.zeros_like(z)], dim=-1)

    pair, data = CurvePair(line), fake_data()
    numbers = sweep_numbers(sweep(pair, pair.guide, data), SPIRAL_T_RANGE)
    assert numbers["inside"]["coverage"] < 0.3
    assert numbers["inside"]["mean_distance"] > 0.1
    assert numbers["test_reconstruction_distance_to_curve"] > 0.1


@pytest.mark.parametrize("model", ["ae", "vae"])
def test_spiral_numbers_and_figure_in_the_run_folder(model, tmp_path, monkeypatch):
    drawn = keep_figures(monkeypatch, plots_run)
    run = pyrovae.train(
        model=model, dataset="spiral", epochs=1, hidden=(16,), quiet=True, out=str(tmp_path / "r")
    )
    numbers = run.summary["spiral"]
    for part in ("inside", "beyond_inner", "beyond_outer"):
        assert math.isfinite(numbers[part]["mean_distance"]), part
    assert 0 <= numbers["inside"]["coverage"] <= 1
    assert (run.folder.path / "spiral_sweep.png").is_file()
    # The figure shows the numbers: the sweep's distances inside the code range, and its ends.
    ax_rec, ax_sweep, ax_dist = drawn["spiral_sweep.png"].axes
    assert len(ax_rec.collections[1].get_offsets()) == run.summary["num_test"]
    s, distance = ax_dist.lines[0].get_xdata(), ax_dist.lines[0].get_ydata()
    lo, hi = numbers["code_range"]
    inside = (s >= lo) & (s <= hi)
    assert distance[inside].mean() == pytest.approx(numbers["inside"]["mean_distance"])
    assert distance[inside].max() == pytest.approx(numbers["inside"]["max_distance"])
    ends = [numbers[part]["distance_end"] for part in ("beyond_inner", "beyond_outer")]
    assert sorted(ends) == pytest.approx(sorted([distance[0], distance[-1]]))
    (span,) = ax_dist.patches
    assert span.get_x() == pytest.approx(s[inside].min())
    assert span.get_x() + span.get_width() == pytest.approx(s[inside].max())
    _, over, beyond = ax_sweep.collections
    assert (len(over.get_offsets()), len(beyond.get_offsets())) == (inside.sum(), (~inside).sum())


def test_no_spiral_numbers_for_a_two_dimensional_latent(tmp_path):
    run = pyrovae.train(
        dataset="spiral", latent_dim=2, epochs=1, hidden=(16,), quiet=True, out=str(tmp_path / "r")
    )
    assert "spiral" not in run.summary
    assert not (run.folder.path / "spiral_sweep.png").exists()
