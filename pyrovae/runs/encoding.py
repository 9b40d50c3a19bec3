"""Rows of a run's data set through its guide: ``E_q[z | x]`` for any pair, with global
latent sites (a Bayesian FA's W) fixed at their mean under q so that every batch is encoded
with the same plug-in value.

Works on any object with the fields of :class:`pyrovae.Run` (``model``, ``guide``, ``data``,
``config``) so that the loader (:mod:`pyrovae.runs.load`) can encode another run's rows for
``--features`` without a cycle.
"""

import numpy as np
import torch

from pyrovae.data.dataset import first_line
from pyrovae.errors import PyrovaeError
from pyrovae.inference.contract import observation
from pyrovae.inference.diagnostics.structure import (
    condition_on_globals,
    evaluation_mode,
    global_means,
    inspect_pair,
)
from pyrovae.inference.parameters import device_of
from pyrovae.inference.posterior import encode


def plug_in_globals(run, probe: torch.Tensor):
    """``(model, guide)`` of the run with any global latent site fixed at its mean under q
    (100 draws); ``probe``: a few rows ``(b, D)`` on the run's device to trace the pair on."""
    structure = inspect_pair(run.model, run.guide, probe)
    return condition_on_globals(run.model, run.guide, global_means(run.guide, structure, probe))


def encode_rows(model, guide, x: torch.Tensor, batch_size: int, device) -> torch.Tensor:
    """``E_q[z | x]: (n, k)`` on the CPU, ``batch_size`` rows ``x: (n, D)`` at a time."""
    parts = [encode(model, guide, chunk.to(device)).cpu() for chunk in x.split(batch_size)]
    return torch.cat(parts)


def checked_rows(run, x) -> torch.Tensor:
    """``x`` as ``(n, D)`` float32 rows the run's model takes, or a one-line error."""
    dataset = run.data.dataset
    try:
        x = torch.as_tensor(np.asarray(x.detach().cpu() if torch.is_tensor(x) else x))
    except (TypeError, ValueError) as exc:
        raise PyrovaeError(
            f"x must be an (n, {dataset.x_dim}) array of numbers ({first_line(exc)})"
        ) from exc
    if not (x.dtype.is_floating_point or x.dtype in (torch.uint8, torch.int32, torch.int64)):
        raise PyrovaeError(f"x must be an (n, {dataset.x_dim}) array of numbers, got {x.dtype}")
    x = x.to(torch.float32)
    if dataset.image_shape is not None and tuple(x.shape[1:]) == tuple(dataset.image_shape):
        x = x.reshape(x.shape[0], -1)  # (n, H, W) images of the run's size
    if x.dim() != 2 or x.shape[1] != dataset.x_dim:
        raise PyrovaeError(
            f"x has shape {tuple(x.shape)} but the run's model takes rows of "
            f"{dataset.x_dim} values ({dataset.name}): pass an (n, {dataset.x_dim}) array"
        )
    bad = int((~torch.isfinite(x)).sum())
    if bad:
        raise PyrovaeError(f"x has {bad} NaN or infinite values; features need finite rows")
    probe = run.data.x_test[:2].to(device_of(run.model, run.guide))
    name, support = observation(run.model, probe)
    if support in ("binary", "levels", "unit") and x.numel() and (x.min() < 0 or x.max() > 1):
        raise PyrovaeError(
            f"x has values in [{x.min().item():.4g}, {x.max().item():.4g}] but the run's "
            f"{name} observes values in [0, 1]; scale the rows as the run's data set "
            f"({dataset.name}) was"
        )
    return x


def model_inputs(run, x: torch.Tensor) -> torch.Tensor:
    """Rows ``x: (n, D)`` of the run's data set as its model was trained on them: thresholded
    under ``--binarize threshold`` for a Bernoulli, else as they are (gray levels under
    dynamic binarization, the mean of the binary batches)."""
    if run.config.binarize != "threshold":
        return x
    _, support = observation(run.model, x[:2].to(device_of(run.model, run.guide)))
    return (x > 0.5).to(x.dtype) if support == "binary" else x


def encode_run(run, x, batch_size: int = 10_000) -> torch.Tensor:
    """Posterior means ``E_q[z | x]: (n, k)`` (float32, CPU) of rows ``x`` (checked with
    :func:`checked_rows`) under the run's guide, its modules in eval mode meanwhile."""
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise PyrovaeError(f"batch_size must be a positive whole number, got {batch_size!r}")
    x = checked_rows(run, x)
    on = device_of(run.model, run.guide)
    probe = run.data.x_test[:2].to(on)
    with torch.no_grad(), evaluation_mode(run.model, run.guide):
        model, guide = plug_in_globals(run, probe)
        if x.shape[0] == 0:
            return encode_rows(model, guide, probe, batch_size, on)[:0]
        return encode_rows(model, guide, x, batch_size, on)
