"""The amortization gap (Cremer, Li & Duvenaud, 2018): what the shared encoder costs.

For each of M rows, the distribution the guide gives each local site is rebuilt with free
parameters of its own, started at the encoder's output (for a Normal: loc and log scale),
and optimized by Adam on that row's ELBO with the model fixed. Then, per row,

    amortization gap   = ELBO(optimized q) - ELBO(amortized q)
    approximation gap  ~ IWAE_K - ELBO(optimized q)        (IWAE_K <= log p(x), so this is
                                                            a lower bound on the gap)

and their sum is the whole gap IWAE_K - ELBO(amortized q) of the guide family on these rows.
Works from traces: any guide whose local sites are parametric distributions (Normal,
MultivariateNormal, LowRankMultivariateNormal, Categorical, ...), including enumerated
sites, whose free parameters carry one value per enumerated class.
"""

import math
from contextlib import ExitStack
from dataclasses import dataclass

import pyro
import pyro.distributions as dist
import pyro.poutine as poutine
import torch
from torch.distributions import transform_to

from pyrovae.errors import PyrovaeError
from pyrovae.inference.diagnostics.importance import broadcasts, draw_terms, importance_weights
from pyrovae.inference.diagnostics.structure import (
    PARTICLE_PLATE,
    PairStructure,
    frozen_parameters,
    with_particles,
)

# Alternative parameterizations of one distribution: free the first one present.
PREFERRED = (("logits", "probs"), ("scale_tril", "covariance_matrix", "precision_matrix"))


class NotReparametrizable(Exception):
    """The guide's distribution at a site cannot be rebuilt from free parameters."""


@dataclass
class FreeSite:
    """One guide site rebuilt from free (unconstrained) parameters ``leaves``."""

    name: str
    frames: list
    infer: dict
    family: type
    names: list[str]
    transforms: list
    leaves: list[torch.Tensor]
    event_dims: int

    def distribution(self):
        params = {n: t(u) for n, t, u in zip(self.names, self.transforms, self.leaves, strict=True)}
        fn = self.family(**params, validate_args=False)
        return fn.to_event(self.event_dims) if self.event_dims else fn


def _parameter_names(fn) -> list[str]:
    present = [n for n in fn.arg_constraints if n in vars(fn)]
    for group in PREFERRED:
        chosen = [n for n in group if n in present][:1]
        present = [n for n in present if n not in group or n in chosen]
    return present


def free_site(name: str, site: dict, particle_plate: str) -> FreeSite:
    """Free parameters for the guide site ``site``, initialized at its current values."""
    fn, event_dims = site["fn"], 0
    while isinstance(fn, dist.Independent):
        event_dims += fn.reinterpreted_batch_ndims
        fn = fn.base_dist
    if not isinstance(fn, torch.distributions.Distribution) or isinstance(fn, dist.Delta):
        raise NotReparametrizable(f"site {name!r} is drawn from {type(fn).__name__}")
    names = _parameter_names(fn)
    if not names:
        raise NotReparametrizable(f"site {name!r}: {type(fn).__name__} names no parameters")
    transforms = [transform_to(fn.arg_constraints[n]) for n in names]
    leaves = [
        t.inv(getattr(fn, n)).detach().clone().requires_grad_()
        for n, t in zip(names, transforms, strict=True)
    ]
    frames = [f for f in site["cond_indep_stack"] if f.vectorized and f.name != particle_plate]
    infer = {k: v for k, v in site["infer"].items() if k == "enumerate"}
    free = FreeSite(name, frames, infer, type(fn), names, transforms, leaves, event_dims)
    try:
        rebuilt = free.distribution()
    except (TypeError, ValueError) as exc:
        raise NotReparametrizable(f"site {name!r}: {type(fn).__name__} ({exc})") from exc
    if (
        rebuilt.batch_shape != site["fn"].batch_shape
        or rebuilt.event_shape != site["fn"].event_shape
    ):
        raise NotReparametrizable(f"site {name!r}: rebuilt {type(fn).__name__} changes shape")
    return free


def _guide_sites(guide, x, structure: PairStructure, vectorized: bool = True):
    """The guide trace of one particle (inside the particle plate, unless the pair does not
    broadcast over it), under enumeration."""
    program = with_particles(guide, 1, structure.particle_dim) if vectorized else guide
    enumerated = poutine.enum(program, first_available_dim=structure.particle_dim - 1)
    with poutine.block(), torch.no_grad():
        return poutine.trace(enumerated).get_trace(x)


def free_guide(guide, x: torch.Tensor, structure: PairStructure, vectorized=True) -> tuple:
    """``(program, leaves)``: a guide whose local sites have free parameters started at what
    ``guide`` gives on ``x: (M, D)``, and the parameters. Raises NotReparametrizable when a
    site's distribution is not rebuildable, or its parameters depend on another random draw
    (a hierarchical guide), where freezing them at one draw would change q. With
    ``vectorized`` False the parameters are read outside the particle plate, for a pair
    that does not broadcast over it."""
    first = _guide_sites(guide, x, structure, vectorized)
    second = _guide_sites(guide, x, structure, vectorized)
    sites = []
    for name in structure.local_sites:
        a, b = first.nodes[name], second.nodes[name]
        free = free_site(name, a, PARTICLE_PLATE)
        again = free_site(name, b, PARTICLE_PLATE)
        if not all(torch.equal(u, v) for u, v in zip(free.leaves, again.leaves, strict=True)):
            raise NotReparametrizable(
                f"the parameters of q at site {name!r} depend on another random draw"
            )
        sites.append(free)

    def program(*args, **kwargs):
        plates = {}  # one plate object per name, entered by every site inside it
        for site in sites:
            with ExitStack() as stack:
                for frame in site.frames:
                    if frame.name not in plates:
                        size = None if frame.size in (None, -1) else frame.size  # -1: inferred
                        plates[frame.name] = pyro.plate(frame.name, size, dim=frame.dim)
                    stack.enter_context(plates[frame.name])
                pyro.sample(site.name, site.distribution(), infer=dict(site.infer))

    return program, [leaf for site in sites for leaf in site.leaves]


@dataclass
class AmortizationGap:
    """Per-row ELBOs (nats) before and after optimizing each row's own q, and IWAE_K."""

    rows: list[int]
    elbo_amortized: torch.Tensor
    elbo_optimized: torch.Tensor
    iwae: torch.Tensor
    iwae_samples: int
    steps: int

    def summary(self) -> dict:
        def mean_se(t: torch.Tensor) -> tuple[float, float]:
            n = t.numel()
            return float(t.mean()), float(t.std() / math.sqrt(n)) if n > 1 else math.nan

        gap, gap_se = mean_se(self.elbo_optimized - self.elbo_amortized)
        approx, approx_se = mean_se(self.iwae - self.elbo_optimized)
        total, total_se = mean_se(self.iwae - self.elbo_amortized)
        return {
            "amortization_gap": gap,
            "amortization_gap_standard_error": gap_se,
            "approximation_gap": approx,
            "approximation_gap_standard_error": approx_se,
            "iwae_minus_elbo": total,
            "iwae_minus_elbo_standard_error": total_se,
            "amortization_elbo": float(self.elbo_amortized.mean()),
            "amortization_elbo_optimized": float(self.elbo_optimized.mean()),
            "amortization_iwae": float(self.iwae.mean()),
            "amortization_iwae_samples": self.iwae_samples,
            "amortization_steps": self.steps,
            "amortization_points": self.rows,
        }


def amortization_gap(
    model,
    guide,
    x: torch.Tensor,
    rows: list[int],
    structure: PairStructure,
    *,
    steps: int = 500,
    lr: float = 0.01,
    num_particles: int = 16,
    eval_samples: int = 1000,
    progress: bool = False,
) -> AmortizationGap:
    """Optimize per-row variational parameters for the rows ``rows`` of ``x: (N, D)``.

    :param steps: Adam steps on the rows' summed ELBO (the rows do not interact, so each
        row's parameters follow its own ELBO); the learning rate decays linearly to lr / 100.
    :param num_particles: draws per row in each step's ELBO estimate.
    :param eval_samples: draws per row for the final ELBOs and the IWAE bound.
    """
    from tqdm import tqdm

    if not structure.guide_is_density:
        raise PyrovaeError(
            f"the guide draws {list(structure.point_mass_sites)} from a point mass (Delta): "
            "it has no ELBO to compare"
        )
    points = x[rows]
    with frozen_parameters(model, guide):
        vectorized = broadcasts(model, guide, points, structure)
        try:
            program, leaves = free_guide(guide, points, structure, vectorized)
        except NotReparametrizable as exc:
            raise PyrovaeError(f"no per-row variational parameters to optimize: {exc}") from exc
        optimizer = torch.optim.Adam(leaves, lr=lr)
        schedule = torch.optim.lr_scheduler.LinearLR(optimizer, 1.0, 0.01, total_iters=steps)
        with pyro.validation_enabled(False):
            for _ in tqdm(range(steps), desc="amortization gap", disable=not progress):
                terms = draw_terms(model, program, points, num_particles, structure, vectorized)
                loss = -terms.elbo.mean(0).sum()
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                schedule.step()
        for leaf in leaves:
            leaf.requires_grad_(False)
        amortized = importance_weights(model, guide, points, eval_samples, structure)
        optimized = importance_weights(
            model, program, points, eval_samples, structure, all_rows=True
        )
    return AmortizationGap(
        rows=list(rows),
        elbo_amortized=amortized.elbo,
        elbo_optimized=optimized.elbo,
        iwae=amortized.iwae(),
        iwae_samples=eval_samples,
        steps=steps,
    )
