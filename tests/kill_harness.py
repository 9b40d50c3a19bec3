"""Kill a training run with SIGKILL at chosen or random moments, resume it, and check what
every kill left. Shared by ``tests/test_fault_injection.py`` and
``benchmarks/kill_resume.py``.

Run as a script, ``python tests/kill_harness.py ARGS`` is ``scripts/train_svi.py ARGS`` with
two hooks around every atomic write (:func:`pyrovae.atomic.atomic_write`), read from the
environment:

``KILL_HARNESS_PAUSE=NAME:N:WHEN`` with ``KILL_HARNESS_MARKER=PATH``
    at the N-th write of a file named NAME by this process, pause: ``WHEN=mid`` after half
    of the file's bytes reached its temporary file (the target is not yet replaced),
    ``WHEN=after`` once the new file is in place. The process creates the marker file and
    sleeps until it is killed.
``KILL_HARNESS_SLOW_WRITE=SECONDS``
    write every file in 8 chunks spread over SECONDS (a slow disk), so that kills at random
    moments land inside writes more often. It changes timings only, never bytes.

The parent side: :func:`launch` starts a run (``--resume`` once config.json exists, else the
original command with ``--out``), :func:`kill` kills it at a marker or after a delay,
:func:`inspect` checks the folder after a kill (whole files, a free lock) and
:func:`differences` compares a run folder with an uninterrupted one.
"""

from __future__ import annotations

import csv
import io
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TRAIN_SCRIPT = ROOT / "scripts" / "train_svi.py"
PNG_END = b"IEND\xaeB`\x82"
ELBO_COLUMNS = ("epoch", "train_objective", "train_elbo", "val_elbo", "test_elbo", "beta")
CHUNKS = 8


# ------------------------------------------------------------------------------ child
def _install_hooks() -> None:
    """Wrap ``atomic_write`` wherever pyrovae bound it, as the environment asks."""
    import pyrovae.atomic
    import pyrovae.runs.train  # noqa: F401  (loads every module that writes files)

    pause = os.environ.get("KILL_HARNESS_PAUSE")
    marker = os.environ.get("KILL_HARNESS_MARKER")
    slow = float(os.environ.get("KILL_HARNESS_SLOW_WRITE", "0"))
    if not pause and not slow:
        return
    name, nth, when = pause.rsplit(":", 2) if pause else ("", "0", "")
    nth = int(nth)
    written = {"count": 0}
    original = pyrovae.atomic.atomic_write

    def stop_here(what: str) -> None:
        Path(marker).write_text(what)
        while True:  # killed here by the parent
            time.sleep(60)

    def atomic_write(path, write):
        path = Path(path)
        chosen = path.name == name
        if chosen:
            written["count"] += 1
        pause_mid = chosen and written["count"] == nth and when == "mid"

        def hooked_write(f):
            buffer = io.BytesIO()
            write(buffer)
            data = buffer.getvalue()
            if pause_mid:
                f.write(data[: len(data) // 2])
                f.flush()
                stop_here(f"{path.name} mid-write")
            step = -(-len(data) // CHUNKS) or 1
            for start in range(0, len(data), step):
                f.write(data[start : start + step])
                f.flush()
                if slow:
                    time.sleep(slow / CHUNKS)

        original(path, hooked_write)
        if chosen and written["count"] == nth and when == "after":
            stop_here(f"{path.name} written")

    for module in list(sys.modules.values()):
        if getattr(module, "__name__", "").startswith("pyrovae"):
            if getattr(module, "atomic_write", None) is original:
                module.atomic_write = atomic_write


def _child_main() -> int:
    from pyrovae.cli.train import main

    _install_hooks()
    return main(sys.argv[1:])


# ------------------------------------------------------------------------------ parent
def lock_is_free(run_dir: Path) -> bool:
    """True when no living process holds the run folder's lock (or there is none)."""
    import fcntl

    lock = Path(run_dir) / ".lock"
    if not lock.exists():
        return True
    fd = os.open(lock, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    finally:
        os.close(fd)  # releases the lock taken here
    return True


def temporary_files(run_dir: Path) -> set[str]:
    """Temporary files of atomic writes (``NAME.XXXXXXXX.tmp``) in the run folder."""
    run_dir = Path(run_dir)
    return {p.name for p in run_dir.glob("*.tmp")} if run_dir.is_dir() else set()


def checkpoint_epoch(run_dir: Path) -> int | None:
    """The epoch of the run folder's checkpoint, None when there is none."""
    import torch

    path = Path(run_dir) / "checkpoint.pt"
    if not path.exists():
        return None
    return int(torch.load(path, map_location="cpu", weights_only=True)["epoch"])


def launch(
    args: list[str],
    run_dir: Path,
    log: Path,
    *,
    pause: str | None = None,
    marker: Path | None = None,
    slow_write: float = 0.0,
) -> subprocess.Popen:
    """Start the run in ``run_dir`` through the launcher: ``--resume`` when its config.json
    exists, else ``args --out run_dir`` (a folder killed before config.json was written)."""
    run_dir = Path(run_dir)
    if (run_dir / "config.json").exists():
        argv = ["--resume", str(run_dir), "--quiet"]
    else:
        argv = [*args, "--out", str(run_dir)]
    env = {k: v for k, v in os.environ.items() if not k.startswith("KILL_HARNESS_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    if pause is not None:
        env.update(KILL_HARNESS_PAUSE=pause, KILL_HARNESS_MARKER=str(marker))
        Path(marker).unlink(missing_ok=True)
    if slow_write:
        env["KILL_HARNESS_SLOW_WRITE"] = str(slow_write)
    with open(log, "ab") as out:
        out.write(f"$ launcher {' '.join(argv)}  pause={pause}\n".encode())
        out.flush()
        return subprocess.Popen(
            [sys.executable, __file__, *argv], cwd=ROOT, env=env, stdout=out, stderr=out
        )


def kill(
    proc: subprocess.Popen,
    marker: Path | None = None,
    delay: float | None = None,
    timeout: float = 300.0,
) -> str | None:
    """SIGKILL ``proc`` once it has created ``marker`` or ``delay`` seconds from now,
    whichever comes first, and reap it. Returns ``"marker"``, ``"delay"``, or None when the
    process ended by itself first. Without a delay, waiting for the marker longer than
    ``timeout`` seconds is a TimeoutError (the process is killed)."""
    start = time.monotonic()
    while True:
        if marker is not None and Path(marker).exists():
            landed = "marker"
            break
        if proc.poll() is not None:
            return None
        waited = time.monotonic() - start
        if delay is not None and waited >= delay:
            landed = "delay"
            break
        if delay is None and waited > timeout:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            raise TimeoutError(f"no {marker} after {timeout} s")
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    return landed if proc.returncode == -signal.SIGKILL else None  # else it ended just before


@dataclass
class AfterKill:
    """What a kill left in the run folder."""

    checkpoint_epoch: int | None
    new_temporary: set[str]  # temporary files of writes the kill interrupted
    problems: list[str] = field(default_factory=list)  # torn files, a held lock

    @property
    def interrupted_checkpoint(self) -> bool:
        return any(name.startswith("checkpoint.pt.") for name in self.new_temporary)


def inspect(run_dir: Path, temporary_before: set[str]) -> AfterKill:
    """Check the folder after a kill: every file is whole and the lock is free."""
    import torch

    run_dir = Path(run_dir)
    problems = []
    readers = {
        ".json": lambda p: json.loads(p.read_text()),
        ".csv": lambda p: list(csv.DictReader(p.open(newline=""))),
        # params.pt is Pyro's param store file: its constraints are pickled objects, read
        # by pyro.get_param_store().load (weights_only=False); every other .pt is tensors.
        ".pt": lambda p: torch.load(p, map_location="cpu", weights_only=p.name != "params.pt"),
    }
    for path in sorted(run_dir.iterdir()) if run_dir.is_dir() else []:
        try:
            if path.suffix in readers:
                readers[path.suffix](path)
            elif path.suffix == ".png" and not path.read_bytes().endswith(PNG_END):
                problems.append(f"{path.name} is torn (no PNG end)")
            elif path.suffix == ".html" and not path.read_text().rstrip().endswith("</html>"):
                problems.append(f"{path.name} is torn (no </html>)")
        except Exception as exc:
            problems.append(f"{path.name} is unreadable ({type(exc).__name__}: {exc})")
    rows = run_dir / "metrics.csv"
    epoch = checkpoint_epoch(run_dir) if (run_dir / "checkpoint.pt").exists() else None
    if rows.exists() and epoch is not None:
        n = len(list(csv.DictReader(rows.open(newline=""))))
        if n not in (epoch - 1, epoch):  # the kill may fall between the two writes
            problems.append(f"metrics.csv has {n} rows, the checkpoint {epoch} epochs")
    if not lock_is_free(run_dir):
        problems.append("the dead process's lock is still held")
    return AfterKill(epoch, temporary_files(run_dir) - temporary_before, problems)


# ------------------------------------------------------------------------------ comparison
def _tensors_differ(a, b, where: str, found: list[str]) -> None:
    import torch

    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        same = (
            isinstance(a, torch.Tensor)
            and isinstance(b, torch.Tensor)
            and a.dtype == b.dtype
            and a.shape == b.shape
            and torch.equal(a, b)
        )
        if not same:
            found.append(where)
    elif isinstance(a, dict) and isinstance(b, dict):
        if set(a) != set(b):
            found.append(f"{where} keys")
        for key in sorted(set(a) & set(b), key=str):
            _tensors_differ(a[key], b[key], f"{where}.{key}", found)
    elif isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        if len(a) != len(b):
            found.append(f"{where} length")
        for i, (x, y) in enumerate(zip(a, b, strict=False)):
            _tensors_differ(x, y, f"{where}[{i}]", found)
    elif a != b and not (a != a and b != b):  # NaN equals NaN here
        found.append(where)


def _is_wall_time(key: str) -> bool:
    return isinstance(key, str) and (key == "seconds" or key.endswith("_seconds"))


def _without_wall_time(value):
    if isinstance(value, dict):
        return {k: _without_wall_time(v) for k, v in value.items() if not _is_wall_time(k)}
    if isinstance(value, list):
        return [_without_wall_time(v) for v in value]
    return value


def differences(reference: Path, run: Path) -> list[str]:
    """What differs between two run folders, wall times aside: metrics.csv's epochs and ELBO
    columns (as written), summary.json's values, and every entry of the final checkpoint
    (the model, guide, param store, best epoch, optimizer, RNG, history) and the figures'
    bytes. [] when equal."""
    import torch

    found = []
    rows = [list(csv.DictReader((d / "metrics.csv").open(newline=""))) for d in (reference, run)]
    if len(rows[0]) != len(rows[1]):
        found.append(f"metrics.csv rows: {len(rows[0])} against {len(rows[1])}")
    for a, b in zip(*rows, strict=False):
        for column in ELBO_COLUMNS:
            if a.get(column) != b.get(column):
                found.append(f"metrics.csv epoch {a.get('epoch')} {column}")
    summaries = [
        _without_wall_time(json.loads((d / "summary.json").read_text())) for d in (reference, run)
    ]
    for key in sorted(set(summaries[0]) | set(summaries[1])):
        if summaries[0].get(key) != summaries[1].get(key):
            found.append(f"summary.json {key}")
    states = [
        _without_wall_time(torch.load(d / "checkpoint.pt", map_location="cpu", weights_only=True))
        for d in (reference, run)
    ]
    _tensors_differ(states[0], states[1], "checkpoint", found)
    figures = [sorted(p.name for p in d.glob("*.png")) for d in (reference, run)]
    if figures[0] != figures[1]:
        found.append(f"figures: {figures[0]} against {figures[1]}")
    for name in figures[0]:
        if name in figures[1] and (reference / name).read_bytes() != (run / name).read_bytes():
            found.append(name)
    for d, name in ((reference, "reference"), (run, "run")):
        if not (d / "report.html").exists():
            found.append(f"{name} has no report.html")
    return found


if __name__ == "__main__":
    sys.exit(_child_main())
