"""What the diagnostics read off one trace of a model and guide: the plate over the data
rows, the local and global latent sites, enumerated sites and point-mass guides.

Nothing here knows a particular model: a pair qualifies when its observed site for ``x``
sits in a plate over the rows of ``x`` (``pyro.plate("data", x.shape[0])``).
"""

import math
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass

import pyro
import pyro.distributions as dist
import pyro.poutine as poutine
import torch
from pyro.poutine.util import prune_subsample_sites, site_is_subsample

from pyrovae.errors import PyrovaeError
from pyrovae.inference.autoguides import transformed_draws
from pyrovae.inference.contract import observed_site, row_frames
from pyrovae.inference.parameters import program_modules

PARTICLE_PLATE = "diagnostics_particles"
"""The vectorized plate of independent draws that the diagnostics add left of the pair's."""


def sample_site_names(trace, observed: bool) -> list[str]:
    """Names of the sample sites of ``trace`` that are observed (or latent), in trace order."""
    # Auxiliary guide sites (an autoguide's "W_unconstrained") have no model counterpart.
    return [
        name
        for name, site in trace.nodes.items()
        if site["type"] == "sample"
        and site["is_observed"] == observed
        and not site_is_subsample(site)
        and not site["infer"].get("is_auxiliary", False)
    ]


def with_particles(fn: Callable, num_particles: int, dim: int) -> Callable:
    """``fn`` run inside ``pyro.plate(PARTICLE_PLATE, num_particles, dim=dim)``."""

    def vectorized(*args, **kwargs):
        with pyro.plate(PARTICLE_PLATE, num_particles, dim=dim):
            return fn(*args, **kwargs)

    return vectorized


@dataclass(frozen=True)
class PairStructure:
    """The sites and plates of a model/guide pair, as the diagnostics need them.

    :param obs_site: the model's sample site that observes ``x``.
    :param data_plate: name of the plate over the rows of ``x``.
    :param data_dim: that plate's (negative) batch dimension.
    :param max_plate_nesting: number of nested plate dimensions in either program.
    :param local_sites: guide latent sites inside the data plate (one value per row).
    :param global_sites: guide latent sites outside it (shared by all rows).
    :param enumerated_sites: guide sites configured for parallel enumeration (summed out).
    :param point_mass_sites: local guide sites drawn from a ``Delta``: such a guide has no
        density, so it gives no importance weights.
    :param global_point_mass_sites: global guide sites drawn from a ``Delta`` (a MAP part
        such as ``AutoDelta``): the objective is then not a bound on log p(x). An
        autoguide's ``Delta`` that hands out a transformed random draw is not one.
    :param sampled_discrete_sites: discrete guide sites that are sampled, not enumerated
        (e.g. one-hot codes): no NUTS reference can be had for them.
    """

    obs_site: str
    data_plate: str
    data_dim: int
    max_plate_nesting: int
    local_sites: tuple[str, ...]
    global_sites: tuple[str, ...]
    enumerated_sites: tuple[str, ...]
    point_mass_sites: tuple[str, ...]
    sampled_discrete_sites: tuple[str, ...] = ()
    global_point_mass_sites: tuple[str, ...] = ()

    @property
    def guide_is_density(self) -> bool:
        return not self.point_mass_sites

    @property
    def particle_dim(self) -> int:
        """The batch dimension of the particle plate: left of every plate of the pair."""
        return -(self.max_plate_nesting + 1)


def base_distribution(fn):
    """``fn`` without the wrappers that do not change its family (Independent, masks, expand)."""
    while isinstance(fn, dist.Independent | dist.MaskedDistribution | dist.ExpandedDistribution):
        fn = fn.base_dist
    return fn


def is_point_mass(fn) -> bool:
    return isinstance(base_distribution(fn), dist.Delta)


def is_discrete(fn) -> bool:
    """Whether ``fn`` draws from a discrete set (also with event dims, e.g. one-hot codes)."""
    if getattr(fn, "has_enumerate_support", False):
        return True
    try:
        return bool(fn.support.is_discrete)
    except NotImplementedError:
        return False


def probe_rows(x: torch.Tensor, rows: int = 3) -> torch.Tensor:
    """A few rows of ``x: (n, D)`` (at least 2, so a plate of size 1 is not taken for it)."""
    probe = x[:rows]
    return probe if probe.shape[0] >= 2 else probe.expand(2, *x.shape[1:])


def trace_pair(model, guide, x: torch.Tensor):
    """``(model_trace, guide_trace)`` of one guide draw on ``x`` and the model replayed on it,
    without subsample sites, hidden from any enclosing handlers."""
    with poutine.block():
        guide_trace = poutine.trace(guide).get_trace(x)
        model_trace = poutine.trace(poutine.replay(model, trace=guide_trace)).get_trace(x)
    return prune_subsample_sites(model_trace), prune_subsample_sites(guide_trace)


SHAPE_ERRORS = (RuntimeError, ValueError, IndexError)
"""What a program that does not broadcast over a leading particle dimension raises there
(``torch.cat`` of a 3-D and a 2-D tensor, ``x.view(-1, 64)`` feeding a mismatched plate)."""


def repeat_rows(x: torch.Tensor, times: int) -> torch.Tensor:
    """``x: (B, ...)`` stacked ``times`` times, ``(times * B, ...)``: row ``k * B + b`` is
    row ``b``, so a site value ``(times * B, ...)`` reshapes to ``(times, B, ...)``."""
    return x.repeat(times, *([1] * (x.dim() - 1)))


def particle_traces(model, guide, x: torch.Tensor, num_particles: int, structure):
    """``(model_trace, guide_trace, vectorized)``: ``num_particles`` guide draws on every row
    of ``x: (B, D)`` and the model replayed on them. In one vectorized particle plate when
    the pair broadcasts over it; else, for programs written for 2-D batches (as Pyro's M2
    networks are), on the rows repeated ``num_particles`` times (``vectorized`` False): the
    same draws, ``num_particles`` times the rows in one pass. Either way the values of a
    local site reshape to ``(num_particles, B, ...)``."""
    try:
        traces = trace_pair(
            with_particles(model, num_particles, structure.particle_dim),
            with_particles(guide, num_particles, structure.particle_dim),
            x,
        )
        return (*traces, True)
    except SHAPE_ERRORS:
        return (*trace_pair(model, guide, repeat_rows(x, num_particles)), False)


def _plate_dims(trace) -> list[int]:
    return [
        frame.dim
        for site in trace.nodes.values()
        if site["type"] == "sample"
        for frame in site["cond_indep_stack"]
        if frame.vectorized and frame.dim is not None
    ]


def inspect_pair(model, guide, x: torch.Tensor) -> PairStructure:
    """Trace ``guide(x)`` and ``model(x)`` once on a few rows of ``x: (n, D)`` and describe them."""
    probe = probe_rows(x)
    model_trace, guide_trace = trace_pair(model, guide, probe)
    obs = observed_site(model_trace, probe)
    rows = probe.shape[0]
    frames = row_frames(model_trace.nodes[obs], rows)
    if not frames:
        raise PyrovaeError(
            f"the model's observed site {obs!r} is not inside a plate over the rows of x; "
            "put the per-row statements of model and guide in pyro.plate('data', x.shape[0])"
        )
    data_frame = frames[0]  # the outermost plate of the data's size
    nesting = max([1, *(-d for d in _plate_dims(model_trace) + _plate_dims(guide_trace))])
    nesting = max(nesting, int(getattr(model, "max_plate_nesting", 0) or 0))
    local, global_, enumerated, point_mass, sampled_discrete = [], [], [], [], []
    global_point_mass = []
    random_deltas = transformed_draws(guide, guide_trace, probe)
    for name in sample_site_names(guide_trace, observed=False):
        site = guide_trace.nodes[name]
        in_data = any(f.name == data_frame.name for f in site["cond_indep_stack"])
        (local if in_data else global_).append(name)
        if site["infer"].get("enumerate") == "parallel":
            enumerated.append(name)
        elif is_discrete(site["fn"]):
            sampled_discrete.append(name)
        if is_point_mass(site["fn"]) and name not in random_deltas:
            (point_mass if in_data else global_point_mass).append(name)
    return PairStructure(
        obs_site=obs,
        data_plate=data_frame.name,
        data_dim=data_frame.dim,
        max_plate_nesting=nesting,
        local_sites=tuple(local),
        global_sites=tuple(global_),
        enumerated_sites=tuple(enumerated),
        point_mass_sites=tuple(point_mass),
        sampled_discrete_sites=tuple(sampled_discrete),
        global_point_mass_sites=tuple(global_point_mass),
    )


@torch.no_grad()
def global_draws(guide, structure: PairStructure, x: torch.Tensor, draws: int = 100) -> dict:
    """``draws`` guide draws of each global latent site (e.g. a Bayesian FA's loadings W),
    ``{name: (draws, *site shape)}``; ``{}`` without global sites."""
    if not structure.global_sites:
        return {}
    probe = probe_rows(x)
    values: dict[str, list[torch.Tensor]] = {}
    for _ in range(draws):
        with poutine.block():
            trace = poutine.trace(guide).get_trace(probe)
        for name in structure.global_sites:
            site = trace.nodes[name]
            if is_discrete(site["fn"]):
                raise PyrovaeError(
                    f"the guide's global site {name!r} is discrete; the diagnostics condition "
                    "global sites on their mean, which needs a continuous one"
                )
            values.setdefault(name, []).append(site["value"])
    return {name: torch.stack(parts) for name, parts in values.items()}


def global_means(guide, structure: PairStructure, x: torch.Tensor, draws: int = 100) -> dict:
    """The mean of ``draws`` guide draws of each global latent site: the plug-in values at
    which the per-row diagnostics condition both programs."""
    return {name: d.mean(0) for name, d in global_draws(guide, structure, x, draws).items()}


def condition_on_globals(model, guide, values: dict):
    """``(model, guide)`` with the global sites fixed to ``values`` (unchanged when empty)."""
    if not values:
        return model, guide
    return poutine.condition(model, data=values), poutine.condition(guide, data=values)


@contextmanager
def frozen_parameters(*programs):
    """Within the block no parameter of ``programs`` (``nn.Module`` parameters and Pyro's
    param store) requires gradients: samplers and optimizers of the latents then neither
    differentiate through them nor meet them as constants they cannot trace."""
    params = [p for program in programs for m in program_modules(program) for p in m.parameters()]
    params += [p.unconstrained() for _, p in pyro.get_param_store().items()]
    flags = [p.requires_grad for p in params]
    try:
        for p in params:
            p.requires_grad_(False)
        yield
    finally:
        for p, flag in zip(params, flags, strict=True):
            p.requires_grad_(flag)


@contextmanager
def one_thread():
    """PyTorch's intra-op threads set to one inside the block, restored after. The
    diagnostics run many small operations (NUTS's leapfrog steps on a few rows, the refits'
    Adam steps, chunks of importance samples): extra threads add their synchronization to
    each, and on a CPU that other processes load they wait on each other at every one."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@contextmanager
def evaluation_mode(*programs):
    """The programs' ``nn.Module`` s (:func:`~pyrovae.inference.parameters.program_modules`:
    also a bound method's instance and the networks a function registers with
    ``pyro.module``) in eval mode (no dropout, batch-norm statistics fixed) for the block,
    their modes restored afterwards. In eval mode ``pyro.module`` also passes over the
    parameters :func:`frozen_parameters` froze instead of warning about each one."""
    modules = list({id(m): m for p in programs for m in program_modules(p)}.values())
    modes = [m.training for m in modules]
    try:
        for m in modules:
            m.eval()
        yield
    finally:
        for m, mode in zip(modules, modes, strict=True):
            m.train(mode)


def latent_sites(model, guide, x: torch.Tensor) -> list[dict]:
    """What the model's latent sample sites are, read from one trace on a few rows of
    ``x: (n, D)`` (the guide drawn, the model replayed on it), in the model's order.

    :returns: per site ``{"name", "event_shape", "size", "per_row", "distribution",
        "guide_distribution"}``: ``size`` is the number of values in one draw of the event
        (one per row for a ``per_row`` site, inside the plate over the rows of x; once for a
        global one), the distributions are the class names of the model's prior and of the
        guide's family (wrappers such as ``Independent`` removed; None where the guide has
        no such site and the model draws it).
    """
    probe = probe_rows(x)
    model_trace, guide_trace = trace_pair(model, guide, probe)
    frames = row_frames(model_trace.nodes[observed_site(model_trace, probe)], probe.shape[0])
    data_plate = frames[0].name if frames else None
    sites = []
    for name in sample_site_names(model_trace, observed=False):
        site = model_trace.nodes[name]
        event_shape = tuple(site["fn"].event_shape)
        in_guide = guide_trace.nodes.get(name)
        sites.append(
            {
                "name": name,
                "event_shape": list(event_shape),
                "size": math.prod(event_shape),
                "per_row": any(f.name == data_plate for f in site["cond_indep_stack"]),
                "distribution": type(base_distribution(site["fn"])).__name__,
                "guide_distribution": (
                    type(base_distribution(in_guide["fn"])).__name__ if in_guide else None
                ),
            }
        )
    return sites
