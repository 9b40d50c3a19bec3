"""The run folder: what one training run leaves on disk and how it is written.

:mod:`.config` is ``config.json``'s schema (:class:`TrainConfig`, every option of a run);
:mod:`.layout` names the files, writes them atomically under a lock, and checks that a
folder is a run folder.

May import: :mod:`pyrovae.inference` (the optimization settings), the base
(:mod:`pyrovae.errors`, :mod:`pyrovae.atomic`). Nothing above it.
"""

from pyrovae.folder.config import TrainConfig
from pyrovae.folder.layout import RunFolder, check_run_folder

__all__ = ["RunFolder", "TrainConfig", "check_run_folder"]
