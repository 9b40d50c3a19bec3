"""Data sets from ``.npz`` archives: ``x_train``, ``x_test``, optional ``y_train``, ``y_test``."""

from __future__ import annotations

import zipfile
import zlib
from pathlib import Path

import numpy as np
import torch

from pyrovae.data.dataset import Dataset, check_labels, checked, first_line, support_of
from pyrovae.errors import PyrovaeError


def _npz_arrays(path: Path) -> dict[str, np.ndarray | None]:
    """Read x_train, x_test (required) and y_train, y_test (optional) from an npz archive."""
    if not path.is_file():
        raise PyrovaeError(f"no such file: {path}; check the path to the .npz data set")
    try:
        # Opened here, not by np.load, so the file is closed even when zipfile fails.
        with open(path, "rb") as file:
            archive = np.load(file, allow_pickle=False)
            if not isinstance(archive, np.lib.npyio.NpzFile):
                raise PyrovaeError(
                    f"{path} is a single .npy array, not an .npz archive; "
                    "save it with numpy.savez(path, x_train=..., x_test=...)"
                )
            missing = [k for k in ("x_train", "x_test") if k not in archive.files]
            if missing:
                raise PyrovaeError(
                    f"{path} has no array {missing[0]!r} (it holds {sorted(archive.files)}); "
                    "save it with numpy.savez(path, x_train=..., x_test=...)"
                )
            keys = ("x_train", "x_test", "y_train", "y_test")
            return {k: archive[k] if k in archive.files else None for k in keys}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as err:
        raise PyrovaeError(
            f"cannot read {path} as an .npz archive ({first_line(err)}); "
            "re-create it with numpy.savez(path, x_train=..., x_test=...)"
        ) from err


def _is_real_dtype(dtype: np.dtype) -> bool:
    return dtype == np.bool_ or any(np.issubdtype(dtype, k) for k in (np.integer, np.floating))


def _npz_x(x: np.ndarray, key: str) -> tuple[torch.Tensor, tuple[int, int] | None]:
    """(n, D) float32 tensor from a rank-2 or rank-3 numeric array, and (H, W) for rank 3."""
    if x.ndim not in (2, 3):
        raise PyrovaeError(
            f"{key} has shape {x.shape}: expected (n, features) or (n, height, width)"
        )
    if not _is_real_dtype(x.dtype):
        raise PyrovaeError(f"{key} has dtype {x.dtype}; store numbers (e.g. float32)")
    if len(x) == 0 or x[0].size == 0:
        raise PyrovaeError(f"{key} has shape {x.shape} with no data; store at least one row")
    image_shape = (int(x.shape[1]), int(x.shape[2])) if x.ndim == 3 else None
    return torch.from_numpy(x.reshape(len(x), -1).astype(np.float32)), image_shape


def _npz_y(y: np.ndarray | None, key: str, n: int) -> torch.Tensor | None:
    """(n,) int64 labels from a 1-D array of non-negative integer values, or None."""
    if y is None:
        return None
    if y.ndim != 1 or len(y) != n:
        raise PyrovaeError(f"{key} has shape {y.shape} but needs shape ({n},): one label per row")
    if not _is_real_dtype(y.dtype):
        raise PyrovaeError(f"{key} has dtype {y.dtype}; store integer class labels")
    y = y.astype(np.float64)  # exact for labels; lets one test cover ints, bools and floats
    if not np.all(np.isfinite(y)) or np.any(y != np.round(y)) or np.any(y < 0):
        raise PyrovaeError(f"{key} must hold non-negative integer class labels; re-encode it")
    return torch.from_numpy(y.astype(np.int64))


def load_npz(path: Path) -> Dataset:
    """A data set from ``path``: x_train, x_test (n, D) or (n, H, W); optional y_train, y_test."""
    arrays = _npz_arrays(path)
    x_train, image_shape = _npz_x(arrays["x_train"], "x_train")
    x_test, test_shape = _npz_x(arrays["x_test"], "x_test")
    if x_train.shape[1] != x_test.shape[1] or image_shape != test_shape:
        raise PyrovaeError(
            f"x_train rows {arrays['x_train'].shape[1:]} and x_test rows "
            f"{arrays['x_test'].shape[1:]} differ; store both with the same features"
        )
    y_train = _npz_y(arrays["y_train"], "y_train", len(x_train))
    y_test = _npz_y(arrays["y_test"], "y_test", len(x_test))
    check_labels(path.stem, y_train, y_test)  # before num_classes is read from them
    labels = [y for y in (y_train, y_test) if y is not None and y.numel()]
    dataset = Dataset(
        name=path.stem,
        x_train=x_train,
        x_test=x_test,
        y_train=y_train,
        y_test=y_test,
        image_shape=image_shape,
        support="real",
        num_classes=max(int(y.max()) for y in labels) + 1 if labels else None,
    )
    checked(dataset)
    dataset.support = support_of(x_train, x_test)
    return dataset
