"""Guides richer than a diagonal Normal, for any model with a k-dimensional latent ``"z"``.

- :class:`LowRankNormalGuide` (``--guide lowrank``): ``q(z|x) = N(loc(x), D(x) + F(x) F(x)^T)``
  with ``D`` diagonal and ``F: (k, r)``, ``r = --rank``: correlations between latent
  dimensions at a cost linear in k.
- :class:`IAFGuide` (``--guide iaf``): a diagonal Normal from the encoder followed by
  ``--flows`` inverse autoregressive flows (Kingma et al., 2016), each an affine
  autoregressive transform conditioned on the encoder's last hidden layer (Pyro's
  ``conditional_affine_autoregressive``): sampling and the log density of the samples are one
  pass each.

Both take ``(x, y=None)`` with ``x: (batch, D)`` and sample ``"z"`` inside
``pyro.plate("data", batch)``.
"""

import pyro
import pyro.distributions as dist
import torch
import torch.nn.functional as F
from pyro.distributions.transforms import conditional_affine_autoregressive
from torch import nn

from pyrovae.errors import PyrovaeError
from pyrovae.models.networks import encoder_network
from pyrovae.models.spec import ModelSpec

DEFAULT_RANK = 2
DEFAULT_FLOWS = 2


class LowRankNormalGuide(nn.Module):
    """``q(z|x) = LowRankMultivariateNormal(loc, cov_factor (k, r), cov_diag)`` from an MLP.

    :param spec: ``x_dim``, ``latent_dim``, ``hidden``; ``options["rank"]`` is r (default 2).
    """

    def __init__(self, spec: ModelSpec, min_scale: float = 1e-4):
        super().__init__()
        self.latent_dim = k = spec.latent_dim
        self.rank = int(spec.options.get("rank") or DEFAULT_RANK)
        if self.rank < 1:
            raise PyrovaeError(f"--rank must be at least 1, got {self.rank}")
        self.min_scale = min_scale
        self.encoder = encoder_network(spec, spec.x_dim, k * (2 + self.rank))

    def distribution(self, x: torch.Tensor) -> dist.LowRankMultivariateNormal:
        """q(z | x) for rows ``x: (..., D)``: batch shape ``(...)``, event ``(k,)``."""
        k, r = self.latent_dim, self.rank
        out = self.encoder(x)
        loc, raw_diag, factor = out.split([k, k, k * r], dim=-1)
        cov_diag = (F.softplus(raw_diag) + self.min_scale) ** 2
        return dist.LowRankMultivariateNormal(loc, factor.unflatten(-1, (k, r)), cov_diag)

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> None:
        q = self.distribution(x)
        with pyro.plate("data", x.shape[0]):
            pyro.sample("z", q)


class IAFGuide(nn.Module):
    """A diagonal Normal ``N(loc(x), scale(x))`` pushed through ``--flows`` inverse
    autoregressive flows conditioned on the encoder's features ``h(x)``.

    :param spec: ``x_dim``, ``latent_dim``, ``hidden`` (at least one layer: its last width is
        the context of the flows); ``options["flows"]`` (default 2).
    """

    def __init__(self, spec: ModelSpec, min_scale: float = 1e-4):
        super().__init__()
        if not spec.hidden:
            raise PyrovaeError("--guide iaf needs at least one hidden layer (--hidden 256)")
        self.latent_dim = k = spec.latent_dim
        self.num_flows = int(spec.options.get("flows") or DEFAULT_FLOWS)
        if self.num_flows < 1:
            raise PyrovaeError(f"--flows must be at least 1, got {self.num_flows}")
        self.min_scale = min_scale
        context = spec.hidden[-1]
        features = encoder_network(spec, spec.x_dim, context, spec.hidden[:-1])
        self.features = nn.Sequential(features, nn.ReLU())
        self.base = nn.Linear(context, 2 * k)
        self.flows = nn.ModuleList(
            conditional_affine_autoregressive(k, context, hidden_dims=[max(2 * k, 64)])
            for _ in range(self.num_flows)
        )

    def distribution(self, x: torch.Tensor) -> dist.TransformedDistribution:
        """q(z | x) for rows ``x: (..., D)``: batch shape ``(...)``, event ``(k,)``."""
        h = self.features(x)
        loc, raw_scale = self.base(h).split(self.latent_dim, dim=-1)
        base = dist.Normal(loc, F.softplus(raw_scale) + self.min_scale).to_event(1)
        return dist.TransformedDistribution(base, [flow.condition(h) for flow in self.flows])

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> None:
        q = self.distribution(x)
        with pyro.plate("data", x.shape[0]):
            pyro.sample("z", q)
