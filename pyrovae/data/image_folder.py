"""Data sets from folders of image files (PNG, JPEG, ... as torchvision reads them).

A folder holds either class folders (torchvision's ``ImageFolder`` layout, ``root/cat/1.png``:
the folder names are the classes, in sorted order) or the images themselves (no labels);
``train/`` and ``test/`` sub-folders, where both exist, are the split, otherwise a seeded
fifth of the images is the test split. Images are read as grey levels when every one is
grey (modes ``1``, ``L``, ``I;16``), otherwise as RGB: palette, grey and grey-alpha images
among colour ones are converted, an alpha channel is dropped. All must share one size unless
``image_size`` is given: then each is resized (shorter side) and centre-cropped to it.
"""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path

import torch
from PIL import Image, UnidentifiedImageError
from torchvision.datasets.folder import IMG_EXTENSIONS
from torchvision.transforms import v2

from pyrovae.data.dataset import Dataset, checked, first_line, recorded_image_shape, support_of
from pyrovae.errors import PyrovaeError

TEST_FRACTION = 0.2
SPLIT_SEED = 20250101
"""Seed of the test split of a folder without ``train/`` and ``test/``: fixed, so that every
run on the folder is tested on the same images."""
GREY_MODES = {"1", "L", "I;16", "I"}


def _image_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMG_EXTENSIONS)


def _labelled_files(folder: Path) -> tuple[list[Path], list[int] | None, list[str] | None]:
    """The images of ``folder``: in class sub-folders (with labels and class names) or flat."""
    classes = sorted(p.name for p in folder.iterdir() if p.is_dir() and _image_files(p))
    flat = _image_files(folder)
    if classes and flat:
        raise PyrovaeError(
            f"{folder} holds both images and class folders ({', '.join(classes[:3])}); put "
            "every image in a class folder, or none"
        )
    if not classes:
        return flat, None, None
    files, labels = [], []
    for index, name in enumerate(classes):
        found = _image_files(folder / name)
        files += found
        labels += [index] * len(found)
    return files, labels, classes


@contextmanager
def _unreadable_as_error(path: Path):
    try:
        yield
    except (OSError, UnidentifiedImageError, ValueError) as err:
        raise PyrovaeError(
            f"cannot read {path} as an image ({first_line(err)}); remove it or save it again"
        ) from err


def _mode(path: Path) -> str:
    """The image's mode, read from its header alone (no pixels decoded)."""
    with _unreadable_as_error(path), Image.open(path) as image:
        return image.mode


def _decoded(path: Path, grey: bool) -> torch.Tensor:
    """``(C, H, W)`` uint8 pixels of the image at ``path``, as grey levels or RGB."""
    with _unreadable_as_error(path), Image.open(path) as image:
        return v2.functional.pil_to_tensor(image.convert("L" if grey else "RGB"))


def _tensors(files: list[Path], grey: bool, image_size: int | None) -> torch.Tensor:
    """``(n, C, H, W)`` uint8 images of ``files``, as one mode and, with ``image_size``, one
    size (resize of the shorter side, then a centre crop)."""
    resize = None
    if image_size is not None:
        resize = v2.Compose([v2.Resize(image_size, antialias=True), v2.CenterCrop(image_size)])
    images, first = [], None
    for path in files:
        t = _decoded(path, grey)
        if resize is not None:
            t = resize(t)
        if first is None:
            first = (path, tuple(t.shape[1:]))
        elif tuple(t.shape[1:]) != first[1]:
            raise PyrovaeError(
                f"{path} is {t.shape[2]}x{t.shape[1]} but {first[0].name} is "
                f"{first[1][1]}x{first[1][0]}; pass --image-size N to resize and crop every "
                "image to N x N"
            )
        images.append(t)
    return torch.stack(images)


def load_image_folder(path: Path, image_size: int | None = None) -> Dataset:
    """A data set of the images under ``path`` (see the module's docstring); values are the
    8-bit levels divided by 255, rows flattened channel-first."""
    if image_size is not None and image_size < 4:
        raise PyrovaeError(f"--image-size must be at least 4 pixels, got {image_size}")
    split = (path / "train").is_dir() and (path / "test").is_dir()
    parts = [path / "train", path / "test"] if split else [path]
    found = [_labelled_files(part) for part in parts]
    if not all(files for files, _, _ in found):
        empty = next(part for part, (files, _, _) in zip(parts, found, strict=True) if not files)
        raise PyrovaeError(
            f"{empty} holds no image files ({', '.join(sorted(IMG_EXTENSIONS)[:6])}, ...); "
            "point --dataset at a folder of images or of class folders"
        )
    if split and found[0][2] != found[1][2]:
        raise PyrovaeError(
            f"{path}/train and {path}/test have different class folders "
            f"({found[0][2]} and {found[1][2]}); give both the same classes"
        )
    files = [f for part, _, _ in found for f in part]
    grey = all(_mode(f) in GREY_MODES for f in files)
    x = _tensors(files, grey, image_size)
    labels = None if found[0][1] is None else torch.tensor([y for _, ys, _ in found for y in ys])
    if split:
        n_train = len(found[0][0])
        train_idx, test_idx = torch.arange(n_train), torch.arange(n_train, len(files))
    else:
        perm = torch.randperm(len(files), generator=torch.Generator().manual_seed(SPLIT_SEED))
        n_test = max(1, round(TEST_FRACTION * len(files)))
        test_idx, train_idx = perm[:n_test].sort().values, perm[n_test:].sort().values
    rows = x.reshape(len(x), -1).to(torch.float32) / 255.0
    channels, height, width = (int(d) for d in x.shape[1:])
    classes = found[0][2]
    dataset = Dataset(
        name=path.name,
        x_train=rows[train_idx],
        x_test=rows[test_idx],
        y_train=None if labels is None else labels[train_idx],
        y_test=None if labels is None else labels[test_idx],
        image_shape=recorded_image_shape(channels, height, width),
        support="unit",
        num_classes=None if classes is None else len(classes),
        class_names=None if classes is None else tuple(classes),
        levels=256,  # 8-bit images, resized as 8-bit images
        layout=(
            f"{path.name}/: {len(files)} {'grey' if grey else 'RGB'} images "
            f"{width}x{height}{' (resized and centre-cropped)' if image_size else ''}, "
            f"{len(classes) if classes else 'no'} class folders, "
            f"{'train/ and test/' if split else f'a seeded {TEST_FRACTION:.0%} test split'}"
        ),
    )
    checked(dataset)
    dataset.support = support_of(dataset.x_train, dataset.x_test)
    return dataset
