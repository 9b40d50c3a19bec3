"""The contract between the runner and a model/guide pair, checked on one real batch.

Before training, the guide and the model (replayed on the guide's draws) are traced once on
the first training batch. Every way a hand-written pair commonly breaks the contract ends
here in a one-line error that names the site, the shapes at the real batch size and the fix:

- a program that raises (wrong network width, a typo): its exception, on one line, with the
  file and line in the user's code;
- a distribution whose batch shape a ``pyro.plate`` cannot broadcast, or whose per-row
  dimensions are not declared an event (``.to_event(1)`` missing);
- an observed ``x`` outside any ``pyro.plate`` over the rows (a missing plate), or no site
  that observes ``x`` at all (``obs=x`` missing, ``x`` only recorded with
  ``pyro.deterministic``, or observed in another shape);
- latent sites whose names, or whose shapes, differ between model and guide;
- an autoguide over a per-row latent, which cannot amortize over rows;
- data outside the support of the distribution that observes them.

:func:`observation` reads the distribution that observes ``x``, so that the data can be
prepared for it (binarized for a Bernoulli, left alone for a Normal).
"""

import re
import traceback
from dataclasses import dataclass
from pathlib import Path

import pyro
import pyro.distributions as dist
import pyro.poutine as poutine
import torch
from pyro.poutine.util import prune_subsample_sites, site_is_subsample
from torch.distributions import constraints

from pyrovae.errors import PyrovaeError
from pyrovae.inference.autoguides import check_no_local_autoguide

_PLATE_MISMATCH = re.compile(
    r"Shape mismatch inside plate\('(?P<plate>[^']*)'\) at site (?P<site>\S+) dim "
    r"(?P<dim>-?\d+), (?P<plate_size>\d+) vs (?P<got>\d+)"
)
_LIBRARIES = ("/pyro/", "/torch/", "/pyrovae/", "/site-packages/", "/contextlib.py")


def one_line(exc: BaseException) -> str:
    """An exception's message without Pyro's trace-shape table, on one line."""
    text = str(exc).split("Trace Shapes:")[0]
    text = " ".join(line.strip() for line in text.splitlines() if line.strip())
    return text or type(exc).__name__


def _where(exc: BaseException) -> str:
    """`` (file.py:line)`` of the innermost frame in user code, or ''."""
    for frame in reversed(traceback.extract_tb(exc.__traceback__)):
        if not any(part in frame.filename.replace("\\", "/") for part in _LIBRARIES):
            return f" ({Path(frame.filename).name}:{frame.lineno})"
    return ""


def _run_failed(which: str, exc: BaseException, rows: int) -> PyrovaeError:
    match = _PLATE_MISMATCH.search(str(exc))
    if match:
        site, plate = match["site"].strip("'\""), match["plate"]
        return PyrovaeError(
            f"site {site!r} in the {which}: its distribution has size {match['got']} at dim "
            f"{match['dim']}, where pyro.plate({plate!r}) puts {match['plate_size']} rows; "
            "declare the per-row dimensions as an event with .to_event(1) (e.g. "
            "dist.Normal(loc, scale).to_event(1))"
        )
    cause = exc.__cause__ or exc
    return PyrovaeError(
        f"the {which} failed on a batch of {rows} rows{_where(cause)}: "
        f"{type(cause).__name__}: {one_line(cause)}"
    )


def _sample_sites(trace) -> dict:
    return {
        name: site
        for name, site in trace.nodes.items()
        if site["type"] == "sample" and not site_is_subsample(site)
    }


def _latent_names(trace) -> list[str]:
    return [
        name
        for name, site in _sample_sites(trace).items()
        if not site["is_observed"] and not site["infer"].get("is_auxiliary", False)
    ]


def trace_programs(model, guide, *args):
    """``(model_trace, guide_trace)`` of one guide draw and the model replayed on it, with
    one-line errors for programs that raise."""
    rows = args[0].shape[0]
    try:
        with poutine.block():
            guide_trace = poutine.trace(guide).get_trace(*args)
    except Exception as exc:
        raise _run_failed("guide", exc, rows) from exc
    try:
        with poutine.block():
            replayed = poutine.replay(model, trace=guide_trace)
            model_trace = poutine.trace(replayed).get_trace(*args)
    except Exception as exc:
        _compare_latent_shapes(model, guide_trace, args)
        raise _run_failed("model", exc, rows) from exc
    return prune_subsample_sites(model_trace), prune_subsample_sites(guide_trace)


def _compare_latent_shapes(model, guide_trace, args) -> None:
    """When the replayed model fails, a latent whose shape differs from the model's own
    draw (the model run alone) is the likely cause: say so."""
    try:
        with poutine.block(), torch.no_grad():
            prior_trace = poutine.trace(model).get_trace(*args)
    except Exception:
        return
    for name in _latent_names(guide_trace):
        site = _sample_sites(prior_trace).get(name)
        if site is None or site["is_observed"]:
            continue
        ours, theirs = tuple(guide_trace.nodes[name]["value"].shape), tuple(site["value"].shape)
        if ours != theirs:
            raise PyrovaeError(
                f"site {name!r}: the guide draws values of shape {ours} but the model's "
                f"distribution at {name!r} has shape {theirs}; make the latent widths agree"
            )


def observes(site) -> bool:
    """Whether a sample site observes data (``obs=``). Pyro records ``pyro.deterministic``
    as an observed Delta site too, but such a site only records a value: it observes
    nothing."""
    return bool(site["is_observed"]) and not site["infer"].get("_deterministic", False)


def _shape(value) -> tuple | None:
    return tuple(value.shape) if isinstance(value, torch.Tensor) else None


def observed_site(model_trace, x: torch.Tensor) -> str:
    """The name of the sample site that observes ``x`` (``obs=`` a value of x's shape)."""
    sites = _sample_sites(model_trace)
    for name, site in reversed(sites.items()):
        if observes(site) and _shape(site["value"]) == tuple(x.shape):
            return name
    _check_unobserved_data(model_trace, x)
    observed = [
        f"{name!r} of shape {_shape(site['value'])}"
        for name, site in sites.items()
        if observes(site)
    ]
    what = f"; it observes {', '.join(observed)}" if observed else ""
    recorded = [
        name
        for name, site in sites.items()
        if site["infer"].get("_deterministic") and _shape(site["value"]) == tuple(x.shape)
    ]
    if recorded:
        raise PyrovaeError(
            f"the model only records x at site {recorded[0]!r} with pyro.deterministic, which "
            f"observes nothing{what}; x must be observed with obs=x: "
            f"pyro.sample({recorded[0]!r}, likelihood, obs=x)"
        )
    raise PyrovaeError(
        f"the model has no sample site that observes x (shape {tuple(x.shape)}){what}; add "
        "obs=x to the site of the data, e.g. pyro.sample('x', likelihood, obs=x)"
    )


def row_frames(site, rows: int) -> list:
    """The vectorized plates of ``site`` over the ``rows`` rows of the data: of that size, or
    of a size Pyro infers (``pyro.plate("data")``) that is ``rows`` in the site's batch."""
    batch_shape = getattr(site["fn"], "batch_shape", torch.Size())
    frames = []
    for f in site["cond_indep_stack"]:
        if not f.vectorized or f.dim is None:
            continue
        inferred = f.size in (None, -1) and -f.dim <= len(batch_shape)
        if f.size == rows or (inferred and batch_shape[f.dim] == rows):
            frames.append(f)
    return frames


def _check_data_plate(model_trace, name: str, rows: int) -> None:
    if rows > 1 and not row_frames(model_trace.nodes[name], rows):
        raise PyrovaeError(
            f"site {name!r} observes the {rows} rows of x outside any pyro.plate over them; "
            "put the per-row statements of model and guide in "
            "`with pyro.plate('data', x.shape[0]):`"
        )


def _check_batch_shapes(trace, which: str) -> None:
    """Every batch dimension of a site must be a plate's; else its event dims are missing."""
    for name, site in _sample_sites(trace).items():
        fn = site["fn"]
        batch_shape = getattr(fn, "batch_shape", torch.Size())
        plates = {f.dim for f in site["cond_indep_stack"] if f.vectorized and f.dim is not None}
        for dim in range(-len(batch_shape), 0):
            if batch_shape[dim] != 1 and dim not in plates:
                raise PyrovaeError(
                    f"site {name!r} in the {which} has batch shape {tuple(batch_shape)} but no "
                    f"pyro.plate at dim {dim}; put the rows in pyro.plate('data', x.shape[0]) "
                    "and declare the per-row dimensions an event with .to_event(1)"
                )


def _check_unobserved_data(model_trace, x: torch.Tensor, skip=()) -> None:
    """A latent site of the model with x's shape is a site of the data missing ``obs=x``."""
    for name in _latent_names(model_trace):
        value = model_trace.nodes[name]["value"]
        if name not in skip and isinstance(value, torch.Tensor) and value.shape == x.shape:
            raise PyrovaeError(
                f"the model samples site {name!r} with the shape of x {tuple(x.shape)} but "
                f"does not observe it; add obs=x: pyro.sample({name!r}, ..., obs=x)"
            )


def _check_names(model_trace, guide_trace, x: torch.Tensor) -> list[str]:
    in_guide = set(_latent_names(guide_trace))
    in_model = set(_latent_names(model_trace))
    _check_unobserved_data(model_trace, x, skip=in_guide)
    if in_guide - in_model:
        raise PyrovaeError(
            f"the guide samples {sorted(in_guide - in_model)} but the model has no such latent "
            f"site (model latents: {sorted(in_model)}); give the sites matching names"
        )
    if in_model - in_guide:
        raise PyrovaeError(
            f"the model's latent sites {sorted(in_model - in_guide)} are not sampled by the "
            f"guide (guide samples: {sorted(in_guide)}); give the sites matching names"
        )
    if not in_guide:
        raise PyrovaeError(
            "the model and guide have no latent sample site; sample the code in both, e.g. "
            "pyro.sample('z', dist.Normal(loc, scale).to_event(1))"
        )
    return _latent_names(guide_trace)


def _check_log_probs(trace, which: str) -> None:
    try:
        trace.compute_log_prob()
    except ValueError as exc:
        message = one_line(exc)
        site = re.search(r"at site '([^']+)'", message)
        where = f"site {site[1]!r} in the {which}" if site else f"the {which}"
        if "support" in message:
            raise PyrovaeError(
                f"{where}: a value lies outside the support of its distribution ({message}); "
                "choose a distribution whose support holds the data, or transform the data"
            ) from exc
        raise PyrovaeError(f"{where}: {message}") from exc


@dataclass(frozen=True)
class PairInfo:
    """What one checked trace of a pair tells the runner.

    :param latent_sites: the latent site names, in the guide's order.
    :param max_plate_nesting: plate dimensions the programs nest (for Pyro's ELBOs).
    :param enumerated_sites: guide sites configured for enumeration (need ``--elbo enum``).
    :param elbo: the one-draw ELBO estimate of the batch, nats per row (log p - log q).
    """

    latent_sites: list[str]
    max_plate_nesting: int
    enumerated_sites: list[str]
    elbo: float


def check_pair(model, guide, *args) -> PairInfo:
    """Trace both programs on one batch ``args`` (``x: (B, D)`` first) and check the contract
    of the module docstring."""
    x = args[0]
    with pyro.validation_enabled(True):
        model_trace, guide_trace = trace_programs(model, guide, *args)
        names = _check_names(model_trace, guide_trace, x)
        name = observed_site(model_trace, x)
        _check_data_plate(model_trace, name, x.shape[0])
        plates = {f.name for f in row_frames(model_trace.nodes[name], x.shape[0])}
        check_no_local_autoguide(guide, guide_trace, model_trace, plates)
        _check_batch_shapes(guide_trace, "guide")
        _check_batch_shapes(model_trace, "model")
        _check_log_probs(guide_trace, "guide")
        _check_log_probs(model_trace, "model")
    dims = [
        -f.dim
        for trace in (model_trace, guide_trace)
        for site in _sample_sites(trace).values()
        for f in site["cond_indep_stack"]
        if f.vectorized and f.dim is not None
    ]
    enumerated = [
        n for n, site in _sample_sites(guide_trace).items() if site["infer"].get("enumerate")
    ]
    elbo = float((model_trace.log_prob_sum() - guide_trace.log_prob_sum()).detach()) / x.shape[0]
    return PairInfo(names, max([1, *dims]), enumerated, elbo)


_DISTRIBUTION_PACKAGES = ("pyro.distributions", "torch.distributions")
# Base classes name no family: a new distribution derived from them reports its own name.
_BASES = {"TorchDistribution", "TorchDistributionMixin", "Distribution", "ExponentialFamily"}


def observation(model, x: torch.Tensor) -> tuple[str, str]:
    """``(name, support)`` of the distribution with which ``model`` observes ``x: (n, D)``.

    ``name`` is the class of the distribution, or of the nearest Pyro / torch distribution
    it derives from. ``support`` is ``"binary"`` (0/1: a Bernoulli), ``"levels"`` (a discrete
    grid in [0, 1], e.g. 8-bit pixels), ``"unit"`` (values in [0, 1]), ``"real"`` or
    ``"other"``; the model runs once on ``x`` without argument
    checks (gray levels under a Bernoulli are what binarization is for).
    """
    try:
        with poutine.block(), pyro.validation_enabled(False), torch.no_grad():
            trace = poutine.trace(model).get_trace(x)
    except Exception as exc:
        raise _run_failed("model", exc, x.shape[0]) from exc
    fn = trace.nodes[observed_site(trace, x)]["fn"]
    while isinstance(fn, dist.Independent | dist.MaskedDistribution | dist.ExpandedDistribution):
        fn = fn.base_dist
    support = _support_kind(fn.support)
    # A subclass (e.g. one with a faster log_prob) reports the Pyro or torch family it is.
    families = (
        c
        for c in type(fn).__mro__
        if c.__module__.startswith(_DISTRIBUTION_PACKAGES) and c.__name__ not in _BASES
    )
    return next(families, type(fn)).__name__, support


def _support_kind(support) -> str:
    while isinstance(support, constraints.independent):
        support = support.base_constraint
    if support is constraints.boolean:
        return "binary"
    if support is constraints.unit_interval or (
        isinstance(support, constraints.interval)
        and float(support.lower_bound) == 0.0
        and float(support.upper_bound) == 1.0
    ):
        return "levels" if support.is_discrete else "unit"
    if support is constraints.real:
        return "real"
    return "other"
