"""The figures of a run folder: plain tensors in, a ``Figure`` or one PNG file out.

Each figure has a builder, ``xxx_figure(...) -> Figure``, and a writer with the same
arguments plus a destination, ``plot_xxx(..., path) -> Path``, which is
``save_figure(xxx_figure(...), path)``. Nothing here knows about models: callers compute
the tensors (``torch.Tensor`` or numpy arrays).

Data kinds, decided from ``image_shape`` and the width ``D`` of an ``(n, D)`` array:
``image_shape=(h, w)`` -> grayscale images, ``(3, h, w)`` -> RGB images; ``D == 2`` ->
points in the plane; anything else -> a heat map of the rows.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from matplotlib import colormaps
from matplotlib.collections import LineCollection
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from sklearn.decomposition import PCA

from pyrovae.errors import PyrovaeError
from pyrovae.plots.core import (
    GRID_PADDING,
    as_matrix,
    draw_metric_series,
    grid_figsize,
    metric_series,
    save_figure,
    show_grid,
    tile_images,
    to_numpy,
)

ELBO_SERIES = (("train_elbo", "train"), ("val_elbo", "validation"), ("test_elbo", "test"))
MAX_LEGEND_CLASSES = 10  # more classes than this: a color bar instead of a legend


# ----------------------------------------------------------------------------- helpers


def _same_shape(a: np.ndarray, b: np.ndarray, names: str) -> None:
    """Raise PyrovaeError unless two arrays have the same shape."""
    if a.shape != b.shape:
        raise PyrovaeError(f"{names} must have the same shape, got {a.shape} and {b.shape}")


def _kind(data: np.ndarray, image_shape: tuple[int, ...] | None) -> str:
    """'image', 'points' or 'vector' for an (n, D) array."""
    if image_shape is not None:
        values = math.prod(image_shape)
        if values != data.shape[1]:
            what = "pixels" if len(image_shape) == 2 else "values (C x H x W)"
            raise PyrovaeError(
                f"image_shape {tuple(image_shape)} has {values} {what} but the data has "
                f"D = {data.shape[1]} columns"
            )
        return "image"
    return "points" if data.shape[1] == 2 else "vector"


def _heatmap(ax, rows: np.ndarray, title: str, vmin=None, vmax=None):
    """imshow of an (n, D) array, one row per item; returns the image for a color bar."""
    im = ax.imshow(
        rows, aspect="auto", interpolation="nearest", cmap="viridis", vmin=vmin, vmax=vmax
    )
    ax.set_title(title)
    ax.set_xlabel("dimension")
    ax.set_ylabel("item")
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    return im


def _heatmap_figure(rows: np.ndarray, title: str) -> Figure:
    """One heat map of an (n, D) array with a color bar."""
    fig = Figure(figsize=(6, 4), layout="constrained")
    ax = fig.add_subplot()
    fig.colorbar(_heatmap(ax, rows, title), ax=ax)
    return fig


def _joined_scatter(ax, x: np.ndarray, x_recon: np.ndarray) -> None:
    """Scatter (n, 2) points and their reconstructions, joined by thin gray lines."""
    segments = np.stack([x, x_recon], axis=1)
    ax.add_collection(LineCollection(segments, colors="0.6", linewidths=0.5, zorder=1))
    ax.scatter(x[:, 0], x[:, 1], s=10, color="tab:blue", label="input", zorder=2)
    ax.scatter(
        x_recon[:, 0], x_recon[:, 1], s=10, color="tab:orange", label="reconstruction", zorder=3
    )
    ax.legend(loc="best", fontsize="small")


def _labeled_scatter(
    fig: Figure, ax, xy: np.ndarray, labels: np.ndarray | None, class_names=None
) -> None:
    """Scatter (n, 2) points colored by integer label (tab10 legend, or color bar if many);
    ``class_names[c]`` names class c in the legend."""
    if labels is None:
        ax.scatter(xy[:, 0], xy[:, 1], s=8, alpha=0.7, color="tab:blue")
        return
    classes = np.unique(labels)
    if len(classes) <= MAX_LEGEND_CLASSES:
        cmap = colormaps["tab10"]
        for i, c in enumerate(classes):
            sel = labels == c
            name = class_names[c] if class_names is not None else str(c)
            ax.scatter(xy[sel, 0], xy[sel, 1], s=8, alpha=0.7, color=cmap(i % 10), label=name)
        ax.legend(title="class", fontsize="small", markerscale=2, loc="best")
        return
    sc = ax.scatter(xy[:, 0], xy[:, 1], s=8, alpha=0.7, c=labels, cmap="tab20")
    fig.colorbar(sc, ax=ax, label="class")


def _labels(labels, n: int) -> np.ndarray | None:
    """(n,) integer labels as a numpy array, or None."""
    if labels is None:
        return None
    lab = to_numpy(labels).reshape(-1).astype(np.int64)
    if lab.shape[0] != n:
        raise PyrovaeError(f"labels has {lab.shape[0]} entries but z has {n} rows")
    return lab


def project_2d(z) -> tuple[np.ndarray, np.ndarray | None]:
    """(n, k) latents with k >= 2 -> ((n, 2) coordinates, PCA explained-variance ratios).

    k == 2 is returned unchanged with ratios None; k > 2 is projected onto its first two
    principal components (sklearn PCA) and the (2,) explained-variance ratios are returned.
    """
    z = as_matrix(z, "z")
    n, k = z.shape
    if k < 2:
        raise PyrovaeError(f"project_2d needs k >= 2 latent dimensions, got {k}")
    if k == 2:
        return z, None
    if n < 2:
        return np.zeros((n, 2)), None
    pca = PCA(n_components=2)
    return pca.fit_transform(z), pca.explained_variance_ratio_


# ----------------------------------------------------------------------------- training curves


def training_curves_figure(metrics: list[dict], best_epoch: int | None = None) -> Figure:
    """ELBO (nats/example, higher is better) per epoch: one line per available series.

    ``metrics``: one dict per epoch with ``epoch``, ``train_elbo`` and optionally
    ``val_elbo`` / ``test_elbo`` (None or NaN when absent) and ``beta``, the KL weight.
    ``best_epoch``: the epoch whose parameters the run keeps, marked by a labeled vertical
    line. When ``beta`` is not 1 at every epoch (annealing, a beta-VAE), a small panel
    below the ELBOs draws it against the same epochs.
    """
    if not metrics:
        raise PyrovaeError("plot_training_curves needs at least one epoch of metrics")
    betas = metric_series(metrics, "beta")
    weighted = bool(np.any(~np.isnan(betas) & (betas != 1.0)))
    fig = Figure(figsize=(6, 5.2 if weighted else 4), layout="constrained")
    if weighted:
        ax, ax_beta = fig.subplots(2, 1, sharex=True, height_ratios=(3, 1))
    else:
        ax, ax_beta = fig.add_subplot(), None
    draw_metric_series(ax, metrics, ELBO_SERIES)
    ax.set_ylabel("ELBO (nats / example)")
    ax.set_title("ELBO per example")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(alpha=0.3)
    if best_epoch is not None:
        ax.axvline(best_epoch, color="tab:red", linewidth=0.8, label=f"best epoch {best_epoch}")
    if ax.lines:
        ax.legend(loc="best")
    if ax_beta is None:
        ax.set_xlabel("epoch")
        return fig
    epochs = np.array([m["epoch"] for m in metrics])
    ok = ~np.isnan(betas)
    ax_beta.plot(epochs[ok], betas[ok], color="0.3", marker="o", markersize=2, label="KL weight")
    if best_epoch is not None:
        ax_beta.axvline(best_epoch, color="tab:red", linewidth=0.8)
    ax_beta.set_ylim(0, max(1.0, float(np.nanmax(betas))) * 1.08)
    ax_beta.set_xlabel("epoch")
    ax_beta.set_ylabel("KL weight")
    ax_beta.grid(alpha=0.3)
    return fig


def plot_training_curves(metrics: list[dict], path, best_epoch: int | None = None) -> Path:
    """:func:`training_curves_figure` written as a PNG at ``path``; returns the Path."""
    return save_figure(training_curves_figure(metrics, best_epoch), path)


# ----------------------------------------------------------------------------- reconstructions


def reconstructions_figure(
    x, x_recon, image_shape: tuple[int, int] | None, max_items: int = 16
) -> Figure:
    """Inputs against reconstructions; x, x_recon: (n, D).

    Images: one grid of two rows (input above, reconstruction below) of up to ``max_items``
    images. 2-D points: one scatter with gray lines joining each point to its reconstruction.
    Other vectors: two heat maps (input, reconstruction) of the first ``max_items`` rows.
    """
    x, x_recon = as_matrix(x, "x"), as_matrix(x_recon, "x_recon")
    _same_shape(x, x_recon, "x and x_recon")
    kind = _kind(x, image_shape)
    if kind == "image":
        return _reconstruction_images(x[:max_items], x_recon[:max_items], image_shape)
    if kind == "vector":
        return _reconstruction_heatmaps(x[:max_items], x_recon[:max_items])
    fig = Figure(figsize=(5, 5), layout="constrained")
    ax = fig.add_subplot()
    _joined_scatter(ax, x, x_recon)
    ax.set_aspect("equal", adjustable="datalim")
    ax.set_title("Reconstructions")
    return fig


def plot_reconstructions(
    x, x_recon, image_shape: tuple[int, int] | None, path, max_items: int = 16
) -> Path:
    """:func:`reconstructions_figure` written as a PNG at ``path``; returns the Path."""
    return save_figure(reconstructions_figure(x, x_recon, image_shape, max_items), path)


def _reconstruction_images(x: np.ndarray, x_recon: np.ndarray, image_shape) -> Figure:
    """Figure with a 2-row grid: (m, h*w) inputs above their reconstructions."""
    m = x.shape[0]
    grid = tile_images(np.concatenate([x, x_recon]), image_shape, nrow=m)
    fig = Figure(figsize=grid_figsize(grid.shape), layout="constrained")
    ax = fig.add_subplot()
    show_grid(ax, grid, "Reconstructions")
    row_height = grid.shape[0] / 2
    ax.set_yticks([row_height / 2, 1.5 * row_height], ["input", "reconstruction"])
    return fig


def _reconstruction_heatmaps(x: np.ndarray, x_recon: np.ndarray) -> Figure:
    """Figure with side-by-side heat maps of (m, D) inputs and reconstructions."""
    both = np.concatenate([x, x_recon])
    vmin, vmax = float(both.min()), float(both.max())
    fig = Figure(figsize=(9, 4), layout="constrained")
    ax_in, ax_out = fig.subplots(1, 2, sharey=True)
    _heatmap(ax_in, x, "input", vmin, vmax)
    im = _heatmap(ax_out, x_recon, "reconstruction", vmin, vmax)
    fig.colorbar(im, ax=[ax_in, ax_out])
    return fig


# ----------------------------------------------------------------------------- samples


def samples_figure(
    samples, image_shape: tuple[int, int] | None, title: str = "Samples from the prior"
) -> Figure:
    """Samples (n, D): square-ish image grid, 2-D scatter, or heat map (one row per sample)."""
    samples = as_matrix(samples, "samples")
    kind = _kind(samples, image_shape)
    if kind == "image":
        return image_grid_figure(samples, image_shape, title=title)
    if kind == "vector":
        return _heatmap_figure(samples, title)
    fig = Figure(figsize=(5, 5), layout="constrained")
    ax = fig.add_subplot()
    ax.scatter(samples[:, 0], samples[:, 1], s=8, alpha=0.7)
    ax.set_aspect("equal", adjustable="datalim")
    ax.set_title(title)
    return fig


def plot_samples(
    samples, image_shape: tuple[int, int] | None, path, title: str = "Samples from the prior"
) -> Path:
    """:func:`samples_figure` written as a PNG at ``path``; returns the Path."""
    return save_figure(samples_figure(samples, image_shape, title), path)


# ----------------------------------------------------------------------------- latent space


def latent_space_figure(
    z, labels, title: str = "Latent space (posterior means)", class_names=None
) -> Figure:
    """Posterior means z (n, k) colored by labels (n,) ints or None.

    k == 1: strip plot against the label (histogram when unlabeled); k == 2: scatter;
    k > 2: scatter of the first two principal components. ``class_names`` (one per class)
    name the classes in the legend or on the axis.
    """
    z = as_matrix(z, "z")
    labels = _labels(labels, z.shape[0])
    fig = Figure(figsize=(6, 5), layout="constrained")
    ax = fig.add_subplot()
    if z.shape[1] == 1:
        _latent_1d(ax, z[:, 0], labels, class_names)
        ax.set_title(title)
        return fig
    xy, ratios = project_2d(z)
    _labeled_scatter(fig, ax, xy, labels, class_names)
    if ratios is None and z.shape[1] == 2:
        ax.set_xlabel("z[0]")
        ax.set_ylabel("z[1]")
        ax.set_title(title)
    else:
        _label_pca_axes(ax, ratios)
        ax.set_title(f"{title}, PCA of {z.shape[1]} dims")
    return fig


def plot_latent_space(
    z, labels, path, title: str = "Latent space (posterior means)", class_names=None
) -> Path:
    """:func:`latent_space_figure` written as a PNG at ``path``; returns the Path."""
    return save_figure(latent_space_figure(z, labels, title, class_names), path)


def _latent_1d(ax, z: np.ndarray, labels: np.ndarray | None, class_names=None) -> None:
    """(n,) latents: jittered strip per label, or a histogram when unlabeled."""
    ax.set_xlabel("z")
    if labels is None:
        ax.hist(z, bins=min(50, max(5, int(math.sqrt(z.shape[0])))), color="tab:blue")
        ax.set_ylabel("count")
        return
    jitter = np.random.default_rng(0).uniform(-0.25, 0.25, size=z.shape[0])
    cmap = colormaps["tab10"]
    ax.scatter(z, labels + jitter, s=6, alpha=0.6, c=[cmap(int(c) % 10) for c in labels])
    ax.set_ylabel("class")
    if class_names is not None:
        ax.set_yticks(range(len(class_names)), list(class_names), fontsize="small")
    else:
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))


def _label_pca_axes(ax, ratios: np.ndarray | None) -> None:
    """Axis labels 'PC1 (xx% var)', 'PC2 (xx% var)'."""
    for setter, i in ((ax.set_xlabel, 0), (ax.set_ylabel, 1)):
        share = "" if ratios is None else f" ({100 * ratios[i]:.0f}% var)"
        setter(f"PC{i + 1}{share}")


# ----------------------------------------------------------------------------- interpolation


def interpolation_figure(
    decoded, image_shape: tuple[int, int] | None, title: str = "Latent interpolation"
) -> Figure:
    """Decoder means (steps, D) along a latent line, endpoints first and last.

    Images: one row; 2-D: the path as a line with markers; other: heat map (one row per step).
    """
    decoded = as_matrix(decoded, "decoded")
    kind = _kind(decoded, image_shape)
    if kind == "image":
        return image_grid_figure(decoded, image_shape, title=title, nrow=decoded.shape[0])
    if kind == "vector":
        fig = _heatmap_figure(decoded, title)
        fig.axes[0].set_ylabel("step")
        return fig
    fig = Figure(figsize=(5, 5), layout="constrained")
    ax = fig.add_subplot()
    _draw_path(ax, decoded)
    ax.set_aspect("equal", adjustable="datalim")
    ax.set_title(title)
    return fig


def plot_interpolation(
    decoded, image_shape: tuple[int, int] | None, path, title: str = "Latent interpolation"
) -> Path:
    """:func:`interpolation_figure` written as a PNG at ``path``; returns the Path."""
    return save_figure(interpolation_figure(decoded, image_shape, title), path)


def _draw_path(ax, points: np.ndarray) -> None:
    """(steps, 2) path as a line with markers; start and end marked and labeled."""
    ax.plot(points[:, 0], points[:, 1], "-o", color="tab:blue", markersize=4)
    ax.scatter(*points[0], s=60, marker="s", color="tab:green", zorder=3, label="start")
    ax.scatter(*points[-1], s=80, marker="*", color="tab:red", zorder=3, label="end")
    ax.legend(loc="best", fontsize="small")


# ----------------------------------------------------------------------------- spiral


def spiral_figure(x, x_recon, decoded_path, true_curve=None, title: str = "Spiral") -> Figure:
    """Three panels for 2-D data: data (+ true curve), reconstructions, decoded latent path.

    x, x_recon: (n, 2); decoded_path: (m, 2), colored by position; true_curve: (m', 2).
    """
    x, x_recon = as_matrix(x, "x"), as_matrix(x_recon, "x_recon")
    decoded_path = as_matrix(decoded_path, "decoded_path")
    _same_shape(x, x_recon, "x and x_recon")
    if x.shape[1] != 2 or decoded_path.shape[1] != 2:
        raise PyrovaeError("plot_spiral needs 2-D points: x and decoded_path must be (n, 2)")
    fig = Figure(figsize=(15, 5), layout="constrained")
    ax_data, ax_rec, ax_path = fig.subplots(1, 3)
    ax_data.scatter(x[:, 0], x[:, 1], s=6, alpha=0.7)
    if true_curve is not None:
        curve = as_matrix(true_curve, "true_curve")
        ax_data.plot(curve[:, 0], curve[:, 1], color="k", linewidth=0.8, label="true curve")
        ax_data.legend(loc="best", fontsize="small")
    ax_data.set_title("data")
    _joined_scatter(ax_rec, x, x_recon)
    ax_rec.set_title("reconstructions")
    _colored_path(fig, ax_path, decoded_path, x)
    for ax in (ax_data, ax_rec, ax_path):
        ax.set_aspect("equal", adjustable="datalim")
    fig.suptitle(title)
    return fig


def plot_spiral(x, x_recon, decoded_path, path, true_curve=None, title: str = "Spiral") -> Path:
    """:func:`spiral_figure` written as a PNG at ``path``; returns the Path."""
    return save_figure(spiral_figure(x, x_recon, decoded_path, true_curve, title), path)


def _colored_path(fig: Figure, ax, points: np.ndarray, background: np.ndarray) -> None:
    """(m, 2) path colored by position (viridis) over faint (n, 2) background points."""
    ax.scatter(background[:, 0], background[:, 1], s=4, color="0.8")
    ax.plot(points[:, 0], points[:, 1], color="0.4", linewidth=0.8)
    position = np.linspace(0.0, 1.0, points.shape[0])
    sc = ax.scatter(points[:, 0], points[:, 1], c=position, cmap="viridis", s=12, zorder=3)
    fig.colorbar(sc, ax=ax, label="position along path", shrink=0.8)
    ax.set_title("decoded latent path")


def spiral_sweeps_figure(panels: list[dict], true_curve) -> Figure:
    """One row per trained pair: data and reconstructions; the decoded latent sweep over
    (colored by position) and beyond (red) the training codes, over the true curve; and
    the distance of each decoded point to the true curve against the latent value.

    Each panel: ``title``; ``x``, ``x_recon`` ``(n, 2)``; ``points (m, 2)`` decoded sweep;
    ``s (m,)`` latent values; ``inside (m,)`` bool; ``distance (m,)`` in data units.
    ``true_curve``: ``(m', 2)``.
    """
    curve = as_matrix(true_curve, "true_curve")
    fig = Figure(figsize=(15, 4.6 * len(panels)), layout="constrained")
    axes = np.atleast_2d(fig.subplots(len(panels), 3))
    for (ax_rec, ax_sweep, ax_dist), panel in zip(axes, panels, strict=True):
        x, x_recon = as_matrix(panel["x"], "x"), as_matrix(panel["x_recon"], "x_recon")
        points, inside = as_matrix(panel["points"], "points"), np.asarray(panel["inside"])
        s, distance = np.asarray(panel["s"]), np.asarray(panel["distance"])
        _joined_scatter(ax_rec, x, x_recon)
        ax_rec.set_title(f"{panel['title']}: test data and reconstructions")
        ax_sweep.plot(curve[:, 0], curve[:, 1], color="k", linewidth=0.8, label="true curve")
        ax_sweep.scatter(x[:, 0], x[:, 1], s=4, color="0.8")
        position = np.linspace(0.0, 1.0, int(inside.sum()))
        ax_sweep.scatter(*points[inside].T, c=position, cmap="viridis", s=8, zorder=3)
        ax_sweep.scatter(*points[~inside].T, color="tab:red", s=8, zorder=3, label="beyond")
        ax_sweep.legend(loc="best", fontsize="small")
        ax_sweep.set_title("decoded sweep of z over (color) and beyond (red) the codes")
        ax_dist.plot(s, distance, color="tab:blue")
        ax_dist.axvspan(s[inside].min(), s[inside].max(), color="0.9", label="code range")
        ax_dist.set_xlabel("z")
        ax_dist.set_ylabel("distance to true curve")
        ax_dist.set_yscale("log")
        ax_dist.legend(loc="best", fontsize="small")
        ax_dist.set_title("distance of decoded point to the spiral")
        for ax in (ax_rec, ax_sweep):
            ax.set_aspect("equal", adjustable="datalim")
    return fig


def plot_spiral_sweeps(panels: list[dict], true_curve, path) -> Path:
    """:func:`spiral_sweeps_figure` written as a PNG at ``path``; returns the Path."""
    return save_figure(spiral_sweeps_figure(panels, true_curve), path)


# ----------------------------------------------------------------------------- image grids


def image_grid_figure(
    images,
    image_shape: tuple[int, int],
    title: str = "",
    nrow: int | None = None,
    normalize: bool = False,
) -> Figure:
    """Grid of images (n, C*h*w), grayscale or RGB, with ``nrow`` per row (default ceil(sqrt(n))).

    Values are clamped to [0, 1]; ``normalize=True`` instead rescales each image to [0, 1]
    on its own (make_grid's normalize + scale_each), e.g. for loadings or features.
    """
    images = as_matrix(images, "images")
    _kind(images, image_shape)
    nrow = nrow or math.ceil(math.sqrt(images.shape[0]))
    grid = tile_images(images, image_shape, nrow=nrow, normalize=normalize)
    fig = Figure(figsize=grid_figsize(grid.shape), layout="constrained")
    show_grid(fig.add_subplot(), grid, title)
    return fig


def plot_image_grid(
    images,
    image_shape: tuple[int, int],
    path,
    title: str = "",
    nrow: int | None = None,
    normalize: bool = False,
) -> Path:
    """:func:`image_grid_figure` written as a PNG at ``path``; returns the Path."""
    return save_figure(image_grid_figure(images, image_shape, title, nrow, normalize), path)


def loadings_figure(loadings, image_shape: tuple[int, int] | None, title: str = "") -> Figure:
    """Loadings or features, ``(k, D)``: one item per row (e.g. the columns of W).

    Images: a grid, each image rescaled to [0, 1] on its own (signs and scales of loadings
    are arbitrary); other data: a heat map, one row per item, with a color bar.
    """
    loadings = as_matrix(loadings, "loadings")
    if image_shape is not None:
        return image_grid_figure(loadings, image_shape, title=title, normalize=True)
    return _heatmap_figure(loadings, title)


def plot_loadings(loadings, image_shape: tuple[int, int] | None, path, title: str = "") -> Path:
    """:func:`loadings_figure` written as a PNG at ``path``; returns the Path."""
    return save_figure(loadings_figure(loadings, image_shape, title), path)


def traversals_figure(
    images, image_shape: tuple[int, int], row_labels, values, title: str = ""
) -> Figure:
    """Latent traversals: one row per latent dimension, one column per value it is set to.

    :param images: ``(rows * len(values), h*w)`` decoder means, row-major.
    :param row_labels: one label per row (e.g. ``"z[3], KL 1.20"``).
    :param values: the values of the swept dimension, one per column.
    """
    images = as_matrix(images, "images")
    _kind(images, image_shape)
    columns, rows = len(values), len(row_labels)
    if images.shape[0] != rows * columns:
        raise PyrovaeError(f"traversals need {rows} x {columns} images, got {images.shape[0]}")
    grid = tile_images(images, image_shape, nrow=columns)
    fig = Figure(figsize=grid_figsize(grid.shape, max_inches=8.0), layout="constrained")
    ax = fig.add_subplot()
    show_grid(ax, grid, title or "Latent traversals (others at a data point's posterior mean)")
    h, w = image_shape[-2:]
    ax.set_yticks([_tile_center(i, h) for i in range(rows)], list(row_labels))
    ax.set_xticks([_tile_center(j, w) for j in range(columns)], [f"{v:+.1f}" for v in values])
    ax.set_xlabel("value of the swept dimension")
    return fig


def _tile_center(index: int, size: int) -> float:
    """Pixel coordinate of the middle of the ``index``-th tile of ``size`` pixels in a grid."""
    return GRID_PADDING + index * (size + GRID_PADDING) + (size - 1) / 2


def plot_traversals(images, image_shape, row_labels, values, path, title: str = "") -> Path:
    """:func:`traversals_figure` written as a PNG at ``path``; returns the Path."""
    return save_figure(traversals_figure(images, image_shape, row_labels, values, title), path)
