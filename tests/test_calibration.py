"""Simulation-based calibration against known truths.

Factor analysis with its exact posterior as guide is calibrated by construction; the same
guide with its scale halved is overconfident, doubled underconfident, and with its mean
shifted biased. The ECDF band is checked against ArviZ's optimized band and the rank
moments against an explicit grid.
"""

import numpy as np
import pyro
import pyro.distributions as dist
import pytest
import torch

from pyrovae.errors import PyrovaeError
from pyrovae.inference.diagnostics.calibration import check_sizes, simulation_based_calibration
from pyrovae.inference.diagnostics.rank_tests import ecdf_band, eval_points, uniform_moments
from pyrovae.inference.diagnostics.structure import inspect_pair
from tests.test_diagnostics import fa_pair


@pytest.fixture(autouse=True)
def one_thread():
    torch.set_num_threads(1)


class ExactVariant(torch.nn.Module):
    """The exact FA posterior with its scale times ``scale`` and its mean moved by ``shift``
    posterior standard deviations in every coordinate."""

    def __init__(self, model, scale=1.0, shift=0.0):
        super().__init__()
        self.model, self.scale, self.shift = (model,), scale, shift

    def forward(self, x, y=None):
        loc, tril = self.model[0].posterior(x)
        sd = torch.linalg.norm(tril, dim=-1)
        with pyro.plate("data", x.shape[0]):
            pyro.sample(
                "z", dist.MultivariateNormal(loc + self.shift * sd, scale_tril=self.scale * tril)
            )


def _sbc(guide_factory):
    model, _, x, _ = fa_pair()
    guide = guide_factory(model)
    pyro.set_rng_seed(1)
    return simulation_based_calibration(
        model, guide, x, inspect_pair(model, guide, x), simulations=500, draws=49, seed=1
    )


COORDINATES = ["z[0]", "z[1]", "z[2]"]


@pytest.mark.parametrize(
    "scale, shift, expected",
    [
        (1.0, 0.0, "calibrated"),
        (0.5, 0.0, "overconfident"),
        (2.0, 0.0, "underconfident"),
        (1.0, -0.5, "biased (q too low)"),
        (1.0, 0.5, "biased (q too high)"),
    ],
)
def test_sbc_of_factor_analysis_finds_what_the_guide_was_made_to_be(scale, shift, expected):
    result = _sbc(lambda model: ExactVariant(model, scale, shift))
    verdicts = {t.name: t.verdict for t in result.tests}
    assert [verdicts[c] for c in COORDINATES] == [expected] * 3
    assert {"log p(z)", "pc1", "pc2"} <= set(verdicts)
    if expected == "calibrated":
        assert result.summary()["sbc_verdict"] == "calibrated"
        assert min(t.p_value for t in result.tests) >= result.level
        assert not any(t.outside_band for t in result.tests)
    else:
        assert all(t.p_value < result.level for t in result.tests if t.name in COORDINATES)
        assert all(t.outside_band for t in result.tests if t.name in COORDINATES)


def test_ecdf_band_matches_arviz_optimized_band():
    from arviz.stats.ecdf_utils import ecdf_confidence_band

    points = eval_points(49)
    band = ecdf_band(200, points)
    lower, upper = ecdf_confidence_band(200, points, points, prob=0.95, method="optimized")
    assert np.abs(band.lower - lower).max() <= 0.011
    assert np.abs(band.upper - upper).max() <= 0.011


def test_rank_moments_are_those_of_the_explicit_grid():
    for values in (2, 7, 100):
        grid = (np.arange(values) + 0.5) / values
        var, mu4 = uniform_moments(values)
        assert var == pytest.approx(grid.var())
        assert mu4 == pytest.approx(((grid - 0.5) ** 4).mean())


def test_impossible_sizes_are_one_line_errors():
    for simulations, draws, flag in ((5, 99, "--sbc-simulations"), (100, 0, "--sbc-draws")):
        with pytest.raises(PyrovaeError, match=flag):
            check_sizes(simulations, draws)
    check_sizes(0, 99)  # 0 skips
