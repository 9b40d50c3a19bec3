"""Plain supervised training and scoring of a classifier network (the baseline of the ssvae).

The network maps ``x: (batch, D)`` to logits ``(batch, K)``; it is trained by minimizing
the cross-entropy with Adam on minibatches, and the parameters of the epoch with the best
validation accuracy (ties: lower validation cross-entropy) are kept.
"""

import copy
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@torch.no_grad()
def predict(network: Callable, x: torch.Tensor, batch_size: int = 10_000) -> torch.Tensor:
    """Most probable class of each row: ``x: (n, D)`` -> ``(n,)`` int64."""
    if x.shape[0] == 0:
        return torch.zeros(0, dtype=torch.int64, device=x.device)
    chunks = x.split(batch_size)
    return torch.cat([network(chunk).argmax(-1) for chunk in chunks])


def accuracy(network: Callable, x: torch.Tensor, y: torch.Tensor | None) -> float:
    """Fraction of rows of ``x: (n, D)`` whose predicted class is ``y: (n,)``; NaN if none."""
    if y is None or y.shape[0] == 0:
        return math.nan
    return float((predict(network, x).cpu() == y.cpu()).double().mean())


@dataclass
class ClassifierFit:
    """What :func:`train_classifier` did: best epoch, its validation scores, epochs, seconds."""

    best_epoch: int
    val_accuracy: float
    val_loss: float
    epochs: int
    seconds: float


def train_classifier(
    network: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    x_val: torch.Tensor,
    y_val: torch.Tensor,
    *,
    batch_size: int = 128,
    lr: float = 1e-3,
    seed: int = 0,
    transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
    max_epochs: int = 2000,
    patience: int = 100,
) -> ClassifierFit:
    """Train ``network`` on ``(x, y)`` in place, early-stopped on ``(x_val, y_val)``.

    :param network: ``(batch, D) -> (batch, K)`` logits; trained in place, best epoch kept.
    :param x: ``(n, D)`` training rows; ``y``: ``(n,)`` int64 labels.
    :param x_val: ``(n_val, D)`` validation rows; ``y_val``: ``(n_val,)`` labels. With no
        validation rows the last epoch is kept.
    :param batch_size: rows per Adam step; an epoch is one shuffled pass over ``x``.
    :param seed: epoch ``e`` shuffles with ``seed + e``.
    :param transform: applied to each training batch (e.g. dynamic binarization).
    :param max_epochs: at most this many epochs.
    :param patience: stop after this many epochs without a better validation score.
    """
    start = time.perf_counter()
    optimizer = torch.optim.Adam(network.parameters(), lr=lr)
    has_val = y_val is not None and y_val.shape[0] > 0
    best = (-math.inf, -math.inf)  # (accuracy, -loss)
    best_state, best_epoch, stale, epoch = None, 0, 0, 0
    n = x.shape[0]
    for epoch in range(1, max_epochs + 1):
        network.train()
        generator = torch.Generator().manual_seed(seed + epoch)
        order = torch.randperm(n, generator=generator).to(x.device)
        for i in range(0, n, batch_size):
            batch = x[order[i : i + batch_size]]
            if transform is not None:
                batch = transform(batch)
            loss = F.cross_entropy(network(batch), y[order[i : i + batch_size]])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        if not has_val:
            continue
        network.eval()
        with torch.no_grad():
            logits = network(x_val)
            score = (
                float((logits.argmax(-1) == y_val).double().mean()),
                -float(F.cross_entropy(logits, y_val)),
            )
        if score > best:
            best, best_epoch, stale = score, epoch, 0
            best_state = copy.deepcopy(network.state_dict())
        else:
            stale += 1
            if stale >= patience:
                break
    network.eval()
    if best_state is not None:
        network.load_state_dict(best_state)
    else:
        best_epoch = epoch
    return ClassifierFit(
        best_epoch=best_epoch,
        val_accuracy=best[0] if has_val else math.nan,
        val_loss=-best[1] if has_val else math.nan,
        epochs=epoch,
        seconds=time.perf_counter() - start,
    )
