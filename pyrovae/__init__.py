"""pyrovae: variational autoencoders written as Pyro probabilistic programs.

``pyrovae.train(...)`` trains any registered (or user-written) model/guide pair by SVI
and writes a run folder; ``pyrovae.load_run(path)`` brings one back;
``pyrovae.diagnose(run)`` measures how good its posterior approximation is;
``pyrovae.features(run, x)`` and ``pyrovae.linear_probe(run)`` use its posterior means.

The layers, bottom to top (each imports only from those below it): :mod:`pyrovae.errors`
and :mod:`pyrovae.atomic`; :mod:`pyrovae.models`, :mod:`pyrovae.data`,
:mod:`pyrovae.inference`, :mod:`pyrovae.plots` (independent of one another);
:mod:`pyrovae.recipes`; :mod:`pyrovae.folder`; :mod:`pyrovae.report`; :mod:`pyrovae.runs`;
:mod:`pyrovae.cli`. ``lint-imports`` checks them (``pyproject.toml``).

The entry points below are imported on first use (PEP 562), so that ``import
pyrovae.models`` loads the Pyro programs alone.
"""

import importlib

from pyrovae.errors import PyrovaeError

__version__ = "0.1.0"

_ENTRY_POINTS = {
    "Run": "pyrovae.runs.load",
    "load_run": "pyrovae.runs.load",
    "train": "pyrovae.runs.train",
    "TrainConfig": "pyrovae.folder.config",
    "diagnose": "pyrovae.runs.diagnose",
    "DiagnosisOptions": "pyrovae.runs.diagnose",
    "features": "pyrovae.runs.features",
    "linear_probe": "pyrovae.runs.probe",
    "ProbeOptions": "pyrovae.runs.probe",
}

__all__ = ["PyrovaeError", "Run", "TrainConfig", "diagnose", "load_run", "train"]
__all__ += ["features", "linear_probe", "DiagnosisOptions", "ProbeOptions"]


def __getattr__(name: str):
    if name in _ENTRY_POINTS:
        value = getattr(importlib.import_module(_ENTRY_POINTS[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'pyrovae' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_ENTRY_POINTS))
