"""``pyrovae.diagnose(run)`` (``pyrovae-diagnose`` on the command line): how good is the
guide q(z|x) of a trained run?

On the run's test rows (the same binarized rows as its test ELBO), for any model/guide pair:

- the importance-weighted bound (IWAE) per row with K samples, its mean and standard
  error, and the estimate for K = 1, 10, 100, ... to show its convergence;
- Pareto k-hat of each row's weights (PSIS) and the shares above 0.5 and 0.7;
- KL(q || p) per latent dimension, active units and a posterior-collapse warning;
- a NUTS reference posterior for a few rows, with R-hat and bulk ESS, and q against it;
- the amortization gap of a subset of rows;
- posterior and prior predictive checks: test statistics of replicated test sets and their
  posterior predictive p-values, written to ``predictive.nc`` (ArviZ);
- sample quality: Fréchet distance and precision/recall of prior samples and reconstructions
  against the test images, in the features of a classifier trained on the data set.
- simulation-based calibration (SBC) of q(z|x) on data simulated from the model: a
  uniformity test of ranks per latent coordinate and statistic, with its direction
  (overconfident, underconfident, biased);
- for a guide whose categorical site is the class of labelled rows (the semi-supervised VAE's
  ``y``), the expected calibration error of q(y|x) on the labelled test rows.

Global latent sites (outside the data plate, e.g. a Bayesian FA's loadings) are fixed at
their mean under q, so the per-row numbers are conditional on that plug-in value.
Written to the run folder: ``diagnostics.json``, ``posterior.nc`` (ArviZ) and figures.
"""

import json
import math
import time
from contextlib import contextmanager
from dataclasses import dataclass, fields
from datetime import datetime
from pathlib import Path

import numpy as np
import pyro
import torch
import xarray as xr

from pyrovae.atomic import atomic_write_named, atomic_write_text
from pyrovae.errors import PyrovaeError
from pyrovae.folder.layout import DIAGNOSTIC_FIGURES, check_writable, json_ready
from pyrovae.inference.diagnostics.amortization import amortization_gap
from pyrovae.inference.diagnostics.arviz_import import import_arviz
from pyrovae.inference.diagnostics.calibration import (
    DEFAULT_DRAWS,
    DEFAULT_SIMULATIONS,
    check_sizes,
    simulation_based_calibration,
)
from pyrovae.inference.diagnostics.importance import importance_weights
from pyrovae.inference.diagnostics.latents import latent_health
from pyrovae.inference.diagnostics.memory import retain_freed_memory
from pyrovae.inference.diagnostics.pareto import khat_summary, pareto_khat
from pyrovae.inference.diagnostics.reference import nuts_reference
from pyrovae.inference.diagnostics.reliability import DEFAULT_BINS, label_sites, reliability
from pyrovae.inference.diagnostics.structure import (
    condition_on_globals,
    evaluation_mode,
    frozen_parameters,
    global_draws,
    inspect_pair,
    one_thread,
)
from pyrovae.inference.parameters import device_of
from pyrovae.inference.settings import option
from pyrovae.plots import diagnostics as figures
from pyrovae.report.html import check_sources, write_report
from pyrovae.runs import criticism
from pyrovae.runs.load import as_run

DEFAULT_KS = (1, 10, 100, 1000, 5000)
UNITS = "nats per example (log densities of one test row); higher is better"


def _timed(seconds: dict, name: str):
    @contextmanager
    def block():
        start = time.perf_counter()
        try:
            yield
        finally:
            seconds[name] = time.perf_counter() - start

    return block()


def _checkpoint_stamp(run) -> str | None:
    """``checkpoint.pt``'s modification time (ISO 8601) when the run came from its folder."""
    path = run.folder.checkpoint
    if not path.is_file():
        return None
    return datetime.fromtimestamp(path.stat().st_mtime).isoformat(timespec="seconds")


def _spread_rows(khat: np.ndarray | None, count: int, n: int, generator: np.random.Generator):
    """``count`` row indices: spread over the k-hat ranking (best to worst) when k-hats are
    known, so the worst-fitting row is among them; else drawn at random."""
    count = min(count, n)
    if khat is None:
        return sorted(generator.choice(n, size=count, replace=False).tolist())
    order = np.argsort(np.where(np.isfinite(khat), khat, -1e9), kind="stable")
    picks = np.unique(np.round(np.linspace(0, n - 1, count)).astype(int))
    return [int(order[p]) for p in picks]


@dataclass
class DiagnosisOptions:
    """What :func:`diagnose` computes; ``scripts/diagnose.py`` makes a flag of each field."""

    iwae_samples: int = option(1000, "K, importance samples per row (0: skip IWAE and k-hat)")
    nuts_points: int = option(4, "rows given a NUTS reference posterior (0: skip)")
    amortization_points: int = option(100, "rows whose q is refitted on its own (0: skip)")
    max_points: int | None = option(None, "use only the first N test rows (default: all)")
    nuts_samples: int = option(300, "NUTS draws kept per chain")
    nuts_warmup: int = option(300, "NUTS adaptation steps per chain")
    nuts_chains: int = option(2, "NUTS chains (at least 2, for R-hat)")
    amortization_steps: int = option(500, "Adam steps of the per-row refit")
    ppc: bool = option(True, "posterior and prior predictive checks (--no-ppc: skip)")
    ppc_rows: int = option(400, "test rows replicated by the predictive checks")
    ppc_draws: int = option(100, "replicate test sets drawn per predictive check")
    sample_quality: bool = option(
        True, "Fréchet distance and precision/recall of samples (--no-sample-quality: skip)"
    )
    quality_rows: int = option(2000, "test images compared in the sample-quality table")
    sbc_simulations: int = option(
        DEFAULT_SIMULATIONS, "N, simulations (z, x) from the model for SBC of q (0: skip)"
    )
    sbc_draws: int = option(DEFAULT_DRAWS, "L, draws of q(z|x) per SBC simulation")
    ece_bins: int = option(DEFAULT_BINS, "confidence bins of the calibration error of q(y|x)")
    seed: int = option(0, "random seed")

    def __post_init__(self):
        for name in ("iwae_samples", "nuts_points", "amortization_points"):
            if getattr(self, name) < 0:
                flag = "--" + name.replace("_", "-")
                raise PyrovaeError(f"{flag} must be 0 (skip) or more, got {getattr(self, name)}")
        if self.iwae_samples == 1:
            raise PyrovaeError(
                "--iwae-samples 1 is the ELBO itself and gives no Pareto k-hat (PSIS needs many "
                "weights per row); give 2 or more (1000 by default), or 0 to skip"
            )
        if self.nuts_points and self.nuts_chains < 2:
            raise PyrovaeError(
                f"--nuts-chains must be at least 2 (for R-hat), got {self.nuts_chains}"
            )
        for name in ("nuts_samples", "nuts_warmup", "amortization_steps"):
            if getattr(self, name) < 1:
                flag = "--" + name.replace("_", "-")
                raise PyrovaeError(f"{flag} must be at least 1, got {getattr(self, name)}")
        for name, least in (("ppc_rows", 2), ("ppc_draws", 1), ("quality_rows", 10)):
            if getattr(self, name) < least:
                flag = "--" + name.replace("_", "-")
                raise PyrovaeError(f"{flag} must be at least {least}, got {getattr(self, name)}")
        if self.max_points is not None and self.max_points < 1:
            raise PyrovaeError(f"--max-points must be at least 1, got {self.max_points}")
        check_sizes(self.sbc_simulations, self.sbc_draws)
        if self.ece_bins < 1:
            raise PyrovaeError(f"--ece-bins must be at least 1, got {self.ece_bins}")


def diagnose(
    run,
    *,
    device: str = "cpu",
    write: bool = True,
    progress: bool = False,
    trust_code: bool = False,
    **options,
) -> dict:
    """Posterior diagnostics of a trained run on its test rows; the numbers as a dict.

    :param run: a :class:`pyrovae.Run` or the path of a run folder.
    :param options: fields of :class:`DiagnosisOptions` (``iwae_samples=1000``, ...).
    :param write: write ``diagnostics.json``, ``posterior.nc`` and the figures into the run
        folder.
    :param trust_code: for a folder, as in :func:`pyrovae.load_run`.

    It runs on one PyTorch intra-op thread (restored after; see
    :func:`~pyrovae.inference.diagnostics.structure.one_thread`).
    On Linux with glibc this raises the process's malloc mmap and trim thresholds (see
    :mod:`pyrovae.inference.diagnostics.memory`): freed memory then stays in the heap.
    """

    unknown = sorted(set(options) - {f.name for f in fields(DiagnosisOptions)})
    if unknown:
        raise PyrovaeError(f"diagnose has no option {unknown[0]!r}")
    settings = DiagnosisOptions(**options)
    run = as_run(run, device, trust_code)
    if write:
        check_sources(run.folder.path)
        check_writable(run.folder.path, "diagnostics.json")
    retain_freed_memory()
    with (
        frozen_parameters(run.model, run.guide),
        evaluation_mode(run.model, run.guide),
        one_thread(),
    ):
        return _diagnose(run, settings, write=write, progress=progress)


def _diagnose(run, opts: DiagnosisOptions, *, write: bool, progress: bool) -> dict:

    pyro.set_rng_seed(opts.seed)
    generator = np.random.default_rng(opts.seed)
    x = run.data.x_test
    if opts.max_points is not None:
        x = x[: opts.max_points]
    device = device_of(run.model, run.guide)
    x = x.to(device)
    if x.shape[0] == 0:
        raise PyrovaeError("the run has no test rows to diagnose")
    structure = inspect_pair(run.model, run.guide, x)
    globals_drawn = global_draws(run.guide, structure, x)
    plug_in = {name: drawn.mean(0) for name, drawn in globals_drawn.items()}
    model, guide = condition_on_globals(run.model, run.guide, plug_in)
    fixed = plug_in
    seconds: dict[str, float] = {}
    notes: list[str] = []
    out: dict = {
        "run": str(run.folder.path),
        "model": run.summary.get("model", run.config.model),
        "guide": run.summary.get("guide", run.config.guide),
        "dataset": run.data.dataset.name,
        "rows": "test",
        "epoch": run.epoch,
        "checkpoint": _checkpoint_stamp(run),
        "num_points": int(x.shape[0]),
        "units": UNITS,
        "seed": opts.seed,
        "latent_sites": list(structure.local_sites),
        "global_sites": list(structure.global_sites),
    }
    if structure.global_sites:
        notes.append(
            f"global sites {list(structure.global_sites)} are fixed at their mean under q: "
            "every per-row number is conditional on that plug-in value"
        )
    if structure.enumerated_sites:
        notes.append(
            f"enumerated sites {list(structure.enumerated_sites)} are summed out exactly inside "
            "each importance weight, so the K = 1 estimate is above the ELBO"
        )

    weights = khat = None
    if opts.iwae_samples and not structure.guide_is_density:
        notes.append(
            f"no IWAE bound or k-hat: the guide draws {list(structure.point_mass_sites)} from a "
            "point mass (Delta), which has no density to weight by"
        )
    elif opts.iwae_samples:
        with _timed(seconds, "iwae"):
            weights = importance_weights(
                model, guide, x, opts.iwae_samples, structure, progress=progress
            )
        out.update(_iwae_numbers(weights))
        out["importance_weights_mode"] = "vectorized" if weights.vectorized else "particle loop"
        if not weights.vectorized:
            notes.append(
                "the pair does not broadcast over a sample dimension: importance weights (and "
                "the amortization refit's particles) drawn one particle a pass "
                f"({opts.iwae_samples} passes over each chunk of rows instead of one)"
            )
        with _timed(seconds, "pareto_k"):
            khat = pareto_khat(weights.log_weights)
        out.update(khat_summary(khat))
    for key in (
        "iwae_log_likelihood",
        "iwae_standard_error",
        "iwae_by_k",
        "importance_weights_mode",
    ):
        out.setdefault(key, None)
    for key in ("pareto_k_share_above_0.5", "pareto_k_share_above_0.7"):
        out.setdefault(key, None)

    with _timed(seconds, "latents"):
        health = latent_health(model, guide, x, structure)
    out.update(
        kl_per_dim=health.kl_per_dim,
        kl_method=health.kl_method,
        kl_total=health.kl_total,
        active_units=health.active_units,
        latent_dims=health.latent_dims,
        active_unit_variance=health.mean_variance,
        collapse_warning=health.collapse_warning,
    )

    reference = None
    out.update(nuts_max_rhat=None, nuts_min_ess=None)
    if opts.nuts_points and structure.sampled_discrete_sites:
        notes.append(
            f"no NUTS reference: the guide samples the discrete sites "
            f"{list(structure.sampled_discrete_sites)}, which NUTS can neither move nor sum out"
        )
    elif opts.nuts_points:
        rows = _spread_rows(khat, opts.nuts_points, x.shape[0], generator)
        with _timed(seconds, "nuts"):
            reference = nuts_reference(
                model,
                guide,
                x,
                rows,
                structure,
                num_chains=opts.nuts_chains,
                num_samples=opts.nuts_samples,
                warmup_steps=opts.nuts_warmup,
                seed=opts.seed,
                jit_compile=True,
                progress=progress,
            )
        out.update(reference.summary())

    out["amortization_gap"] = None
    if opts.amortization_points and not structure.guide_is_density:
        notes.append("no amortization gap: a point-mass guide has no ELBO to improve")
    elif opts.amortization_points:
        rows = sorted(
            generator.choice(x.shape[0], min(opts.amortization_points, x.shape[0]), replace=False)
        )
        with _timed(seconds, "amortization"):
            try:
                gap = amortization_gap(
                    model,
                    guide,
                    x,
                    [int(r) for r in rows],
                    structure,
                    steps=opts.amortization_steps,
                    eval_samples=max(opts.iwae_samples, 100),
                    progress=progress,
                )
                out.update(gap.summary())
            except PyrovaeError as exc:
                notes.append(f"no amortization gap: {exc}")
    check = None
    if opts.ppc:
        with _timed(seconds, "ppc"):
            check = criticism.run_predictive_check(
                run, model, guide, x, structure, opts.ppc_rows, opts.ppc_draws
            )
        out.update(check.summary())
    quality = None
    skip = criticism.sample_quality_skip(run, min(opts.quality_rows, x.shape[0]))
    if opts.sample_quality and skip:
        notes.append(skip)
    elif opts.sample_quality:
        with _timed(seconds, "sample_quality"):
            numbers, quality_notes = criticism.run_sample_quality(
                run, model, guide, x, structure, opts.quality_rows, opts.seed
            )
        out.update(numbers)
        notes.extend(quality_notes)
        quality = numbers["sample_quality"]

    calibration = None
    out.update(sbc_verdict=None, sbc_min_p_value=None)
    if opts.sbc_simulations:
        with _timed(seconds, "sbc"):
            try:
                calibration = simulation_based_calibration(
                    run.model,
                    guide,
                    x,
                    structure,
                    simulations=opts.sbc_simulations,
                    draws=opts.sbc_draws,
                    seed=opts.seed,
                    fixed=fixed,
                )
            except PyrovaeError as exc:
                notes.append(f"no SBC: {exc}")
        if calibration is not None:
            out.update(calibration.summary())
            notes += [f"SBC: {note}" for note in calibration.notes]

    calibrated_classes = None
    out["ece"] = None
    y = run.data.y_test
    if y is not None and opts.max_points is not None:
        y = y[: opts.max_points]
    if y is not None:
        with _timed(seconds, "ece"):
            sites = label_sites(model, guide, x, y.to(device), structure)
            if sites:
                site, probs = next(iter(sites.items()))
                calibrated_classes = reliability(probs, y, site=site, bins=opts.ece_bins)
                out.update(calibrated_classes.summary())
    out["notes"] = notes
    out["seconds"] = seconds
    if write:
        extra = criticism.write_criticism(run.folder.path, check, quality)
        out["files"] = _write(
            run, out, weights, khat, health, reference, globals_drawn, extra,
            calibration, calibrated_classes,
        )  # fmt: skip
    return out


def _iwae_numbers(weights) -> dict:
    k_max = weights.num_samples
    ks = sorted({k for k in DEFAULT_KS if k < k_max} | {k_max})
    by_k = {}
    for k in ks:
        per_row = weights.iwae(k)
        by_k[str(k)] = {"estimate": float(per_row.mean()), "standard_error": _se(per_row)}
    per_row = weights.iwae()
    return {
        "iwae_samples": k_max,
        "iwae_log_likelihood": float(per_row.mean()),
        "iwae_standard_error": _se(per_row),
        "iwae_by_k": by_k,
        "elbo_monte_carlo": float(weights.elbo.mean()),
        "elbo_monte_carlo_standard_error": _se(weights.elbo),
    }


def _se(values: torch.Tensor) -> float:
    n = values.numel()
    return float(values.std() / math.sqrt(n)) if n > 1 else math.nan


def _write(
    run,
    out: dict,
    weights,
    khat,
    health,
    reference,
    globals_drawn,
    extra=(),
    calibration=None,
    classes=None,
) -> list[str]:

    folder = run.folder.path
    written = list(extra)
    if khat is not None:
        written.append(figures.plot_khat(khat, folder / DIAGNOSTIC_FIGURES["pareto_k"]))
        by_k = out["iwae_by_k"]
        written.append(
            figures.plot_iwae_vs_k(
                [int(k) for k in by_k],
                [v["estimate"] for v in by_k.values()],
                [v["standard_error"] for v in by_k.values()],
                folder / DIAGNOSTIC_FIGURES["iwae_vs_k"],
                elbo=run.summary.get("test_elbo"),
            )
        )
    if any(v is not None for v in health.kl_per_dim.values()):
        written.append(
            figures.plot_kl_per_dim(
                health.kl_per_dim, health.mean_variance, folder / DIAGNOSTIC_FIGURES["kl_per_dim"]
            )
        )
    if reference is not None:
        site = next(iter(reference.nuts))
        written.append(
            figures.plot_nuts_vs_q(
                reference.nuts[site],
                reference.guide[site],
                reference.rows,
                folder / DIAGNOSTIC_FIGURES["nuts_vs_q"],
                site=site,
            )
        )
    if calibration is not None:
        written.append(
            figures.plot_sbc_ecdf(
                calibration.values,
                [t.name for t in calibration.tests],
                [t.verdict for t in calibration.tests],
                [calibration.bands[_band_key(t, calibration)] for t in calibration.tests],
                folder / DIAGNOSTIC_FIGURES["sbc"],
                simulations=calibration.simulations,
                draws=calibration.draws,
            )
        )
    if classes is not None:
        written.append(
            figures.plot_reliability(
                classes.edges,
                classes.counts,
                classes.bin_accuracy,
                classes.bin_confidence,
                folder / DIAGNOSTIC_FIGURES["reliability"],
                ece=classes.ece,
                site=classes.site,
            )
        )
    if weights is not None or reference is not None or globals_drawn:
        written.append(
            _write_inference_data(folder / "posterior.nc", weights, khat, reference, globals_drawn)
        )
    names = [Path(p).name for p in written]
    atomic_write_text(
        folder / "diagnostics.json",
        json.dumps(json_ready({**out, "files": names}), indent=2) + "\n",
    )
    write_report(folder)  # now with the diagnostics
    return names + ["diagnostics.json"]


def _band_key(test, calibration) -> int | None:
    """The key of ``calibration.bands`` a test used: L + 1 rank values, or None for PIT."""
    return None if test.kind == "pit" else calibration.draws + 1


def _write_inference_data(path: Path, weights, khat, reference, globals_drawn=None) -> Path:
    """``posterior.nc``: NUTS draws (``posterior``, ``sample_stats``), the guide's draws for
    the same rows (``approximate_posterior``), the guide's draws of the global sites
    (``global_posterior``: one chain of draws, a variable per site) and per-row importance
    results (``importance``: ``log_weights`` (point, sample), ``pareto_k``, ``iwae``,
    ``elbo``)."""

    az = import_arviz()
    idata = reference.inference_data() if reference is not None else az.InferenceData()
    if globals_drawn:
        drawn = {name: d.detach().cpu().double().numpy()[None] for name, d in globals_drawn.items()}
        dims = {name: [f"{name}_dim_{i}" for i in range(d.ndim - 2)] for name, d in drawn.items()}
        group = az.convert_to_dataset(drawn, dims=dims)
        group.attrs["description"] = "draws of the global latent sites from the guide q"
        idata.add_groups({"global_posterior": group}, warn_on_custom_groups=False)
    if weights is not None:
        n, k = weights.log_weights.shape
        importance = xr.Dataset(
            {
                "log_weights": (("point", "sample"), weights.log_weights.float().numpy()),
                "pareto_k": (("point",), khat),
                "iwae": (("point",), weights.iwae().numpy()),
                "elbo": (("point",), weights.elbo.numpy()),
            },
            coords={"point": np.arange(n), "sample": np.arange(k)},
            attrs={"units": "nats", "description": "log p(x, z) - log q(z | x), z ~ q"},
        )
        idata.add_groups({"importance": importance}, warn_on_custom_groups=False)
    atomic_write_named(path, idata.to_netcdf)
    return path


def one_line_summary(out: dict) -> str:
    """The headline numbers of :func:`diagnose` on one line."""
    parts = []
    if out.get("iwae_log_likelihood") is not None:
        parts.append(
            f"IWAE (K={out['iwae_samples']}) {out['iwae_log_likelihood']:.3f} "
            f"+- {out['iwae_standard_error']:.3f} nats/example"
        )
        parts.append(f"k-hat > 0.7 for {out['pareto_k_share_above_0.7']:.1%} of rows")
    if out.get("latent_dims"):  # continuous dimensions only
        parts.append(f"{out['active_units']}/{out['latent_dims']} active units")
    if out.get("amortization_gap") is not None:
        parts.append(f"amortization gap {out['amortization_gap']:.3f} nats")
    if out.get("nuts_max_rhat") is not None:
        parts.append(f"NUTS max R-hat {out['nuts_max_rhat']:.3f}")
    if out.get("ppc_p_values"):
        failed = out["ppc_failed"]
        parts.append(
            f"PPC: {len(failed)} of {len(out['ppc_p_values'])} statistics fail"
            + (f" ({', '.join(failed)})" if failed else "")
        )
    if out.get("sample_quality"):
        prior, floor = (
            out["sample_quality"]["prior_samples"],
            out["sample_quality"]["test_vs_train"],
        )
        parts.append(
            f"prior samples: Fréchet distance {prior['frechet_distance']:.2f} "
            f"(train vs test {floor['frechet_distance']:.2f}), precision {prior['precision']:.2f}, "
            f"recall {prior['recall']:.2f}"
        )
    if out.get("sbc_verdict") is not None:
        parts.append(f"SBC: {out['sbc_verdict']}")
    if out.get("ece") is not None:
        parts.append(f"ECE of q({out['ece_site']}|x) {out['ece']:.3f}")
    return "; ".join(parts)
