"""``--tensorboard``: a run's metrics and figures as TensorBoard event files.

Every epoch's metrics row goes to ``RUN_DIR/tensorboard/`` as scalars, one tag per numeric
column of metrics.csv (``train_elbo``, ``val_elbo``, ``beta``, ``seconds``, ...) at the step
``epoch``; at the end of the run the figures go there as images (tag ``figures/<name>``).
``tensorboard --logdir runs/`` then shows every run side by side.

The ``tensorboard`` package is optional (``pip install -e ".[tensorboard]"``); without it
:class:`TensorBoardLog` raises a one-line :class:`~pyrovae.errors.PyrovaeError`.
"""

import importlib
import math
from collections.abc import Callable
from pathlib import Path

import numpy as np

from pyrovae.errors import PyrovaeError

FIGURE_TAG = "figures/"
MISSING = (
    "--tensorboard needs the tensorboard package, which is not installed: "
    'pip install -e ".[tensorboard]"'
)


def summary_writer_class():
    """``torch.utils.tensorboard.SummaryWriter``, or a one-line PyrovaeError without the
    tensorboard package (torch's module imports it)."""
    try:
        return importlib.import_module("torch.utils.tensorboard").SummaryWriter
    except ImportError as exc:
        raise PyrovaeError(MISSING) from exc


class TensorBoardLog:
    """Write a run's metrics rows and figures into ``log_dir``.

    :param log_dir: the event-file folder (``RUN_DIR/tensorboard``); made at the first epoch,
        so that nothing is written before the run folder exists.

    Pass :meth:`on_epoch` to the runner (it gets the history after every epoch and logs the
    last row), then :meth:`add_figures` and :meth:`close` at the end.
    """

    def __init__(self, log_dir):
        self.log_dir = Path(log_dir)
        self._writer_class = summary_writer_class()  # fail before training, not after
        self._writer = None

    @property
    def writer(self):
        if self._writer is None:
            self._writer = self._writer_class(log_dir=str(self.log_dir))
        return self._writer

    def on_epoch(self, history: list[dict]) -> None:
        """Log the numeric columns of the last row of ``history`` at its ``epoch``; None,
        NaN and infinite values are left out, as TensorBoard cannot draw them."""
        row = history[-1]
        step = int(row["epoch"])
        for key, value in row.items():
            if key == "epoch" or isinstance(value, bool) or not isinstance(value, (int, float)):
                continue
            if math.isfinite(value):
                self.writer.add_scalar(key, float(value), global_step=step)
        self.writer.flush()

    def add_figures(self, paths, step: int | None = None) -> None:
        """Each PNG of ``paths`` as an RGB image with the tag ``figures/<file stem>``."""
        from matplotlib.image import imread

        for path in map(Path, paths):
            image = np.asarray(imread(path))  # floats in [0, 1] from a PNG
            if image.ndim == 2:
                image = np.stack([image] * 3, axis=-1)
            # As 8-bit levels: SummaryWriter would truncate float * 255 (0.2 * 255 -> 50).
            levels = np.round(image[..., :3] * 255).astype(np.uint8)
            self.writer.add_image(
                FIGURE_TAG + path.stem, levels, global_step=step, dataformats="HWC"
            )
        self.writer.flush()

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()


def chain(*callbacks: Callable[[list[dict]], None]) -> Callable[[list[dict]], None]:
    """One ``on_epoch`` callback that calls each of ``callbacks`` in turn."""

    def on_epoch(history: list[dict]) -> None:
        for callback in callbacks:
            callback(history)

    return on_epoch
