"""Tests for pyrovae.data against independent truths (sklearn, numpy-written files, maths)."""

import gzip
import math
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits
from torchvision.datasets.mnist import read_image_file, read_label_file

from pyrovae.data import (
    DATASETS,
    Dataset,
    binarize,
    check_data,
    load_dataset,
    spiral_curve,
    split_validation,
)
from pyrovae.errors import PyrovaeError

FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")


def raises_one_line(match: str):
    """pytest.raises(PyrovaeError) that also checks the message is a single line."""

    class _Check:
        def __enter__(self):
            self._ctx = pytest.raises(PyrovaeError, match=match)
            self.info = self._ctx.__enter__()
            return self.info

        def __exit__(self, *exc):
            handled = self._ctx.__exit__(*exc)
            assert "\n" not in str(self.info.value), str(self.info.value)
            return handled

    return _Check()


def write_idx(path: Path, array: np.ndarray, compress: bool = False) -> None:
    """Write a uint8 IDX file: magic 0x0000080<ndim>, big-endian int32 dims, then the bytes."""
    header = np.array([0x800 + array.ndim, *array.shape], dtype=">i4").tobytes()
    data = header + array.astype(np.uint8).tobytes()
    if compress:
        path = path.with_name(path.name + ".gz")
        data = gzip.compress(data)
    path.write_bytes(data)


@pytest.fixture
def tiny_idx(tmp_path):
    """Four tiny MNIST-named IDX files (train images gzipped) and the arrays written."""
    rng = np.random.default_rng(0)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (5, 4, 3)),
        "train-labels-idx1-ubyte": rng.integers(0, 10, 5),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (2, 4, 3)),
        "t10k-labels-idx1-ubyte": rng.integers(0, 10, 2),
    }
    for name, array in arrays.items():
        write_idx(tmp_path / name, array, compress=name.startswith("train-images"))
    return tmp_path, arrays


# --------------------------------------------------------------------------- digits


def test_digits_matches_sklearn():
    data = load_dataset("digits")
    truth = load_digits()
    assert data.name == "digits"
    assert data.x_train.shape == (1437, 64) and data.x_test.shape == (360, 64)
    assert data.x_dim == 64 and data.x_train.dtype == torch.float32
    assert data.x_train.min() >= 0 and data.x_train.max() <= 1 and data.x_train.max() == 1
    np.testing.assert_array_equal((data.x_train[0] * 16).numpy(), truth.data[0])
    np.testing.assert_array_equal((data.x_test[-1] * 16).numpy(), truth.data[-1])
    np.testing.assert_array_equal(data.y_train.numpy(), truth.target[:1437])
    np.testing.assert_array_equal(data.y_test.numpy(), truth.target[1437:])
    assert data.y_train.dtype == torch.int64
    assert (data.image_shape, data.support, data.num_classes) == ((8, 8), "unit", 10)


def test_registry_names():
    assert {"digits", "mnist", "fashion-mnist", "spiral"} <= set(DATASETS)


def test_unknown_name_lists_known_names():
    with raises_one_line("unknown data set 'nope'") as info:
        load_dataset("nope")
    assert all(name in str(info.value) for name in DATASETS) and ".npz" in str(info.value)


# --------------------------------------------------------------------------- npz


def test_npz_round_trip_rank2_with_labels(tmp_path):
    rng = np.random.default_rng(1)
    x_train, x_test = rng.normal(size=(7, 3)), rng.normal(size=(4, 3))
    y_train, y_test = np.array([0, 1, 2, 0, 1, 2, 4]), np.array([1, 1, 0, 3])
    path = tmp_path / "toy.npz"
    np.savez(path, x_train=x_train, x_test=x_test, y_train=y_train, y_test=y_test)
    data = load_dataset(str(path))
    assert isinstance(data, Dataset) and data.name == "toy"
    np.testing.assert_allclose(data.x_train.numpy(), x_train.astype(np.float32))
    np.testing.assert_allclose(data.x_test.numpy(), x_test.astype(np.float32))
    np.testing.assert_array_equal(data.y_train.numpy(), y_train)
    np.testing.assert_array_equal(data.y_test.numpy(), y_test)
    assert data.x_train.dtype == torch.float32 and data.y_train.dtype == torch.int64
    assert (data.image_shape, data.support, data.num_classes, data.x_dim) == (None, "real", 5, 3)


def test_npz_rank3_images_flattened_without_labels(tmp_path):
    rng = np.random.default_rng(2)
    x_train, x_test = rng.random((6, 2, 5)), rng.random((3, 2, 5))
    path = tmp_path / "imgs.npz"
    np.savez_compressed(path, x_train=x_train, x_test=x_test)
    data = load_dataset(str(path))
    np.testing.assert_allclose(data.x_train.numpy(), x_train.reshape(6, 10).astype(np.float32))
    np.testing.assert_allclose(data.x_test[2].numpy(), x_test[2].ravel().astype(np.float32))
    assert data.image_shape == (2, 5) and data.support == "unit"
    assert data.y_train is None and data.y_test is None and data.num_classes is None


def save_npz(tmp_path, **arrays):
    path = tmp_path / "bad.npz"
    np.savez(path, **arrays)
    return str(path)


GOOD = {"x_train": np.zeros((4, 3)), "x_test": np.zeros((2, 3))}


@pytest.mark.parametrize(
    ("changes", "match"),
    [
        ({"x_train": np.zeros((4, 2, 2, 2, 2))}, r"x_train has shape \(4, 2, 2, 2, 2\): expected"),
        ({"x_test": np.zeros(5)}, r"x_test has shape \(5,\): expected"),
        ({"x_test": np.zeros((2, 4))}, "differ"),
        ({"x_train": np.array([[0, np.nan, np.nan]] * 4)}, "x_train has 8 NaN values"),
        ({"x_test": np.array([[np.inf, 0, 0]] * 2)}, "x_test has 2 inf values"),
        ({"y_train": np.zeros(3, dtype=int)}, r"y_train has shape \(3,\) but needs shape \(4,\)"),
        ({"y_train": np.array([0.0, 1.5, 2.0, 1.0])}, "y_train must hold non-negative integer"),
        ({"y_test": np.array([-1, 0])}, "y_test must hold non-negative integer"),
        ({"x_train": np.array([["a"] * 3] * 4)}, "x_train has dtype"),
    ],
)
def test_npz_bad_arrays(tmp_path, changes, match):
    path = save_npz(tmp_path, **{**GOOD, **changes})
    with raises_one_line(match):
        load_dataset(path)


def test_npz_missing_key_names_key_and_present_keys(tmp_path):
    path = save_npz(tmp_path, x_train=np.zeros((4, 3)), images=np.zeros((2, 3)))
    with raises_one_line("no array 'x_test'") as info:
        load_dataset(path)
    assert "images" in str(info.value) and "x_train" in str(info.value)


def test_npz_missing_file(tmp_path):
    with raises_one_line("no such file"):
        load_dataset(str(tmp_path / "absent.npz"))


@pytest.mark.parametrize(
    "garbage", [b"this is not a zip archive\n" * 20, b"PK\x03\x04" + b"\x00" * 50]
)
def test_npz_corrupt_file(tmp_path, garbage):
    path = tmp_path / "broken.npz"
    path.write_bytes(garbage)
    with raises_one_line("cannot read .*broken.npz"):
        load_dataset(str(path))


def test_npy_file_is_not_an_npz(tmp_path):
    path = tmp_path / "single.npz"
    with open(path, "wb") as f:
        np.save(f, np.zeros((3, 3)))
    with raises_one_line("single .npy array, not an .npz archive"):
        load_dataset(str(path))


def test_existing_file_without_npz_suffix_goes_to_npz_loader(tmp_path):
    path = tmp_path / "data.bin"
    np.savez(path, **GOOD)  # numpy appends .npz, so rename it
    (tmp_path / "data.bin.npz").rename(path)
    assert load_dataset(str(path)).name == "data"


# --------------------------------------------------------------------------- check_data


def test_check_data_accepts_good_input():
    x = torch.rand(5, 3)
    for support in (None, "real", "unit"):
        check_data(x, support=support)
    check_data(torch.bernoulli(x), support="binary")
    check_data(torch.randn(5, 3) * 10, support="real")


@pytest.mark.parametrize(
    ("x", "kwargs", "match"),
    [
        (torch.zeros(3), {"name": "x_train"}, r"x_train has shape \(3,\)"),
        (torch.zeros(2, 2, 2), {}, r"x has shape \(2, 2, 2\)"),
        (
            torch.tensor([[0.0, float("nan")], [float("nan"), float("nan")]]),
            {"name": "x_train"},
            "x_train has 3 NaN values; clean or impute",
        ),
        (torch.tensor([[float("inf"), -float("inf")]]), {"name": "x_val"}, "x_val has 2 inf"),
        (
            torch.tensor([[-0.3, 1.2]]),
            {"name": "x_train", "support": "unit", "likelihood": "bernoulli"},
            r"x_train has values in \[-0.3, 1.2\] but the bernoulli likelihood needs \[0, 1\]",
        ),
        (torch.tensor([[0.0, 1.5]]), {"support": "unit"}, r"\[0, 1.5\].*--likelihood gaussian"),
        (torch.tensor([[0.0, 0.5, 1.0]]), {"support": "binary"}, "1 values that are not"),
        (torch.zeros(2, 2), {"support": "positive"}, "unknown support 'positive'"),
        (np.zeros((2, 2)), {}, "not a torch.Tensor"),
    ],
)
def test_check_data_rejects(x, kwargs, match):
    with raises_one_line(match):
        check_data(x, **kwargs)


# --------------------------------------------------------------------------- IDX / MNIST


def test_idx_folder_with_gz_file(tiny_idx):
    root, arrays = tiny_idx
    data = load_dataset("mnist", root=str(root))
    images = arrays["train-images-idx3-ubyte"]
    np.testing.assert_allclose(
        (data.x_train * 255).round().numpy(), images.reshape(5, 12).astype(np.float32)
    )
    np.testing.assert_allclose(
        (data.x_test * 255).round().numpy(), arrays["t10k-images-idx3-ubyte"].reshape(2, 12)
    )
    np.testing.assert_array_equal(data.y_train.numpy(), arrays["train-labels-idx1-ubyte"])
    np.testing.assert_array_equal(data.y_test.numpy(), arrays["t10k-labels-idx1-ubyte"])
    assert (data.image_shape, data.support, data.num_classes) == ((4, 3), "unit", 10)
    assert data.x_train.dtype == torch.float32 and data.y_train.dtype == torch.int64


def test_idx_writer_agrees_with_torchvision_reader(tiny_idx):
    """The test's own IDX writer produces files torchvision reads back identically."""
    root, arrays = tiny_idx
    images = read_image_file(str(root / "t10k-images-idx3-ubyte"))
    labels = read_label_file(str(root / "t10k-labels-idx1-ubyte"))
    np.testing.assert_array_equal(images.numpy(), arrays["t10k-images-idx3-ubyte"])
    np.testing.assert_array_equal(labels.numpy(), arrays["t10k-labels-idx1-ubyte"])


def test_idx_torchvision_layout(tiny_idx, tmp_path_factory):
    src, arrays = tiny_idx
    root = tmp_path_factory.mktemp("tv")
    raw = root / "FashionMNIST" / "raw"
    raw.mkdir(parents=True)
    for path in src.iterdir():
        (raw / path.name).write_bytes(path.read_bytes())
    data = load_dataset("fashion-mnist", root=str(root))
    assert data.name == "fashion-mnist" and data.x_train.shape == (5, 12)
    np.testing.assert_array_equal(data.y_test.numpy(), arrays["t10k-labels-idx1-ubyte"])


def test_idx_truncated_file_is_named(tiny_idx):
    root, _ = tiny_idx
    path = root / "t10k-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:-5])
    with raises_one_line("t10k-images-idx3-ubyte is truncated"):
        load_dataset("mnist", root=str(root))


def test_idx_corrupt_gzip_is_named(tiny_idx):
    root, _ = tiny_idx
    (root / "train-images-idx3-ubyte.gz").write_bytes(b"definitely not gzip")
    with raises_one_line("train-images-idx3-ubyte.gz"):
        load_dataset("mnist", root=str(root))


def test_missing_mnist_without_download_fails_fast(tmp_path):
    start = time.perf_counter()
    with raises_one_line("mnist not found in") as info:
        load_dataset("mnist", root=str(tmp_path), download=False)
    assert time.perf_counter() - start < 2
    assert str(tmp_path) in str(info.value) and "--data-root" in str(info.value)
    assert list(tmp_path.iterdir()) == []


def test_failed_download_becomes_pyrovae_error(tmp_path, monkeypatch):
    import torchvision.datasets

    def offline(*args, **kwargs):
        raise RuntimeError("Error downloading train-images-idx3-ubyte.gz:\nno network")

    monkeypatch.setattr(torchvision.datasets, "FashionMNIST", offline)
    with raises_one_line("fashion-mnist not found .*download failed") as info:
        load_dataset("fashion-mnist", root=str(tmp_path), download=True)
    assert "apt-get install dataset-fashion-mnist" in str(info.value)


@pytest.mark.skipif(not FASHION_DIR.is_dir(), reason="dataset-fashion-mnist is not installed")
def test_fashion_mnist_from_system_folder(tmp_path):
    data = load_dataset("fashion-mnist", download=False)
    assert data.x_train.shape == (60000, 784) and data.x_test.shape == (10000, 784)
    assert torch.bincount(data.y_train).tolist() == [6000] * 10
    assert torch.bincount(data.y_test).tolist() == [1000] * 10
    assert data.x_train.min() == 0 and data.x_train.max() == 1
    # Independent reader: torchvision on a decompressed copy of the test images.
    raw = tmp_path / "t10k-images-idx3-ubyte"
    raw.write_bytes(gzip.decompress((FASHION_DIR / "t10k-images-idx3-ubyte.gz").read_bytes()))
    truth = read_image_file(str(raw)).reshape(10000, 784).float()
    assert torch.equal((data.x_test * 255).round(), truth)


# --------------------------------------------------------------------------- spiral


@pytest.mark.parametrize("noise", [0.05, 0.1])
def test_spiral_points_lie_within_noise_of_curve(noise):
    data = load_dataset("spiral", spiral_noise=noise)
    for x, t in ((data.x_train, data.extras["t_train"]), (data.x_test, data.extras["t_test"])):
        residual = (x - spiral_curve(t)).norm(dim=1).mean().item()
        assert residual == pytest.approx(noise * math.sqrt(math.pi / 2), rel=0.15)


def test_spiral_shape_range_and_metadata():
    data = load_dataset("spiral")
    assert data.x_train.shape == (2000, 2) and data.x_test.shape == (500, 2)
    assert (data.image_shape, data.support, data.y_train, data.y_test) == (None, "real", None, None)
    low, high = data.extras["t_range"]
    assert (low, high) == pytest.approx((math.pi / 2, 3 * math.pi))
    t = torch.cat([data.extras["t_train"], data.extras["t_test"]])
    assert t.min() >= low and t.max() <= high and t.shape == (2500,)
    assert data.x_train.abs().max() < 1.3


def test_spiral_curve_formula():
    t = torch.tensor([math.pi / 2, math.pi, 3 * math.pi])
    expected = torch.tensor([[0.0, 1 / 6], [-1 / 3, 0.0], [-1.0, 0.0]])
    assert torch.allclose(spiral_curve(t), expected, atol=1e-6)


def test_spiral_is_deterministic_and_noise_free_at_zero():
    a, b = load_dataset("spiral"), load_dataset("spiral")
    assert torch.equal(a.x_train, b.x_train) and torch.equal(a.x_test, b.x_test)
    clean = load_dataset("spiral", spiral_noise=0.0)
    assert torch.equal(clean.extras["t_train"], a.extras["t_train"])
    assert torch.allclose(clean.x_train, spiral_curve(clean.extras["t_train"]))


@pytest.mark.parametrize("noise", [-0.1, float("nan"), "big"])
def test_spiral_bad_noise(noise):
    with raises_one_line("spiral noise must be"):
        load_dataset("spiral", spiral_noise=noise)


# --------------------------------------------------------------------------- splits, binarize


def test_split_validation_sizes_disjoint_and_aligned():
    x = torch.arange(50.0).repeat(3, 1).T  # row i is (i, i, i)
    y = torch.arange(50)
    x_tr, y_tr, x_val, y_val = split_validation(x, y, 0.2, seed=3)
    assert x_tr.shape == (40, 3) and x_val.shape == (10, 3)
    assert torch.equal(x_tr[:, 0].long(), y_tr) and torch.equal(x_val[:, 0].long(), y_val)
    ids = torch.cat([y_tr, y_val])
    assert torch.equal(ids.sort().values, y) and len(set(y_tr.tolist()) & set(y_val.tolist())) == 0


def test_split_validation_seeded():
    x = torch.randn(30, 2)
    a = split_validation(x, None, 0.3, seed=1)
    b = split_validation(x, None, 0.3, seed=1)
    c = split_validation(x, None, 0.3, seed=2)
    assert torch.equal(a[2], b[2]) and not torch.equal(a[2], c[2])
    assert a[1] is None and a[3] is None and len(a[2]) == round(0.3 * 30)


def test_split_validation_zero_fraction():
    x, y = torch.randn(8, 4), torch.arange(8)
    x_tr, y_tr, x_val, y_val = split_validation(x, y, 0.0, seed=0)
    assert torch.equal(x_tr, x) and torch.equal(y_tr, y)
    assert x_val.shape == (0, 4) and y_val.shape == (0,)


@pytest.mark.parametrize("fraction", [-0.1, 1.0, 1.5, "half"])
def test_split_validation_bad_fraction(fraction):
    with raises_one_line("validation fraction must be in"):
        split_validation(torch.zeros(10, 2), None, fraction, seed=0)


def test_split_validation_label_count_mismatch():
    with raises_one_line("x has 10 rows but y has 9 labels"):
        split_validation(torch.zeros(10, 2), torch.zeros(9), 0.1, seed=0)


def test_binarize():
    p = torch.full((20000, 1), 0.3)
    a = binarize(p, torch.Generator().manual_seed(0))
    b = binarize(p, torch.Generator().manual_seed(0))
    assert torch.equal(a, b) and set(a.unique().tolist()) <= {0.0, 1.0}
    assert a.mean().item() == pytest.approx(0.3, abs=0.02)
    with raises_one_line("cannot binarize"):
        binarize(torch.tensor([[1.5]]))
