"""MNIST-style data sets from IDX files: a local folder, Debian's package, or torchvision."""

from __future__ import annotations

import contextlib
import gzip
import socket
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from pyrovae.data.dataset import Dataset, first_line
from pyrovae.errors import PyrovaeError

DEFAULT_ROOT = Path("~/.cache/pyrovae")
"""Where torchvision downloads MNIST / Fashion-MNIST when no ``root`` is given."""

DOWNLOAD_TIMEOUT_S = 10.0
"""Socket timeout (seconds) for torchvision downloads, so a dead network fails fast."""

IDX_FILES = {
    "x_train": "train-images-idx3-ubyte",
    "y_train": "train-labels-idx1-ubyte",
    "x_test": "t10k-images-idx3-ubyte",
    "y_test": "t10k-labels-idx1-ubyte",
}
"""IDX file names (each may also end in ``.gz``) of the MNIST-style data sets."""

# IDX type byte -> numpy dtype (multi-byte types are big-endian).
_IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


FASHION_MNIST_CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)  # fmt: skip


@dataclass(frozen=True)
class _IdxSpec:
    torchvision_name: str  # class in torchvision.datasets, also its folder under root
    num_classes: int
    class_names: tuple[str, ...] | None = None
    system_dirs: tuple[str, ...] = ()  # searched only when no root is given
    apt_package: str | None = None


_IDX_SPECS = {
    "mnist": _IdxSpec("MNIST", 10),
    "fashion-mnist": _IdxSpec(
        "FashionMNIST",
        10,
        FASHION_MNIST_CLASSES,
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
            f"cannot read IDX file {path} ({first_line(err)}); delete it and get it again"
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
    before = _existing_dirs(base)
    try:
        with _socket_timeout(DOWNLOAD_TIMEOUT_S):
            dataset_class(str(base), train=True, download=True)
    except (RuntimeError, OSError, ValueError):
        _remove_new_empty_dirs(base, before)
        return None
    return _idx_paths(base / spec.torchvision_name / "raw")


def _existing_dirs(base: Path) -> set[Path]:
    """``base`` and the folders below it (and above it, up to the first existing one)."""
    found = {p for p in [base, *base.parents] if p.is_dir()}
    return found | ({p for p in base.rglob("*") if p.is_dir()} if base.is_dir() else set())


def _remove_new_empty_dirs(base: Path, before: set[Path]) -> None:
    """Remove the folders a failed download created, when they are empty, deepest first."""
    created = [p for p in [*base.rglob("*"), base, *base.parents] if p.is_dir() and p not in before]
    for folder in sorted(created, key=lambda p: len(p.parts), reverse=True):
        try:
            folder.rmdir()  # only empty folders go
        except OSError:
            pass


def _not_found(name: str, spec: _IdxSpec, looked: list[Path], download: bool) -> PyrovaeError:
    tried = "the download failed: no network?" if download else "download is off"
    how = [
        "run once with network access (it downloads by itself, into --data-root or "
        "~/.cache/pyrovae)",
        f"pass --data-root DIR holding {', '.join(IDX_FILES.values())} (each may be .gz)",
    ]
    if spec.apt_package:
        how.append(f"`apt-get install {spec.apt_package}`")
    places = ", ".join(str(p) for p in looked)
    return PyrovaeError(f"{name} not found in {places} ({tried}); " + " or ".join(how))


def load_idx_dataset(
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
    empty = [k for k in ("x_train", "x_test") if len(arrays[k]) == 0]
    if empty:
        raise PyrovaeError(
            f"the IDX files of {name} hold no {' and no '.join(empty)} images (their headers "
            "say 0); delete them and get them again"
        )
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
        class_names=spec.class_names,
        levels=256 if arrays["x_train"].dtype == np.uint8 else None,
    )
