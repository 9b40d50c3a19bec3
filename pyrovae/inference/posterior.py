"""Model-agnostic views of a trained pair, built from Pyro's effect handlers.

These work for any model/guide following the contract (``model(x)``, ``guide(x)``,
per-datapoint sites in ``pyro.plate("data")``): the latent and observation sites are
found by tracing, or read from the model's ``latent_site`` / ``obs_site`` attributes.
"""

import pyro.poutine as poutine
import torch

from pyrovae.errors import PyrovaeError
from pyrovae.inference.contract import observed_site
from pyrovae.inference.diagnostics.structure import inspect_pair


def latent_site(model, guide, x: torch.Tensor) -> str:
    """The name of the (first) local latent site, one value per row of ``x``:
    ``model.latent_site``, or found by tracing the pair (global sites are passed over)."""
    name = getattr(model, "latent_site", None)
    if name is None:
        local = inspect_pair(model, guide, x).local_sites
        if not local:
            raise PyrovaeError("the guide samples no latent site inside the plate over the rows")
        name = local[0]
    return name


def obs_site(model, x: torch.Tensor) -> str:
    """The name of the site that observes ``x``: ``model.obs_site`` or found by tracing."""
    name = getattr(model, "obs_site", None)
    if name is not None:
        return name
    return observed_site(poutine.trace(model).get_trace(x), x)


def _obs_distribution(model, x: torch.Tensor, data: dict | None = None, uncondition=False):
    """Trace ``model(x)`` (conditioned on ``data``) and return the distribution of x."""
    name = obs_site(model, x)
    fn = poutine.condition(model, data=data or {})
    if uncondition:
        fn = poutine.uncondition(fn)
    return poutine.trace(fn).get_trace(x).nodes[name]["fn"]


@torch.no_grad()
def encode(model, guide, x: torch.Tensor, draws: int = 64) -> torch.Tensor:
    """Posterior means ``E_q[z | x]``: ``x: (n, D)`` -> ``(n, k)``; the average of ``draws``
    samples when q's mean has no closed form (a normalizing flow). A latent with a
    scalar or multi-dimensional event (e.g. ``(M, K)`` one-hot codes) is flattened to ``k``
    columns."""
    site = latent_site(model, guide, x)
    fn = poutine.trace(guide).get_trace(x).nodes[site]["fn"]
    try:
        mean = fn.mean
    except NotImplementedError:
        mean = fn.sample((draws,)).mean(0)
    return mean.reshape(x.shape[0], -1)


@torch.no_grad()
def decode(model, z: torch.Tensor, site: str, x_dim: int) -> torch.Tensor:
    """Decoder means ``E[x | z]``: ``z: (n, k)`` -> ``(n, D)`` (the ``k`` columns are put
    back into the site's event shape)."""
    x_template = z.new_zeros(z.shape[0], x_dim)
    event_shape = poutine.trace(model).get_trace(x_template[:1]).nodes[site]["fn"].event_shape
    z = z.reshape(z.shape[0], *event_shape)
    return _obs_distribution(model, x_template, {site: z}).mean


@torch.no_grad()
def reconstruct(model, guide, x: torch.Tensor) -> torch.Tensor:
    """``E[x | z = E_q[z|x]]``: the decoder mean at the posterior mean, ``(n, D)``."""
    site = latent_site(model, guide, x)
    return decode(model, encode(model, guide, x), site, x.shape[-1])


@torch.no_grad()
def sample_prior(model, num_samples: int, x_dim: int, device=None) -> torch.Tensor:
    """Decoder means ``E[x | z]`` for ``z ~ p(z)``: ``(num_samples, D)``."""
    x_template = torch.zeros(num_samples, x_dim, device=device)
    return _obs_distribution(model, x_template, uncondition=True).mean
