"""What every figure module shares: arrays in, grayscale grids, metric series, PNGs out.

Figures are ``matplotlib.figure.Figure`` objects, never pyplot state, so they can be built
in scripts, tests and worker threads alike and inspected before they are written.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from matplotlib.figure import Figure
from torchvision.utils import make_grid

from pyrovae.atomic import atomic_write
from pyrovae.errors import PyrovaeError

DPI = 120
GRID_PADDING = 2  # pixels of white (1.0) between and around the tiles of an image grid


def to_numpy(a) -> np.ndarray:
    """Tensor or array-like -> numpy array (detached, on the CPU), same shape."""
    if isinstance(a, torch.Tensor):
        return a.detach().cpu().numpy()
    return np.asarray(a)


def as_matrix(a, name: str) -> np.ndarray:
    """Tensor or array -> float64 array ``(n, D)`` with ``n >= 1``.

    ``(n,)`` becomes ``(n, 1)``; ``(n, ...)`` is flattened to ``(n, prod(...))``. ``name``
    names the argument in the PyrovaeError raised for a scalar or an empty array.
    """
    m = to_numpy(a).astype(np.float64)
    if m.ndim == 1:
        return m[:, None]
    if m.ndim == 0 or m.shape[0] == 0:
        raise PyrovaeError(f"{name} must have shape (n, D) with n >= 1, got {m.shape}")
    return m.reshape(m.shape[0], -1)


def save_figure(fig: Figure, path) -> Path:
    """Write ``fig`` as a PNG (``DPI`` dots per inch) at ``path``, parent folders created,
    atomically: a process killed while drawing leaves the old file or the new one, whole.

    The figure is cleared afterwards to release its memory; returns ``Path(path)``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda f: fig.savefig(f, dpi=DPI, format="png"))
    fig.clear()
    return path


def tile_images(
    images: np.ndarray, image_shape: tuple[int, ...], nrow: int, normalize: bool = False
) -> np.ndarray:
    """Images ``(n, C*h*w)`` -> one array in [0, 1], tiled by make_grid: grayscale
    ``(H, W)`` for ``image_shape = (h, w)``, RGB ``(H, W, 3)`` for ``(3, h, w)``.

    ``nrow`` images per row, ``GRID_PADDING`` white pixels between and around them. Values
    are clamped to [0, 1]; ``normalize=True`` instead rescales each image on its own to
    [0, 1] (make_grid's ``normalize`` and ``scale_each``).
    """
    *channels, h, w = image_shape
    c = channels[0] if channels else 1
    t = torch.as_tensor(images, dtype=torch.float32).reshape(-1, c, h, w)
    if not normalize:
        t = t.clamp(0.0, 1.0)
    grid = make_grid(
        t,
        nrow=nrow,
        padding=GRID_PADDING,
        normalize=normalize,
        scale_each=normalize,
        pad_value=1.0,
    )
    return grid[0].numpy() if c == 1 else grid.permute(1, 2, 0).numpy()


def grid_figsize(shape: tuple[int, int], max_inches: float = 10.0) -> tuple[float, float]:
    """Figure size ``(width, height)`` in inches for an ``(H, W)`` or ``(H, W, 3)`` pixel grid.

    The longer side is ``max_inches``, the aspect is kept, and 0.6 inch is added for a title.
    """
    h, w = shape[:2]
    scale = max_inches / max(h, w)
    return max(w * scale, 2.5), max(h * scale, 1.2) + 0.6


def show_grid(ax, grid: np.ndarray, title: str = "") -> None:
    """Draw an ``(H, W)`` grayscale or ``(H, W, 3)`` RGB grid in [0, 1] on ``ax``, without
    ticks."""
    ax.imshow(grid, cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title)


def metric_series(metrics: Sequence[dict], key: str) -> np.ndarray:
    """Values of ``key`` in each epoch's metrics row as floats ``(epochs,)``, NaN where the
    key is missing or None."""
    return np.array(
        [np.nan if m.get(key) is None else float(m[key]) for m in metrics], dtype=np.float64
    )


def draw_metric_series(
    ax, metrics: Sequence[dict], series: Sequence[tuple[str, str]], markersize: float = 4
) -> None:
    """One line with markers per ``(key, label)`` of ``series``: its values against the
    ``epoch`` of each metrics row, NaN/None epochs left out; a series with no value at all
    draws no line (and gets no legend entry)."""
    epochs = np.array([m["epoch"] for m in metrics])
    for key, label in series:
        values = metric_series(metrics, key)
        ok = ~np.isnan(values)
        if ok.any():
            ax.plot(epochs[ok], values[ok], marker="o", markersize=markersize, label=label)
