"""Importance weights log p(x, z) - log q(z | x) kept per data point, and the IWAE bound.

Pyro's ``vectorized_importance_weights`` and ``RenyiELBO`` sum the log densities over the
data plate, which gives one weight per *batch*; the importance-weighted bound of Burda et al.
(2016) needs one weight per row:

    log p(x_i) >= E log (1/K) sum_k w_ik,    w_ik = p(x_i, z_ik) / q(z_ik | x_i),  z_ik ~ q

This module traces the guide under a vectorized particle plate and the model replayed on
it, and sums each site's log density over every plate except the particle and data plates.
Guide sites configured for enumeration (the class of the semi-supervised VAE) are summed
out exactly inside each weight: ``w_ik = sum_y p(x_i, y, z_iky) / q(z_iky | x_i, y)``. Sites
outside the data plate take no part (condition them first, see ``structure``).
"""

import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import pyro
import pyro.poutine as poutine
import torch
from pyro.infer.util import is_validation_enabled
from pyro.poutine.util import prune_subsample_sites

from pyrovae.errors import PyrovaeError
from pyrovae.inference.diagnostics.structure import SHAPE_ERRORS, PairStructure, with_particles

DEFAULT_MAX_ELEMENTS = 2**22
"""Particles x rows x width of the data drawn in one pass (16 MB per float32 tensor). Small
passes stay in the CPU's caches: on the 784-400-50 VAE, 2**22 elements score twice as many
rows x samples per second as 2**24 on a 2-core CPU (benchmarks/iwae_speed.py)."""


@dataclass
class PointTerms:
    """Per-row, per-particle quantities of one pass, each ``(K, B)`` in nats.

    :param log_weight: ``log w`` with enumerated sites summed out inside the weight.
    :param elbo: the ELBO integrand, enumerated sites summed out under q (Pyro's
        ``TraceEnum_ELBO`` for the same draws); equals ``log_weight`` without enumeration.
    """

    log_weight: torch.Tensor
    elbo: torch.Tensor


def _site_sum(trace, keep: set[int], data_plate: str, which: Callable[[dict], bool]):
    """Sum of the log densities of the sites in ``trace`` for which ``which(site)``, each
    summed over its plate dimensions except those in ``keep``; sites outside the data plate
    are left out. ``0.`` when no site qualifies."""
    total = 0.0
    for site in trace.nodes.values():
        if site["type"] != "sample" or not which(site):
            continue
        frames = site["cond_indep_stack"]
        if not any(f.name == data_plate for f in frames):
            continue
        log_prob = site["log_prob"]
        reduce = [
            f.dim
            for f in frames
            if f.vectorized and f.dim is not None and f.dim not in keep and -f.dim <= log_prob.dim()
        ]
        if reduce:
            log_prob = log_prob.sum(dim=reduce, keepdim=True)
        total = total + log_prob
    return total


def _enum_dims(trace) -> set[int]:
    return {
        site["infer"]["_enumerate_dim"]
        for site in trace.nodes.values()
        if site["type"] == "sample" and site["infer"].get("_enumerate_dim") is not None
    }


def point_terms(
    model,
    guide,
    x: torch.Tensor,
    num_particles: int,
    structure: PairStructure,
    vectorize=True,
    args: tuple = (),
) -> PointTerms:
    """Trace ``num_particles`` draws of the guide on ``x: (B, D)`` (and the programs' further
    arguments ``args``, e.g. labels) and score them under the model.

    With ``vectorize=False`` the programs run once without a particle plate (one particle),
    for programs that cannot broadcast over a leading sample dimension. Gradients flow when
    enabled (the amortization-gap optimizer uses them).
    """
    nesting = structure.max_plate_nesting + (1 if vectorize else 0)
    particle_dim = -nesting
    if vectorize:
        guide = with_particles(guide, num_particles, particle_dim)
        model = with_particles(model, num_particles, particle_dim)
    guide = poutine.enum(guide, first_available_dim=-1 - nesting)
    model = poutine.enum(model)  # model-side enumeration continues the guide's dimensions
    guide_trace = poutine.trace(guide).get_trace(x, *args)
    model_trace = poutine.trace(poutine.replay(model, trace=guide_trace)).get_trace(x, *args)
    guide_trace, model_trace = (
        prune_subsample_sites(guide_trace),
        prune_subsample_sites(model_trace),
    )
    guide_trace.compute_log_prob()
    model_trace.compute_log_prob()

    keep = {structure.data_dim} | ({particle_dim} if vectorize else set())
    plate = structure.data_plate
    latent = lambda site: not site["is_observed"]  # noqa: E731
    log_p = _site_sum(model_trace, keep, plate, lambda site: True)
    log_q_enum = _site_sum(
        guide_trace, keep, plate, lambda s: latent(s) and "_enumerate_dim" in s["infer"]
    )
    log_q = _site_sum(
        guide_trace, keep, plate, lambda s: latent(s) and "_enumerate_dim" not in s["infer"]
    )
    log_p, log_q, log_q_enum = (
        t if isinstance(t, torch.Tensor) else x.new_zeros(()) for t in (log_p, log_q, log_q_enum)
    )
    # Enumeration dimensions sit left of the plates: -nesting - 1, -nesting - 2, ...
    guide_dims = _enum_dims(guide_trace)
    model_only = sorted(_enum_dims(model_trace) - guide_dims)
    difference = log_p - log_q
    if model_only:  # sum the model's own discrete sites out of p before weighting by q
        difference = _logsumexp_dims(difference, model_only)
    log_weight = _logsumexp_dims(difference, sorted(guide_dims))
    if guide_dims:
        integrand = difference - log_q_enum
        elbo = _sum_dims(log_q_enum.exp() * integrand, sorted(guide_dims))
    else:
        elbo = difference
    shape = (num_particles if vectorize else 1, x.shape[0])
    data_dim = structure.data_dim
    return PointTerms(
        _to_particles_rows(log_weight, nesting, data_dim, shape),
        _to_particles_rows(elbo, nesting, data_dim, shape),
    )


def _logsumexp_dims(t: torch.Tensor, dims: list[int]) -> torch.Tensor:
    dims = [d for d in dims if -d <= t.dim()]
    return t.logsumexp(dim=dims, keepdim=True) if dims else t


def _sum_dims(t: torch.Tensor, dims: list[int]) -> torch.Tensor:
    dims = [d for d in dims if -d <= t.dim()]
    return t.sum(dim=dims, keepdim=True) if dims else t


def _to_particles_rows(t: torch.Tensor, nesting: int, data_dim: int, shape) -> torch.Tensor:
    """A sum of site log densities over ``nesting`` plate dims -> ``(K, B)``.

    The particle plate is the leftmost of those dims (absent without vectorization, then
    K = 1), the data plate is at ``data_dim``; every other plate dim was summed to size 1,
    and so were the enumeration dims further left.
    """
    if t.dim() > nesting:
        t = t.reshape(t.shape[t.dim() - nesting :])
    target = [1] * nesting
    target[nesting + data_dim] = shape[1]
    if shape[0] > 1:
        target[0] = shape[0]
    return t.expand(target).reshape(shape)


@dataclass
class ImportanceWeights:
    """Importance log-weights of ``N`` rows.

    :param log_weights: ``(N, K)`` float64, nats.
    :param elbo: ``(N,)`` float64: the ELBO of each row, averaged over the same K draws.
    :param vectorized: whether the particles were drawn in one vectorized pass.
    """

    log_weights: torch.Tensor
    elbo: torch.Tensor
    vectorized: bool

    @property
    def num_samples(self) -> int:
        return self.log_weights.shape[1]

    def iwae(self, k: int | None = None) -> torch.Tensor:
        """Per-row IWAE bound with ``k`` samples (default all K), ``(N,)`` nats.

        For ``k < K`` the K weights are cut into ``K // k`` disjoint groups of ``k`` and the
        group bounds averaged: the same expectation, with less Monte Carlo noise.
        """
        k = k or self.num_samples
        if not 1 <= k <= self.num_samples:
            raise PyrovaeError(f"k must be in 1..{self.num_samples}, got {k}")
        groups = self.num_samples // k
        lw = self.log_weights[:, : groups * k].reshape(-1, groups, k)
        return (lw.logsumexp(-1) - math.log(k)).mean(-1)


def chunk_sizes(num_rows: int, num_samples: int, width: int, max_elements: int) -> tuple[int, int]:
    """``(rows, particles)`` per pass so that ``rows * particles * width <= max_elements``."""
    per_row = max(1, max_elements // max(1, width))  # particle-rows per pass
    if num_samples <= per_row:
        return max(1, min(num_rows, per_row // num_samples)), num_samples
    return 1, per_row


@torch.no_grad()
def importance_weights(
    model,
    guide,
    x: torch.Tensor,
    num_samples: int,
    structure: PairStructure,
    *,
    max_elements: int = DEFAULT_MAX_ELEMENTS,
    all_rows: bool = False,
    progress: bool = False,
    row_args: tuple[torch.Tensor, ...] = (),
) -> ImportanceWeights:
    """``num_samples`` importance log-weights per row of ``x: (N, D)``, in vectorized chunks.

    :param max_elements: bound on particles x rows x D per pass (memory).
    :param all_rows: pass all N rows at once (for a guide with parameters of its own per
        row), chunking the particles only.
    :param progress: show a progress bar over the rows.
    :param row_args: further arguments of the programs with one entry per row of ``x``
        (e.g. observed labels ``(N,)``), cut into the same chunks as ``x``.
    """
    from tqdm import tqdm

    if not structure.guide_is_density:
        raise PyrovaeError(
            f"the guide draws {list(structure.point_mass_sites)} from a point mass (Delta), "
            "which has no density: importance weights and the IWAE bound need a guide with one"
        )
    if num_samples < 1:
        raise PyrovaeError(f"--iwae-samples must be at least 1, got {num_samples}")
    width = x[0].numel() * (x.shape[0] if all_rows else 1)
    rows, particles = chunk_sizes(x.shape[0], num_samples, width, max_elements)
    if all_rows:
        rows = x.shape[0]
    log_weights, elbos = [], []
    vectorize, first = True, True
    bar = tqdm(total=x.shape[0], desc="importance weights", unit="row", disable=not progress)
    for start in range(0, x.shape[0], rows):
        batch = x[start : start + rows]
        batch_args = tuple(arg[start : start + rows] for arg in row_args)
        lw_parts, elbo_parts = [], []
        for done in range(0, num_samples, particles):
            k = min(particles, num_samples - done)
            # The first pass runs with Pyro's argument checks; the rest repeat its shapes.
            with pyro.validation_enabled(first and is_validation_enabled()):
                if first:
                    vectorize = _works_vectorized(model, guide, batch, k, structure, batch_args)
                    first = False
                terms = draw_terms(model, guide, batch, k, structure, vectorize, batch_args)
            lw_parts.append(terms.log_weight.double())
            elbo_parts.append(terms.elbo.double())
        log_weights.append(torch.cat(lw_parts).T.cpu())
        elbos.append(torch.cat(elbo_parts).mean(0).cpu())
        bar.update(batch.shape[0])
    bar.close()
    return ImportanceWeights(torch.cat(log_weights), torch.cat(elbos), vectorize)


def one_line(exc: BaseException) -> str:
    """A Pyro error message without its trace-shape table, on one line."""
    text = str(exc).split("Trace Shapes:")[0]
    return (
        " ".join(line.strip() for line in text.splitlines() if line.strip()) or type(exc).__name__
    )


def draw_terms(model, guide, x, k, structure, vectorize, args=()) -> PointTerms:
    """:func:`point_terms` of ``k`` particles: in one vectorized pass, or (``vectorize``
    False, for a pair that does not broadcast over a particle dimension) ``k`` passes of
    one particle each, stacked."""
    if vectorize:
        return point_terms(model, guide, x, k, structure, args=args)
    parts = [
        point_terms(model, guide, x, 1, structure, vectorize=False, args=args) for _ in range(k)
    ]
    return PointTerms(torch.cat([p.log_weight for p in parts]), torch.cat([p.elbo for p in parts]))


def broadcasts(model, guide, x, structure, args=()) -> bool:
    """Whether the pair runs inside a vectorized particle plate (of 2 draws) on ``x``."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            point_terms(model, guide, x, 2, structure, args=args)
        return True
    except SHAPE_ERRORS:
        return False


def _works_vectorized(model, guide, x, k, structure, args=()) -> bool:
    """Whether the pair broadcasts over a leading particle dimension; if not, whether it
    runs one particle at a time (else a one-line error naming the cause)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            point_terms(model, guide, x, min(k, 2), structure, args=args)
        return True
    except (RuntimeError, ValueError, IndexError) as vectorized_error:
        try:
            point_terms(model, guide, x, 1, structure, vectorize=False, args=args)
        except (RuntimeError, ValueError, IndexError) as exc:
            raise PyrovaeError(
                f"scoring the guide's draws under the model failed: {one_line(exc)}"
            ) from exc
        del vectorized_error
        return False
