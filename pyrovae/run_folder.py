"""The run folder: config, checkpoint, metrics, summary and figures of one training run.

Layout::

    config.json      every option of the run (rebuilds the model with pyrovae.load_run)
    checkpoint.pt    written atomically after every epoch (resume with --resume DIR)
    metrics.csv      one row per epoch: ELBOs in nats per example, KL weight, seconds
    summary.json     the final numbers
    *.png            the figures (see pyrovae.figures and the model's recipe)
"""

import csv
import io
import json
import math
import os
import tempfile
from pathlib import Path

from pyrovae.errors import PyrovaeError

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
