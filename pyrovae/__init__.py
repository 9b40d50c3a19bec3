"""pyrovae: variational autoencoders written as Pyro probabilistic programs.

``pyrovae.train(...)`` trains any registered (or user-written) model/guide pair by SVI
and writes a run folder; ``pyrovae.load_run(path)`` brings one back;
``pyrovae.diagnose(run)`` measures how good its posterior approximation is.
"""

from pyrovae.api import Run, load_run, train
from pyrovae.config import TrainConfig
from pyrovae.diagnosis import diagnose
from pyrovae.errors import PyrovaeError

__version__ = "0.1.0"

__all__ = ["PyrovaeError", "Run", "TrainConfig", "diagnose", "load_run", "train"]
