"""Which training rows keep their labels in semi-supervised training.

:func:`balanced_label_split` draws a seeded, class-balanced labelled subset of the training
rows (after the validation split) and returns the rest as unlabelled rows. Bad requests
(negative, more than the data, not divisible by the number of classes, more than a class
holds) raise :class:`~pyrovae.errors.PyrovaeError` with a one-line message.
"""

import torch

from pyrovae.errors import PyrovaeError


def check_num_labels(num_labels, num_classes: int, available: int | None = None) -> int:
    """``num_labels`` as an int if K = ``num_classes`` classes can share it evenly.

    :param num_labels: requested number of labelled rows (``--labels``).
    :param num_classes: number of classes K; ``num_labels`` must be a positive multiple of it.
    :param available: number of training rows to draw from (``None``: not checked here).
    """
    if isinstance(num_labels, bool) or not isinstance(num_labels, int):
        raise PyrovaeError(f"--labels must be a whole number, got {num_labels!r}")
    if num_labels < 1:
        raise PyrovaeError(
            f"--labels must be positive (at least one labelled example per class), got "
            f"{num_labels}; use a multiple of {num_classes}, e.g. {10 * num_classes}"
        )
    if available is not None and num_labels > available:
        raise PyrovaeError(
            f"--labels {num_labels} is more than the {available} training rows left after the "
            f"validation split; use at most {available - available % num_classes}"
        )
    if num_labels % num_classes:
        lower = num_labels - num_labels % num_classes
        suggestion = f"{lower} or {lower + num_classes}" if lower else f"{num_classes}"
        raise PyrovaeError(
            f"--labels {num_labels} cannot be split evenly over {num_classes} classes "
            f"(the labelled subset is class-balanced); use a multiple of {num_classes}, "
            f"e.g. {suggestion}"
        )
    return num_labels


def balanced_label_split(
    y: torch.Tensor, num_labels: int, num_classes: int, seed: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Seeded class-balanced split of the rows of ``y`` into labelled and unlabelled rows.

    :param y: ``(n,)`` int64 class labels in ``0..num_classes-1``.
    :param num_labels: labelled rows wanted, ``num_labels / num_classes`` from each class.
    :param num_classes: number of classes K.
    :param seed: the same seed (and labels) give the same split.
    :returns: ``(labelled, unlabelled)``: sorted ``(num_labels,)`` and
        ``(n - num_labels,)`` int64 row indices that together cover ``0..n-1`` once.
    """
    y = y.detach().cpu()
    n = int(y.shape[0])
    check_num_labels(num_labels, num_classes, available=n)
    per_class = num_labels // num_classes
    counts = torch.bincount(y, minlength=num_classes)
    short = [k for k in range(num_classes) if counts[k] < per_class]
    if short:
        k = short[0]
        fewest = int(counts.min())
        raise PyrovaeError(
            f"--labels {num_labels} asks for {per_class} rows of each class but class {k} has "
            f"only {int(counts[k])} training rows; use at most {fewest * num_classes}"
        )
    generator = torch.Generator().manual_seed(seed)
    chosen = []
    for k in range(num_classes):
        rows = (y == k).nonzero().squeeze(1)
        chosen.append(rows[torch.randperm(rows.shape[0], generator=generator)[:per_class]])
    labelled = torch.cat(chosen).sort().values
    is_unlabelled = torch.ones(n, dtype=torch.bool)
    is_unlabelled[labelled] = False
    return labelled, is_unlabelled.nonzero().squeeze(1)


class SemiSupervisedBatches:
    """Minibatches that interleave unlabelled rows ``(x,)`` and labelled rows ``(x, y, weight)``.

    An epoch is ``P = max(ceil(n_u / batch_size), ceil(n_l / batch_size))`` pairs of an
    unlabelled batch and a labelled batch, so that every row of the larger set is visited
    once and every row of the smaller one at least once:

    - When the unlabelled rows set the count, they are visited once each, in ``P`` shuffled
      batches ``(x,)``. Otherwise (more labelled rows than unlabelled ones, e.g. most of a
      small data set labelled) each unlabelled batch has ``min(batch_size, n_u)`` rows drawn
      from back-to-back shuffles, and comes as ``(x, None, weight)`` with ``weight = n_u /
      (unlabelled rows drawn per epoch)``.
    - Each labelled batch has ``b_l = max(min(batch_size, n_l), ceil(n_l / P))`` rows drawn
      from back-to-back shuffles of the labelled rows, so the few labelled rows are revisited
      many times per epoch, and carries ``weight = n_l / (P b_l) <= 1``.

    With these weights the losses of one epoch sum to an unbiased estimate of the whole-data
    objective, in which every row counts once, however often it is revisited. Without
    unlabelled rows an epoch is one pass over the labelled rows with weight 1.

    :param x_labelled: ``(n_l, D)`` labelled rows, on the training device.
    :param y_labelled: ``(n_l,)`` int64 labels.
    :param x_unlabelled: ``(n_u, D)`` unlabelled rows.
    :param batch_size: rows per unlabelled batch (and at most per labelled batch unless the
        labelled rows would not all fit in an epoch).
    :param seed: epoch ``e`` draws its order from ``seed + e`` (resuming gives the same batches).
    :param transform: applied to every ``x`` batch, e.g. dynamic binarization.
    """

    def __init__(
        self,
        x_labelled: torch.Tensor,
        y_labelled: torch.Tensor,
        x_unlabelled: torch.Tensor,
        batch_size: int,
        seed: int = 0,
        transform=None,
    ):
        if x_labelled.shape[0] == 0:
            raise PyrovaeError("semi-supervised training needs at least one labelled row")
        self.x_l, self.y_l, self.x_u = x_labelled, y_labelled, x_unlabelled
        self.batch_size, self.seed, self.transform = batch_size, seed, transform
        n_l, n_u = self.x_l.shape[0], self.x_u.shape[0]
        # Unlabelled batches of batch_size, every row once per epoch, unless revisited (below).
        self.unlabelled_batch, self.unlabelled_weight = batch_size, None
        if n_u:
            self.pairs = max(-(-n_u // batch_size), -(-n_l // batch_size))
            self.labelled_batch = max(min(batch_size, n_l), -(-n_l // self.pairs))
            self.weight = n_l / (self.pairs * self.labelled_batch)
            if self.pairs > -(-n_u // batch_size):
                self.unlabelled_batch = min(batch_size, n_u)
                self.unlabelled_weight = n_u / (self.pairs * self.unlabelled_batch)
        else:
            self.pairs, self.labelled_batch, self.weight = 0, batch_size, 1.0

    @property
    def num_examples(self) -> int:
        return self.x_l.shape[0] + self.x_u.shape[0]

    def __len__(self) -> int:
        return 2 * self.pairs if self.pairs else -(-self.x_l.shape[0] // self.batch_size)

    def _x(self, x: torch.Tensor) -> torch.Tensor:
        return x if self.transform is None else self.transform(x)

    def _labelled(self, index: torch.Tensor) -> tuple[torch.Tensor, ...]:
        weight = self.x_l.new_full((index.shape[0],), self.weight)
        return self._x(self.x_l[index]), self.y_l[index], weight

    def _unlabelled(self, index: torch.Tensor) -> tuple:
        x = self._x(self.x_u[index])
        if self.unlabelled_weight is None:
            return (x,)
        return x, None, x.new_full((index.shape[0],), self.unlabelled_weight)

    def epoch(self, epoch: int):
        """Yield unlabelled and ``(x_l, y_l, weight)`` argument tuples, alternating."""
        generator = torch.Generator().manual_seed(self.seed + epoch)
        n_l, n_u, device = self.x_l.shape[0], self.x_u.shape[0], self.x_l.device
        if not self.pairs:
            order = torch.randperm(n_l, generator=generator).to(device)
            for start in range(0, n_l, self.batch_size):
                yield self._labelled(order[start : start + self.batch_size])
            return
        b_u = self.unlabelled_batch
        if self.unlabelled_weight is None:  # one shuffle, the last batch possibly short
            order_u = torch.randperm(n_u, generator=generator).to(device)
        else:
            order_u = _shuffles(n_u, self.pairs * b_u, generator).to(device)
        stream = _shuffles(n_l, self.pairs * self.labelled_batch, generator).to(device)
        for i in range(self.pairs):
            yield self._unlabelled(order_u[i * b_u : (i + 1) * b_u])
            b = self.labelled_batch
            yield self._labelled(stream[i * b : (i + 1) * b])


def _shuffles(n: int, count: int, generator: torch.Generator) -> torch.Tensor:
    """At least ``count`` indices from back-to-back random permutations of ``range(n)``."""
    return torch.cat([torch.randperm(n, generator=generator) for _ in range(-(-count // n))])
