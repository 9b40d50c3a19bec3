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


def _logistic_cdf(t):
    return 1 / (1 + torch.exp(-t))


def test_discretized_logistic_is_the_logistic_mass_of_each_bin_edges_included():
    """Against the definition in float64: the logistic CDF difference over each 8-bit bin
    [k/255 - 1/510, k/255 + 1/510], all mass below the first bin's upper edge in it and all
    mass above the last bin's lower edge in it; and the 256 masses sum to one."""
    from pyrovae.models.likelihoods import DiscretizedLogistic

    torch.manual_seed(0)
    loc = torch.rand(5, 1, dtype=torch.float64) * 1.4 - 0.2  # some beyond [0, 1]
    scale = torch.tensor([0.003, 0.02, 0.1, 0.5, 2.0], dtype=torch.float64).unsqueeze(1)
    k = torch.arange(256, dtype=torch.float64)
    x = (k / 255).expand(5, 256)
    upper = torch.where(k == 255, torch.tensor(math.inf), k / 255 + 1 / 510)
    lower = torch.where(k == 0, torch.tensor(-math.inf), k / 255 - 1 / 510)
    mass = _logistic_cdf((upper - loc) / scale) - _logistic_cdf((lower - loc) / scale)
    got = DiscretizedLogistic(loc, scale).log_prob(x)
    finite = mass > 1e-300
    assert torch.allclose(got[finite], mass[finite].log(), rtol=1e-9, atol=1e-9)
    assert torch.allclose(got.exp().sum(-1), torch.ones(5, dtype=torch.float64), atol=1e-12)
    # Far in a tail, where the direct difference underflows, the log-mass stays finite and
    # matches the density times the bin width.
    far = DiscretizedLogistic(torch.tensor(0.0), torch.tensor(0.01)).log_prob(torch.tensor(0.8))
    t = (0.8 - 0.0) / 0.01
    assert math.isfinite(float(far))
    # log density of the logistic at t: -t - 2 log(1 + e^-t) ~ -t; bin width / scale.
    assert abs(float(far) - (-t + math.log(1 / 255 / 0.01))) < 0.05


def test_discretized_logistic_samples_are_levels_with_the_probabilities_it_scores():
    from pyrovae.models.likelihoods import DiscretizedLogistic

    torch.manual_seed(1)
    d = DiscretizedLogistic(torch.tensor([0.3]), torch.tensor([0.05]), levels=17)
    draws = d.sample((200_000,)).squeeze(-1)
    assert torch.equal(draws * 16, torch.round(draws * 16))
    freq = torch.stack([(torch.round(draws * 16) == k).double().mean() for k in range(17)])
    probs = d.log_prob(torch.arange(17) / 16).exp().double()
    assert torch.allclose(freq, probs, atol=4e-3)
    assert abs(float(d.mean) - float((torch.arange(17) / 16).double() @ probs)) < 1e-6


def test_discretized_logistic_likelihood_learns_a_scale_and_scores_an_event():
    lik = build_likelihood("discretized-logistic", 6)
    fn = lik(torch.zeros(3, 6))
    assert fn.event_shape == (6,) and fn.batch_shape == (3,)
    x = torch.randint(0, 256, (3, 6)) / 255
    assert torch.isfinite(fn.log_prob(x)).all()
    fn.log_prob(x).sum().backward()
    assert lik.raw_scale.grad is not None


def test_a_discretized_logistic_run_reports_bits_per_dimension_and_a_gaussian_one_does_not(
    tmp_path,
):
    import pyrovae

    common = dict(epochs=5, hidden=(32,), latent_dim=4, quiet=True)
    run = pyrovae.train(likelihood="discretized-logistic", out=str(tmp_path / "dl"), **common)
    summary = run.summary
    assert summary["likelihood"] == "DiscretizedLogistic"
    # digits take 17 gray levels, k / 16: the likelihood is built for them.
    assert run.model.likelihood.levels == 17
    assert summary["test_bits_per_dim"] == summary["test_elbo"] / (-64 * math.log(2))
    # Five epochs code the pixels in fewer bits than a uniform code over 17 levels.
    assert 0 < summary["test_bits_per_dim"] < math.log2(17)
    gaussian = pyrovae.train(likelihood="gaussian", out=str(tmp_path / "g"), **common)
    assert "test_bits_per_dim" not in gaussian.summary


def test_the_levels_of_an_archive_are_read_from_its_values_or_its_dtype(tmp_path):
    import numpy as np

    from pyrovae.data.npz import load_npz

    rng = np.random.default_rng(0)
    for name, x, levels in (
        ("sixteenths", rng.integers(0, 17, (40, 8, 8)) / 16, 17),
        ("bytes", rng.integers(0, 256, (40, 8, 8)).astype(np.uint8), 256),
        ("gray", rng.uniform(0, 1, (40, 8, 8)), None),
    ):
        np.savez(tmp_path / f"{name}.npz", x_train=x[:30], x_test=x[30:])
        assert load_npz(tmp_path / f"{name}.npz").levels == levels, name
