"""Figures of the posterior diagnostics (``scripts/diagnose.py``).

Same conventions as :mod:`pyrovae.plots.run`: arrays in; a builder ``xxx_figure(...) -> Figure``
and a writer ``plot_xxx(..., path) -> Path`` per figure; no pyplot state.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from pyrovae.errors import PyrovaeError
from pyrovae.plots.core import save_figure

KHAT_LINES = ((0.5, "tab:orange"), (0.7, "tab:red"))


def khat_figure(khat, title: str = "Pareto k-hat of each data point") -> Figure:
    """k-hat ``(N,)`` against the data point's index, with the 0.5 and 0.7 thresholds.

    Rows with constant weights (k-hat = -inf) are drawn at the bottom edge.
    """
    khat = np.asarray(khat, dtype=np.float64)
    if khat.ndim != 1 or khat.size == 0:
        raise PyrovaeError(f"khat must have shape (N,) with N >= 1, got {khat.shape}")
    finite = np.isfinite(khat)
    floor = min(float(khat[finite].min()) if finite.any() else 0.0, 0.0) - 0.1
    shown = np.where(finite, khat, floor)
    fig = Figure(figsize=(7, 3.6), layout="constrained")
    ax = fig.add_subplot()
    ax.scatter(np.arange(khat.size), shown, s=4, alpha=0.5, color="tab:blue", linewidths=0)
    for level, color in KHAT_LINES:
        share = float((khat > level).mean())
        ax.axhline(level, color=color, linestyle="--", label=f"k = {level}: {share:.1%} above")
    ax.set_xlabel("data point (test row)")
    ax.set_ylabel("Pareto k-hat")
    ax.set_title(title)
    ax.legend(loc="upper right")
    ax.grid(alpha=0.3)
    return fig


def plot_khat(khat, path, title: str = "Pareto k-hat of each data point") -> Path:
    """:func:`khat_figure` written as a PNG at ``path``; returns the Path."""
    return save_figure(khat_figure(khat, title), path)


def iwae_vs_k_figure(ks, estimates, standard_errors, elbo: float | None = None) -> Figure:
    """The IWAE estimate (nats/example) against the number of samples K, +-1 standard error.

    :param ks: sample counts ``(n,)``; ``estimates``, ``standard_errors``: ``(n,)`` nats.
    :param elbo: the run's test ELBO, drawn as a reference line.
    """
    ks, est, se = (np.asarray(a, dtype=np.float64) for a in (ks, estimates, standard_errors))
    if ks.ndim != 1 or ks.size == 0 or est.shape != ks.shape or se.shape != ks.shape:
        raise PyrovaeError("plot_iwae_vs_k needs ks, estimates and standard_errors of one length")
    fig = Figure(figsize=(6, 4), layout="constrained")
    ax = fig.add_subplot()
    ax.errorbar(ks, est, yerr=se, marker="o", capsize=3, label="IWAE bound, mean over points")
    if elbo is not None:
        ax.axhline(elbo, color="gray", linestyle=":", label=f"test ELBO of the run ({elbo:.2f})")
    ax.set_xscale("log")
    ax.set_xlabel("importance samples K")
    ax.set_ylabel("log p(x) estimate (nats / example)")
    ax.set_title("IWAE estimate against K")
    ax.grid(alpha=0.3, which="both")
    ax.legend(loc="lower right")
    return fig


def plot_iwae_vs_k(ks, estimates, standard_errors, path, elbo: float | None = None) -> Path:
    """:func:`iwae_vs_k_figure` written as a PNG at ``path``; returns the Path."""
    return save_figure(iwae_vs_k_figure(ks, estimates, standard_errors, elbo), path)


def kl_per_dim_figure(kl_per_dim: dict, mean_variance: dict, threshold: float = 0.01) -> Figure:
    """KL(q(z_d|x) || p(z_d)) per latent dimension (nats/example), largest first, one panel
    per site; bars of inactive dimensions (variance of E_q[z_d|x] <= threshold) are gray."""
    sites = [name for name, kl in kl_per_dim.items() if kl is not None]
    if not sites:
        raise PyrovaeError("plot_kl_per_dim needs at least one site with a per-dimension KL")
    fig = Figure(figsize=(7, 2.2 + 1.6 * len(sites)), layout="constrained")
    axes = fig.subplots(len(sites), 1, squeeze=False)[:, 0]
    for ax, name in zip(axes, sites, strict=True):
        kl = np.asarray(kl_per_dim[name], dtype=np.float64)
        order = np.argsort(-kl, kind="stable")
        variance = mean_variance.get(name)
        active = (
            np.ones(kl.size, bool)
            if variance is None or len(variance) != kl.size
            else np.asarray(variance) > threshold
        )
        colors = np.where(active[order], "tab:blue", "lightgray")
        ax.bar(np.arange(kl.size), kl[order], color=colors)
        ax.set_xticks(np.arange(kl.size), [str(i) for i in order], fontsize=7)
        ax.set_xlabel(f"dimension of {name!r} (sorted by KL)")
        ax.set_ylabel("KL (nats / example)")
        ax.set_title(
            f"{name}: KL per dimension, total {kl.sum():.2f} nats; "
            f"{int(active.sum())} of {kl.size} active (gray: inactive)"
        )
        ax.grid(alpha=0.3, axis="y")
    return fig


def plot_kl_per_dim(kl_per_dim: dict, mean_variance: dict, path, threshold: float = 0.01) -> Path:
    """:func:`kl_per_dim_figure` written as a PNG at ``path``; returns the Path."""
    return save_figure(kl_per_dim_figure(kl_per_dim, mean_variance, threshold), path)


def nuts_vs_q_figure(
    nuts: np.ndarray, guide: np.ndarray, rows: list[int], site: str = "z", max_dims: int = 4
) -> Figure:
    """Marginals of NUTS (filled) and q (line) for each chosen point (rows of panels) and
    the ``max_dims`` dimensions where q's mean is furthest from NUTS's (columns).

    :param nuts: NUTS draws ``(chains, draws, M, dims)``.
    :param guide: guide draws ``(1, S, M, dims)``.
    :param rows: the ``M`` points' indices in the test set, for the panel titles.
    """
    nuts = np.asarray(nuts, dtype=np.float64)
    guide = np.asarray(guide, dtype=np.float64)
    m = len(rows)
    p = nuts.reshape(-1, m, int(np.prod(nuts.shape[3:], dtype=int)))
    q = guide.reshape(-1, m, p.shape[-1])
    fig = Figure(figsize=(2.6 * min(max_dims, p.shape[-1]), 2.1 * m), layout="constrained")
    axes = fig.subplots(m, min(max_dims, p.shape[-1]), squeeze=False)
    for i, row in enumerate(rows):
        error = np.abs(q[:, i].mean(0) - p[:, i].mean(0)) / p[:, i].std(0)
        for j, d in enumerate(np.argsort(-error, kind="stable")[: axes.shape[1]]):
            ax = axes[i, j]
            lo = min(p[:, i, d].min(), q[:, i, d].min())
            hi = max(p[:, i, d].max(), q[:, i, d].max())
            bins = np.linspace(lo, hi, 40)
            ax.hist(p[:, i, d], bins=bins, density=True, alpha=0.5, color="tab:blue", label="NUTS")
            ax.hist(
                q[:, i, d], bins=bins, density=True, histtype="step", color="tab:red", label="q"
            )
            ax.set_title(f"point {row}, {site}[{d}]: {error[d]:.2f} sd", fontsize=8)
            ax.tick_params(labelsize=7)
            if i == 0 and j == 0:
                ax.legend(fontsize=7)
    fig.suptitle("p(z | x) by NUTS against q(z | x): the dimensions where they differ most")
    return fig


def plot_nuts_vs_q(
    nuts: np.ndarray, guide: np.ndarray, rows: list[int], path, site: str = "z", max_dims: int = 4
) -> Path:
    """:func:`nuts_vs_q_figure` written as a PNG at ``path``; returns the Path."""
    return save_figure(nuts_vs_q_figure(nuts, guide, rows, site, max_dims), path)


def ppc_statistics_figure(
    observed: dict, replicated: dict, p_values: dict, prior: dict | None = None
) -> Figure:
    """One panel per test statistic: a histogram of T over the posterior predictive
    replicates (and the prior predictive's, outlined), the observed T(x) as a line, and the
    p-value P(T(x_rep) >= T(x)) in the title.

    :param observed: ``name -> T(x)``; ``replicated``, ``prior``: ``name -> (S,)``.
    """
    names = list(observed)
    if not names:
        raise PyrovaeError("ppc_statistics_figure needs at least one statistic")
    columns = min(4, len(names))
    rows = -(-len(names) // columns)
    fig = Figure(figsize=(3.2 * columns, 2.5 * rows), layout="constrained")
    axes = fig.subplots(rows, columns, squeeze=False).ravel()
    for ax, name in zip(axes, names, strict=False):
        values = np.asarray(replicated[name], dtype=np.float64)
        ax.hist(values, bins=30, color="tab:blue", alpha=0.6, label="posterior predictive")
        if prior is not None and name in prior:
            ax.hist(
                np.asarray(prior[name], dtype=np.float64),
                bins=30,
                histtype="step",
                color="tab:gray",
                label="prior predictive",
            )
        ax.axvline(observed[name], color="tab:red", label="observed")
        ax.set_title(f"{name}\np = {p_values[name]:.2f}", fontsize=8)
        ax.tick_params(labelsize=7)
    for ax in axes[len(names) :]:
        ax.set_axis_off()
    axes[0].legend(fontsize=6)
    fig.suptitle("Test statistics of replicated test sets against the observed one")
    return fig


def plot_ppc_statistics(observed, replicated, p_values, path, prior=None) -> Path:
    """:func:`ppc_statistics_figure` written as a PNG at ``path``; returns the Path."""
    return save_figure(ppc_statistics_figure(observed, replicated, p_values, prior), path)


def ppc_pixels_figure(difference, image_shape: tuple[int, int] | None) -> Figure:
    """The per-pixel mean of the posterior predictive replicates minus the data's, as a
    heat map (``image_shape`` (H, W); (C, H, W): the C maps side by side) or against the
    pixel index (no image shape)."""
    difference = np.asarray(difference, dtype=np.float64).ravel()
    limit = max(float(np.abs(difference).max()), 1e-12)
    fig = Figure(figsize=(4.5, 3.8), layout="constrained")
    ax = fig.add_subplot()
    if image_shape is not None and int(np.prod(image_shape)) == difference.size:
        *channels, h, w = image_shape
        # Colour: the channels' maps side by side, each as a grey heat map.
        planes = difference.reshape(-1, h, w).transpose(1, 0, 2).reshape(h, -1)
        image = ax.imshow(planes, cmap="RdBu_r", vmin=-limit, vmax=limit)
        fig.colorbar(image, ax=ax, label="replicated minus observed mean")
        ax.set_xticks([])
        ax.set_yticks([])
    else:
        ax.bar(np.arange(difference.size), difference, color="tab:blue")
        ax.set_xlabel("feature")
        ax.set_ylabel("replicated minus observed mean")
    ax.set_title(f"Per-pixel marginals (largest gap {limit:.3f})")
    return fig


def plot_ppc_pixels(difference, image_shape, path) -> Path:
    """:func:`ppc_pixels_figure` written as a PNG at ``path``; returns the Path."""
    return save_figure(ppc_pixels_figure(difference, image_shape), path)


def sample_quality_figure(rows: dict) -> Figure:
    """The sample-quality table: one row per image set compared with the test images
    (``name -> {"frechet_distance", "precision", "recall"}``)."""
    if not rows:
        raise PyrovaeError("sample_quality_figure needs at least one row")
    fig = Figure(figsize=(6.5, 0.6 + 0.35 * (len(rows) + 1)), layout="constrained")
    ax = fig.add_subplot()
    ax.set_axis_off()
    cells = [
        [name, f"{v['frechet_distance']:.3g}", f"{v['precision']:.2f}", f"{v['recall']:.2f}"]
        for name, v in rows.items()
    ]
    table = ax.table(
        cellText=cells,
        colLabels=["against the test images", "Fréchet distance", "precision", "recall"],
        loc="center",
    )
    table.auto_set_column_width(list(range(4)))
    ax.set_title("Sample quality in the data set's own classifier features")
    return fig


def plot_sample_quality(rows: dict, path) -> Path:
    """:func:`sample_quality_figure` written as a PNG at ``path``; returns the Path."""
    return save_figure(sample_quality_figure(rows), path)


SBC_COLUMNS = 4


def sbc_ecdf_figure(
    values, names, verdicts, bands, simulations: int | None = None, draws: int | None = None
) -> Figure:
    """The SBC figure: per statistic, the ECDF of its fractional ranks (or PIT values) minus
    the uniform CDF, inside the simultaneous 95% band of a calibrated q (Säilynoja, Bürkner and
    Vehtari, 2022). An overconfident q (ranks at both ends) lifts the difference above zero
    and then below it, an underconfident one (ranks in the middle) the other way, a biased
    one to one side; the panel's title gives the verdict, red for a rejected statistic.

    Drawn from the band that the uniformity test used (an object with ``points``, ``lower``,
    ``upper``: shares ``(P,)``) rather than by ``az.plot_ecdf``, which recomputes its band per
    panel (seconds each without numba) and so could differ from the tested one.

    :param values: ``(N, m)`` fractional ranks or PIT values in (0, 1), one column per statistic.
    :param names: the m statistics' names; ``verdicts``: their verdicts; ``bands``: their bands.
    """
    values = np.asarray(values, dtype=np.float64)
    m = len(names)
    if values.ndim != 2 or values.shape[1] != m or len(verdicts) != m or len(bands) != m or not m:
        raise PyrovaeError(
            "plot_sbc_ecdf needs values (N, m) and m names, verdicts and bands, m >= 1"
        )
    cols = min(SBC_COLUMNS, m)
    rows = -(-m // cols)
    # A fixed grid, not the constrained layout: that one measures every tick label of every
    # panel at each draw, the bulk of this figure's cost at a dozen panels.
    fig = Figure(figsize=(2.6 * cols + 0.6, 2.0 * rows + 0.9))
    fig.subplots_adjust(
        left=0.6 / fig.get_figwidth() + 0.02,
        right=0.98,
        bottom=0.55 / fig.get_figheight(),
        top=1 - 0.55 / fig.get_figheight(),
        wspace=0.08,
        hspace=0.35,
    )
    axes = fig.subplots(rows, cols, squeeze=False, sharex=True, sharey=True)
    for k, ax in enumerate(axes.ravel()):
        if k >= m:
            ax.set_visible(False)
            continue
        band = bands[k]
        points = np.asarray(band.points, dtype=np.float64)
        ecdf = np.searchsorted(np.sort(values[:, k]), points, side="right") / values.shape[0]
        ax.fill_between(
            points,
            np.asarray(band.lower) - points,
            np.asarray(band.upper) - points,
            color="tab:blue",
            alpha=0.2,
            step="mid",
            label="95% simultaneous band",
        )
        ax.step(points, ecdf - points, where="mid", color="black", linewidth=1, label="ECDF - CDF")
        ax.axhline(0, color="gray", linewidth=0.5)
        color = "black" if verdicts[k] == "calibrated" else "tab:red"
        ax.set_title(f"{names[k]}: {verdicts[k]}", fontsize=8, color=color)
        ax.tick_params(labelsize=7)
        if k % cols == 0:
            ax.set_ylabel("ECDF - uniform CDF", fontsize=8)
        if k >= m - cols:
            ax.set_xlabel("fractional rank", fontsize=8)
            ax.xaxis.set_tick_params(labelbottom=True)
        if k == 0:
            ax.legend(fontsize=6, loc="lower left")
    sizes = "" if simulations is None else f": N = {simulations} simulations"
    sizes += "" if draws is None else f", L = {draws} draws of q each"
    fig.suptitle(f"Simulation-based calibration of q(z | x){sizes}", fontsize=10)
    return fig


def plot_sbc_ecdf(
    values, names, verdicts, bands, path, simulations: int | None = None, draws: int | None = None
) -> Path:
    """:func:`sbc_ecdf_figure` written as a PNG at ``path``; returns the Path."""
    return save_figure(sbc_ecdf_figure(values, names, verdicts, bands, simulations, draws), path)


def reliability_figure(
    edges, counts, bin_accuracy, bin_confidence, ece: float | None = None, site: str = "y"
) -> Figure:
    """Reliability diagram of a discrete q(y|x): the share correct against the mean confidence
    in each confidence bin (the diagonal is a calibrated classifier; below it, overconfident),
    and below it the rows per bin.

    :param edges: ``(B + 1,)`` bin edges; ``counts``, ``bin_accuracy``, ``bin_confidence``:
        ``(B,)`` (nan where a bin is empty).
    """
    edges, counts, acc, conf = (
        np.asarray(a, dtype=np.float64) for a in (edges, counts, bin_accuracy, bin_confidence)
    )
    b = counts.size
    if edges.shape != (b + 1,) or acc.shape != (b,) or conf.shape != (b,) or b == 0:
        raise PyrovaeError(
            "plot_reliability needs B + 1 edges and B counts, accuracies, confidences"
        )
    fig = Figure(figsize=(5, 5.5), layout="constrained")
    top, bottom = fig.subplots(2, 1, sharex=True, height_ratios=(3, 1))
    filled = counts > 0
    widths = np.diff(edges)
    top.bar(
        edges[:-1][filled],
        acc[filled],
        width=widths[filled],
        align="edge",
        color="tab:blue",
        edgecolor="white",
        label="share correct",
    )
    top.plot(
        conf[filled],
        acc[filled],
        "o",
        color="tab:red",
        markersize=3,
        label="(mean confidence, share correct)",
    )
    top.plot([0, 1], [0, 1], linestyle="--", color="gray", label="calibrated")
    top.set_ylabel("share correct in the bin")
    top.set_xlim(0, 1)
    top.set_ylim(0, 1)
    title = f"Reliability of q({site} | x) on the labelled test rows"
    if ece is not None:
        title += f"\nexpected calibration error {ece:.3f}"
    top.set_title(title, fontsize=10)
    top.legend(fontsize=7, loc="upper left")
    top.grid(alpha=0.3)
    bottom.bar(edges[:-1], counts, width=widths, align="edge", color="gray", edgecolor="white")
    bottom.set_xlabel(f"confidence, max_k q({site} = k | x)")
    bottom.set_ylabel("rows")
    bottom.set_yscale("symlog")
    return fig


def plot_reliability(
    edges, counts, bin_accuracy, bin_confidence, path, ece: float | None = None, site: str = "y"
) -> Path:
    """:func:`reliability_figure` written as a PNG at ``path``; returns the Path."""
    return save_figure(
        reliability_figure(edges, counts, bin_accuracy, bin_confidence, ece, site), path
    )
