"""From a loaded data set to the tensors a run trains on: validation split, binarization."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from pyrovae.data.dataset import Dataset, as_float, check_data, first_line
from pyrovae.errors import PyrovaeError


def split_validation(
    x: torch.Tensor, y: torch.Tensor | None, fraction: float, seed: int
) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor, torch.Tensor | None]:
    """Seeded random split of (n, D) rows into (x_train, y_train, x_val, y_val).

    ``round(fraction * n)`` rows go to validation; both parts keep the original row order.
    ``fraction`` must lie in [0, 1); 0 gives (0, D) validation tensors.
    """
    value = as_float(fraction)
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
    """Stochastic binarization: each value p in [0, 1] becomes 1 with probability p, else 0."""
    try:
        return torch.bernoulli(x, generator=generator)
    except RuntimeError as err:
        raise PyrovaeError(
            f"cannot binarize a {tuple(x.shape)} {x.dtype} tensor ({first_line(err)}); "
            "values must be probabilities in [0, 1]"
        ) from err


HELD_OUT_BINARIZATION_SEED = 20141220
"""Seed of the one-off binarization of validation and test rows: fixed, so that held-out
ELBOs of runs with different ``--seed`` are computed on the same binary images."""

SUPPORTS = ("binary", "levels", "unit", "real")


@dataclass
class PreparedData:
    """The tensors a run trains and evaluates on, after validation split and binarization.

    :param observation: the name of the distribution the model observes x with (e.g.
        ``Bernoulli``), as read from the model; it decided the preparation.
    :param support: what that distribution scores (one of :data:`SUPPORTS`).
    :param x_train: ``(n_train, D)`` as the model sees it (gray levels under dynamic
        binarization, which draws fresh binary pixels for every batch).
    :param x_val_gray, x_test_gray: with dynamic binarization, the held-out rows before
        their one-off binarization (else None): classifiers trained on binarized batches are
        scored on these gray-level images.
    """

    dataset: Dataset
    observation: str
    x_train: torch.Tensor
    y_train: torch.Tensor | None
    x_val: torch.Tensor
    y_val: torch.Tensor | None
    x_test: torch.Tensor
    y_test: torch.Tensor | None
    dynamic_binarization: bool
    x_val_gray: torch.Tensor | None = None
    x_test_gray: torch.Tensor | None = None
    support: str = "real"

    @property
    def discrete(self) -> bool:
        """Whether the held-out rows are scored by a probability mass function (binary or
        quantized values), so that log-likelihoods convert to bits per dimension."""
        # Gray levels scored by a Bernoulli (--gray-bernoulli) are not a probability mass.
        return self.support == "levels" or (self.support == "binary" and _is_binary(self.x_test))

    @property
    def batch_transform(self):
        """What every training batch goes through: :func:`binarize` or nothing (None)."""
        return binarize if self.dynamic_binarization else None

    def training_rows(self, count: int) -> torch.Tensor:
        """The first ``count`` training rows as the model scores them: under dynamic
        binarization, one fixed binarization (seeded like the held-out rows')."""
        x = self.x_train[:count]
        if not self.dynamic_binarization:
            return x
        return binarize(x, torch.Generator().manual_seed(HELD_OUT_BINARIZATION_SEED + 1))


def _is_binary(x: torch.Tensor) -> bool:
    return bool(((x == 0) | (x == 1)).all())


def prepare(
    dataset: Dataset,
    *,
    support: str,
    observation: str,
    binarization: str = "dynamic",
    allow_gray: bool = False,
    val_fraction: float = 0.1,
    seed: int = 0,
) -> PreparedData:
    """Split off validation rows and make the data fit the model's observation distribution.

    :param support: what that distribution scores: ``"binary"`` (0/1, a Bernoulli),
        ``"levels"`` (quantized values in [0, 1]), ``"unit"`` (values in [0, 1]) or ``"real"``.
    :param observation: its name, for the messages and the run's summary.
    :param binarization: for binary support and gray-level data: ``"dynamic"`` (a fresh
        Bernoulli draw of every pixel for each batch; held-out rows drawn once with
        :data:`HELD_OUT_BINARIZATION_SEED`), ``"threshold"`` (x > 0.5) or ``"none"``.
    :param allow_gray: with ``"none"``, score gray levels anyway (a cross-entropy, not a
        normalized likelihood).
    """
    if support not in SUPPORTS:
        raise PyrovaeError(f"unknown support {support!r}; use one of {', '.join(SUPPORTS)}")
    x_train, y_train, x_val, y_val = split_validation(
        dataset.x_train, dataset.y_train, val_fraction, seed
    )
    x_test, y_test = dataset.x_test, dataset.y_test
    dynamic, gray = False, (None, None)
    if support != "real":
        for name, x in (("x_train", dataset.x_train), ("x_test", x_test)):
            check_data(x, name=f"{dataset.name} {name}", support="unit", likelihood=observation)
    if support == "binary" and not _is_binary(dataset.x_train):
        if binarization == "threshold":
            x_train, x_val, x_test = ((x > 0.5).to(x.dtype) for x in (x_train, x_val, x_test))
        elif binarization == "dynamic":
            dynamic, gray = True, (x_val, x_test)
            generator = torch.Generator().manual_seed(HELD_OUT_BINARIZATION_SEED)
            x_val = binarize(x_val, generator)
            x_test = binarize(x_test, generator)
        elif not allow_gray:
            raise PyrovaeError(
                f"{dataset.name} has gray levels but the model's {observation} scores only 0/1 "
                "pixels; use --binarize dynamic, --likelihood continuous-bernoulli, or "
                "--gray-bernoulli to score gray levels anyway (not a normalized likelihood)"
            )
    return PreparedData(
        dataset,
        observation,
        x_train,
        y_train,
        x_val,
        y_val,
        x_test,
        y_test,
        dynamic,
        *gray,
        support=support,
    )
