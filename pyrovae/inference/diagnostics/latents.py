"""Latent-space health: KL(q(z|x) || p(z)) per latent dimension, active units, collapse.

For every local latent site the guide's distribution q and the model's prior p at that site
are read from a trace (the model replayed on the guide's draws, so a prior that depends on
other latents is evaluated at their drawn values). Per dimension:

- closed form where torch has ``kl_divergence`` for the factors of q and p (a diagonal
  Normal against a Normal prior, a Categorical against a Categorical, ...);
- for a correlated Gaussian q (a full-covariance posterior) the KL of each marginal
  q(z_d | x) against p(z_d), whose sum is below the total KL by q's total correlation;
- Monte Carlo, log q_d(z_d) - log p_d(z_d) at the drawn z, for other factorized pairs.

Draws from the guide cover any randomness upstream of a site (a sampled class y).

Active units (Burda et al., 2016): dimension d is active when Cov_x(E_q[z_d | x]) > 0.01,
the variance over the data rows of its posterior mean. Most units inactive is posterior
collapse: the decoder ignores those dimensions and q(z_d | x) is the prior.
"""

import math
from dataclasses import dataclass, field

import pyro.distributions as dist
import torch
from torch.distributions import kl_divergence

from pyrovae.inference.diagnostics.structure import (
    PairStructure,
    base_distribution,
    is_discrete,
    is_point_mass,
    particle_traces,
)

ACTIVE_THRESHOLD = 0.01
"""A dimension is active when the variance of its posterior mean over the data exceeds this."""


@dataclass
class LatentHealth:
    """KL and activity of every local latent site, averaged over N rows.

    :param kl_per_dim: site -> mean KL of each dimension, nats per example (None for a
        point-mass guide, whose KL is infinite).
    :param kl_method: site -> how its per-dimension KL was computed.
    :param kl_total: mean over rows of KL(q(all local latents | x) || p), nats per example.
    :param mean_variance: site -> Cov_x(E_q[z_d | x]) of each dimension (continuous sites).
    :param active_units: dimensions whose ``mean_variance`` exceeds ``ACTIVE_THRESHOLD``.
    :param latent_dims: continuous latent dimensions in all (the denominator).
    """

    kl_per_dim: dict[str, list[float] | None] = field(default_factory=dict)
    kl_method: dict[str, str] = field(default_factory=dict)
    kl_total: float | None = None
    mean_variance: dict[str, list[float]] = field(default_factory=dict)
    active_units: int = 0
    latent_dims: int = 0

    @property
    def collapse_warning(self) -> str | None:
        """A warning when fewer than half of the dimensions are active, else None."""
        if self.latent_dims and 2 * self.active_units < self.latent_dims:
            return (
                f"posterior collapse: only {self.active_units} of {self.latent_dims} latent "
                f"dimensions are active (variance of E_q[z_d | x] over the data > "
                f"{ACTIVE_THRESHOLD}); the others carry no information about x"
            )
        return None


def _per_dim(t: torch.Tensor, particles: int, rows: int) -> torch.Tensor:
    """``(S, B, ...)`` -> ``(S, B, dims)``."""
    return t.reshape(particles, rows, -1)


def _kl_per_dim(q, p, value, particles: int, rows: int) -> tuple[torch.Tensor | None, str]:
    """Per-dimension KL ``(S, B, dims)`` between the factors of q and p, and the method."""
    if is_point_mass(q):
        return None, "none: q is a point mass (Delta), so KL(q || p) is infinite"
    qf, pf = base_distribution(q), base_distribution(p)
    try:
        return _per_dim(kl_divergence(qf, pf), particles, rows), "closed form"
    except NotImplementedError:
        pass
    if isinstance(qf, dist.MultivariateNormal) and isinstance(pf, dist.Normal):
        marginal = dist.Normal(qf.loc, qf.variance.sqrt())
        return (
            _per_dim(kl_divergence(marginal, pf), particles, rows),
            "closed form, KL of each marginal of a correlated Gaussian q",
        )
    if qf is not q:  # q was a product over dimensions: estimate each factor's KL
        try:
            mc = qf.log_prob(value) - pf.log_prob(value)
            return _per_dim(mc, particles, rows), "Monte Carlo"
        except (ValueError, RuntimeError, NotImplementedError):
            pass
    return None, "none: q does not factorize over dimensions"


def _kl_total(q, p, value) -> torch.Tensor | None:
    """KL(q || p) per particle and row, closed form where torch has it, else Monte Carlo."""
    if is_point_mass(q):
        return None
    if isinstance(q, dist.MultivariateNormal):
        pf = base_distribution(p)
        if isinstance(pf, dist.Normal):
            p = dist.MultivariateNormal(pf.loc, scale_tril=torch.diag_embed(pf.scale))
    try:
        return kl_divergence(q, p)
    except NotImplementedError:
        return q.log_prob(value) - p.log_prob(value)


def _posterior_mean(q, value) -> torch.Tensor:
    try:
        return q.mean
    except NotImplementedError:
        return value


@torch.no_grad()
def latent_health(
    model,
    guide,
    x: torch.Tensor,
    structure: PairStructure,
    *,
    num_particles: int = 16,
    batch_size: int = 1000,
) -> LatentHealth:
    """KL per dimension, total KL and active units of the local latent sites over ``x: (N, D)``.

    :param num_particles: guide draws per row (for KL that depends on an upstream draw,
        and Monte Carlo KL); posterior means average over them.
    """

    kl_sums: dict[str, torch.Tensor | None] = {}
    methods: dict[str, str] = {}
    means: dict[str, list[torch.Tensor]] = {}
    total, has_total = 0.0, True
    for start in range(0, x.shape[0], batch_size):
        batch = x[start : start + batch_size]
        rows = batch.shape[0]
        model_trace, guide_trace, _ = particle_traces(model, guide, batch, num_particles, structure)
        batch_total = 0.0
        for name in structure.local_sites:
            q, value = guide_trace.nodes[name]["fn"], guide_trace.nodes[name]["value"]
            p = model_trace.nodes[name]["fn"]
            kl, methods[name] = _kl_per_dim(q, p, value, num_particles, rows)
            if kl is None:
                kl_sums[name] = None
            elif kl_sums.get(name, 0) is not None:
                kl_sums[name] = kl_sums.get(name, 0) + kl.mean(0).sum(0).double()
            site_total = _kl_total(q, p, value)
            if site_total is None:
                has_total = False
            else:
                batch_total = batch_total + site_total.reshape(num_particles, rows).mean(0).sum()
            if not is_discrete(q):
                mean = _posterior_mean(q, value).reshape(num_particles, rows, -1).mean(0)
                means.setdefault(name, []).append(mean.double().cpu())
        total = total + float(batch_total)
    n = x.shape[0]
    health = LatentHealth(kl_method=methods, kl_total=total / n if has_total else None)
    for name in structure.local_sites:
        kl = kl_sums.get(name)
        health.kl_per_dim[name] = None if kl is None else (kl / n).cpu().tolist()
    for name, parts in means.items():
        variance = torch.cat(parts).var(0) if n > 1 else torch.zeros(parts[0].shape[-1])
        health.mean_variance[name] = variance.tolist()
        health.active_units += int((variance > ACTIVE_THRESHOLD).sum())
        health.latent_dims += variance.numel()
    if health.kl_total is not None and not math.isfinite(health.kl_total):
        health.kl_total = None
    return health
