"""The :class:`Dataset` every loader returns, and the checks its tensors must pass.

``x_*`` tensors are ``(n, D)`` float32 rows (images flattened row-major); labels, when
known, are ``(n,)`` int64. Bad input raises :class:`~pyrovae.errors.PyrovaeError` with a
one-line message that says how to fix it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from pyrovae.errors import PyrovaeError


@dataclass
class Dataset:
    """A train/test pair of flattened data matrices with optional labels.

    ``x_train``: (n_train, D) float32; ``x_test``: (n_test, D) float32; ``y_*``: (n,) int64 or
    None. ``image_shape`` is (H, W) when rows are flattened grayscale images, (C, H, W) for
    several channels (rows flattened channel-first), else None. ``layout`` says what a loader
    read (shapes, layout, scaling), where it had a choice. ``levels`` is L when the loader
    knows every value to be one of ``k / (L - 1)`` (256 for 8-bit sources), else None.
    ``support`` is "unit" when every value lies in [0, 1], else "real". ``features``
    describes the source when the rows are another run's features (:func:`with_features`).
    """

    name: str
    x_train: torch.Tensor
    x_test: torch.Tensor
    y_train: torch.Tensor | None
    y_test: torch.Tensor | None
    image_shape: tuple[int, ...] | None
    support: str
    num_classes: int | None = None
    extras: dict = field(default_factory=dict)
    class_names: tuple[str, ...] | None = None  # when the classes have names besides numbers
    features: dict | None = None
    layout: str | None = None
    levels: int | None = None

    @property
    def x_dim(self) -> int:
        """Number of features D per row."""
        return int(self.x_train.shape[1])


def with_features(
    dataset: Dataset, x_train: torch.Tensor, x_test: torch.Tensor, source: dict
) -> Dataset:
    """``dataset`` with every row replaced by its features, row for row (the labels, class
    names and row order stay, so a seeded validation split picks the same rows).

    :param x_train, x_test: ``(n_train, k)`` and ``(n_test, k)`` float32 features of the
        rows of ``dataset.x_train`` and ``dataset.x_test``, e.g. posterior means of a run.
    :param source: what the features are (kept as ``Dataset.features``, e.g. the run folder
        and its model).

    Features are real numbers, whatever their range: ``support`` is ``"real"`` (no
    binarization, a Gaussian by default), and there is no image shape.
    """
    for name, new, old in (
        ("x_train", x_train, dataset.x_train),
        ("x_test", x_test, dataset.x_test),
    ):
        if new.dim() != 2 or new.shape[0] != old.shape[0]:
            raise PyrovaeError(
                f"features of {dataset.name} {name} have shape {tuple(new.shape)}: expected one "
                f"row per data row, ({old.shape[0]}, k)"
            )
    if x_train.shape[1] != x_test.shape[1]:
        raise PyrovaeError(
            f"features of x_train ({x_train.shape[1]} columns) and x_test "
            f"({x_test.shape[1]} columns) differ in width"
        )
    features = Dataset(
        name=dataset.name,
        x_train=x_train.to(torch.float32),
        x_test=x_test.to(torch.float32),
        y_train=dataset.y_train,
        y_test=dataset.y_test,
        image_shape=None,
        support="real",
        num_classes=dataset.num_classes,
        class_names=dataset.class_names,
        features=dict(source),
    )
    return checked(features)


def as_float(value: object) -> float | None:
    """``float(value)`` for real numbers (not bools or strings), else None."""
    if isinstance(value, bool | str):
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def first_line(err: BaseException) -> str:
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
            "rescale the data, or observe it with a distribution for real values (for the "
            "built-in models: --likelihood gaussian)"
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


def recorded_image_shape(channels: int, height: int, width: int) -> tuple[int, ...]:
    """The ``image_shape`` of ``(C, H, W)`` images: ``(H, W)`` for one channel (grey levels,
    as run folders have always recorded them), else ``(C, H, W)``."""
    dims = (int(channels), int(height), int(width))
    return dims[1:] if dims[0] == 1 else dims


def value_levels(*xs: torch.Tensor, most: int = 256) -> int | None:
    """The fewest L <= ``most`` such that every value is one of ``k / (L - 1)``, k = 0..L-1
    (17 for scikit-learn's digits, 256 for 8-bit images divided by 255), or None."""
    flat = torch.cat([x.reshape(-1) for x in xs])
    if not flat.numel() or flat.min() < 0 or flat.max() > 1:
        return None
    # The grid of a sample first, then one check of every value against it: torch.unique
    # of a large image set sorts all its values.
    for values in (torch.unique(flat[:100_000]), torch.unique(flat)):
        steps = _grid_steps(values.double(), most)
        if steps is not None and _on_grid(flat, steps):
            return steps + 1
    return None


def _grid_steps(values: torch.Tensor, most: int) -> int | None:
    if len(values) > most:
        return None
    for steps in range(1, most):
        if _on_grid(values, steps):
            return steps
    return None


def _on_grid(x: torch.Tensor, steps: int) -> bool:
    scaled = x * steps
    return bool(((scaled - scaled.round()).abs() < 1e-4).all())


def support_of(*xs: torch.Tensor) -> str:
    """'unit' when every value of every tensor lies in [0, 1], else 'real'."""
    in_unit = all(x.numel() == 0 or (x.min() >= 0 and x.max() <= 1) for x in xs)
    return "unit" if in_unit else "real"


MIN_TEST_ROWS = 2
"""Test rows a run needs: evaluation, figures and diagnostics compare at least two."""


def check_labels(name: str, y_train, y_test, declared: int | None = None) -> None:
    """Labels are class indices 0..K-1 with K no larger than the rows that carry them (or the
    data set's ``declared`` classes, MNIST's 10): a label of 10**12 would make a classifier of
    10**12 outputs."""
    labelled = [(k, y) for k, y in (("y_train", y_train), ("y_test", y_test))]
    labelled = [(k, y) for k, y in labelled if y is not None and y.numel()]
    if not labelled:
        return
    rows = sum(int(y.numel()) for _, y in labelled)
    key, y = max(labelled, key=lambda item: int(item[1].max()))
    classes = int(y.max()) + 1
    if classes > max(rows, declared or 0):
        raise PyrovaeError(
            f"{name} {key} holds the label {int(y.max())}, i.e. {classes} classes for "
            f"{rows} labelled rows; labels must be class indices 0..K-1 (re-encode them, e.g. "
            "with numpy.unique(y, return_inverse=True))"
        )


def checked(dataset: Dataset) -> Dataset:
    """Run :func:`check_data` (rank and finiteness) on both data matrices, and check that
    there are enough test rows and that labels are class indices."""
    check_data(dataset.x_train, name=f"{dataset.name} x_train")
    check_data(dataset.x_test, name=f"{dataset.name} x_test")
    if dataset.x_test.shape[0] < MIN_TEST_ROWS:
        raise PyrovaeError(
            f"{dataset.name} has {dataset.x_test.shape[0]} test row(s); a run evaluates and "
            f"draws its figures on at least {MIN_TEST_ROWS}: give x_test more rows"
        )
    check_labels(dataset.name, dataset.y_train, dataset.y_test, dataset.num_classes)
    return dataset
