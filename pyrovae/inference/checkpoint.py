"""Checkpoints: written atomically, loaded with ``torch.load(..., weights_only=True)``."""

import os
import tempfile
from pathlib import Path

import torch

from pyrovae.errors import PyrovaeError

FORMAT = "pyrovae-checkpoint-1"


def save_checkpoint(state: dict, path: str | Path) -> None:
    """Write ``state`` to ``path`` so that a crash at any moment leaves the old file or
    the new one, never a torn one: write a temporary file beside it, fsync, rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save({"format": FORMAT, **state}, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_checkpoint(path: str | Path, map_location="cpu") -> dict:
    """Read a checkpoint written by :func:`save_checkpoint` (tensors and plain containers
    only, so ``weights_only=True`` loading is safe for files from anywhere)."""
    path = Path(path)
    if not path.is_file():
        raise PyrovaeError(f"no checkpoint at {path}; was the run started with this --out?")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:
        raise PyrovaeError(
            f"checkpoint {path} is unreadable or corrupt ({type(exc).__name__}); "
            "delete it to start the run afresh"
        ) from exc
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise PyrovaeError(f"{path} is not a pyrovae checkpoint (format {FORMAT})")
    return state
