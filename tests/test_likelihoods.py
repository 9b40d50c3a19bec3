"""The observation models against their textbook densities."""

import math

import torch
import torch.nn.functional as F

from pyrovae.models import build_likelihood


def test_bernoulli_is_binary_cross_entropy():
    logits = torch.randn(4, 7)
    x = torch.bernoulli(torch.full((4, 7), 0.5))
    p = torch.sigmoid(logits)
    expected = (x * p.log() + (1 - x) * (1 - p).log()).sum(-1)
    got = build_likelihood("bernoulli", 7)(logits).log_prob(x)
    assert torch.allclose(got, expected, atol=1e-5)


def test_bernoulli_log_density_and_gradient_hold_far_into_the_tails():
    """Against float64 closed forms, logits in [-40, 40]: log p = x log s + (1 - x) log(1 - s)
    with s = sigmoid(l) (as log-sigmoids), and d log p / d l = x - s."""
    logits = torch.linspace(-40, 40, 2001).repeat(2, 1)
    x = torch.stack([torch.zeros(2001), torch.ones(2001)])
    exact = logits.double()
    log_p = x * F.logsigmoid(exact) + (1 - x) * F.logsigmoid(-exact)
    logits.requires_grad_(True)
    got = build_likelihood("bernoulli", 2001)(logits).base_dist.log_prob(x)
    assert torch.allclose(got.double(), log_p, rtol=1e-6, atol=1e-6)
    got.sum().backward()
    assert torch.allclose(logits.grad.double(), x - torch.sigmoid(exact), atol=1e-6)
    # Second derivative -s(1 - s), through the hand-written backward.
    again = build_likelihood("bernoulli", 2001)(logits).base_dist.log_prob(x)
    (first,) = torch.autograd.grad(again.sum(), logits, create_graph=True)
    (second,) = torch.autograd.grad(first.sum(), logits)
    s = torch.sigmoid(exact)
    assert torch.allclose(second.double(), -s * (1 - s), atol=1e-6)
    # The pixel sums (the event's log-density) agree with torch's own Bernoulli.
    reference = torch.distributions.Bernoulli(logits=logits.detach()).log_prob(x).sum(-1)
    assert torch.allclose(got.detach().sum(-1), reference, rtol=1e-6)


def test_continuous_bernoulli_is_normalized_on_unit_interval():
    logits = torch.tensor([[-3.0], [-0.2], [0.0], [1.5], [6.0]])
    grid = torch.linspace(0, 1, 20001)
    density = build_likelihood("continuous-bernoulli", 1)(logits).base_dist.log_prob(grid).exp()
    integral = torch.trapezoid(density, grid, dim=-1)
    assert torch.allclose(integral, torch.ones(5), atol=1e-3)


def test_fixed_gaussian_is_scaled_squared_error_plus_constant():
    sigma = 0.3
    loc, x = torch.randn(3, 5), torch.randn(3, 5)
    got = build_likelihood("gaussian", 5, gaussian_scale=sigma)(loc).log_prob(x)
    c = 1 / (2 * sigma**2)
    expected = -c * ((x - loc) ** 2).sum(-1) - 5 * math.log(sigma * math.sqrt(2 * math.pi))
    assert torch.allclose(got, expected, atol=1e-4)


def test_learned_gaussian_scale_starts_at_one_and_is_trainable():
    likelihood = build_likelihood("gaussian", 4)
    scale = likelihood.scale()
    assert torch.allclose(scale, torch.ones(4), atol=2e-3)
    assert any(p.requires_grad for p in likelihood.parameters())
