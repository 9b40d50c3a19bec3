"""The low-rank Gaussian and IAF guides against independent densities, and their options."""

import numpy as np
import pyro
import pytest
import torch
from scipy.stats import multivariate_normal

import pyrovae
from pyrovae.models import ModelSpec
from pyrovae.models.rich_guides import IAFGuide, LowRankNormalGuide

SPEC = ModelSpec(x_dim=6, latent_dim=3, hidden=(16,), options={"rank": 2, "flows": 3})


def test_lowrank_density_is_the_gaussian_with_diagonal_plus_low_rank_covariance():
    guide = LowRankNormalGuide(SPEC)
    x = torch.rand(4, 6)
    q = guide.distribution(x)
    assert q.cov_factor.shape == (4, 3, 2) and q.event_shape == (3,)
    z = q.sample()
    for i in range(4):
        cov = q.cov_factor[i] @ q.cov_factor[i].T + torch.diag(q.cov_diag[i])
        expected = multivariate_normal(q.loc[i].detach().numpy(), cov.detach().numpy())
        ours = float(q.log_prob(z)[i].detach())
        assert ours == pytest.approx(expected.logpdf(z[i].numpy()), rel=1e-5)


def test_iaf_density_is_the_base_density_over_the_jacobian():
    """log q(z) = log N(u; loc, scale) - log |det dz/du| for z = flows(u): the Jacobian
    taken numerically by autograd, independently of the transforms' own log-determinants."""
    torch.manual_seed(0)
    guide = IAFGuide(SPEC)
    x = torch.rand(1, 6)
    q = guide.distribution(x)
    assert len(q.transforms) == 3
    u = q.base_dist.sample()  # (1, 3)

    def push(v):
        for t in q.transforms:
            v = t(v)
        return v

    z = push(u)
    jacobian = torch.autograd.functional.jacobian(lambda v: push(v[None])[0], u[0])
    expected = q.base_dist.log_prob(u) - torch.linalg.slogdet(jacobian).logabsdet
    torch.testing.assert_close(q.log_prob(z), expected, atol=1e-4, rtol=1e-4)


def test_guide_options_reach_the_guides(tmp_path):
    run = pyrovae.train(
        guide="iaf", flows=3, epochs=1, hidden=(16,), latent_dim=3, quiet=True,
        out=str(tmp_path / "iaf"),
    )  # fmt: skip
    assert run.guide.num_flows == 3 and run.config.options == {"flows": 3}
    run = pyrovae.train(
        guide="lowrank", rank=4, epochs=1, hidden=(16,), latent_dim=5, quiet=True,
        out=str(tmp_path / "lowrank"),
    )  # fmt: skip
    assert run.guide.rank == 4
    assert pyrovae.load_run(tmp_path / "lowrank").guide.rank == 4  # from config.json
    with pytest.raises(pyrovae.PyrovaeError, match="--flows is not an option"):
        pyrovae.train(guide="lowrank", flows=2, epochs=1, quiet=True, out=str(tmp_path / "x"))


def test_iaf_draws_have_the_plate_and_event_shapes():
    guide = IAFGuide(SPEC)
    trace = pyro.poutine.trace(guide).get_trace(torch.rand(5, 6))
    site = trace.nodes["z"]
    assert site["value"].shape == (5, 3)
    assert site["fn"].batch_shape == (5,) and site["fn"].event_shape == (3,)
    assert np.isfinite(float(site["fn"].log_prob(site["value"]).sum().detach()))
