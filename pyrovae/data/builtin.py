"""The built-in data sets that need no download: scikit-learn's digits and the 2-D spiral."""

from __future__ import annotations

import math

import torch
from sklearn.datasets import load_digits as sklearn_digits

from pyrovae.data.dataset import Dataset, as_float
from pyrovae.errors import PyrovaeError

# --------------------------------------------------------------------------- digits

DIGITS_N_TRAIN = 1437
"""Rows of sklearn's digits used for training; the remaining 360 rows are the test set."""


def load_digits(**_options) -> Dataset:
    """sklearn's 1797 8x8 digits scaled from 0..16 to [0, 1]: rows 0..1436 train, 1437.. test."""
    bunch = sklearn_digits()
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
        levels=17,  # the counts 0..16, divided by 16
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


def load_spiral(*, spiral_noise: float = 0.05, **_options) -> Dataset:
    """2000 train / 500 test spiral points in about [-1, 1]^2 with N(0, spiral_noise^2) noise.

    t ~ U(pi/2, 3pi) and the unit noise come from one generator seeded with 0, so the data set
    is the same on every call and t does not depend on ``spiral_noise``.
    """
    noise = as_float(spiral_noise)
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
