"""The run folder: config, checkpoint, metrics, summary and figures of one training run.

Layout::

    config.json      every option of the run (rebuilds the model with pyrovae.load_run)
    checkpoint.pt    written atomically after every epoch (resume with --resume DIR)
    metrics.csv      one row per epoch: ELBOs in nats per example, KL weight, seconds
    summary.json     the final numbers
    *.png            training curves, reconstructions, prior samples, latent space,
                     latent interpolation (and the spiral panels for 2-D data)
"""

import csv
import io
import json
import math
import os
import tempfile
from pathlib import Path

import torch

from pyrovae import plots
from pyrovae.errors import PyrovaeError
from pyrovae.inference.posterior import decode, encode, latent_site, reconstruct, sample_prior

METRIC_COLUMNS = ("epoch", "train_elbo", "val_elbo", "test_elbo", "beta", "seconds", "eval_seconds")


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file and a rename."""
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def json_ready(value):
    """Replace NaN/inf (not valid JSON) by None, recursively."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_ready(v) for v in value]
    return value


class RunFolder:
    """Paths and writers for one run folder."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.config_path = self.path / "config.json"
        self.checkpoint = self.path / "checkpoint.pt"
        self.metrics = self.path / "metrics.csv"
        self.summary = self.path / "summary.json"

    def create(self, config) -> None:
        """Make the folder and write ``config.json``; refuse to overwrite another run."""
        if self.checkpoint.exists():
            raise PyrovaeError(
                f"{self.path} already holds a run; continue it with --resume {self.path} "
                "or choose another --out"
            )
        self.path.mkdir(parents=True, exist_ok=True)
        self.write_config(config)

    def write_config(self, config) -> None:
        atomic_write_text(self.config_path, json.dumps(config.to_json(), indent=2) + "\n")

    def read_config(self):
        from pyrovae.config import TrainConfig

        if not self.path.is_dir():
            raise PyrovaeError(f"no run folder at {self.path}")
        return TrainConfig.load(self.config_path)

    def write_metrics(self, history: list[dict]) -> None:
        buffer = io.StringIO()
        extra = [k for k in (history[-1] if history else {}) if k not in METRIC_COLUMNS]
        writer = csv.DictWriter(buffer, fieldnames=[*METRIC_COLUMNS, *extra], extrasaction="ignore")
        writer.writeheader()
        writer.writerows(history)
        atomic_write_text(self.metrics, buffer.getvalue())

    def write_summary(self, summary: dict) -> None:
        atomic_write_text(self.summary, json.dumps(json_ready(summary), indent=2) + "\n")

    def read_summary(self) -> dict:
        return json.loads(self.summary.read_text()) if self.summary.exists() else {}

    def write_figures(
        self, model, guide, data, history: list[dict], max_points: int = 2000
    ) -> list[Path]:
        """Draw every figure of the run from the trained pair and the held-out rows."""
        dataset = data.dataset
        x = data.x_test[:max_points].to(_device_of(model, data.x_test))
        labels = None if data.y_test is None else data.y_test[:max_points]
        shape = dataset.image_shape
        z = encode(model, guide, x)
        site = latent_site(model, guide, x)
        written = [
            plots.plot_training_curves(history, self.path / "training_curves.png"),
            plots.plot_reconstructions(
                _cpu(x[:16]),
                _cpu(reconstruct(model, guide, x[:16])),
                shape,
                self.path / "reconstructions.png",
            ),
            plots.plot_samples(
                _cpu(sample_prior(model, 64, dataset.x_dim, device=x.device)),
                shape,
                self.path / "samples.png",
            ),
            plots.plot_latent_space(_cpu(z), labels, self.path / "latent_space.png"),
            plots.plot_interpolation(
                _cpu(decode(model, _interpolate(z, labels), site, dataset.x_dim)),
                shape,
                self.path / "interpolation.png",
            ),
        ]
        if dataset.x_dim == 2 and shape is None:
            true_curve = None
            if "t_range" in dataset.extras:
                from pyrovae.data import spiral_curve

                true_curve = spiral_curve(torch.linspace(*dataset.extras["t_range"], 400))
            path_z = latent_sweep(z, steps=200)
            written.append(
                plots.plot_spiral(
                    _cpu(x),
                    _cpu(reconstruct(model, guide, x)),
                    _cpu(decode(model, path_z, site, 2)),
                    self.path / "spiral.png",
                    true_curve=true_curve,
                )
            )
        return written


def _device_of(model, default: torch.Tensor) -> torch.device:
    try:
        return next(model.parameters()).device
    except (AttributeError, StopIteration):
        return default.device


def _cpu(t: torch.Tensor) -> torch.Tensor:
    return t.detach().float().cpu()


def _interpolate(z: torch.Tensor, labels: torch.Tensor | None, steps: int = 10) -> torch.Tensor:
    """Latent path ``(steps, k)`` between the first two test points (of different classes
    when labels are known)."""
    first, second = 0, 1
    if labels is not None:
        different = (labels != labels[0]).nonzero()
        if len(different):
            second = int(different[0])
    w = torch.linspace(0, 1, steps, device=z.device).unsqueeze(-1)
    return (1 - w) * z[first] + w * z[second]


def latent_sweep(z: torch.Tensor, steps: int = 200, extend: float = 0.0) -> torch.Tensor:
    """A straight latent path ``(steps, k)`` along the main axis of the codes ``z: (n, k)``,
    covering their range, widened by ``extend`` times that range on each side."""
    center = z.mean(0)
    if z.shape[1] == 1:
        direction = torch.ones(1, device=z.device)
    else:
        direction = torch.linalg.svd(z - center, full_matrices=False).Vh[0]
    proj = (z - center) @ direction
    lo, hi = float(proj.min()), float(proj.max())
    margin = extend * (hi - lo)
    s = torch.linspace(lo - margin, hi + margin, steps, device=z.device).unsqueeze(-1)
    return center + s * direction
