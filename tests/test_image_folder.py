"""Folders of image files: class folders, flat folders, train/ and test/, sizes and modes."""

import re
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

import pyrovae
from pyrovae.data import load_dataset
from pyrovae.errors import PyrovaeError
from tests.colour_images import shapes

CLASSES = ("disc", "square")


def _write(folder, n=60, size=16, classes=True, seed=0):
    images, labels = shapes(n, size, seed)
    for i, (image, label) in enumerate(zip(images, labels, strict=True)):
        where = folder / CLASSES[label] if classes else folder
        where.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(where / f"{i:04d}.png")
    return images, labels


def test_class_folders_give_labels_names_and_a_seeded_test_split(tmp_path):
    images, labels = _write(tmp_path / "shapes")
    dataset = load_dataset(str(tmp_path / "shapes"))
    assert dataset.image_shape == (3, 16, 16)
    assert dataset.class_names == CLASSES and dataset.num_classes == 2
    assert len(dataset.x_train) + len(dataset.x_test) == 60 and len(dataset.x_test) == 12
    # Every row is one of the written images, with the label of its folder.
    written = {
        tuple(np.moveaxis(im, 2, 0).reshape(-1)): int(y)
        for im, y in zip(images, labels, strict=True)
    }
    for x, y in zip(dataset.x_train, dataset.y_train, strict=True):
        assert written[tuple(torch.round(x * 255).to(torch.uint8).tolist())] == int(y)
    again = load_dataset(str(tmp_path / "shapes"))
    assert torch.equal(again.x_test, dataset.x_test)  # the same split every time
    assert "60 RGB images 16x16, 2 class folders" in dataset.layout


def test_a_flat_folder_has_no_labels_and_train_test_folders_are_the_split(tmp_path):
    _write(tmp_path / "flat", n=40, classes=False)
    flat = load_dataset(str(tmp_path / "flat"))
    assert flat.y_train is None and flat.image_shape == (3, 16, 16)
    _write(tmp_path / "split" / "train", n=40, seed=1)
    _write(tmp_path / "split" / "test", n=20, seed=2)
    split = load_dataset(str(tmp_path / "split"))
    assert (len(split.x_train), len(split.x_test)) == (40, 20)
    assert "train/ and test/" in split.layout


def test_sizes_are_made_one_by_image_size_and_modes_by_the_documented_conversion(tmp_path):
    folder = tmp_path / "mixed"
    _write(folder, n=30, classes=False)
    Image.fromarray(np.full((20, 24, 3), 200, np.uint8)).save(folder / "big.png")
    with pytest.raises(PyrovaeError, match=r"big.png is 24x20 .* pass --image-size N"):
        load_dataset(str(folder))
    Image.fromarray(np.full((16, 16), 90, np.uint8)).save(folder / "grey.png")
    Image.fromarray(np.full((16, 16, 3), 50, np.uint8)).convert("P").save(folder / "pal.png")
    Image.fromarray(np.full((16, 16, 4), 70, np.uint8), "RGBA").save(folder / "alpha.png")
    dataset = load_dataset(str(folder), image_size=8)
    assert dataset.image_shape == (3, 8, 8)
    rows = torch.cat([dataset.x_train, dataset.x_test])
    # The grey image became an RGB image of equal channels; the big one, resized, is uniform.
    grey = torch.full((3 * 64,), 90 / 255)
    assert any(torch.allclose(r, grey, atol=1e-6) for r in rows)
    all_grey = tmp_path / "grey"
    all_grey.mkdir()
    for i in range(30):
        Image.fromarray(np.full((8, 8), 8 * i, np.uint8)).save(all_grey / f"{i}.png")
    assert load_dataset(str(all_grey)).image_shape == (8, 8)


def test_unreadable_empty_and_mixed_folders_are_one_line(tmp_path):
    bad = tmp_path / "bad"
    _write(bad, n=20, classes=False)
    (bad / "broken.png").write_bytes(b"not a png")
    with pytest.raises(PyrovaeError, match=r"cannot read .*broken.png as an image"):
        load_dataset(str(bad))
    (tmp_path / "empty").mkdir()
    with pytest.raises(PyrovaeError, match="holds no image files"):
        load_dataset(str(tmp_path / "empty"))
    both = tmp_path / "both"
    _write(both, n=20)
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(both / "stray.png")
    with pytest.raises(PyrovaeError, match="holds both images and class folders"):
        load_dataset(str(both))
    with pytest.raises(PyrovaeError, match="drop --image-size"):
        load_dataset("digits", image_size=8)


def test_a_folder_run_trains_resumes_reloads_and_diagnoses_and_the_cli_reads_it(tmp_path):
    _write(tmp_path / "shapes", n=80, size=20)
    out = tmp_path / "run"
    common = dict(dataset=str(tmp_path / "shapes"), image_size=16, latent_dim=3, hidden=(32,))
    run = pyrovae.train(**common, epochs=2, out=str(out), quiet=True)
    assert run.data.dataset.image_shape == (3, 16, 16) and run.config.image_size == 16
    pyrovae.train(resume=str(out), epochs=3, quiet=True)
    loaded = pyrovae.load_run(out)
    assert torch.equal(loaded.data.x_test, run.data.x_test)
    numbers = pyrovae.diagnose(
        loaded, iwae_samples=10, nuts_points=0, amortization_points=0, max_points=10
    )
    assert np.isfinite(numbers["iwae_log_likelihood"])
    Image.fromarray(np.zeros((20, 24, 3), np.uint8)).save(tmp_path / "shapes" / "disc" / "w.png")
    result = subprocess.run(
        [sys.executable, "scripts/train_svi.py", "--dataset", str(tmp_path / "shapes"),
         "--epochs", "1", "--hidden", "16", "--quiet", "--out", str(tmp_path / "cli")],
        capture_output=True, text=True,
    )  # fmt: skip
    lines = result.stderr.strip().splitlines()
    assert result.returncode != 0 and len(lines) == 1
    assert re.match(r"error: .*w.png is 24x20 but .* pass --image-size N", lines[0]), lines
