"""Calibration of a discrete q(y|x) on labelled rows: expected calibration error and the bins
of a reliability diagram.

For rows with known classes ``y`` and predicted probabilities ``q(. | x): (N, K)``, the
confidence of a row is ``max_k q(k | x)`` and it is correct when that class is ``y``. With the
confidences binned into ``B`` equal bins of [0, 1] (``[b_i, b_i+1)``),

    ECE = sum_i (n_i / N) |acc_i - conf_i|,

``acc_i`` and ``conf_i`` the share correct and the mean confidence of the ``n_i`` rows of bin
i (Guo et al., 2017). 0 for a calibrated classifier (up to the noise of N rows); an
overconfident one has ``conf_i > acc_i``.

Which guide site is the class is read from traces: a local guide site drawn from a
``Categorical`` (or ``OneHotCategorical``) with one draw of K classes per row, which the model
observes when it is run with the labels, ``model(x, y)`` (the semi-supervised VAE's ``"y"``).
The Gumbel VAE's codes are categorical too, but the model does not observe them: they are no
class and get only the randomized PIT of
:mod:`~pyrovae.inference.diagnostics.calibration`.
"""

from dataclasses import dataclass

import numpy as np
import pyro.distributions as dist
import pyro.poutine as poutine
import torch
from pyro.poutine.util import prune_subsample_sites
from torchmetrics.functional.classification import multiclass_calibration_error

from pyrovae.errors import PyrovaeError
from pyrovae.inference.diagnostics.structure import PairStructure, base_distribution

DEFAULT_BINS = 15
"""Bins of the confidence, torchmetrics' default."""


@dataclass
class Reliability:
    """The calibration of q(y|x) at the site ``site`` on ``rows`` labelled rows.

    :param ece: expected calibration error (share in [0, 1]).
    :param accuracy: share of rows whose most probable class is the label.
    :param mean_confidence: mean over the rows of ``max_k q(k | x)``.
    :param edges: ``(B + 1,)`` bin edges of the confidence.
    :param counts: ``(B,)`` rows per bin.
    :param bin_accuracy: ``(B,)`` share correct per bin (nan where empty).
    :param bin_confidence: ``(B,)`` mean confidence per bin (nan where empty).
    """

    site: str
    rows: int
    classes: int
    ece: float
    accuracy: float
    mean_confidence: float
    edges: np.ndarray
    counts: np.ndarray
    bin_accuracy: np.ndarray
    bin_confidence: np.ndarray

    def summary(self) -> dict:
        """The numbers for ``diagnostics.json``."""
        return {
            "ece_site": self.site,
            "ece_rows": self.rows,
            "ece_bins": len(self.counts),
            "ece": self.ece,
            "ece_accuracy": self.accuracy,
            "ece_mean_confidence": self.mean_confidence,
            "ece_overconfidence": self.mean_confidence - self.accuracy,
        }


def reliability(
    probs: torch.Tensor, labels: torch.Tensor, site: str = "y", bins: int = DEFAULT_BINS
) -> Reliability:
    """ECE (torchmetrics' ``multiclass_calibration_error``, L1 norm) and the reliability bins
    of ``probs: (N, K)`` (rows summing to 1) against ``labels: (N,)`` int64 in ``{0..K-1}``."""
    if probs.dim() != 2 or labels.shape != probs.shape[:1]:
        raise PyrovaeError(
            f"reliability needs probabilities (N, K) and N labels, got {tuple(probs.shape)} "
            f"and {tuple(labels.shape)}"
        )
    if bins < 1:
        raise PyrovaeError(f"--ece-bins must be at least 1, got {bins}")
    probs = probs.detach().double().cpu()
    labels = labels.detach().long().cpu()
    classes = probs.shape[1]
    if labels.numel() and (labels.min() < 0 or labels.max() >= classes):
        raise PyrovaeError(f"labels must lie in 0..{classes - 1} for {classes} classes")
    ece = multiclass_calibration_error(probs, labels, num_classes=classes, n_bins=bins, norm="l1")
    # The bins themselves, which torchmetrics does not return, for the diagram; the same
    # convention (bucketize on equal edges, right-closed buckets; confidence 1 in the last).
    confidence, predicted = probs.max(1)
    correct = (predicted == labels).double()
    edges = torch.linspace(0, 1, bins + 1, dtype=torch.float64)
    index = (torch.bucketize(confidence, edges, right=True) - 1).clamp(0, bins - 1)
    counts = torch.bincount(index, minlength=bins).double()
    with np.errstate(invalid="ignore", divide="ignore"):
        acc = torch.bincount(index, correct, minlength=bins).numpy() / counts.numpy()
        conf = torch.bincount(index, confidence, minlength=bins).numpy() / counts.numpy()
    return Reliability(
        site=site,
        rows=int(labels.numel()),
        classes=classes,
        ece=float(ece),
        accuracy=float(correct.mean()),
        mean_confidence=float(confidence.mean()),
        edges=edges.numpy(),
        counts=counts.numpy().astype(np.int64),
        bin_accuracy=acc,
        bin_confidence=conf,
    )


def _class_probs(fn, rows: int) -> torch.Tensor | None:
    """``(rows, K)`` class probabilities of a Categorical/OneHotCategorical site with one
    draw per row, else None."""
    base = base_distribution(fn)
    if not isinstance(base, (dist.Categorical, dist.OneHotCategorical)):
        return None
    probs = base.probs
    if probs.dim() < 1 or probs.numel() != rows * probs.shape[-1]:
        return None
    return probs.reshape(rows, probs.shape[-1])


@torch.no_grad()
def label_sites(model, guide, x: torch.Tensor, y: torch.Tensor, structure: PairStructure):
    """``{site: q(. | x) (N, K)}`` for each guide site that is the class of the rows (see the
    module): a categorical local site with one draw per row that ``model(x, y)`` observes
    with the labels ``y: (N,)``. Empty when the pair takes no labels."""
    rows = x.shape[0]
    with poutine.block():
        guide_trace = prune_subsample_sites(poutine.trace(guide).get_trace(x))
    candidates = {}
    for name in structure.local_sites:
        site = guide_trace.nodes.get(name)
        probs = None if site is None else _class_probs(site["fn"], rows)
        if probs is not None and probs.shape[-1] > int(y.max()):
            candidates[name] = probs
    if not candidates:
        return {}
    try:
        with poutine.block():
            model_trace = poutine.trace(model).get_trace(x, y)
    except (TypeError, ValueError, RuntimeError):
        return {}  # the model takes no labels
    found = {}
    for name, probs in candidates.items():
        site = model_trace.nodes.get(name)
        if site is None or site["type"] != "sample" or not site["is_observed"]:
            continue
        value = site["value"]
        if value.shape[-1:] == probs.shape[-1:] and value.dim() > 1:
            value = value.argmax(-1)  # one-hot
        if value.numel() == rows and torch.equal(value.reshape(rows).long(), y.long()):
            found[name] = probs
    return found
