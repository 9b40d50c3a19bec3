"""Data sets as flat float32 tensors: built-in loaders, ``.npz`` files, checks and splits.

Every loader returns a :class:`Dataset` whose ``x_*`` tensors are ``(n, D)`` float32 rows
(images flattened row-major) and whose labels, when known, are ``(n,)`` int64. Bad input raises
:class:`~pyrovae.errors.PyrovaeError` with a one-line message that says how to fix it.
"""

from __future__ import annotations

import contextlib
import gzip
import math
import socket
import zipfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import numpy as np
import torch
from sklearn.datasets import load_digits

from pyrovae.errors import PyrovaeError

__all__ = [
    "DATASETS",
    "Dataset",
    "binarize",
    "check_data",
    "load_dataset",
    "spiral_curve",
    "split_validation",
]

DEFAULT_ROOT = Path("~/.cache/pyrovae")
"""Where torchvision downloads MNIST / Fashion-MNIST when no ``root`` is given."""

DOWNLOAD_TIMEOUT_S = 10.0
"""Socket timeout (seconds) for torchvision downloads, so a dead network fails fast."""


@dataclass
class Dataset:
    """A train/test pair of flattened data matrices with optional labels.

    ``x_train``: (n_train, D) float32; ``x_test``: (n_test, D) float32; ``y_*``: (n,) int64 or
    None. ``image_shape`` is (H, W) when rows are flattened greyscale images, else None.
    ``support`` is "unit" when every value lies in [0, 1], else "real".
    """

    name: str
    x_train: torch.Tensor
    x_test: torch.Tensor
    y_train: torch.Tensor | None
    y_test: torch.Tensor | None
    image_shape: tuple[int, int] | None
    support: str
    num_classes: int | None = None
    extras: dict = field(default_factory=dict)

    @property
    def x_dim(self) -> int:
        """Number of features D per row."""
        return int(self.x_train.shape[1])


# --------------------------------------------------------------------------- checks


def _as_float(value: object) -> float | None:
    """``float(value)`` for real numbers (not bools or strings), else None."""
    if isinstance(value, bool | str):
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _first_line(err: BaseException) -> str:
    """Exception type and the first line of its message, for one-line error messages."""
    lines = str(err).splitlines()
    return f"{type(err).__name__}: {lines[0]}" if lines else type(err).__name__


def _range_text(x: torch.Tensor) -> str:
    return f"[{x.min().item():.4g}, {x.max().item():.4g}]"


def _who(likelihood: str | None, support: str) -> str:
    return f"the {likelihood} likelihood" if likelihood else f"support {support!r}"


def _check_unit(x: torch.Tensor, name: str, likelihood: str | None) -> None:
    if x.numel() and (x.min() < 0 or x.max() > 1):
        raise PyrovaeError(
            f"{name} has values in {_range_text(x)} but {_who(likelihood, 'unit')} needs [0, 1]; "
            "rescale the data or use --likelihood gaussian"
        )


def _check_binary(x: torch.Tensor, name: str, likelihood: str | None) -> None:
    bad = int(((x != 0) & (x != 1)).sum())
    if bad:
        raise PyrovaeError(
            f"{name} has {bad} values that are not exactly 0 or 1 but "
            f"{_who(likelihood, 'binary')} needs binary data; binarize it (pyrovae.data.binarize) "
            "or use --likelihood gaussian"
        )


_SUPPORT_CHECKS: dict[str, Callable[[torch.Tensor, str, str | None], None]] = {
    "real": lambda x, name, likelihood: None,
    "unit": _check_unit,
    "binary": _check_binary,
}


def check_data(
    x: torch.Tensor,
    *,
    name: str = "x",
    support: str | None = None,
    likelihood: str | None = None,
) -> None:
    """Raise PyrovaeError unless ``x`` is a finite (n, D) tensor within ``support``.

    ``support``: None or "real" (finite only), "unit" (values in [0, 1]) or "binary" (values
    exactly 0 or 1). ``name`` and ``likelihood`` only word the error message.
    """
    if support is not None and support not in _SUPPORT_CHECKS:
        raise PyrovaeError(
            f"unknown support {support!r} for {name}; use one of {sorted(_SUPPORT_CHECKS)}"
        )
    if not isinstance(x, torch.Tensor):
        raise PyrovaeError(f"{name} is a {type(x).__name__}, not a torch.Tensor; convert it first")
    if x.dim() != 2:
        raise PyrovaeError(
            f"{name} has shape {tuple(x.shape)}: expected (n, features); flatten or reshape it"
        )
    for count, what in ((int(torch.isnan(x).sum()), "NaN"), (int(torch.isinf(x).sum()), "inf")):
        if count:
            raise PyrovaeError(
                f"{name} has {count} {what} values; clean or impute them before training"
            )
    _SUPPORT_CHECKS[support or "real"](x, name, likelihood)


def _support_of(*xs: torch.Tensor) -> str:
    """'unit' when every value of every tensor lies in [0, 1], else 'real'."""
    in_unit = all(x.numel() == 0 or (x.min() >= 0 and x.max() <= 1) for x in xs)
    return "unit" if in_unit else "real"


def _checked(dataset: Dataset) -> Dataset:
    """Run :func:`check_data` (rank and finiteness) on both data matrices."""
    check_data(dataset.x_train, name=f"{dataset.name} x_train")
    check_data(dataset.x_test, name=f"{dataset.name} x_test")
    return dataset


# --------------------------------------------------------------------------- digits

DIGITS_N_TRAIN = 1437
"""Rows of sklearn's digits used for training; the remaining 360 rows are the test set."""


def _load_digits(**_options) -> Dataset:
    """sklearn's 1797 8x8 digits scaled from 0..16 to [0, 1]: rows 0..1436 train, 1437.. test."""
    bunch = load_digits()
    x = torch.as_tensor(bunch.data / 16.0, dtype=torch.float32)
    y = torch.as_tensor(bunch.target, dtype=torch.int64)
    n = DIGITS_N_TRAIN
    return Dataset(
        name="digits",
        x_train=x[:n],
        x_test=x[n:],
        y_train=y[:n],
        y_test=y[n:],
        image_shape=(8, 8),
        support="unit",
        num_classes=10,
    )


# --------------------------------------------------------------------------- spiral

SPIRAL_T_RANGE = (math.pi / 2, 3 * math.pi)
"""Range of the spiral's curve parameter t (radians)."""
SPIRAL_SIZES = (2000, 500)
"""Train and test sizes of the spiral data set."""
SPIRAL_SEED = 0


def spiral_curve(t: torch.Tensor) -> torch.Tensor:
    """Noise-free spiral points: t (n,) radians -> (n, 2) rows (t cos t, t sin t) / (3 pi)."""
    return torch.stack((t * torch.cos(t), t * torch.sin(t)), dim=-1) / (3 * math.pi)


def _load_spiral(*, spiral_noise: float = 0.05, **_options) -> Dataset:
    """2000 train / 500 test spiral points in about [-1, 1]^2 with N(0, spiral_noise^2) noise.

    t ~ U(pi/2, 3pi) and the unit noise come from one generator seeded with 0, so the data set
    is the same on every call and t does not depend on ``spiral_noise``.
    """
    noise = _as_float(spiral_noise)
    if noise is None or not math.isfinite(noise) or noise < 0:
        raise PyrovaeError(
            f"spiral noise must be a finite number >= 0, got {spiral_noise!r}; pass e.g. 0.05"
        )
    n_train, n_test = SPIRAL_SIZES
    generator = torch.Generator().manual_seed(SPIRAL_SEED)
    low, high = SPIRAL_T_RANGE
    t = low + (high - low) * torch.rand(n_train + n_test, generator=generator)
    eps = torch.randn(n_train + n_test, 2, generator=generator)
    x = spiral_curve(t) + noise * eps
    return Dataset(
        name="spiral",
        x_train=x[:n_train],
        x_test=x[n_train:],
        y_train=None,
        y_test=None,
        image_shape=None,
        support="real",
        extras={"t_train": t[:n_train], "t_test": t[n_train:], "t_range": SPIRAL_T_RANGE},
    )


# --------------------------------------------------------------------------- IDX (MNIST)

IDX_FILES = {
    "x_train": "train-images-idx3-ubyte",
    "y_train": "train-labels-idx1-ubyte",
    "x_test": "t10k-images-idx3-ubyte",
    "y_test": "t10k-labels-idx1-ubyte",
}
"""IDX file names (each may also end in ``.gz``) of the MNIST-style data sets."""

# IDX type byte -> numpy dtype (multi-byte types are big-endian).
_IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


@dataclass(frozen=True)
class _IdxSpec:
    torchvision_name: str  # class in torchvision.datasets, also its folder under root
    num_classes: int
    system_dirs: tuple[str, ...] = ()  # searched only when no root is given
    apt_package: str | None = None


_IDX_SPECS = {
    "mnist": _IdxSpec("MNIST", 10),
    "fashion-mnist": _IdxSpec(
        "FashionMNIST",
        10,
        system_dirs=("/usr/share/datasets/fashion-mnist",),
        apt_package="dataset-fashion-mnist",
    ),
}


def _read_idx(path: Path) -> np.ndarray:
    """Parse one IDX file, gzipped or not, into an array of its stored dtype and dims."""
    # Hand-written: torchvision's reader takes only uncompressed paths and checks with assert.
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            data = f.read()
    except (OSError, EOFError, zlib.error) as err:
        raise PyrovaeError(
            f"cannot read IDX file {path} ({_first_line(err)}); delete it and get it again"
        ) from err
    ndim = data[3] if len(data) >= 4 else 0
    header = 4 + 4 * ndim
    if data[:2] != b"\0\0" or ndim == 0 or data[2] not in _IDX_DTYPES or len(data) < header:
        raise PyrovaeError(f"{path} is not an IDX file (bad header); delete it and get it again")
    dims = np.frombuffer(data, ">i4", count=ndim, offset=4).astype(np.int64)
    dtype = np.dtype(_IDX_DTYPES[data[2]])
    expected = header + int(np.prod(dims)) * dtype.itemsize
    if len(data) != expected:
        raise PyrovaeError(
            f"IDX file {path} is truncated or corrupt ({len(data)} bytes, header says "
            f"{expected}); delete it and get it again"
        )
    return np.frombuffer(data, dtype, offset=header).reshape(tuple(dims))


def _idx_path(folder: Path, stem: str) -> Path | None:
    """The uncompressed or ``.gz`` file ``stem`` in ``folder``, or None."""
    return next((p for p in (folder / stem, folder / f"{stem}.gz") if p.is_file()), None)


def _idx_paths(folder: Path) -> dict[str, Path] | None:
    """Paths of all four IDX files in ``folder`` keyed like :data:`IDX_FILES`, or None."""
    paths = {key: _idx_path(folder, stem) for key, stem in IDX_FILES.items()}
    return None if None in paths.values() else paths


def _idx_arrays(paths: dict[str, Path]) -> dict[str, np.ndarray]:
    """Read the four IDX files and check images are (n, H, W) uint8 with n labels each."""
    arrays = {key: _read_idx(path) for key, path in paths.items()}
    for split in ("train", "test"):
        x, y = arrays[f"x_{split}"], arrays[f"y_{split}"]
        if x.ndim != 3 or x.dtype != np.uint8 or y.ndim != 1 or len(y) != len(x):
            raise PyrovaeError(
                f"IDX files {paths[f'x_{split}']} {x.shape} {x.dtype} and {paths[f'y_{split}']} "
                f"{y.shape} do not hold n uint8 images with n labels; replace them"
            )
    return arrays


def _search_dirs(spec: _IdxSpec, root: Path | None) -> list[Path]:
    base = root if root is not None else DEFAULT_ROOT.expanduser()
    local = [base, base / spec.torchvision_name / "raw"]
    return local + ([Path(d) for d in spec.system_dirs] if root is None else [])


@contextlib.contextmanager
def _socket_timeout(seconds: float) -> Iterator[None]:
    """Temporarily give new sockets a timeout (torchvision's urlopen has none and can hang)."""
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(seconds)
    try:
        yield
    finally:
        socket.setdefaulttimeout(previous)


def _download(spec: _IdxSpec, root: Path | None) -> dict[str, Path] | None:
    """Download through torchvision into ``root`` (default ~/.cache/pyrovae); None on failure."""
    # Imported here: only downloads need torchvision.datasets, which is slow to import.
    import torchvision.datasets

    base = root if root is not None else DEFAULT_ROOT.expanduser()
    dataset_class = getattr(torchvision.datasets, spec.torchvision_name)
    try:
        with _socket_timeout(DOWNLOAD_TIMEOUT_S):
            dataset_class(str(base), train=True, download=True)
    except (RuntimeError, OSError, ValueError):
        return None
    return _idx_paths(base / spec.torchvision_name / "raw")


def _not_found(name: str, spec: _IdxSpec, looked: list[Path], download: bool) -> PyrovaeError:
    tried = "download failed" if download else "download is off"
    how = [
        "run online once with download on to fetch it through torchvision",
        f"pass --data-root DIR holding {', '.join(IDX_FILES.values())} (each may be .gz)",
    ]
    if spec.apt_package:
        how.append(f"`apt-get install {spec.apt_package}`")
    places = ", ".join(str(p) for p in looked)
    return PyrovaeError(f"{name} not found in {places} ({tried}); " + " or ".join(how))


def _load_idx_dataset(
    name: str, *, root: str | None = None, download: bool = True, **_options
) -> Dataset:
    """MNIST-style data from local IDX files, else torchvision; pixels 0..255 scaled to [0, 1].

    Looks in ``root`` and ``root/<TorchvisionName>/raw`` (root defaults to ~/.cache/pyrovae;
    with no root also in system folders such as /usr/share/datasets/fashion-mnist).
    """
    spec = _IDX_SPECS[name]
    root_path = Path(root).expanduser() if root is not None else None
    looked = _search_dirs(spec, root_path)
    paths = next((p for p in map(_idx_paths, looked) if p is not None), None)
    if paths is None and download:
        paths = _download(spec, root_path)
    if paths is None:
        raise _not_found(name, spec, looked, download)
    arrays = _idx_arrays(paths)
    x = {
        k: torch.from_numpy(arrays[k].reshape(len(arrays[k]), -1).astype(np.float32) / 255)
        for k in ("x_train", "x_test")
    }
    y = {k: torch.from_numpy(arrays[k].astype(np.int64)) for k in ("y_train", "y_test")}
    return Dataset(
        name=name,
        x_train=x["x_train"],
        x_test=x["x_test"],
        y_train=y["y_train"],
        y_test=y["y_test"],
        image_shape=tuple(int(d) for d in arrays["x_train"].shape[1:]),
        support="unit",
        num_classes=spec.num_classes,
    )


# --------------------------------------------------------------------------- npz


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
            f"cannot read {path} as an .npz archive ({_first_line(err)}); "
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


def _load_npz(path: Path) -> Dataset:
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
    _checked(dataset)
    dataset.support = _support_of(x_train, x_test)
    return dataset


# --------------------------------------------------------------------------- dispatch

DATASETS: dict[str, Callable[..., Dataset]] = {
    "digits": _load_digits,
    "mnist": partial(_load_idx_dataset, "mnist"),
    "fashion-mnist": partial(_load_idx_dataset, "fashion-mnist"),
    "spiral": _load_spiral,
}
"""Built-in data set name -> loader taking keyword options root, download, spiral_noise."""


def load_dataset(
    name_or_path: str,
    root: str | None = None,
    *,
    download: bool = True,
    spiral_noise: float = 0.05,
) -> Dataset:
    """Load a built-in data set by name (see :data:`DATASETS`) or an ``.npz`` file by path.

    Built-ins: "digits" (sklearn 8x8, rows 0..1436 train, 1437..1796 test, no network),
    "mnist" / "fashion-mnist" (28x28; local IDX files under ``root`` or torchvision download),
    "spiral" (2-D, 2000/500 points, noise std ``spiral_noise``). Any other name ending in
    ``.npz`` or naming an existing file is read as an npz archive.
    """
    if name_or_path in DATASETS:
        dataset = DATASETS[name_or_path](root=root, download=download, spiral_noise=spiral_noise)
        return _checked(dataset)
    path = Path(str(name_or_path)).expanduser()
    if str(name_or_path).endswith(".npz") or path.is_file():
        return _load_npz(path)
    raise PyrovaeError(
        f"unknown data set {name_or_path!r}; use one of {', '.join(DATASETS)} "
        "or a path to an .npz file with x_train and x_test"
    )


# --------------------------------------------------------------------------- helpers


def split_validation(
    x: torch.Tensor, y: torch.Tensor | None, fraction: float, seed: int
) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor, torch.Tensor | None]:
    """Seeded random split of (n, D) rows into (x_train, y_train, x_val, y_val).

    ``round(fraction * n)`` rows go to validation; both parts keep the original row order.
    ``fraction`` must lie in [0, 1); 0 gives (0, D) validation tensors.
    """
    value = _as_float(fraction)
    if value is None or not 0 <= value < 1:
        raise PyrovaeError(f"validation fraction must be in [0, 1), got {fraction!r}; e.g. 0.1")
    n = len(x)
    if y is not None and len(y) != n:
        raise PyrovaeError(f"x has {n} rows but y has {len(y)} labels; pass one label per row")
    n_val = round(value * n)
    if n and n_val >= n:
        raise PyrovaeError(
            f"validation fraction {fraction} of {n} rows leaves no training rows; use a smaller one"
        )
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    train_idx, val_idx = perm[n_val:].sort().values, perm[:n_val].sort().values
    y_train, y_val = (None, None) if y is None else (_rows(y, train_idx), _rows(y, val_idx))
    return _rows(x, train_idx), y_train, _rows(x, val_idx), y_val


def _rows(t: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    return t[idx.to(t.device)]


def binarize(x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Stochastic binarisation: each value p in [0, 1] becomes 1 with probability p, else 0."""
    try:
        return torch.bernoulli(x, generator=generator)
    except RuntimeError as err:
        raise PyrovaeError(
            f"cannot binarize a {tuple(x.shape)} {x.dtype} tensor ({_first_line(err)}); "
            "values must be probabilities in [0, 1]"
        ) from err
