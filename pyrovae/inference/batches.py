"""Minibatches as slices of a seeded permutation of tensors that stay on the device."""

from collections.abc import Callable, Iterator

import torch


class TensorBatches:
    """Shuffled minibatches of ``x`` (and optionally ``y``) for one epoch at a time.

    :param x: ``(n, D)`` training rows, already on the training device.
    :param batch_size: rows per step; the last batch of an epoch may be smaller.
    :param seed: epoch ``e`` uses the permutation drawn from ``seed + e``, so an epoch's
        batches do not depend on how the run got there (resuming gives the same batches).
    :param transform: applied to each ``x`` minibatch, e.g. dynamic binarization.
    :param y: ``(n,)`` labels passed as the second argument when the model uses them.
    """

    def __init__(
        self,
        x: torch.Tensor,
        batch_size: int,
        seed: int = 0,
        transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
        y: torch.Tensor | None = None,
    ):
        self.x, self.y = x, y
        self.batch_size = batch_size
        self.seed = seed
        self.transform = transform

    @property
    def num_examples(self) -> int:
        return self.x.shape[0]

    def __len__(self) -> int:
        return -(-self.num_examples // self.batch_size)

    def epoch(self, epoch: int) -> Iterator[tuple[torch.Tensor, ...]]:
        """Yield argument tuples ``(x_batch,)`` or ``(x_batch, y_batch)`` for ``epoch``."""
        generator = torch.Generator().manual_seed(self.seed + epoch)
        order = torch.randperm(self.num_examples, generator=generator).to(self.x.device)
        for start in range(0, self.num_examples, self.batch_size):
            index = order[start : start + self.batch_size]
            x = self.x[index]
            if self.transform is not None:
                x = self.transform(x)
            yield (x,) if self.y is None else (x, self.y[index])
