"""The spiral demonstration: does a 1-D latent code interpolate along the curve, and extend it?

For any trained pair with a 1-D latent on the ``spiral`` data set, the codes ``z`` of the
training rows span ``[z_lo, z_hi]``. A sweep of z over that range, widened by ``extend``
times its length on each side, is decoded (decoder means) and every decoded point is
measured against the noise-free spiral ``spiral_curve(t)``, extended to ``t in [0, 4 pi]``
(the training points have ``t in [pi/2, 3 pi]``). Distances are in data units: the spiral
spans about [-1, 1]^2 and the default noise has standard deviation 0.05.

Numbers (``summary.json["spiral"]``):

- ``inside``: the sweep within the codes' range: mean and max distance to the curve; the
  ``t`` span it reaches; ``coverage``, the fraction of the training arc (a fine grid of t in
  [pi/2, 3 pi]) that has a decoded point within ``ON_CURVE`` of it (gaps show as < 1);
  ``max_step_ratio``, the largest jump between consecutive decoded points over the median
  one (a smooth curve gives a small number); ``backtrack_fraction``, the share of steps whose
  nearest t moves against the sweep's overall direction (folds).
- ``beyond_inner`` / ``beyond_outer``: the widened parts past the end of the code range that
  decodes nearest the spiral's center (t = pi/2) and past the outer end (t = 3 pi, the last
  training point): mean distance to the extended curve, and ``t_end`` / ``distance_end`` of
  the last decoded point (continuing the spiral means t_end beyond the training range at a
  small distance).
- ``test_reconstruction_rmse``, ``test_reconstruction_distance_to_curve``.
"""

import math
from pathlib import Path

import numpy as np
import torch

from pyrovae import plots
from pyrovae.data import spiral_curve
from pyrovae.inference.posterior import decode, encode, latent_site, reconstruct

CURVE_T = (0.0, 4 * math.pi)
"""The extended true curve the sweep is measured against (radians)."""
ON_CURVE = 0.1
"""A decoded point this close to the curve counts as on it (twice the default noise)."""


def applies(data, z: torch.Tensor | None = None) -> bool:
    """True on the spiral data set (2-D rows with known t) with a 1-D latent."""
    dataset = data.dataset
    one_d = z is None or (z.dim() == 2 and z.shape[1] == 1)
    return "t_range" in dataset.extras and dataset.x_dim == 2 and one_d


def nearest_on_curve(points: torch.Tensor, num: int = 8001) -> tuple[np.ndarray, np.ndarray]:
    """Distance of each ``(m, 2)`` point to the extended spiral and the ``t`` of its nearest
    point there: two ``(m,)`` arrays."""
    t = torch.linspace(*CURVE_T, num, dtype=torch.float64)
    curve = spiral_curve(t)
    d = torch.cdist(points.detach().double().cpu(), curve)
    distance, index = d.min(dim=1)
    return distance.numpy(), t[index].numpy()


@torch.no_grad()
def sweep(model, guide, data, steps: int = 801, extend: float = 0.5) -> dict:
    """Decode a latent sweep over, and ``extend`` x its length beyond, the training codes.

    :return: ``s (steps,)`` latent values, ``points (steps, 2)`` decoded, ``inside (steps,)``
        bool, ``distance``/``t`` ``(steps,)`` to/on the extended curve, ``code_range``,
        and ``x``/``x_recon`` ``(n, 2)`` test rows and their reconstructions.
    """
    x_train = data.x_train
    z = encode(model, guide, x_train)
    lo, hi = float(z.min()), float(z.max())
    margin = extend * (hi - lo)
    s = torch.linspace(lo - margin, hi + margin, steps, dtype=x_train.dtype)
    site = latent_site(model, guide, x_train[:2])
    points = decode(model, s.unsqueeze(-1).to(x_train.device), site, 2).cpu()
    distance, t = nearest_on_curve(points)
    x = data.x_test
    return {
        "s": s.numpy(),
        "points": points.numpy(),
        "inside": ((s >= lo) & (s <= hi)).numpy(),
        "distance": distance,
        "t": t,
        "code_range": (lo, hi),
        "x": x.cpu().numpy(),
        "x_recon": reconstruct(model, guide, x).cpu().numpy(),
    }


def sweep_numbers(result: dict, t_range: tuple[float, float]) -> dict:
    """The numbers of the module docstring from a :func:`sweep` result."""
    inside, distance, t = result["inside"], result["distance"], result["t"]
    points = result["points"]
    t_in = t[inside]
    steps = np.linalg.norm(np.diff(points[inside], axis=0), axis=1)
    direction = np.sign(t_in[-1] - t_in[0]) or 1.0
    arc = spiral_curve(torch.linspace(*t_range, 2000, dtype=torch.float64))
    gap = torch.cdist(arc, torch.as_tensor(points[inside], dtype=torch.float64)).min(1).values
    numbers = {
        "code_range": list(result["code_range"]),
        "inside": {
            "mean_distance": float(distance[inside].mean()),
            "max_distance": float(distance[inside].max()),
            "t_span": [float(t_in.min()), float(t_in.max())],
            "coverage": float((gap <= ON_CURVE).double().mean()),
            "max_step_ratio": float(steps.max() / max(np.median(steps), 1e-12)),
            "backtrack_fraction": float((np.diff(t_in) * direction < -1e-3).mean()),
        },
    }
    below, above = result["s"] < result["code_range"][0], result["s"] > result["code_range"][1]
    # The end of the code range that decodes nearer the center (smaller t) is "inner".
    low_is_inner = t_in[0] <= t_in[-1]
    for name, part, end in (("low", below, 0), ("high", above, -1)):
        key = "beyond_inner" if (name == "low") == low_is_inner else "beyond_outer"
        numbers[key] = {
            "mean_distance": float(distance[part].mean()),
            "max_distance": float(distance[part].max()),
            "t_end": float(t[end]),
            "distance_end": float(distance[end]),
        }
    x, x_recon = result["x"], result["x_recon"]
    numbers["test_reconstruction_rmse"] = float(np.sqrt(((x - x_recon) ** 2).sum(1).mean()))
    recon_distance, _ = nearest_on_curve(torch.as_tensor(x_recon))
    numbers["test_reconstruction_distance_to_curve"] = float(recon_distance.mean())
    numbers["t_training_range"] = list(t_range)
    numbers["units"] = "data units (spiral within about [-1, 1]^2); t in radians"
    return numbers


def true_curve(num: int = 1000) -> np.ndarray:
    """The extended noise-free spiral, ``(num, 2)``."""
    return spiral_curve(torch.linspace(*CURVE_T, num, dtype=torch.float64)).numpy()


def spiral_report(model, guide, data, out_dir, title: str | None = None) -> dict:
    """``{"spiral": numbers}`` and ``spiral_sweep.png`` in ``out_dir`` for a 1-D latent on
    the spiral data; ``{}`` for anything else."""
    if not applies(data):
        return {}
    z = encode(model, guide, data.x_train[:2])
    if not applies(data, z):
        return {}
    result = sweep(model, guide, data)
    numbers = sweep_numbers(result, tuple(data.dataset.extras["t_range"]))
    panel = {"title": title or type(model).__name__, **result}
    plots.plot_spiral_sweeps([panel], true_curve(), Path(out_dir) / "spiral_sweep.png")
    return {"spiral": numbers}
