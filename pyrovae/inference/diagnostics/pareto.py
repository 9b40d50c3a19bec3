"""Pareto k-hat of each data point's importance weights (PSIS, via ArviZ).

k-hat estimates the tail shape of the weights p(x, z) / q(z | x), z ~ q (Yao et al., 2018):
below 0.5 the guide is a good proposal for that row's posterior, 0.5-0.7 usable, above 0.7
the weights' variance is effectively infinite and q misses mass that p(z | x) has.
"""

import warnings

import numpy as np
import torch

from pyrovae.inference.diagnostics.arviz_import import import_arviz

THRESHOLDS = (0.5, 0.7)


def pareto_khat(log_weights: torch.Tensor) -> np.ndarray:
    """k-hat of every row of ``log_weights: (N, K)`` (nats): ``(N,)``.

    Rows whose weights are all equal (an exact posterior as guide) have bounded weights of
    no spread; ArviZ's fit returns +inf for them, or fits the float rounding of the log
    densities, so they are set to -inf: the limit of ever lighter tails, below every
    threshold. "Equal" is: all log-weights within ``max(1e-3, 1e-5 |log w|)`` nats of each
    other (weights equal to 0.1%, where float32 rounding of ``|log w|`` is below 1e-5 of it).
    """
    lw = log_weights.detach().double().cpu().numpy()
    with warnings.catch_warnings():
        # ArviZ warns per call about large k; the shares above the thresholds report it.
        warnings.simplefilter("ignore")
        _, khat = import_arviz().psislw(lw)
    khat = np.asarray(khat, dtype=np.float64)
    spread = lw.max(-1) - lw.min(-1)
    khat[spread <= np.maximum(1e-3, 1e-5 * np.abs(lw).max(-1))] = -np.inf
    return khat


def khat_summary(khat: np.ndarray, worst: int = 10) -> dict:
    """Shares of rows above 0.5 and 0.7, and the ``worst`` rows (index, k-hat), worst first."""
    order = np.argsort(-khat, kind="stable")[:worst]
    summary = {f"pareto_k_share_above_{t}": float((khat > t).mean()) for t in THRESHOLDS}
    summary["pareto_k_max"] = float(khat.max()) if np.isfinite(khat.max()) else None
    summary["pareto_k_worst"] = [
        {"index": int(i), "k": float(khat[i]) if np.isfinite(khat[i]) else None} for i in order
    ]
    return summary
