"""Data sets from ``.npz`` archives: ``x_train``, ``x_test``, optional ``y_train``, ``y_test``."""

from __future__ import annotations

import zipfile
import zlib
from pathlib import Path

import numpy as np
import torch

from pyrovae.data.dataset import (
    Dataset,
    check_labels,
    checked,
    first_line,
    recorded_image_shape,
    support_of,
    value_levels,
)
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


CHANNELS = (1, 3)
"""Channel counts of image arrays: grey levels and RGB."""


def _layout(shape: tuple[int, ...], key: str) -> str:
    """ "rows", "HW", "HWC" or "CHW" for an array of ``shape``, or a one-line error."""
    if len(shape) == 2:
        return "rows"
    if len(shape) == 3:
        return "HW"
    if len(shape) != 4:
        raise PyrovaeError(
            f"{key} has shape {shape}: expected (n, features), (n, height, width), "
            "(n, height, width, channels) or (n, channels, height, width)"
        )
    last, first = shape[3] in CHANNELS, shape[1] in CHANNELS
    if last != first:
        return "HWC" if last else "CHW"
    if shape[3] == 4 or shape[1] == 4:
        raise PyrovaeError(
            f"{key} has shape {shape}: 4 channels (RGBA?); keep the colour channels, "
            "x[..., :3] (channels last) or x[:, :3] (channels first)"
        )
    raise PyrovaeError(
        f"{key} has shape {shape}: cannot tell its channels (1 or 3) from its height and "
        "width; store it as (n, height, width, channels) with height and width above 3"
    )


def _npz_x(x: np.ndarray, key: str) -> tuple[torch.Tensor, tuple[int, ...] | None, str]:
    """``(n, D)`` float32 rows (images flattened channel-first), the image shape ((H, W) or
    (C, H, W), None for plain rows) and a description of what was read.

    uint8 values are 8-bit levels and are divided by 255; other numbers are kept as they are,
    except integers 0..255 stored as floats (8-bit levels not scaled), which are refused.
    """
    layout = _layout(x.shape, key)
    if not _is_real_dtype(x.dtype):
        raise PyrovaeError(f"{key} has dtype {x.dtype}; store numbers (e.g. float32)")
    if len(x) == 0 or x[0].size == 0:
        raise PyrovaeError(f"{key} has shape {x.shape} with no data; store at least one row")
    stored = tuple(int(d) for d in x.shape)
    if layout == "HWC":
        x = np.moveaxis(x, 3, 1)
    image_shape = None
    if layout != "rows":
        image_shape = recorded_image_shape(*x.shape[1:]) if x.ndim == 4 else x.shape[1:]
        image_shape = tuple(int(d) for d in image_shape)
    eight_bit = x.dtype == np.uint8
    rows = x.reshape(len(x), -1).astype(np.float32)
    if eight_bit:
        rows /= 255.0
    elif np.issubdtype(x.dtype, np.floating) and _unscaled_bytes(rows):
        raise PyrovaeError(
            f"{key} holds whole numbers from 0 to 255 as {x.dtype}: 8-bit pixels not scaled? "
            "store them as uint8 (read as x / 255) or divide by 255 before saving"
        )
    read = {"rows": "(n, D)", "HW": "(n, H, W)", "HWC": "(n, H, W, C)", "CHW": "(n, C, H, W)"}
    what = f"{key} {stored} read as {read[layout]}"
    if eight_bit:
        what += ", uint8 / 255"
    return torch.from_numpy(rows), image_shape, what


def _unscaled_bytes(rows: np.ndarray) -> bool:
    top = float(rows.max())
    return 1.0 < top <= 255.0 and float(rows.min()) >= 0.0 and bool(np.all(rows == np.round(rows)))


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


def _levels(train: np.ndarray, test: np.ndarray, *rows: torch.Tensor) -> int | None:
    """256 for uint8 arrays (8-bit levels / 255); for other numbers, the grid the values are
    on, if any (:func:`~pyrovae.data.dataset.value_levels`)."""
    if train.dtype == np.uint8 and test.dtype == np.uint8:
        return 256
    return value_levels(*rows)


def load_npz(path: Path) -> Dataset:
    """A data set from ``path``: x_train, x_test as (n, D), (n, H, W), (n, H, W, C) or
    (n, C, H, W) with C = 1 or 3 (uint8: 8-bit levels, divided by 255); optional y_train,
    y_test. ``Dataset.layout`` says what was read."""
    arrays = _npz_arrays(path)
    x_train, image_shape, read_train = _npz_x(arrays["x_train"], "x_train")
    x_test, test_shape, read_test = _npz_x(arrays["x_test"], "x_test")
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
        layout=f"{path.name}: {read_train}; {read_test}",
        levels=_levels(arrays["x_train"], arrays["x_test"], x_train, x_test),
    )
    checked(dataset)
    dataset.support = support_of(x_train, x_test)
    return dataset
