"""pyrovae: variational autoencoders written as Pyro probabilistic programs.

``pyrovae.train(...)`` trains any registered (or user-written) model/guide pair by SVI
and writes a run folder; ``pyrovae.load_run(path)`` brings one back;
``pyrovae.diagnose(run)`` measures how good its posterior approximation is.

The entry points are imported on first use, so that ``import pyrovae.models`` loads the
Pyro programs alone.
"""

import importlib

from pyrovae.errors import PyrovaeError

__version__ = "0.1.0"

_ENTRY_POINTS = {
    "Run": "pyrovae.api",
    "load_run": "pyrovae.api",
    "train": "pyrovae.api",
    "TrainConfig": "pyrovae.config",
    "diagnose": "pyrovae.diagnosis",
    "features": "pyrovae.downstream",
    "linear_probe": "pyrovae.downstream",
}

__all__ = ["PyrovaeError", "Run", "TrainConfig", "diagnose", "load_run", "train"]
__all__ += ["features", "linear_probe"]


def __getattr__(name: str):
    if name in _ENTRY_POINTS:
        value = getattr(importlib.import_module(_ENTRY_POINTS[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'pyrovae' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_ENTRY_POINTS))
