"""The Delta (MAP) guide for any model with continuous latents.

``q = Delta``: one point per latent site, so Trace_ELBO's loss is ``-log p(x, z)`` at that
point, maximum a posteriori estimation. The sites and their shapes are read from one trace of
the model's prior on a few rows of zeros:

- a site inside the plate over the rows of x (a *local* latent, e.g. ``z``) gets its point
  from an encoder, ``x -> hidden -> (its unconstrained width)``, shared by all local sites;
- a site outside every plate (a *global* latent, e.g. a Bayesian FA's loadings ``W``) gets a
  free point of its own, started at a draw from its prior (as Pyro's ``AutoDelta``, which
  has no encoder for the local sites).

Each point is mapped into the site's support by ``torch.distributions.transform_to``, so a
positive or simplex-valued latent stays in its support. Discrete sites have no MAP point to
move by gradient: a one-line error. Without a model the guide has the one local site ``"z"``
of ``spec.latent_dim`` real dimensions (the autoencoders' guides build on that).
"""

import math
from dataclasses import dataclass

import pyro
import pyro.distributions as dist
import pyro.poutine as poutine
import torch
from pyro.poutine.util import site_is_subsample
from torch import nn
from torch.distributions import constraints, transform_to

from pyrovae.errors import PyrovaeError
from pyrovae.models.networks import mlp
from pyrovae.models.spec import ModelSpec

PROBE_ROWS = 3  # rows of the probing trace (3, not 2, so that a plate of 2 is not taken for it)


@dataclass(frozen=True)
class PointSite:
    """A latent site of the model: its name, event shape, support and whether it is local."""

    name: str
    event_shape: tuple[int, ...]
    support: constraints.Constraint
    local: bool

    @property
    def transform(self):
        return transform_to(self.support)

    @property
    def free_shape(self) -> tuple[int, ...]:
        """The shape of its unconstrained point (e.g. K - 1 for a K-simplex)."""
        return tuple(self.transform.inv.forward_shape(self.event_shape))


def probe_model(model, x_dim: int) -> tuple[list[PointSite], str, dict[str, torch.Tensor]]:
    """The latent sites of ``model(x)``, the name of its plate over the rows of x, and a draw
    of each site from the prior, from one trace on ``PROBE_ROWS`` rows of zeros."""
    with poutine.block(), torch.no_grad():
        trace = poutine.trace(model).get_trace(torch.zeros(PROBE_ROWS, x_dim))
    sites, data_plate, draws = [], "data", {}
    for name, site in trace.nodes.items():
        if site["type"] != "sample" or site["is_observed"] or site_is_subsample(site):
            continue
        fn = site["fn"]
        if fn.support.is_discrete:
            raise PyrovaeError(
                f"--guide delta needs continuous latents; the model's site {name!r} is "
                "discrete (enumerate it, or choose another guide)"
            )
        frames = [f for f in site["cond_indep_stack"] if f.vectorized]
        local = len(frames) == 1 and frames[0].size == PROBE_ROWS
        if frames and not local:
            raise PyrovaeError(
                f"--guide delta takes latent sites in the plate over the rows of x or outside "
                f"every plate; the model's site {name!r} is in {[f.name for f in frames]}"
            )
        if local:
            data_plate = frames[0].name
        sites.append(PointSite(name, tuple(fn.event_shape), fn.support, local))
        draws[name] = site["value"]
    if not sites:
        raise PyrovaeError("--guide delta found no latent site in the model")
    return sites, data_plate, draws


class DeltaGuide(nn.Module):
    """``q = Delta``: an encoder's point for each local site, a free point for each global one.

    :param spec: ``x_dim``, ``hidden`` and (without a model) ``latent_dim``.
    :param model: the model whose latent sites the guide covers (None: one local ``"z"``).
    """

    def __init__(self, spec: ModelSpec, model=None):
        super().__init__()
        if model is None:
            sites, self.data_plate, draws = self.default_sites(spec), "data", {}
        else:
            sites, self.data_plate, draws = probe_model(model, spec.x_dim)
        self.set_sites(sites)
        if self.local_sites:
            self.encoder = mlp([spec.x_dim, *spec.hidden, sum(self.widths)])
        self.points = nn.ParameterDict()
        for site in self.global_sites:
            self.points[site.name] = nn.Parameter(site.transform.inv(draws[site.name]).clone())

    @staticmethod
    def default_sites(spec: ModelSpec) -> list[PointSite]:
        """One local site ``"z"`` of ``spec.latent_dim`` real dimensions."""
        return [PointSite("z", (spec.latent_dim,), constraints.real_vector, True)]

    def set_sites(self, sites: list[PointSite]) -> None:
        self.local_sites = [s for s in sites if s.local]
        self.global_sites = [s for s in sites if not s.local]
        self.widths = [math.prod(s.free_shape) for s in self.local_sites]

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """``x: (batch, D)`` -> the local sites' unconstrained points, ``(batch, width)``."""
        return self.encoder(x)

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> None:
        for site in self.global_sites:
            value = site.transform(self.points[site.name])
            pyro.sample(site.name, dist.Delta(value, event_dim=len(site.event_shape)))
        if not self.local_sites:
            return
        batch = x.shape[0]
        chunks = self.encode(x).split(self.widths, dim=-1)
        with pyro.plate(self.data_plate, batch):
            for site, chunk in zip(self.local_sites, chunks, strict=True):
                value = site.transform(chunk.reshape(batch, *site.free_shape))
                pyro.sample(site.name, dist.Delta(value, event_dim=len(site.event_shape)))
