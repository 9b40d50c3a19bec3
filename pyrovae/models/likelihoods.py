"""Observation models p(x | decoder output) for the decoders.

Each likelihood is a small ``nn.Module`` that turns the decoder's raw output
``(batch, D)`` into a Pyro distribution with event shape ``(D,)``. Which data a run feeds it
is decided from that distribution (see :func:`pyrovae.data.prepare`).
"""

import pyro.distributions as dist
import torch
import torch.nn.functional as F
from torch import nn

from pyrovae.errors import PyrovaeError


class _BernoulliLogProb(torch.autograd.Function):
    """``x l - softplus(l)`` elementwise, with the gradient ``x - sigmoid(l)`` for ``l``.

    Written by hand for speed on the CPU: torch's ``binary_cross_entropy_with_logits`` runs
    through an unvectorized ``log1p`` (~13x slower than ``log`` here) and its backward
    repeats the forward's work; this takes a third of its time for a forward and backward
    pass, and the pixels' log-density was the largest cost of a Bernoulli VAE's step after
    the matrix products. ``softplus(l) = max(l, 0) + log(1 + exp(-|l|))``, where
    ``log(1 + e)`` for ``e`` in (0, 1] is off by at most ~1.2e-7 nats.
    """

    @staticmethod
    def forward(ctx, logits, value):
        ctx.save_for_backward(logits, value)
        return value * logits - F.relu(logits) - torch.log(1 + torch.exp(-logits.abs()))

    @staticmethod
    def backward(ctx, grad):
        logits, value = ctx.saved_tensors
        grad_logits = grad * (value - torch.sigmoid(logits)) if ctx.needs_input_grad[0] else None
        grad_value = grad * logits if ctx.needs_input_grad[1] else None
        return grad_logits, grad_value


class BernoulliLogits(dist.Bernoulli):
    """Pyro's ``Bernoulli(logits=...)`` with a faster log-density (:class:`_BernoulliLogProb`)."""

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        if self._validate_args:
            self._validate_sample(value)
        logits, value = torch.broadcast_tensors(self.logits, value)
        return _BernoulliLogProb.apply(logits, value)


class Bernoulli(nn.Module):
    """Bernoulli pixels: ``x_d ~ Bernoulli(sigmoid(logits_d))`` for binary x in {0, 1}.

    ``allow_gray=True`` scores gray levels in [0, 1] with the same formula, as Pyro's VAE
    example does. That is a cross-entropy, not a normalized likelihood of gray-level data,
    so the resulting "ELBO" is not a bound on any log-likelihood; use it only knowingly.
    """

    def __init__(self, allow_gray: bool = False):
        super().__init__()
        self.allow_gray = allow_gray

    def forward(self, logits: torch.Tensor) -> dist.TorchDistribution:
        fn = BernoulliLogits(logits=logits, validate_args=False if self.allow_gray else None)
        return fn.to_event(1)


class ContinuousBernoulli(nn.Module):
    """Continuous Bernoulli (Loaiza-Ganem & Cunningham, 2019): a normalized density on [0, 1]
    for gray-level pixels, with the Bernoulli's logits as its parameter."""

    def forward(self, logits: torch.Tensor) -> dist.TorchDistribution:
        # torch's ContinuousBernoulli Taylor-expands its normalizer near p = 1/2 only when
        # the logits are not exactly 0, so clamp away from the saturated ends for stability.
        return dist.ContinuousBernoulli(logits=logits.clamp(-15.0, 15.0)).to_event(1)


class Gaussian(nn.Module):
    """Diagonal Gaussian ``x_d ~ Normal(loc_d, sigma_d)`` on real-valued data.

    ``scale=None`` learns one sigma per dimension (floored at ``min_scale``); a number fixes
    sigma for every dimension. A fixed sigma turns the negative ELBO into
    ``||x - x_hat||^2 / (2 sigma^2) + KL + const``: the "C * squared error + KL" loss with
    ``C = 1 / (2 sigma^2)``.
    """

    def __init__(self, x_dim: int, scale: float | None = None, min_scale: float = 1e-3):
        super().__init__()
        self.min_scale = min_scale
        if scale is None:
            # softplus(0.5413) = 1: start at unit scale.
            self.raw_scale = nn.Parameter(torch.full((x_dim,), 0.5413))
            self.register_buffer("fixed_scale", None)
        else:
            if not scale > 0:
                raise PyrovaeError(f"--gaussian-scale must be positive, got {scale}")
            self.raw_scale = None
            self.register_buffer("fixed_scale", torch.tensor(float(scale)))

    def scale(self) -> torch.Tensor:
        if self.raw_scale is None:
            return self.fixed_scale
        return F.softplus(self.raw_scale) + self.min_scale

    def forward(self, loc: torch.Tensor) -> dist.TorchDistribution:
        return dist.Normal(loc, self.scale().expand_as(loc)).to_event(1)


LIKELIHOODS = {
    "bernoulli": Bernoulli,
    "continuous-bernoulli": ContinuousBernoulli,
    "gaussian": Gaussian,
}


def check_likelihood_name(name: str) -> str:
    """``name`` if it is a registered likelihood, else a one-line error listing them."""
    if name not in LIKELIHOODS:
        raise PyrovaeError(
            f"unknown likelihood {name!r}; choose one of {', '.join(sorted(LIKELIHOODS))}"
        )
    return name


def build_likelihood(
    name: str, x_dim: int, *, gaussian_scale: float | None = None, gray_bernoulli: bool = False
) -> nn.Module:
    """The likelihood module registered as ``name`` for data of width ``x_dim``."""
    check_likelihood_name(name)
    if name == "gaussian":
        return Gaussian(x_dim, scale=gaussian_scale)
    if name == "bernoulli":
        return Bernoulli(allow_gray=gray_bernoulli)
    return LIKELIHOODS[name]()


def likelihood_for(spec) -> nn.Module:
    """The likelihood a :class:`~pyrovae.models.spec.ModelSpec` names, for its data width."""
    return build_likelihood(
        spec.likelihood,
        spec.x_dim,
        gaussian_scale=spec.gaussian_scale,
        gray_bernoulli=spec.gray_bernoulli,
    )
