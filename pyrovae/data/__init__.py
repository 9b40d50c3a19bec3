"""Data sets as flat float32 tensors: built-in loaders, IDX folders, ``.npz`` files, the
checks they pass, and their preparation for a run (validation split, binarization).

Every loader returns a :class:`Dataset` whose ``x_*`` tensors are ``(n, D)`` float32 rows
(images flattened row-major) and whose labels, when known, are ``(n,)`` int64.

May import: the base (:mod:`pyrovae.errors`, :mod:`pyrovae.atomic`) only; it knows no model,
no inference and no figure.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from pathlib import Path

from pyrovae.data.builtin import SPIRAL_T_RANGE, load_digits, load_spiral, spiral_curve
from pyrovae.data.dataset import Dataset, check_data, checked, with_features
from pyrovae.data.idx import load_idx_dataset
from pyrovae.data.image_folder import load_image_folder
from pyrovae.data.npz import load_npz
from pyrovae.data.prepare import PreparedData, binarize, prepare, split_validation
from pyrovae.errors import PyrovaeError

__all__ = [
    "DATASETS",
    "SPIRAL_T_RANGE",
    "Dataset",
    "PreparedData",
    "binarize",
    "check_data",
    "load_dataset",
    "prepare",
    "spiral_curve",
    "split_validation",
    "with_features",
]

DATASETS: dict[str, Callable[..., Dataset]] = {
    "digits": load_digits,
    "mnist": partial(load_idx_dataset, "mnist"),
    "fashion-mnist": partial(load_idx_dataset, "fashion-mnist"),
    "spiral": load_spiral,
}
"""Built-in data set name -> loader taking keyword options root, download, spiral_noise."""


def load_dataset(
    name_or_path: str,
    root: str | None = None,
    *,
    download: bool = True,
    spiral_noise: float = 0.05,
    image_size: int | None = None,
) -> Dataset:
    """Load a built-in data set by name (see :data:`DATASETS`), an ``.npz`` file or a folder
    of images by path.

    Built-ins: "digits" (sklearn 8x8, rows 0..1436 train, 1437..1796 test, no network),
    "mnist" / "fashion-mnist" (28x28; local IDX files under ``root`` or torchvision download),
    "spiral" (2-D, 2000/500 points, noise std ``spiral_noise``). Any other name ending in
    ``.npz`` or naming an existing file is read as an npz archive; a folder, as images
    (:func:`~pyrovae.data.image_folder.load_image_folder`, resized and centre-cropped to
    ``image_size`` pixels square when given).
    """
    path = Path(str(name_or_path)).expanduser()
    if image_size is not None and not path.is_dir():
        raise PyrovaeError(
            f"--image-size resizes the images of a folder, but {name_or_path} is not a "
            "folder; drop --image-size"
        )
    if name_or_path in DATASETS:
        dataset = DATASETS[name_or_path](root=root, download=download, spiral_noise=spiral_noise)
        return checked(dataset)
    if str(name_or_path).endswith(".npz") or path.is_file():
        return load_npz(path)
    if path.is_dir():
        return load_image_folder(path, image_size)
    raise PyrovaeError(
        f"unknown data set {name_or_path!r}; use one of {', '.join(DATASETS)}, "
        "a path to an .npz file with x_train and x_test, or a folder of images"
    )
