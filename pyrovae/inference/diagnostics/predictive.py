"""Posterior and prior predictive checks of a pair on held-out rows, read from traces.

Replicates (Gelman, Meng and Stern, 1996), for ``x: (n, D)`` test rows and S draws:

- posterior predictive: ``z_s ~ q(z | x)``, ``x_rep_s ~ p(x | z_s)``, one replicate data set
  of n rows per draw s (q stands in for p(z | x));
- prior predictive: ``z_s ~ p(z)``, ``x_rep_s ~ p(x | z_s)``.

The replicates are drawn from the distribution at the model's observed site
(:func:`~pyrovae.inference.contract.observed_site`) in the trace of the model replayed on the
guide's draws. Pyro's ``Predictive`` is not used for the posterior predictive: at a site
with ``obs=x`` it returns the observed x itself, not a draw of it.

Test statistics ``T`` of a set of n rows (:func:`statistics`): the mean intensity, the share
of pixels on (above 0.5), the correlation of horizontally and vertically neighboring pixels
(images only) and the mean intensity of each class (where labels exist). The posterior
predictive p-value of T is

    p = (1/S) sum_s 1[T(x_rep_s) >= T(x)],

the share of replicate data sets whose statistic is at least the observed one: near 0 or 1
the model fails to reproduce T (:data:`CHECK_LEVEL`). Per-pixel marginals are compared as
the difference of the replicates' and the data's mean of each pixel.
"""

from dataclasses import dataclass

import numpy as np
import pyro.poutine as poutine
import torch
from pyro.poutine.util import prune_subsample_sites

from pyrovae.errors import PyrovaeError
from pyrovae.inference.diagnostics.arviz_import import import_arviz
from pyrovae.inference.diagnostics.structure import PairStructure, with_particles

CHECK_LEVEL = 0.05
"""A statistic fails its check when its p-value is below CHECK_LEVEL / 2 or above
1 - CHECK_LEVEL / 2 (two-sided)."""
ON_THRESHOLD = 0.5
"""A pixel is on when its value exceeds this."""
PER_ROW = ("mean_intensity", "fraction_on")
"""The statistics that also have one value per row (drawn as histograms, and by ArviZ)."""


@dataclass
class Replicates:
    """S replicate data sets of n rows drawn from the model's observed site.

    :param samples: ``(S, n, D)`` draws ``x_rep ~ p(x | z_s)``.
    :param means: ``(S, n, D)`` the means of p(x | z_s) (decoder means), or None where the
        distribution has no mean.
    :param log_likelihood: ``(S, n)`` ``log p(x_i | z_s)`` of the observed rows, nats (the
        posterior predictive only; None for the prior's).
    :param vectorized: whether the pair broadcast over the S draws (else one pass a draw).
    """

    samples: torch.Tensor
    means: torch.Tensor | None
    log_likelihood: torch.Tensor | None
    vectorized: bool


def _obs_node(trace, structure: PairStructure) -> dict:
    trace = prune_subsample_sites(trace)
    if structure.obs_site not in trace.nodes:
        raise PyrovaeError(f"the model has no observed site {structure.obs_site!r}")
    return trace.nodes[structure.obs_site]


def _mean(fn) -> torch.Tensor | None:
    try:
        return fn.mean
    except (NotImplementedError, AttributeError):
        return None


def _one_pass(model, guide, x, structure: PairStructure, draws: int, prior: bool, particles):
    """``(samples, means, log_lik)`` of one trace with ``draws`` particles (vectorized) or
    one draw (``particles`` False); shapes ``(draws, n, D)``, ``(draws, n)``."""
    with poutine.block():
        if prior:
            program = poutine.uncondition(model)
            if particles:
                program = with_particles(program, draws, structure.particle_dim)
            trace = poutine.trace(program).get_trace(x)
        else:
            program = with_particles(guide, draws, structure.particle_dim) if particles else guide
            guide_trace = poutine.trace(program).get_trace(x)
            replayed = poutine.replay(model, trace=guide_trace)
            if particles:
                replayed = with_particles(replayed, draws, structure.particle_dim)
            trace = poutine.trace(replayed).get_trace(x)
    node = _obs_node(trace, structure)
    fn = node["fn"]
    shape = (draws, *x.shape)
    samples = node["value"] if prior else fn.sample()
    mean = _mean(fn)
    samples = samples.expand(shape)
    means = None if mean is None else mean.expand(shape)
    log_lik = None
    if not prior:
        log_lik = fn.log_prob(x).expand(draws, x.shape[0])
    return samples, means, log_lik


@torch.no_grad()
def replicate(
    model, guide, x: torch.Tensor, structure: PairStructure, draws: int, *, prior: bool = False
) -> Replicates:
    """``draws`` replicate data sets of the rows ``x: (n, D)``: from the posterior predictive
    (z ~ q(z|x)) or, with ``prior``, the prior predictive (z ~ p(z)). Global sites must be
    fixed by the caller (:func:`~pyrovae.inference.diagnostics.structure.condition_on_globals`).
    """
    if draws < 1:
        raise PyrovaeError(f"--ppc-draws must be at least 1, got {draws}")
    try:
        samples, means, log_lik = _one_pass(model, guide, x, structure, draws, prior, True)
        vectorized = tuple(samples.shape) == (draws, *x.shape)
    except (RuntimeError, ValueError, IndexError):
        vectorized = False
    if not vectorized:
        parts = [_one_pass(model, guide, x, structure, 1, prior, False) for _ in range(draws)]
        samples = torch.cat([p[0] for p in parts])
        means = None if parts[0][1] is None else torch.cat([p[1] for p in parts])
        log_lik = None if prior else torch.cat([p[2] for p in parts])
    return Replicates(
        samples=samples.float(),
        means=None if means is None else means.float(),
        log_likelihood=None if log_lik is None else log_lik.double(),
        vectorized=vectorized,
    )


def _neighbor_correlation(images: torch.Tensor, axis: int) -> torch.Tensor:
    """Pearson correlation of pixels and their right (axis -1) or lower (axis -2) neighbor,
    pooled over rows and positions: ``images (..., n, H, W)`` -> ``(...)``."""
    length = images.shape[axis]
    a = images.narrow(axis, 0, length - 1).flatten(-3)
    b = images.narrow(axis, 1, length - 1).flatten(-3)
    a = a - a.mean(-1, keepdim=True)
    b = b - b.mean(-1, keepdim=True)
    denominator = (a.square().sum(-1) * b.square().sum(-1)).sqrt()
    return (a * b).sum(-1) / denominator.clamp_min(1e-12)


def per_row_statistics(x: torch.Tensor) -> dict[str, torch.Tensor]:
    """``x: (..., n, D)`` -> each row's mean intensity and share of pixels on, ``(..., n)``."""
    x = x.double()
    return {"mean_intensity": x.mean(-1), "fraction_on": (x > ON_THRESHOLD).double().mean(-1)}


def statistics(
    x: torch.Tensor,
    image_shape: tuple[int, int] | None = None,
    labels: torch.Tensor | None = None,
    classes: int | None = None,
) -> dict[str, torch.Tensor]:
    """The test statistics T of the data sets ``x: (..., n, D)``, each ``(...)``.

    ``mean_intensity``: mean value over rows and pixels; ``fraction_on``: share of values
    above 0.5; ``neighbor_correlation_horizontal`` / ``_vertical``: Pearson correlation of
    neighboring pixels (when ``image_shape`` (H, W) or (C, H, W) is given, H, W >= 2; within
    each channel);
    ``mean_intensity_class_<k>``: mean intensity of the rows of label k (``labels: (n,)``).
    Constant data give a correlation of 0.
    """
    rows = per_row_statistics(x)
    out = {name: value.mean(-1) for name, value in rows.items()}
    if image_shape is not None and min(image_shape[-2:]) >= 2:
        # (..., n, C, H, W) colour images count each channel plane as an image of its own.
        images = x.double().reshape(*x.shape[:-1], -1, *image_shape[-2:]).flatten(-4, -3)
        out["neighbor_correlation_horizontal"] = _neighbor_correlation(images, -1)
        out["neighbor_correlation_vertical"] = _neighbor_correlation(images, -2)
    if labels is not None:
        labels = labels.to(x.device)
        for k in range(int(classes) if classes else int(labels.max()) + 1):
            chosen = labels == k
            if chosen.any():
                out[f"mean_intensity_class_{k}"] = rows["mean_intensity"][..., chosen].mean(-1)
    return out


def p_values(observed: dict[str, torch.Tensor], replicated: dict[str, torch.Tensor]) -> dict:
    """``P(T(x_rep) >= T(x))`` per statistic: the share of the S replicates ``(S,)`` whose
    statistic is at least the observed one ``()``."""
    return {name: float((replicated[name] >= observed[name]).double().mean()) for name in observed}


def check_passes(p_value: float, level: float = CHECK_LEVEL) -> bool:
    """Whether a p-value lies inside the two-sided acceptance band ``[level/2, 1 - level/2]``."""
    return level / 2 <= p_value <= 1 - level / 2


@dataclass
class PredictiveCheck:
    """Posterior (and prior) predictive checks of n test rows with S replicates each.

    :param observed: T(x) per statistic.
    :param posterior, prior: T(x_rep) ``(S,)`` per statistic (prior: None when skipped).
    :param pixel_difference: ``(D,)`` mean of the posterior replicates minus the data's mean,
        per pixel.
    :param pixel_p_values: ``(D,)`` posterior predictive p-value of each pixel's mean.
    """

    rows: int
    draws: int
    x: torch.Tensor
    observed: dict[str, float]
    posterior: dict[str, np.ndarray]
    prior: dict[str, np.ndarray] | None
    posterior_replicates: Replicates
    prior_replicates: Replicates | None
    pixel_difference: np.ndarray
    pixel_p_values: np.ndarray
    image_shape: tuple[int, int] | None

    @property
    def posterior_p_values(self) -> dict[str, float]:
        return {n: float((v >= self.observed[n]).mean()) for n, v in self.posterior.items()}

    @property
    def prior_p_values(self) -> dict[str, float] | None:
        if self.prior is None:
            return None
        return {n: float((v >= self.observed[n]).mean()) for n, v in self.prior.items()}

    def summary(self) -> dict:
        """The numbers for ``diagnostics.json``."""
        p = self.posterior_p_values
        failed = sorted(n for n, v in p.items() if not check_passes(v))
        extreme = ~(
            (self.pixel_p_values >= CHECK_LEVEL / 2) & (self.pixel_p_values <= 1 - CHECK_LEVEL / 2)
        )
        return {
            "ppc_rows": self.rows,
            "ppc_draws": self.draws,
            "ppc_observed": dict(self.observed),
            "ppc_replicated_mean": {n: float(v.mean()) for n, v in self.posterior.items()},
            "ppc_p_values": p,
            "ppc_prior_p_values": self.prior_p_values,
            "ppc_failed": failed,
            "ppc_pixel_max_abs_difference": float(np.abs(self.pixel_difference).max()),
            "ppc_pixel_share_failed": float(extreme.mean()),
        }


def predictive_check(
    model,
    guide,
    x: torch.Tensor,
    structure: PairStructure,
    *,
    draws: int = 100,
    prior: bool = True,
    image_shape: tuple[int, int] | None = None,
    labels: torch.Tensor | None = None,
    classes: int | None = None,
) -> PredictiveCheck:
    """Posterior (and, with ``prior``, prior) predictive checks of the rows ``x: (n, D)``
    with ``draws`` replicate data sets; see the module for the statistics and p-values."""
    if x.shape[0] < 2:
        raise PyrovaeError(f"--ppc-rows must be at least 2 (or 0: skip), got {x.shape[0]}")
    if image_shape is not None and int(np.prod(image_shape)) != x.shape[-1]:
        image_shape = None
    posterior = replicate(model, guide, x, structure, draws)
    observed = statistics(x, image_shape, labels, classes)
    replicated = statistics(posterior.samples, image_shape, labels, classes)
    prior_replicates = prior_stats = None
    if prior:
        prior_replicates = replicate(model, guide, x, structure, draws, prior=True)
        # Prior replicates are not tied to the test rows: no per-class statistics.
        prior_stats = statistics(prior_replicates.samples, image_shape)
    pixels_rep = posterior.samples.double().mean(1)  # (S, D): each replicate's pixel means
    pixels_obs = x.double().mean(0)
    return PredictiveCheck(
        rows=int(x.shape[0]),
        draws=draws,
        x=x.detach().float().cpu(),
        observed={n: float(v) for n, v in observed.items()},
        posterior={n: v.cpu().numpy() for n, v in replicated.items()},
        prior=None if prior_stats is None else {n: v.cpu().numpy() for n, v in prior_stats.items()},
        posterior_replicates=posterior,
        prior_replicates=prior_replicates,
        pixel_difference=(pixels_rep.mean(0) - pixels_obs).cpu().numpy(),
        pixel_p_values=(pixels_rep >= pixels_obs).double().mean(0).cpu().numpy(),
        image_shape=image_shape,
    )


def inference_data(check: PredictiveCheck):
    """The checks as ArviZ InferenceData: ``posterior_predictive`` (and ``prior_predictive``)
    hold ``x`` ``(chain=1, draw=S, row, pixel)`` and the per-row statistics ``(chain, draw,
    row)``; ``observed_data`` the test rows and their statistics; ``log_likelihood`` holds
    ``x``: ``log p(x_i | z_s)`` (nats), z_s ~ q(z | x_i). ``az.plot_ppc`` draws from it."""
    az = import_arviz()

    def group(replicates: Replicates) -> dict:
        stats = per_row_statistics(replicates.samples)
        out = {"x": replicates.samples.cpu().numpy()[None]}
        out.update({n: stats[n].cpu().numpy()[None] for n in PER_ROW})
        return out

    observed_stats = per_row_statistics(check.x)
    observed = {"x": check.x.numpy(), **{n: observed_stats[n].numpy() for n in PER_ROW}}
    dims = {"x": ["row", "pixel"], **{n: ["row"] for n in PER_ROW}}
    log_lik = check.posterior_replicates.log_likelihood
    return az.from_dict(
        posterior_predictive=group(check.posterior_replicates),
        prior_predictive=None if check.prior_replicates is None else group(check.prior_replicates),
        observed_data=observed,
        log_likelihood=None if log_lik is None else {"x": log_lik.cpu().numpy()[None]},
        dims=dims,
        coords={"row": np.arange(check.rows), "pixel": np.arange(check.x.shape[1])},
    )
