"""A run killed with SIGKILL at any moment resumes to exactly the uninterrupted result.

Real training processes (``tests/kill_harness.py``, which is ``scripts/train_svi.py`` with
hooks around file writes) are killed at seeded random moments and inside chosen writes:
before config.json exists, while the first checkpoint is written, while a later checkpoint
is written over an older one, right after the last epoch's checkpoint (before metrics.csv
catches up), while the report is written. After every kill the folder holds whole files and
a free lock; each time the run is resumed (or, with no config.json yet, started again with
the same command), and the finished run equals an uninterrupted one: metrics.csv's epochs and
ELBOs, summary.json, every tensor of the checkpoint, the figures.
"""

import csv
import os
import random
import signal
import subprocess
import sys
import time

import pytest
from kill_harness import (
    TRAIN_SCRIPT,
    checkpoint_epoch,
    differences,
    inspect,
    kill,
    launch,
    temporary_files,
)
from matplotlib.figure import Figure

import pyrovae
from pyrovae.folder.layout import RunFolder, interrupted_write
from pyrovae.plots.core import save_figure

EPOCHS = 12
ARGS = ["--hidden", "32", "--latent-dim", "4", "--epochs", str(EPOCHS), "--quiet"]
SLOW_WRITE = 0.05  # seconds per file write: random kills land in writes and epochs too
SEED = 20261122


def _rows(run_dir) -> int:
    with (run_dir / "metrics.csv").open(newline="") as f:
        return len(list(csv.DictReader(f)))


@pytest.mark.slow
def test_runs_killed_at_any_moment_resume_to_the_uninterrupted_result(tmp_path):
    rng = random.Random(SEED)
    reference, run, log, marker = (tmp_path / n for n in ("reference", "run", "log", "marker"))
    start = time.monotonic()
    subprocess.run(
        [sys.executable, str(TRAIN_SCRIPT), *ARGS, "--out", str(reference)],
        check=True,
        capture_output=True,
        timeout=600,
    )
    whole_run = time.monotonic() - start

    def kill_once(pause=None, delay=None, stop_at=None) -> tuple[str | None, object]:
        """Launch, kill at the pause, the delay or the safety stop, and check the folder."""
        before = temporary_files(run)
        if stop_at is not None:  # kill at the latest once epoch stop_at (or the next) is saved
            pause = f"checkpoint.pt:{max(stop_at - (checkpoint_epoch(run) or 0), 1)}:after"
        proc = launch(ARGS, run, log, pause=pause, marker=marker, slow_write=SLOW_WRITE)
        landed = kill(proc, marker if pause else None, delay)
        assert landed or proc.returncode == 0, log.read_text()[-3000:]  # ended by itself
        after = inspect(run, before)
        assert after.problems == [], (pause, delay, after, log.read_text()[-3000:])
        return landed, after

    # Before config.json exists: the folder holds the lock and a half-written config.
    landed, after = kill_once(pause="config.json:1:mid")
    assert landed == "marker" and not (run / "config.json").exists()
    assert after.checkpoint_epoch is None
    assert [n.split(".")[:2] for n in after.new_temporary] == [["config", "json"]]

    # While the first checkpoint is written (the same command starts the run again).
    landed, after = kill_once(pause="checkpoint.pt:1:mid")
    assert landed == "marker" and (run / "config.json").exists()
    assert after.checkpoint_epoch is None and after.interrupted_checkpoint

    # A random moment up to epoch 3 (startup, an epoch, a write): the run starts afresh.
    kill_once(delay=rng.uniform(0, whole_run), stop_at=3)

    # While a checkpoint is written over an older one: the older one stays whole.
    epoch = checkpoint_epoch(run) or 0
    nth = rng.randint(1 if epoch else 2, 2)
    landed, after = kill_once(pause=f"checkpoint.pt:{nth}:mid")
    assert landed == "marker" and after.interrupted_checkpoint
    assert after.checkpoint_epoch == epoch + nth - 1 >= 1

    # Two random moments up to epoch 9.
    kill_once(delay=rng.uniform(0, whole_run), stop_at=rng.randint(6, 9))
    kill_once(delay=rng.uniform(0, whole_run), stop_at=9)

    # Right after the last epoch's checkpoint: metrics.csv is one epoch behind it.
    landed, after = kill_once(stop_at=EPOCHS)
    assert landed == "marker" and after.checkpoint_epoch == EPOCHS
    assert _rows(run) == EPOCHS - 1

    # While the report is written: a figure, then the summary or report.html.
    for written in (
        rng.choice(["training_curves.png", "reconstructions.png", "samples.png"]),
        rng.choice(["summary.json", "report.html"]),
    ):
        landed, after = kill_once(pause=f"{written}:1:mid")
        assert landed == "marker" and any(n.startswith(written) for n in after.new_temporary)

    # A last random moment, then the last resume runs to the end.
    kill_once(delay=rng.uniform(0, whole_run))
    proc = launch(ARGS, run, log)
    assert proc.wait(timeout=600) == 0, log.read_text()[-3000:]

    assert differences(reference, run) == []
    assert _rows(run) == EPOCHS
    assert not any(interrupted_write(name) for name in temporary_files(run))


def test_a_folder_killed_before_its_config_was_written_starts_again(tmp_path):
    """The same ``--out`` is accepted again, and the half-written config is removed once the
    lock is held; other files still make the folder refused."""
    run = tmp_path / "run"
    run.mkdir()
    (run / ".lock").write_text("process 123 on host since 2026-11-22 10:00:00")
    (run / "config.json.k2j3h4g5.tmp").write_text('{"model": "va')
    folder = RunFolder(run)
    folder.check_new()
    with folder.locked(create=True):
        assert sorted(p.name for p in run.iterdir()) == [".lock"]
    (run / "notes.tmp").write_text("mine")
    with pytest.raises(pyrovae.PyrovaeError, match="holds other files"):
        folder.check_new()


def test_a_resume_removes_checkpoints_left_half_written(tmp_path):
    (tmp_path / "checkpoint.pt.a1b2c3d4.tmp").write_bytes(b"PK\x03\x04 half")
    (tmp_path / "samples.png.a1b2c3d4.tmp").write_bytes(b"not ours to remove")
    with RunFolder(tmp_path).locked():
        names = sorted(p.name for p in tmp_path.iterdir())
    assert names == [".lock", "samples.png.a1b2c3d4.tmp"]


def test_a_resume_rewrites_metrics_csv_that_lags_its_checkpoint(tmp_path):
    """A kill after the last epoch's checkpoint and before metrics.csv: the resume writes the
    checkpoint's rows, so metrics.csv is the uninterrupted run's."""
    out = tmp_path / "run"
    pyrovae.train(dataset="digits", epochs=2, out=str(out), hidden=(16,), latent_dim=2, quiet=True)
    metrics = out / "metrics.csv"
    full = metrics.read_text()
    metrics.write_text("".join(full.splitlines(keepends=True)[:2]))  # header and epoch 1
    pyrovae.train(resume=out, quiet=True)
    assert metrics.read_text() == full


def test_a_figure_whose_write_dies_leaves_the_old_file_whole(tmp_path):
    path = tmp_path / "curves.png"
    figure = Figure()
    figure.add_subplot().plot([0, 1], [1, 0])
    save_figure(figure, path)
    old = path.read_bytes()

    def dies_mid_write(file, **kwargs):
        file.write(old[:100])
        raise KeyboardInterrupt

    figure.savefig = dies_mid_write
    with pytest.raises(KeyboardInterrupt):
        save_figure(figure, path)
    assert path.read_bytes() == old
    assert [p.name for p in tmp_path.iterdir()] == ["curves.png"]


def test_sigterm_is_an_interruption_that_resumes_to_the_uninterrupted_result(tmp_path):
    """SIGTERM (``timeout``, ``docker stop``, a scheduler's preemption) on a real training
    process: one line naming the saved epoch, exit 143, no temporary file; the resumed run
    equals an uninterrupted one."""
    reference, run, log, marker = (tmp_path / n for n in ("reference", "run", "log", "marker"))
    args = ["--hidden", "16", "--latent-dim", "2", "--epochs", "6", "--quiet"]
    subprocess.run(
        [sys.executable, str(TRAIN_SCRIPT), *args, "--out", str(reference)],
        check=True,
        capture_output=True,
        timeout=600,
        env={**os.environ, "PYTHONPATH": str(TRAIN_SCRIPT.parents[1])},
    )
    proc = launch(args, run, log, pause="checkpoint.pt:3:after", marker=marker)
    deadline = time.monotonic() + 300
    while not marker.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert marker.exists(), log.read_text()
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 143
    lines = [line for line in log.read_text().splitlines()[1:] if line.strip()]
    assert lines == [f"interrupted: epoch 3 is saved; continue with --resume {run}"], lines
    assert temporary_files(run) == set()
    assert checkpoint_epoch(run) == 3
    resumed = launch(args, run, log)
    assert resumed.wait(timeout=600) == 0, log.read_text()
    assert differences(reference, run) == []
