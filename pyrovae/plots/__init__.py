"""Figures: tensors or arrays in, a matplotlib ``Figure`` or one PNG file out.

Every figure has a builder ``xxx_figure(...) -> Figure`` (inspect it, or draw it yourself)
and a writer ``plot_xxx(..., path) -> Path`` that is ``save_figure(xxx_figure(...), path)``.
Figures are ``Figure`` objects, never pyplot state.

- :mod:`pyrovae.plots.core`: the shared pieces (arrays to ``(n, D)`` matrices, grayscale
  image grids, metric series, ``save_figure``).
- :mod:`pyrovae.plots.run`: the figures of a run folder, re-exported here.
- :mod:`pyrovae.plots.ssvae`: the semi-supervised run's figures.
- :mod:`pyrovae.plots.diagnostics`: the posterior diagnostics' figures.

May import: the base (:mod:`pyrovae.errors`, :mod:`pyrovae.atomic`) only: figures take
tensors and arrays, not runs.
"""

from pyrovae.plots.core import save_figure
from pyrovae.plots.run import (
    image_grid_figure,
    interpolation_figure,
    latent_space_figure,
    loadings_figure,
    plot_image_grid,
    plot_interpolation,
    plot_latent_space,
    plot_loadings,
    plot_reconstructions,
    plot_samples,
    plot_spiral,
    plot_spiral_sweeps,
    plot_training_curves,
    plot_traversals,
    project_2d,
    reconstructions_figure,
    samples_figure,
    spiral_figure,
    spiral_sweeps_figure,
    training_curves_figure,
    traversals_figure,
)

__all__ = [
    "image_grid_figure",
    "interpolation_figure",
    "latent_space_figure",
    "loadings_figure",
    "plot_image_grid",
    "plot_interpolation",
    "plot_latent_space",
    "plot_loadings",
    "plot_reconstructions",
    "plot_samples",
    "plot_spiral",
    "plot_spiral_sweeps",
    "plot_training_curves",
    "plot_traversals",
    "project_2d",
    "reconstructions_figure",
    "samples_figure",
    "save_figure",
    "spiral_figure",
    "spiral_sweeps_figure",
    "training_curves_figure",
    "traversals_figure",
]
