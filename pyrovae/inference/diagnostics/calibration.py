"""Simulation-based calibration (SBC) of the amortized posterior q(z|x), for any pair.

Talts et al. (2018): draw ``z* ~ p(z)`` and ``x ~ p(x | z*)`` from the model, then
``z_1, ..., z_L ~ q(z | x)``. When ``q(z|x) = p(z|x)``, the rank ``#{l: f(z_l) < f(z*)}`` of
any scalar function f is uniform on ``{0, ..., L}``, whatever the model: a miscalibrated q
shows as ranks piled at both ends (too narrow), in the middle (too wide) or to one side
(shifted). This checks q on the model's own data, with no reference sampler.

Everything is read from traces. The model is run on N rows with its observed site
unconditioned (``poutine.uncondition``: the obs site draws x from p(x | z*) and every latent
from its prior, the rows given only fix the plate's size); the guide is run on the simulated
x inside a vectorized particle plate of size L (or, for a pair that does not broadcast over
it, on the rows repeated L times). The statistics ranked:

- every coordinate of every continuous local latent site (``"z[0]"``, ...);
- ``log p(z)``: the prior's log density of all continuous local sites (the model's prior at
  the simulated values of anything upstream);
- ``pc1``, ``pc2``, ...: projections on the leading principal directions of the posterior
  means ``E_q[z | x]`` over the N simulations (the directions the data move most).

A discrete local site of the guide (a ``Categorical`` or a ``OneHotCategorical``, such as
the semi-supervised VAE's class or the Gumbel VAE's codes) is checked by the randomized PIT
of the simulated value under q: ``u = Q(y* - 1) + V q(y*)`` with ``V ~ U(0, 1)`` and Q the
CDF of q's categorical (averaged over the guide's draws of anything upstream), uniform on
(0, 1) when q is calibrated. Global sites are fixed by the caller
(:func:`~pyrovae.inference.diagnostics.structure.condition_on_globals`).

:mod:`~pyrovae.inference.diagnostics.rank_tests` tests each statistic and names the way it
is off.
"""

from dataclasses import dataclass, field

import numpy as np
import pyro.distributions as dist
import pyro.poutine as poutine
import torch
from pyro.poutine.util import prune_subsample_sites

from pyrovae.errors import PyrovaeError
from pyrovae.inference.diagnostics.importance import DEFAULT_MAX_ELEMENTS
from pyrovae.inference.diagnostics.rank_tests import (
    DEFAULT_ALPHA,
    EcdfBand,
    RankTest,
    fractional_ranks,
    overall_verdict,
    uniformity_tests,
)
from pyrovae.inference.diagnostics.structure import (
    PairStructure,
    base_distribution,
    is_discrete,
    with_particles,
)

DEFAULT_SIMULATIONS = 1000
DEFAULT_DRAWS = 99
DEFAULT_PROJECTIONS = 2
MIN_SIMULATIONS = 20
"""Fewer simulations leave too few ranks for a chi-square test of 2 or more bins."""


@dataclass
class Calibration:
    """SBC of a pair: ``simulations`` N, ``draws`` L, a test per statistic.

    :param values: ``(N, m)`` fractional ranks (continuous sites) or PIT values (discrete
        sites) in (0, 1), one column per test, uniform when q is calibrated.
    :param level: the per-test significance level (the family's ``alpha / (3 m)``).
    :param bands: the ECDF bands of the tests, by number of rank values (None: PIT).
    :param notes: what could not be checked, and why.
    """

    simulations: int
    draws: int
    tests: list[RankTest]
    values: np.ndarray
    level: float
    bands: dict[int | None, EcdfBand]
    vectorized: bool = True
    notes: list[str] = field(default_factory=list)

    def summary(self) -> dict:
        """The numbers for ``diagnostics.json``."""
        tests = self.tests
        return {
            "sbc_simulations": self.simulations,
            "sbc_draws": self.draws,
            "sbc_level": self.level,
            "sbc_verdict": overall_verdict(tests),
            "sbc_rejected": sum(t.verdict != "calibrated" for t in tests),
            "sbc_min_p_value": min(t.p_value for t in tests),
            "sbc_p_values": {t.name: t.p_value for t in tests},
            "sbc_ecdf_p_values": {t.name: t.ecdf_p_value for t in tests},
            "sbc_bias_z": {t.name: t.bias_z for t in tests},
            "sbc_spread_z": {t.name: t.spread_z for t in tests},
            "sbc_verdicts": {t.name: t.verdict for t in tests},
        }


def check_sizes(simulations: int, draws: int) -> None:
    """One-line refusals of sizes SBC cannot use (``simulations`` 0 means: skip)."""
    if simulations < 0 or 0 < simulations < MIN_SIMULATIONS:
        raise PyrovaeError(
            f"--sbc-simulations must be 0 (skip) or at least {MIN_SIMULATIONS} (enough ranks "
            f"for a uniformity test), got {simulations}"
        )
    if draws < 1:
        raise PyrovaeError(
            f"--sbc-draws must be at least 1 (L draws of q per simulation), got {draws}"
        )


def simulate(
    model, structure: PairStructure, template: torch.Tensor, num: int, fixed: dict | None = None
):
    """One trace of the model on ``num`` rows with its observed site drawn, not observed:
    ``(trace, x (num, D))``. ``template: (n, D)`` rows (cycled) fix only the plate size;
    ``fixed`` (site -> value) holds sites at given values (the global sites), applied outside
    ``uncondition`` so that it does not draw them from their prior."""
    rows = template[torch.arange(num, device=template.device) % template.shape[0]]
    program = poutine.uncondition(model)
    if fixed:
        program = poutine.condition(program, data=fixed)
    with poutine.block():
        trace = poutine.trace(program).get_trace(rows)
    trace = prune_subsample_sites(trace)
    x = trace.nodes[structure.obs_site]["value"]
    if not isinstance(x, torch.Tensor) or x.shape != rows.shape:
        raise PyrovaeError(
            f"the model's observed site {structure.obs_site!r} drew a value of shape "
            f"{tuple(getattr(x, 'shape', ()))} for rows of shape {tuple(rows.shape)}"
        )
    return trace, x.detach()


def _guide_trace(guide, x: torch.Tensor, draws: int, structure: PairStructure, vectorized: bool):
    if vectorized:
        program, rows = with_particles(guide, draws, structure.particle_dim), x
    else:
        program, rows = guide, x.repeat(draws, *([1] * (x.dim() - 1)))
    with poutine.block():
        return prune_subsample_sites(poutine.trace(program).get_trace(rows))


def _categorical(fn) -> tuple[torch.Tensor, bool] | None:
    """``(probs (..., K), one_hot)`` of a Categorical or OneHotCategorical site, else None."""
    base = base_distribution(fn)
    if isinstance(base, dist.OneHotCategorical):
        return base.probs, True
    if isinstance(base, dist.Categorical):
        return base.probs, False
    return None


def _names(site: str, width: int) -> list[str]:
    return [site] if width == 1 else [f"{site}[{j}]" for j in range(width)]


def _rank(truth: torch.Tensor, draws: torch.Tensor, generator: np.random.Generator) -> np.ndarray:
    """Ranks ``(N, d)`` of ``truth (N, d)`` among ``draws (L, N, d)``, ties split at random."""
    less = (draws < truth).sum(0).cpu().numpy()
    ties = (draws == truth).sum(0).cpu().numpy()
    return less + np.floor(generator.uniform(size=less.shape) * (ties + 1)).astype(np.int64)


def _pit(truth: torch.Tensor, probs: torch.Tensor, generator: np.random.Generator) -> np.ndarray:
    """Randomized PIT ``(N, M)`` of class indices ``truth (N, M)`` under ``probs (N, M, K)``."""
    probs = probs.double().cpu()
    truth = truth.long().cpu()
    before = (probs.cumsum(-1) - probs).gather(-1, truth.unsqueeze(-1)).squeeze(-1)
    mass = probs.gather(-1, truth.unsqueeze(-1)).squeeze(-1)
    v = torch.from_numpy(generator.uniform(size=tuple(truth.shape)))
    return (before + v * mass).clamp(0, 1).numpy()


@torch.no_grad()
def simulation_based_calibration(
    model,
    guide,
    template: torch.Tensor,
    structure: PairStructure,
    *,
    simulations: int = DEFAULT_SIMULATIONS,
    draws: int = DEFAULT_DRAWS,
    projections: int = DEFAULT_PROJECTIONS,
    alpha: float = DEFAULT_ALPHA,
    seed: int = 0,
    max_elements: int = DEFAULT_MAX_ELEMENTS,
    fixed: dict | None = None,
) -> Calibration:
    """SBC of the local latent sites of ``guide`` against ``model`` (see the module).

    :param template: rows ``(n, D)`` of the data's shape and dtype (their values are unused).
    :param simulations: N pairs (z*, x) drawn from the model.
    :param draws: L draws of q(z | x) per simulation.
    :param projections: leading principal directions of the posterior means ranked.
    :param alpha: family-wise level of the uniformity tests (Bonferroni over statistics).
    :param fixed: site -> value held fixed in the simulations (global sites at the values the
        guide is conditioned on; a model already conditioned on them would have them
        unconditioned, i.e. drawn from their prior).
    :raises PyrovaeError: when no local site can be checked.
    """
    check_sizes(simulations, draws)
    generator = np.random.default_rng(seed)
    notes: list[str] = []
    sim_trace, x = simulate(model, structure, template, simulations, fixed)
    continuous, discrete = [], []
    for name in structure.local_sites:
        if name not in sim_trace.nodes:
            notes.append(f"the model has no site {name!r}: it is not checked")
        elif is_discrete(sim_trace.nodes[name]["fn"]):
            if _categorical(sim_trace.nodes[name]["fn"]) is None:
                notes.append(
                    f"no PIT for the discrete site {name!r}: only Categorical and "
                    "OneHotCategorical sites are checked"
                )
            else:
                discrete.append(name)
        else:
            continuous.append(name)
    if not continuous and not discrete:
        raise PyrovaeError("the guide has no local latent site that SBC can check")

    width = int(np.prod(x.shape[1:], dtype=int))
    per_pass = max(1, max_elements // (draws * max(width, 1)))
    vectorized = True
    parts: dict[str, list[torch.Tensor]] = {}
    probs_parts: dict[str, list[torch.Tensor]] = {}
    for start in range(0, simulations, per_pass):
        batch = x[start : start + per_pass]
        rows = batch.shape[0]
        if vectorized:
            try:
                trace = _guide_trace(guide, batch, draws, structure, True)
                for name in continuous:
                    trace.nodes[name]["value"].reshape(draws, rows, -1)
            except (RuntimeError, ValueError, IndexError):
                vectorized = False
        if not vectorized:
            trace = _guide_trace(guide, batch, draws, structure, False)
        for name in continuous:
            value = trace.nodes[name]["value"].reshape(draws, rows, -1)
            parts.setdefault(name, []).append(value.double().cpu())
        for name in discrete:
            site = trace.nodes[name]
            probs, one_hot = _categorical(site["fn"])
            k = probs.shape[-1]
            target = site["value"].shape if one_hot else (*site["value"].shape, k)
            probs = torch.broadcast_to(probs, target).reshape(draws, rows, -1, k).mean(0)
            probs_parts.setdefault(name, []).append(probs.cpu())
    if not vectorized:
        notes.append("the guide does not broadcast over a sample dimension: rows repeated L times")

    columns = []
    truths, draws_all = [], []
    for name in continuous:
        truth = sim_trace.nodes[name]["value"].reshape(simulations, -1).double().cpu()
        drawn = torch.cat(parts[name], dim=1)
        truths.append(truth)
        draws_all.append(drawn)
        ranks = fractional_ranks(_rank(truth, drawn, generator), draws)
        for j, label in enumerate(_names(name, truth.shape[1])):
            columns.append((label, "rank", ranks[:, j], draws + 1))
    if continuous:
        columns += _log_prior_column(sim_trace, continuous, draws_all, draws, generator, notes)
        columns += _projection_columns(truths, draws_all, draws, projections, generator)
    for name in discrete:
        site = sim_trace.nodes[name]
        truth = site["value"]
        if _categorical(site["fn"])[1]:
            truth = truth.argmax(-1)
        truth = truth.reshape(simulations, -1)
        pit = _pit(truth, torch.cat(probs_parts[name]), generator)
        for j, label in enumerate(_names(name, truth.shape[1])):
            columns.append((label, "pit", pit[:, j], None))
    tests, level, bands = uniformity_tests(columns, alpha)
    return Calibration(
        simulations=simulations,
        draws=draws,
        tests=tests,
        values=np.stack([c[2] for c in columns], axis=1),
        level=level,
        bands=bands,
        vectorized=vectorized,
        notes=notes,
    )


def _log_prior_column(sim_trace, sites, draws_all, draws, generator, notes) -> list:
    """``log p(z)`` of the truth and of each draw, summed over the continuous sites."""
    try:
        truth, drawn = 0.0, 0.0
        for name, values in zip(sites, draws_all, strict=True):
            node = sim_trace.nodes[name]
            fn, shape = node["fn"], node["value"].shape
            truth = truth + fn.log_prob(node["value"]).double().cpu()
            value = values.reshape(draws, *shape).to(node["value"])
            drawn = drawn + fn.log_prob(value).double().cpu()
        truth = truth.reshape(-1, 1)
        drawn = drawn.reshape(draws, -1, 1)
    except (RuntimeError, ValueError, NotImplementedError) as exc:
        notes.append(f"no log p(z) statistic: the prior does not score the guide's draws ({exc})")
        return []
    ranks = fractional_ranks(_rank(truth, drawn, generator), draws)
    return [("log p(z)", "rank", ranks[:, 0], draws + 1)]


def _projection_columns(truths, draws_all, draws, projections, generator) -> list:
    """Ranks of the projections on the leading principal directions of E_q[z | x]."""
    truth = torch.cat(truths, dim=1)
    drawn = torch.cat(draws_all, dim=2)
    count = min(projections, truth.shape[1]) if truth.shape[1] > 1 else 0
    if count == 0:
        return []
    means = drawn.mean(0)
    _, _, vh = torch.linalg.svd(means - means.mean(0), full_matrices=False)
    directions = vh[:count].T  # (d, count)
    ranks = fractional_ranks(_rank(truth @ directions, drawn @ directions, generator), draws)
    return [(f"pc{j + 1}", "rank", ranks[:, j], draws + 1) for j in range(count)]
