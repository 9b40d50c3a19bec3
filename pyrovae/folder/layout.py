"""The run folder: config, checkpoint, metrics, summary and figures of one training run.

Its files (``config.json``, ``checkpoint.pt``, ``metrics.csv``, ``summary.json``, figures,
``report.html``, ``.lock``, and what the diagnosis and the features add) are described in
``pyrovae/report/keys.toml``, read by the report and the documentation alike.

Every file is written atomically (:mod:`pyrovae.atomic`), so a run killed at any moment
leaves whole files, and ``--resume`` continues from the last checkpoint.
"""

import csv
import errno
import io
import json
import math
import os
import socket
import stat
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

from pyrovae.atomic import FILE_MODE, atomic_write_text
from pyrovae.errors import PyrovaeError
from pyrovae.folder.config import TrainConfig

try:  # POSIX; elsewhere run folders are not locked
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None

METRIC_COLUMNS = (
    "epoch", "train_objective", "train_elbo", "val_elbo", "test_elbo", "beta", "seconds",
    "eval_seconds",
)  # fmt: skip
RUN_FILES = ("config.json", "checkpoint.pt")
STATE_FILES = (
    "config.json", "checkpoint.pt", "metrics.csv", "summary.json", "params.pt", "modules.pt"
)  # fmt: skip
"""The files training writes under the lock; a kill mid-write leaves ``NAME.XXXXXXXX.tmp``."""
REPORT_NAME = "report.html"
TRAINING_CURVES = "training_curves.png"
DIAGNOSTIC_FIGURES = {
    "pareto_k": "pareto_khat.png",
    "iwae_vs_k": "iwae_vs_k.png",
    "kl_per_dim": "kl_per_dim.png",
    "nuts_vs_q": "nuts_vs_q.png",
    "ppc_statistics": "ppc_statistics.png",
    "ppc_pixels": "ppc_pixels.png",
    "sample_quality": "sample_quality.png",
    "sbc": "sbc_ecdf.png",
    "reliability": "reliability.png",
}
"""The figures that diagnosing a run adds to its folder, by what they show."""


PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def own_file(path: Path) -> Path:
    """``path`` when it is not a symbolic link and, where it exists, a regular file; else a
    one-line refusal. A run folder's files are read only when they are its own: a link could
    lead a report or a diagnosis to read (and a page to embed) any file of the machine."""
    if path.is_symlink():
        raise PyrovaeError(
            f"{path} is a symbolic link; pyrovae reads only a run folder's own files, never "
            "what a link points to (replace the link by a copy of the file)"
        )
    if path.exists() and not path.is_file():
        raise PyrovaeError(f"{path} is not a regular file; remove it or replace it by the file")
    return path


def own_png(path: Path) -> Path:
    """``path`` when it is a run folder's own PNG image (:func:`own_file`, PNG signature)."""
    own_file(path)
    with path.open("rb") as f:
        if f.read(len(PNG_SIGNATURE)) != PNG_SIGNATURE:
            raise PyrovaeError(
                f"{path} is not a PNG image; remove it or rename it (a run folder's *.png files "
                "are embedded in report.html)"
            )
    return path


def check_writable(run_dir: Path, what: str) -> None:
    """Refuse (one line) a folder ``what`` cannot write into, before anything is computed."""
    try:
        fd, probe = tempfile.mkstemp(prefix=".write-check.", dir=run_dir)
    except OSError as exc:
        raise PyrovaeError(
            f"cannot write into {run_dir} ({exc.strerror or exc}), where {what} goes; copy the "
            "folder somewhere writable (cp -r) and run on the copy"
        ) from exc
    os.close(fd)
    os.unlink(probe)


def check_run_folder(run_dir) -> Path:
    """``run_dir`` as a Path, or a one-line PyrovaeError when it is not a run folder."""
    run_dir = Path(run_dir)
    if not run_dir.exists():
        raise PyrovaeError(f"no run folder at {run_dir}")
    if not run_dir.is_dir():
        raise PyrovaeError(f"{run_dir} is a file, not a run folder")
    if not own_file(run_dir / "config.json").is_file():
        raise PyrovaeError(f"{run_dir} is not a pyrovae run folder: it has no config.json")
    return run_dir


def interrupted_write(name: str) -> bool:
    """Is ``name`` the temporary file of an atomic write of a state file?"""
    return name.endswith(".tmp") and any(name.startswith(f + ".") for f in STATE_FILES)


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
        self.lock_path = self.path / ".lock"

    def check_new(self) -> None:
        """Refuse an ``--out`` that cannot become a new run folder: a file, a folder under a
        file, another run, or a folder holding other files (nothing is overwritten)."""
        path = self.path
        for parent in [path, *path.parents]:
            if parent.exists() and not parent.is_dir():
                what = "is a file" if parent == path else f"is under the file {parent}"
                raise PyrovaeError(f"--out {path} {what}; choose a folder for the run")
            if parent.exists():
                break
        if not path.is_dir():
            return
        entries = sorted(
            p.name
            for p in path.iterdir()
            if p.name != self.lock_path.name and not interrupted_write(p.name)
        )
        if any(name in RUN_FILES for name in entries):
            raise PyrovaeError(
                f"{path} already holds a run; continue it with --resume {path} "
                "or choose another --out"
            )
        if entries:
            shown = ", ".join(entries[:3]) + (", ..." if len(entries) > 3 else "")
            raise PyrovaeError(
                f"--out {path} holds other files ({shown}); choose a new or empty folder, so "
                "that nothing in it is overwritten"
            )

    def create(self, config) -> None:
        """Write ``config.json`` of a new run (under :meth:`locked`, which made the folder),
        unless a run appeared there meanwhile."""
        self.check_new()
        self.write_config(config)

    @contextmanager
    def locked(self, create: bool = False):
        """Hold the folder's lock for the block: a second process training in the same
        folder stops with a one-line error naming the holder. The lock dies with its
        process, so a killed run never blocks its own ``--resume``; the temporary files of
        state files it was killed writing are removed once the lock is held."""
        if fcntl is None:
            yield
            return
        if create:
            self.check_new()
            try:
                self.path.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise PyrovaeError(
                    f"cannot create the run folder {self.path}: {exc.strerror or exc}; choose "
                    "a writable --out"
                ) from exc
        try:
            # O_NOFOLLOW: a .lock that is a symbolic link is refused, not followed (writing
            # the holder's name into it would overwrite the file it points to).
            flags = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK
            fd = os.open(self.lock_path, flags, FILE_MODE)
        except OSError as exc:
            if exc.errno == errno.ELOOP or self.lock_path.is_symlink():
                raise PyrovaeError(
                    f"{self.lock_path} is a symbolic link; a run folder's .lock must be its own "
                    "file (remove the link, then run again)"
                ) from exc
            raise PyrovaeError(
                f"cannot write to the run folder {self.path}: {exc.strerror or exc}; choose a "
                "writable --out"
            ) from exc
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise PyrovaeError(
                    f"{self.lock_path} is not a regular file; remove it, then run again"
                )
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.read(fd, 200).decode(errors="replace").strip() or "another process"
                raise PyrovaeError(
                    f"{self.path} is in use by {holder}; wait for it to finish or choose "
                    "another --out"
                ) from None
            # Temporary files of writes a killed process left (it held this lock) are litter.
            for stale in self.path.iterdir():
                if interrupted_write(stale.name):
                    stale.unlink(missing_ok=True)
            os.ftruncate(fd, 0)
            stamp = time.strftime("%Y-%m-%d %H:%M:%S")
            os.write(fd, f"process {os.getpid()} on {socket.gethostname()} since {stamp}".encode())
            yield
        finally:
            os.close(fd)  # releases the lock

    def check_own_files(self) -> None:
        """Refuse (one line) a run file of the folder that is a link or not a regular file."""
        for path in (self.config_path, self.checkpoint, self.metrics, self.summary):
            own_file(path)

    def holder(self) -> str | None:
        """Who holds the folder's lock (a process training in it), or None when nobody."""
        if fcntl is None or not self.lock_path.is_file() or self.lock_path.is_symlink():
            return None
        try:
            fd = os.open(self.lock_path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        except OSError:
            return None
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                return os.read(fd, 200).decode(errors="replace").strip() or "another process"
            fcntl.flock(fd, fcntl.LOCK_UN)
            return None
        finally:
            os.close(fd)

    def write_config(self, config) -> None:
        atomic_write_text(self.config_path, json.dumps(config.to_json(), indent=2) + "\n")

    def read_config(self):
        if not self.path.is_dir():
            raise PyrovaeError(f"no run folder at {self.path}")
        return TrainConfig.load(own_file(self.config_path))

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
        if not (self.summary.is_symlink() or self.summary.exists()):
            return {}
        return json.loads(own_file(self.summary).read_text())
