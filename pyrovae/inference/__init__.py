"""Inference: the SVI runner, ELBO choices, evaluation and posterior views.

:mod:`.runner` trains any model/guide pair with ``pyro.infer.SVI``; :mod:`.diagnostics` measures
how good a guide is. Both work from traces (site names, distributions, plates), so they know
no particular model.

May import: the base (:mod:`pyrovae.errors`, :mod:`pyrovae.atomic`) only; not
:mod:`pyrovae.models`, :mod:`pyrovae.data` or :mod:`pyrovae.plots`, its siblings.
"""

from pyrovae.inference.annealing import LatentScaleMessenger, beta_schedule
from pyrovae.inference.batches import TensorBatches
from pyrovae.inference.checkpoint import load_checkpoint, save_checkpoint
from pyrovae.inference.contract import check_pair
from pyrovae.inference.elbos import ELBOS, build_elbos
from pyrovae.inference.evaluate import evaluate_elbo
from pyrovae.inference.posterior import decode, encode, reconstruct, sample_prior
from pyrovae.inference.runner import Trainer
from pyrovae.inference.settings import OPTIMIZERS, TrainSettings

__all__ = [
    "ELBOS",
    "LatentScaleMessenger",
    "OPTIMIZERS",
    "TensorBatches",
    "TrainSettings",
    "Trainer",
    "beta_schedule",
    "build_elbos",
    "check_pair",
    "decode",
    "encode",
    "evaluate_elbo",
    "load_checkpoint",
    "reconstruct",
    "sample_prior",
    "save_checkpoint",
]
