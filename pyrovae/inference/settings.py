"""How a pair is optimized: the runner's settings, each with its command-line help.

:class:`TrainSettings` is the one home of these options; :class:`pyrovae.TrainConfig` adds the
model, data and run-folder options to them, and ``scripts/train_svi.py`` makes a flag of every
field (``num_particles`` -> ``--num-particles``) with the help text given here.
"""

import math
from dataclasses import dataclass, field

import torch

from pyrovae.errors import PyrovaeError
from pyrovae.inference.elbos import canonical_elbo_name, is_jit
from pyrovae.inference.precision import check_precision

OPTIMIZERS = {
    "adam": torch.optim.Adam,
    "adamw": torch.optim.AdamW,
    "rmsprop": torch.optim.RMSprop,
    "sgd": torch.optim.SGD,
}


def option(default, help: str, **argparse_kwargs):
    """A dataclass field carrying its command-line help (and argparse extras)."""
    kwargs = {"default_factory": default} if callable(default) else {"default": default}
    return field(metadata={"help": help, **argparse_kwargs}, **kwargs)


@dataclass
class TrainSettings:
    """How a pair is optimized: epochs, optimizer, ELBO estimator, KL weight, stopping."""

    epochs: int = option(200, "number of passes over the training data (the run's total)")
    lr: float = option(1e-3, "learning rate")
    optimizer: str = option("adam", "torch optimizer: " + ", ".join(OPTIMIZERS))
    elbo: str = option(
        "trace",
        "trace, meanfield, tracegraph, enum, jit-trace, jit-meanfield, jit-enum, or iwae (the "
        "per-row importance-weighted bound with --num-particles samples)",
    )
    num_particles: int = option(1, "samples of z per example in each ELBO estimate")
    beta: float = option(1.0, "weight of the KL term (1: the ELBO; other: a beta-VAE)")
    anneal_epochs: float = option(0.0, "epochs of linear KL warm-up from ~0 to --beta")
    clip_norm: float | None = option(None, "clip the global gradient norm to this value (> 0)")
    patience: int = option(
        30,
        "stop after this many epochs without a better validation score (the validation ELBO; "
        "ssvae: the validation accuracy) (0: never)",
    )
    eval_batch_size: int = option(1_000, "rows per evaluation batch")
    precision: str = option(
        "float32",
        "arithmetic of the networks' matrix products in training steps: float32, or bfloat16 "
        "(autocast; activations, densities and all evaluation stay float32)",
    )
    validate_steps: bool = option(
        False,
        "keep Pyro's distribution-argument checks on in every training step (they always "
        "run in the first step and in evaluation; about 10%% slower)",
    )
    quiet: bool = option(False, "no progress bar or per-epoch lines")

    def __post_init__(self):
        if self.optimizer not in OPTIMIZERS:
            raise PyrovaeError(
                f"unknown optimizer {self.optimizer!r}; choose one of {', '.join(OPTIMIZERS)}"
            )
        if self.elbo is not None:  # None: the model's recipe chooses (TrainConfig)
            canonical_elbo_name(self.elbo)
        check_precision(self.precision)
        if self.precision != "float32" and self.elbo is not None and is_jit(self.elbo):
            raise PyrovaeError(
                f"--precision {self.precision} cannot be combined with a JIT-compiled ELBO; "
                "use --elbo without the jit- prefix or --precision float32"
            )
        for name in ("epochs", "num_particles", "eval_batch_size"):
            if getattr(self, name) < 1:
                raise PyrovaeError(
                    f"--{name.replace('_', '-')} must be at least 1, got {getattr(self, name)}"
                )
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise PyrovaeError(f"--lr must be a positive number, got {self.lr}")
        if not (self.beta > 0 and math.isfinite(self.beta)):
            raise PyrovaeError(f"--beta must be a positive number, got {self.beta}")
        if not (self.anneal_epochs >= 0 and math.isfinite(self.anneal_epochs)):
            raise PyrovaeError(f"--anneal-epochs must be 0 or more, got {self.anneal_epochs}")
        if self.clip_norm is not None and not (
            self.clip_norm > 0 and math.isfinite(self.clip_norm)
        ):
            raise PyrovaeError(
                f"--clip-norm must be a positive number (the largest gradient norm), got "
                f"{self.clip_norm}; leave it out for no clipping"
            )
        if self.patience is None or self.patience < 0:
            raise PyrovaeError(
                f"--patience must be 0 (never stop early) or more epochs, got {self.patience}"
            )
        if self.anneal_epochs and self.elbo is not None and is_jit(self.elbo):
            raise PyrovaeError(
                "KL annealing changes the loss every step, which a JIT-compiled ELBO cannot "
                "follow; use --elbo trace or drop --anneal-epochs"
            )
