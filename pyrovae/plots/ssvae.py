"""Figures of a semi-supervised run: class-conditional generation (analogies, rows per
class), confusion matrix, accuracy.

Same conventions as :mod:`pyrovae.plots.run`: tensors or arrays in; a builder
``xxx_figure(...) -> Figure`` and a writer ``plot_xxx(..., path) -> Path`` per figure;
no pyplot state.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from pyrovae.errors import PyrovaeError
from pyrovae.plots.core import (
    as_matrix,
    draw_metric_series,
    grid_figsize,
    save_figure,
    show_grid,
    tile_images,
    to_numpy,
)

ACCURACY_SERIES = (("val_accuracy", "M2 validation"), ("test_accuracy", "M2 test"))


def analogies_figure(
    sources, generated, image_shape: tuple[int, int], title: str = "Analogies", class_names=None
) -> Figure:
    """The M2 "analogies" grid: one column per style z, one row per class.

    :param sources: ``(n, h*w)`` images whose inferred style z fills each column (top row).
    :param generated: ``(K, n, h*w)`` decoder means ``E[x | y = k, z_j]``: row k + 1, column j.
    :param image_shape: ``(h, w)``.
    :param class_names: one per class, for the row labels (default: the class numbers).
    """
    sources = as_matrix(sources, "sources")
    generated = to_numpy(generated).astype(np.float64)
    if generated.ndim != 3 or generated.shape[1:] != sources.shape:
        raise PyrovaeError(
            f"generated must have shape (K, {sources.shape[0]}, {sources.shape[1]}), "
            f"got {generated.shape}"
        )
    k, n, _ = generated.shape
    grid = tile_images(np.concatenate([sources, generated.reshape(k * n, -1)]), image_shape, n)
    fig = Figure(figsize=grid_figsize(grid.shape, max_inches=8.0), layout="constrained")
    ax = fig.add_subplot()
    show_grid(ax, grid, title)
    row_height = grid.shape[0] / (k + 1)
    ax.set_yticks(
        [(i + 0.5) * row_height for i in range(k + 1)],
        ["input (z)", *(f"y = {c}" for c in (class_names or range(k)))],
    )
    ax.set_xlabel("shared style z inferred from the input at the top of each column")
    return fig


def plot_analogies(
    sources,
    generated,
    image_shape: tuple[int, int],
    path,
    title: str = "Analogies",
    class_names=None,
) -> Path:
    """:func:`analogies_figure` written as a PNG at ``path``; returns the Path."""
    figure = analogies_figure(sources, generated, image_shape, title, class_names)
    return save_figure(figure, path)


def class_rows_figure(
    images, image_shape: tuple[int, int], row_labels, title: str = "", xlabel: str = ""
) -> Figure:
    """An image grid of ``R`` rows of ``C`` images each, every row labelled (e.g. by the
    class ``y`` that decoded it).

    :param images: ``(R, C, h*w)``: row r, column c is ``images[r, c]``.
    :param image_shape: ``(h, w)``.
    :param row_labels: ``R`` labels, top to bottom.
    """
    images = to_numpy(images).astype(np.float64)
    if images.ndim != 3:
        raise PyrovaeError(f"images must have shape (rows, columns, h*w), got {images.shape}")
    rows, columns, _ = images.shape
    if len(row_labels) != rows:
        raise PyrovaeError(f"{rows} rows of images but {len(row_labels)} row labels")
    grid = tile_images(images.reshape(rows * columns, -1), image_shape, columns)
    fig = Figure(figsize=grid_figsize(grid.shape, max_inches=8.0), layout="constrained")
    ax = fig.add_subplot()
    show_grid(ax, grid, title)
    row_height = grid.shape[0] / rows
    ax.set_yticks([(i + 0.5) * row_height for i in range(rows)], [str(r) for r in row_labels])
    if xlabel:
        ax.set_xlabel(xlabel)
    return fig


def plot_class_rows(
    images, image_shape: tuple[int, int], row_labels, path, title: str = "", xlabel: str = ""
) -> Path:
    """:func:`class_rows_figure` written as a PNG at ``path``; returns the Path."""
    return save_figure(class_rows_figure(images, image_shape, row_labels, title, xlabel), path)


def confusion_matrix_figure(
    y_true, y_pred, num_classes: int, title: str = "", class_names=None
) -> Figure:
    """Row-normalized confusion matrix (rows: true class, columns: predicted) with counts.

    :param y_true, y_pred: ``(n,)`` integer classes in ``[0, num_classes)``.
    :param class_names: one per class, for the tick labels (default: the class numbers).
    :param title: default ``"Confusion matrix (accuracy a)"``, a the share of right guesses.
    """
    y_true = to_numpy(y_true).reshape(-1).astype(np.int64)
    y_pred = to_numpy(y_pred).reshape(-1).astype(np.int64)
    if y_true.shape != y_pred.shape:
        raise PyrovaeError(f"y_true {y_true.shape} and y_pred {y_pred.shape} differ in length")
    counts = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(counts, (y_true, y_pred), 1)
    rows = counts.sum(1, keepdims=True)
    share = counts / np.maximum(rows, 1)
    fig = Figure(figsize=(6, 5.2), layout="constrained")
    ax = fig.add_subplot()
    im = ax.imshow(share, cmap="Blues", vmin=0.0, vmax=1.0)
    for i in range(num_classes):
        for j in range(num_classes):
            if counts[i, j]:
                color = "white" if share[i, j] > 0.5 else "black"
                ax.text(j, i, str(counts[i, j]), ha="center", va="center", fontsize=7, color=color)
    ticks = range(num_classes)
    names = list(class_names) if class_names is not None else [str(c) for c in ticks]
    ax.set_xticks(ticks, names, rotation=90 if class_names is not None else 0)
    ax.set_yticks(ticks, names)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    accuracy = np.trace(counts) / max(counts.sum(), 1)
    ax.set_title(title or f"Confusion matrix (accuracy {accuracy:.3f})")
    fig.colorbar(im, ax=ax, label="share of the true class")
    return fig


def plot_confusion_matrix(
    y_true, y_pred, num_classes: int, path, title: str = "", class_names=None
) -> Path:
    """:func:`confusion_matrix_figure` written as a PNG at ``path``; returns the Path."""
    figure = confusion_matrix_figure(y_true, y_pred, num_classes, title, class_names)
    return save_figure(figure, path)


def accuracy_curves_figure(
    metrics: Sequence[dict],
    baseline: float | None = None,
    best_epoch: int | None = None,
    title: str = "Classification accuracy",
) -> Figure:
    """``val_accuracy`` and ``test_accuracy`` (shares in [0, 1]) of each epoch's metrics row
    against the epoch.

    ``baseline``: the supervised-only classifier's test accuracy, drawn as a dashed line;
    ``best_epoch``: the epoch whose parameters were kept, marked by a vertical line.
    """
    if not metrics:
        raise PyrovaeError("plot_accuracy_curves needs at least one epoch of metrics")
    fig = Figure(figsize=(6, 4), layout="constrained")
    ax = fig.add_subplot()
    draw_metric_series(ax, metrics, ACCURACY_SERIES, markersize=3)
    if baseline is not None and np.isfinite(baseline):
        ax.axhline(baseline, color="0.3", linestyle="--", label="baseline test (labels only)")
    if best_epoch:
        ax.axvline(best_epoch, color="tab:red", linewidth=0.8, label=f"kept epoch {best_epoch}")
    ax.set_xlabel("epoch")
    ax.set_ylabel("accuracy")
    ax.set_title(title)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(alpha=0.3)
    if ax.lines:
        ax.legend(loc="lower right")
    return fig


def plot_accuracy_curves(
    metrics: Sequence[dict],
    path,
    baseline: float | None = None,
    best_epoch: int | None = None,
    title: str = "Classification accuracy",
) -> Path:
    """:func:`accuracy_curves_figure` written as a PNG at ``path``; returns the Path."""
    return save_figure(accuracy_curves_figure(metrics, baseline, best_epoch, title), path)
