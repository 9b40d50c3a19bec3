"""A reference posterior p(z | x) from NUTS under the trained model, and q measured against it.

For a few data rows the model is conditioned on them (its observed site takes the rows) and
Pyro's NUTS samples its local latent sites; discrete latents (the class of the
semi-supervised VAE) are enumerated out, so NUTS samples the marginal posterior of the
continuous ones. Each chain is its own ``MCMC`` run with its own seed (Pyro would otherwise
fork worker processes for parallel chains). ArviZ gives the split R-hat and bulk ESS.

q is compared per latent dimension d of each row: the error of its mean in posterior-sd
units, ``(E_q[z_d] - E_p[z_d]) / sd_p(z_d)``, and the ratio ``sd_q(z_d) / sd_p(z_d)``, with
the moments of q taken from draws of the guide (so a mixture over an upstream class counts).
"""

import time
import warnings
from dataclasses import dataclass

import numpy as np
import pyro
import pyro.poutine as poutine
import torch
from pyro.infer import MCMC, NUTS, config_enumerate

from pyrovae.inference.diagnostics.arviz_import import import_arviz
from pyrovae.inference.diagnostics.structure import (
    SHAPE_ERRORS,
    PairStructure,
    frozen_parameters,
    one_thread,
    repeat_rows,
    with_particles,
)


@dataclass
class NutsReference:
    """NUTS draws and guide draws for M rows, and how they compare.

    :param rows: indices of the M rows (into the data given to :func:`nuts_reference`).
    :param nuts: site -> NUTS draws ``(chains, draws, M, *event)``.
    :param guide: site -> guide draws ``(1, S, M, *event)``.
    :param diverging: ``(chains, draws)`` bool, divergent transitions after warm-up.
    :param acceptance: mean acceptance probability of each chain's kept draws.
    :param stats: per kept draw ``(chains, draws)``, in ArviZ's names: ``energy`` (the
        Hamiltonian at the start of the transition), ``lp`` (log density of the draw, on the
        unconstrained scale: minus the potential energy), ``step_size``, ``acceptance_rate``
        (mean acceptance probability of the transition's proposals) and ``tree_depth``.
    :param mean_error_sd: site -> ``(M, dims)``: (E_q - E_p) / sd_p per dimension.
    :param sd_ratio: site -> ``(M, dims)``: sd_q / sd_p per dimension.
    :param max_rhat: largest split R-hat over every sampled dimension.
    :param min_ess: smallest bulk effective sample size.
    """

    rows: list[int]
    nuts: dict[str, np.ndarray]
    guide: dict[str, np.ndarray]
    diverging: np.ndarray
    acceptance: list[float]
    mean_error_sd: dict[str, np.ndarray]
    sd_ratio: dict[str, np.ndarray]
    max_rhat: float
    min_ess: float
    seconds: float
    stats: dict[str, np.ndarray] | None = None

    def summary(self) -> dict:
        errors = np.concatenate([np.abs(e).ravel() for e in self.mean_error_sd.values()])
        ratios = np.concatenate([r.ravel() for r in self.sd_ratio.values()])
        return {
            "nuts_max_rhat": self.max_rhat,
            "nuts_min_ess": self.min_ess,
            "nuts_points": self.rows,
            "nuts_chains": int(self.diverging.shape[0]),
            "nuts_draws_per_chain": int(self.diverging.shape[1]),
            "nuts_divergences": int(self.diverging.sum()),
            "nuts_mean_accept_prob": self.acceptance,
            "q_mean_error_sd_mean_abs": float(errors.mean()),
            "q_mean_error_sd_max_abs": float(errors.max()),
            "q_sd_ratio_median": float(np.median(ratios)),
            "q_sd_ratio_range": [float(ratios.min()), float(ratios.max())],
            "q_mean_error_sd": {k: v.tolist() for k, v in self.mean_error_sd.items()},
            "q_sd_ratio": {k: v.tolist() for k, v in self.sd_ratio.items()},
        }

    def inference_data(self, guide_group: str = "approximate_posterior"):
        """An ArviZ ``InferenceData``: ``posterior`` (NUTS), ``sample_stats``, and the guide's
        draws in ``guide_group``; dims ``chain``, ``draw``, ``point`` (coordinate: row index)
        and ``<site>_dim_<i>``."""
        az = import_arviz()
        coords = {"point": np.asarray(self.rows)}
        dims = {name: ["point"] + _event_dims(name, v.ndim - 3) for name, v in self.nuts.items()}
        idata = az.from_dict(
            posterior=self.nuts,
            sample_stats={"diverging": self.diverging, **(self.stats or {})},
            coords=coords,
            dims=dims,
        )
        q = az.from_dict(posterior=self.guide, coords=coords, dims=dims)
        idata.add_groups({guide_group: q.posterior}, warn_on_custom_groups=False)
        return idata


def _event_dims(name: str, count: int) -> list[str]:
    return [f"{name}_dim_{i}" for i in range(count)]


def _guide_draws(guide, x, structure: PairStructure, draws: int) -> dict[str, torch.Tensor]:
    """``draws`` samples of each local site from the guide on ``x: (M, D)``: ``(draws, M, ...)``."""
    vectorized = with_particles(guide, draws, structure.particle_dim)
    try:
        with poutine.block():
            trace = poutine.trace(vectorized).get_trace(x)
        return {name: trace.nodes[name]["value"] for name in structure.local_sites}
    except SHAPE_ERRORS:  # a guide written for 2-D batches: the rows repeated instead
        with poutine.block():
            trace = poutine.trace(guide).get_trace(repeat_rows(x, draws))
        return {
            name: trace.nodes[name]["value"].reshape(draws, *x.shape[:1], -1)
            for name in structure.local_sites
        }


def nuts_reference(
    model,
    guide,
    x: torch.Tensor,
    rows: list[int],
    structure: PairStructure,
    *,
    num_chains: int = 2,
    num_samples: int = 500,
    warmup_steps: int = 500,
    seed: int = 0,
    jit_compile: bool = False,
    progress: bool = False,
) -> NutsReference:
    """Sample p(z | x_r) with NUTS for the rows ``rows`` of ``x: (N, D)`` and compare q to it.

    :param num_chains: independent chains (at least 2 for R-hat).
    :param num_samples: draws kept per chain after ``warmup_steps`` adaptation steps.
    :param jit_compile: let Pyro compile the potential energy with the PyTorch JIT.
    """
    az = import_arviz()
    start = time.perf_counter()
    points = x[rows]
    conditioned = config_enumerate(model, default="parallel")
    nuts: dict[str, list[np.ndarray]] = {}
    diverging, acceptance, stats = [], [], []
    for chain in range(num_chains):
        pyro.set_rng_seed(seed + chain)
        with frozen_parameters(model, guide), one_thread():
            mcmc, accept_prob, jit_compile, chain_stats = _run_chain(
                conditioned, points, structure, num_samples, warmup_steps, jit_compile, progress
            )
        stats.append(chain_stats)
        for name, value in mcmc.get_samples(group_by_chain=True).items():
            nuts.setdefault(name, []).append(value.detach().double().cpu().numpy())
        flags = np.zeros(num_samples, dtype=bool)
        flags[list(mcmc.diagnostics()["divergences"]["chain 0"])] = True
        diverging.append(flags)
        acceptance.append(accept_prob)
    samples = {name: np.concatenate(parts) for name, parts in nuts.items()}
    with torch.no_grad():
        q = _guide_draws(guide, points, structure, num_chains * num_samples)
    # NUTS returns the continuous sites (discrete ones are enumerated out).
    samples = {name: value for name, value in samples.items() if name in q}
    q_samples = {name: q[name].detach().double().cpu().numpy()[None] for name in samples}
    errors, ratios = {}, {}
    for name, draws in samples.items():
        p = draws.reshape(-1, len(rows), _width(draws))
        g = q_samples[name].reshape(-1, len(rows), _width(draws))
        p_sd = p.std(0, ddof=1)
        errors[name] = (g.mean(0) - p.mean(0)) / p_sd
        ratios[name] = g.std(0, ddof=1) / p_sd
    dataset = az.convert_to_dataset(samples)
    rhat = az.rhat(dataset)
    ess = az.ess(dataset, method="bulk")
    return NutsReference(
        rows=list(rows),
        nuts=samples,
        guide=q_samples,
        diverging=np.stack(diverging),
        acceptance=acceptance,
        stats={k: np.stack([s[k] for s in stats]) for k in RecordingNUTS.STATS},
        mean_error_sd=errors,
        sd_ratio=ratios,
        max_rhat=float(max(float(rhat[v].max()) for v in rhat.data_vars)),
        min_ess=float(min(float(ess[v].min()) for v in ess.data_vars)),
        seconds=time.perf_counter() - start,
    )


class RecordingNUTS(NUTS):
    """Pyro's NUTS, keeping for each transition what ArviZ's ``sample_stats`` holds
    (:data:`STATS`) in ``last_stats``. Pyro's kernel keeps only running means (and the
    divergences), so the values are read around its own steps: the Hamiltonian from its first
    kinetic-energy evaluation, the depth from the deepest subtree it builds, the acceptance
    probability from the proposals of the trees it doubles with (as its own ratio is made)."""

    STATS = ("energy", "lp", "step_size", "acceptance_rate", "tree_depth")
    last_stats: dict = {}
    _first_kinetic: float | None = 0.0  # None only inside sample(): the next one is kept
    _deepest: int = -1
    _nesting: int = 0  # depth of _build_tree calls in progress; 0 between doublings
    _accept_sum: float = 0.0
    _proposals: int = 0

    def sample(self, params):
        start_potential = self._potential_energy_last
        t_before = self._t
        self._first_kinetic, self._deepest = None, -1
        self._nesting, self._accept_sum, self._proposals = 0, 0.0, 0
        z = super().sample(params)
        if start_potential is None:  # the cache was empty: the kernel recomputed it
            start_potential = self._potential_energy_last
        if self._t == t_before + 1 and self._first_kinetic is not None:
            # Pyro's own accept_prob: the trees' summed acceptance over their proposals
            accept = self._accept_sum / self._proposals if self._proposals else 1.0
            self.last_stats = {
                "energy": float(self._first_kinetic + start_potential),
                "lp": -float(self._potential_energy_last),
                "step_size": float(self.step_size),
                "acceptance_rate": float(accept),
                "tree_depth": int(self._deepest + 1),
            }
        return z

    def _kinetic_energy(self, r_unscaled):
        energy = super()._kinetic_energy(r_unscaled)
        if self._first_kinetic is None:
            self._first_kinetic = float(energy)
        return energy

    def _build_tree(self, z, r, z_grads, log_slice, direction, tree_depth, energy_current):
        self._deepest = max(self._deepest, tree_depth)
        self._nesting += 1
        try:
            tree = super()._build_tree(
                z, r, z_grads, log_slice, direction, tree_depth, energy_current
            )
        finally:
            self._nesting -= 1
        if self._nesting == 0:  # a doubling of the trajectory, not one of its subtrees
            self._accept_sum += float(tree.sum_accept_probs)
            self._proposals += int(tree.num_proposals)
        return tree


def _run_chain(model, x, structure, num_samples, warmup_steps, jit_compile, progress):
    """One NUTS chain on ``model(x)``: ``(mcmc, mean acceptance probability of the kept
    draws, whether it ran compiled, per-draw statistics (:attr:`RecordingNUTS.STATS` ->
    ``(num_samples,)``))``. Compiled with the PyTorch JIT when asked and possible (about 2x
    faster on small networks), else eager."""
    stats: dict[str, list] = {}

    def record(kernel, samples, stage, i):
        if stage == "Sample":
            for key, value in kernel.last_stats.items():
                stats.setdefault(key, []).append(value)

    for jit in (True, False) if jit_compile else (False,):
        stats.clear()
        kernel = RecordingNUTS(
            model,
            max_plate_nesting=structure.max_plate_nesting,
            jit_compile=jit,
            ignore_jit_warnings=True,
        )
        mcmc = MCMC(
            kernel,
            num_samples=num_samples,
            warmup_steps=warmup_steps,
            disable_progbar=not progress,
            hook_fn=record,
        )
        try:
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", category=FutureWarning, module="torch.jit")
                mcmc.run(x)
            chain_stats = {k: np.asarray(v) for k, v in stats.items()}
            # the mean of the per-draw rates: Pyro's logged running mean is rounded to 3 places
            return mcmc, float(chain_stats["acceptance_rate"].mean()), jit, chain_stats
        except (RuntimeError, TypeError) as exc:
            if not jit:
                raise
            del exc  # the program does not trace: run it eagerly
    raise AssertionError("unreachable")


def _width(draws: np.ndarray) -> int:
    """Latent dimensions per row of draws ``(chains, draws, M, *event)``."""
    return int(np.prod(draws.shape[3:], dtype=int))
