"""Checkpoints: written atomically, loaded with ``torch.load(..., weights_only=True)``."""

from pathlib import Path

import pyro
import torch

from pyrovae.atomic import atomic_write
from pyrovae.errors import PyrovaeError
from pyrovae.inference.parameters import owner_module

FORMAT = "pyrovae-checkpoint-1"


REQUIRED_KEYS = (
    "epoch", "model", "guide", "param_store", "optimizer", "history", "best", "stale_epochs", "rng"
)  # fmt: skip


def save_checkpoint(state: dict, path: str | Path) -> None:
    """Write ``state`` to ``path`` so that a crash at any moment leaves the old file or
    the new one, never a torn one (see :mod:`pyrovae.atomic`)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda f: torch.save({"format": FORMAT, **state}, f))


def load_checkpoint(path: str | Path, map_location="cpu", require_all: bool = True) -> dict:
    """Read a checkpoint written by :func:`save_checkpoint` (tensors and plain containers
    only, so ``weights_only=True`` loading is safe for files from anywhere).

    :param require_all: check that every key a training run writes is there.
    """
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
    missing = [k for k in REQUIRED_KEYS if k not in state]
    if missing and not require_all:
        return state
    if missing:
        raise PyrovaeError(
            f"checkpoint {path} lacks {', '.join(missing)}: it is incomplete or not from a "
            "training run; delete it to start the run afresh"
        )
    return state


PARAMS_FILE = "params.pt"
MODULES_FILE = "modules.pt"


def export_params(model, guide, folder: str | Path) -> list[Path]:
    """Write the pair's current parameters where plain Pyro and torch read them back.

    - ``params.pt``: Pyro's param store as ``pyro.get_param_store().save`` writes it (every
      ``pyro.param`` site and every network registered with ``pyro.module``, with their
      constraints), for ``pyro.get_param_store().load(path)``;
    - ``modules.pt``: ``{"model": state_dict, "guide": state_dict}`` of the programs' own
      ``nn.Module`` s (for a pair of methods, both are its object's), tensors only and on
      the CPU, for ``module.load_state_dict(torch.load(path, weights_only=True)["model"])``.
      (``params.pt`` keeps the device trained on: ``load(path, map_location="cpu")``.)

    :returns: the paths written (atomically), in ``folder``.
    """
    folder = Path(folder)
    store = pyro.get_param_store().get_state()  # what ParamStoreDict.save writes
    modules = {
        role: {k: v.detach().cpu() for k, v in owner.state_dict().items()}
        for role, owner in (("model", owner_module(model)), ("guide", owner_module(guide)))
        if owner is not None
    }
    written = [folder / PARAMS_FILE, folder / MODULES_FILE]
    atomic_write(written[0], lambda f: torch.save(store, f))
    atomic_write(written[1], lambda f: torch.save(modules, f))
    return written
