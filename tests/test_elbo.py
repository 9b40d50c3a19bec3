"""ELBO estimates against closed forms.

With no hidden layers and a fixed-scale Gaussian likelihood the VAE is linear-Gaussian:
q(z|x) = N(m, diag s^2) and p(x|z) = N(W z + b, sigma^2 I), so

    E_q[log p(x|z)] = -D/2 log(2 pi sigma^2)
                      - (||x - W m - b||^2 + sum_j s_j^2 ||W_j||^2) / (2 sigma^2)
    KL(q || N(0, I)) = 1/2 sum_j (m_j^2 + s_j^2 - 1 - 2 log s_j)

and the ELBO has a closed form to hold Pyro's Monte Carlo estimators against.
"""

import math

import pyro.infer as infer
import pytest
import torch

from pyrovae.inference import LatentScaleMessenger, beta_schedule
from pyrovae.models import VAE, MLPNormalGuide, ModelSpec

SIGMA = 0.5


@pytest.fixture
def linear_pair():
    spec = ModelSpec(x_dim=6, latent_dim=3, hidden=(), likelihood="gaussian", gaussian_scale=SIGMA)
    model, guide = VAE(spec), MLPNormalGuide(spec)
    x = torch.randn(5, 6)
    return model, guide, x


def closed_form_elbo(model, guide, x, beta=1.0):
    """Sum over rows of E_q[log p(x|z)] - beta * KL, from the formulas above."""
    with torch.no_grad():
        m, s = guide.encode(x)
        linear = model.decoder[0]
        W, b = linear.weight, linear.bias  # W: (D, k)
        residual = ((x - m @ W.T - b) ** 2).sum(-1)
        spread = (s**2 * (W**2).sum(0)).sum(-1)
        D = x.shape[-1]
        expected_loglik = -0.5 * D * math.log(2 * math.pi * SIGMA**2) - (residual + spread) / (
            2 * SIGMA**2
        )
        kl = 0.5 * (m**2 + s**2 - 1 - 2 * s.log()).sum(-1)
        return float((expected_loglik - beta * kl).sum())


def mc_estimate(elbo_cls, model, guide, x, repeats=20, particles=500, handler=None):
    """Mean and standard error of ``-loss`` over independent repeats."""
    elbo = elbo_cls(num_particles=particles, vectorize_particles=True, max_plate_nesting=1)
    values = []
    for _ in range(repeats):
        with torch.no_grad():
            if handler is None:
                values.append(-elbo.loss(model, guide, x))
            else:
                with handler:
                    values.append(-elbo.loss(model, guide, x))
    values = torch.tensor(values)
    return float(values.mean()), float(values.std() / math.sqrt(repeats))


@pytest.mark.parametrize("elbo_cls", [infer.Trace_ELBO, infer.TraceMeanField_ELBO])
def test_elbo_estimators_match_closed_form(linear_pair, elbo_cls):
    model, guide, x = linear_pair
    exact = closed_form_elbo(model, guide, x)
    mean, stderr = mc_estimate(elbo_cls, model, guide, x)
    assert abs(mean - exact) < 4 * stderr + 1e-3 * abs(exact)


def test_trace_elbo_agrees_with_analytic_kl_meanfield(linear_pair):
    model, guide, x = linear_pair
    trace_mean, trace_se = mc_estimate(infer.Trace_ELBO, model, guide, x)
    mf_mean, mf_se = mc_estimate(infer.TraceMeanField_ELBO, model, guide, x)
    assert abs(trace_mean - mf_mean) < 4 * math.hypot(trace_se, mf_se)
    # The analytic KL removes the KL's Monte Carlo noise: meanfield is less noisy.
    assert mf_se < trace_se


def test_latent_scale_gives_beta_weighted_kl(linear_pair):
    model, guide, x = linear_pair
    beta = 0.25
    exact = closed_form_elbo(model, guide, x, beta=beta)
    mean, stderr = mc_estimate(
        infer.TraceMeanField_ELBO, model, guide, x, handler=LatentScaleMessenger(beta)
    )
    assert abs(mean - exact) < 4 * stderr + 1e-3 * abs(exact)
    assert abs(exact - closed_form_elbo(model, guide, x)) > 20 * stderr  # beta matters


def test_beta_schedule_rises_linearly_to_beta():
    steps_per_epoch, beta = 10, 2.0
    values = [beta_schedule(s, steps_per_epoch, beta, anneal_epochs=2) for s in range(30)]
    assert values[0] == pytest.approx(beta / 20)
    assert values[9] == pytest.approx(beta / 2)
    assert values[19:] == [beta] * 11
    assert all(v > 0 for v in values)
    assert beta_schedule(0, steps_per_epoch, beta, anneal_epochs=0) == beta
