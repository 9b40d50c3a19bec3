"""Held-out evaluation of an ELBO, in nats per example."""

import pyro.infer as infer
import torch


@torch.no_grad()
def evaluate_elbo(
    elbo: infer.ELBO, model, guide, x: torch.Tensor, batch_size: int = 10_000
) -> float:
    """Mean ELBO per example (nats; higher is better) of ``model``/``guide`` on ``x: (n, D)``.

    Computed without gradients in batches of ``batch_size`` rows; ``nan`` for empty ``x``.
    """
    n = x.shape[0]
    if n == 0:
        return float("nan")
    total = 0.0
    for start in range(0, n, batch_size):
        total += elbo.loss(model, guide, x[start : start + batch_size])
    return -total / n
