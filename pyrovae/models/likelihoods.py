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


def _log_sigmoid_difference(upper: torch.Tensor, lower: torch.Tensor) -> torch.Tensor:
    """``log(sigmoid(upper) - sigmoid(lower))`` for ``upper > lower``, stable in both tails.

    ``sigmoid(u) - sigmoid(l) = sigmoid(-l) - sigmoid(-u)``: the form whose terms are far from
    1 is taken (by the sign of the midpoint), then ``log a - log b = log a + log(-expm1(log b
    - log a))``, so neither the difference of two numbers near 1 nor a ``log(0)`` occurs.
    """
    flip = (upper + lower) > 0
    a = torch.where(flip, -lower, upper)
    b = torch.where(flip, -upper, lower)
    log_a, log_b = F.logsigmoid(a), F.logsigmoid(b)
    return log_a + torch.log(-torch.expm1(log_b - log_a))


class UnitLevels(dist.constraints.interval):
    """``levels`` equally spaced values ``k / (levels - 1)`` in [0, 1]: a discrete support
    (``is_discrete``) that is also the unit interval's, so data checks of [0, 1] apply."""

    is_discrete = True

    def __init__(self, levels: int):
        super().__init__(0.0, 1.0)
        self.levels = int(levels)

    def check(self, value: torch.Tensor) -> torch.Tensor:
        scaled = value * (self.levels - 1)
        return super().check(value) & ((scaled - scaled.round()).abs() < 1e-4)


class DiscretizedLogistic(dist.TorchDistribution):
    """A logistic density integrated over the bins of ``levels`` equally spaced values in
    [0, 1] (Salimans et al., 2017, PixelCNN++; Kingma et al., 2016): for 8-bit pixels
    ``x = k / 255``, ``P(x) = F((x + h - loc) / scale) - F((x - h - loc) / scale)`` with the
    logistic CDF ``F = sigmoid`` and half a bin ``h = 1 / (2 (levels - 1))``; the first bin
    takes all mass below it and the last all mass above, so the ``levels`` probabilities sum
    to one. A probability mass function: its log-probabilities are comparable across models
    and convert to bits per dimension.

    ``loc``, ``scale``: broadcastable tensors (scale > 0). Values off the grid are scored at
    their nearest level.

    Written by hand: neither torch nor Pyro has a discretized logistic distribution.
    """

    arg_constraints = {"loc": dist.constraints.real, "scale": dist.constraints.positive}
    has_rsample = False

    @property
    def support(self) -> UnitLevels:
        return UnitLevels(self.levels)

    def __init__(self, loc, scale, levels: int = 256, validate_args=None):
        if int(levels) < 2:
            raise PyrovaeError(f"a discretized likelihood needs at least 2 levels, got {levels}")
        self.loc, self.scale = torch.broadcast_tensors(
            torch.as_tensor(loc), torch.as_tensor(scale, dtype=torch.as_tensor(loc).dtype)
        )
        self.levels = int(levels)
        super().__init__(self.loc.shape, validate_args=validate_args)

    def expand(self, batch_shape, _instance=None):
        new = self._get_checked_instance(DiscretizedLogistic, _instance)
        batch_shape = torch.Size(batch_shape)
        new.loc, new.scale = self.loc.expand(batch_shape), self.scale.expand(batch_shape)
        new.levels = self.levels
        super(DiscretizedLogistic, new).__init__(batch_shape, validate_args=False)
        new._validate_args = self._validate_args
        return new

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        top = self.levels - 1
        k = torch.round(value * top).clamp(0, top)
        half = 0.5 / top
        centre = k / top - self.loc
        upper, lower = (centre + half) / self.scale, (centre - half) / self.scale
        inner = _log_sigmoid_difference(upper, lower)
        return torch.where(
            k == 0, F.logsigmoid(upper), torch.where(k == top, F.logsigmoid(-lower), inner)
        )

    def sample(self, sample_shape=()) -> torch.Tensor:
        shape = self._extended_shape(sample_shape)
        with torch.no_grad():
            u = torch.rand(shape, dtype=self.loc.dtype, device=self.loc.device)
            u = u.clamp(1e-6, 1 - 1e-6)
            x = self.loc + self.scale * (torch.log(u) - torch.log1p(-u))
            top = self.levels - 1
            return torch.round(x.clamp(0, 1) * top) / top

    @property
    def mean(self) -> torch.Tensor:
        """Exact: the levels weighted by their probabilities (``levels`` evaluations)."""
        grid = torch.linspace(0, 1, self.levels, dtype=self.loc.dtype, device=self.loc.device)
        grid = grid.reshape((-1,) + (1,) * self.loc.dim())
        return (grid * self.log_prob(grid).exp()).sum(0)


class DiscretizedLogisticPixels(nn.Module):
    """8-bit pixels ``x_d = k / 255`` under :class:`DiscretizedLogistic` with the decoder's
    output as ``loc_d`` and a learned ``scale_d`` per dimension (softplus, floored at
    ``min_scale``), as a learned-scale Gaussian has; a normalized likelihood of quantized
    gray or colour levels, unlike a Bernoulli on gray levels."""

    def __init__(self, x_dim: int, levels: int, min_scale: float = 1e-3):
        super().__init__()
        self.levels, self.min_scale = levels, min_scale
        # softplus(-2.252) = 0.1: a tenth of the unit range to start with.
        self.raw_scale = nn.Parameter(torch.full((x_dim,), -2.252))

    def scale(self) -> torch.Tensor:
        return F.softplus(self.raw_scale) + self.min_scale

    def forward(self, loc: torch.Tensor) -> dist.TorchDistribution:
        return DiscretizedLogistic(loc, self.scale().expand_as(loc), self.levels).to_event(1)


LIKELIHOODS = {
    "bernoulli": Bernoulli,
    "continuous-bernoulli": ContinuousBernoulli,
    "discretized-logistic": DiscretizedLogisticPixels,
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
    name: str,
    x_dim: int,
    *,
    gaussian_scale: float | None = None,
    gray_bernoulli: bool = False,
    levels: int | None = 256,
) -> nn.Module:
    """The likelihood module registered as ``name`` for data of width ``x_dim`` whose values
    are ``levels`` equally spaced values in [0, 1] (None: not on such a grid)."""
    check_likelihood_name(name)
    if name == "gaussian":
        return Gaussian(x_dim, scale=gaussian_scale)
    if name == "bernoulli":
        return Bernoulli(allow_gray=gray_bernoulli)
    if name == "discretized-logistic":
        if levels is None:
            raise PyrovaeError(
                "--likelihood discretized-logistic scores quantized values k / (L - 1) in "
                "[0, 1] with L <= 256 (e.g. 8-bit pixels / 255), but the data are not on such "
                "a grid; quantize them (x = round(255 x) / 255) or use another likelihood"
            )
        return DiscretizedLogisticPixels(x_dim, levels)
    return LIKELIHOODS[name]()


def likelihood_for(spec) -> nn.Module:
    """The likelihood a :class:`~pyrovae.models.spec.ModelSpec` names, for its data width."""
    return build_likelihood(
        spec.likelihood,
        spec.x_dim,
        gaussian_scale=spec.gaussian_scale,
        gray_bernoulli=spec.gray_bernoulli,
        levels=spec.levels,
    )
