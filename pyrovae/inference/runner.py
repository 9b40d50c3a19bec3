"""One runner that trains any model/guide pair by stochastic variational inference.

The loss is Pyro's own: ``elbo(model, guide)`` builds an :class:`~pyro.infer.elbo.ELBOModule`
whose forward pass is ``elbo.differentiable_loss``. All parameters (the modules' own and any
``pyro.param`` sites) go to a single torch optimiser. That is the same SVI update as
``pyro.infer.SVI`` with a ``pyro.optim`` wrapper, without the per-parameter optimiser
bookkeeping and global param-store traffic on every step.
"""

import math
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import pyro
import torch
from torch import nn
from tqdm.auto import tqdm

from pyrovae.errors import PyrovaeError
from pyrovae.inference.annealing import LatentScaleMessenger, beta_schedule
from pyrovae.inference.batches import TensorBatches
from pyrovae.inference.checkpoint import load_checkpoint, save_checkpoint
from pyrovae.inference.distributed import Distributed, ShardedBatches
from pyrovae.inference.elbos import build_elbos, is_jit
from pyrovae.inference.evaluate import evaluate_elbo
from pyrovae.inference.posterior import check_sites

OPTIMIZERS = {
    "adam": torch.optim.Adam,
    "adamw": torch.optim.AdamW,
    "rmsprop": torch.optim.RMSprop,
    "sgd": torch.optim.SGD,
}


@dataclass
class TrainSettings:
    """How a pair is optimised.

    :param epochs: passes over the training data (the run's total, also when resuming).
    :param lr: learning rate of the optimiser.
    :param optimizer: a name in ``OPTIMIZERS``.
    :param elbo: a name in :data:`pyrovae.inference.elbos.ELBOS` (``trace``, ``meanfield``, ...).
    :param num_particles: samples of z per example in each ELBO estimate.
    :param beta: weight of the KL term (1 is the ELBO; other values give a beta-VAE).
    :param anneal_epochs: epochs over which the KL weight rises linearly to ``beta``.
    :param clip_norm: clip the global gradient norm to this value (``None``: no clipping).
    :param patience: stop after this many epochs without a better validation ELBO.
    :param eval_batch_size: rows per evaluation batch (no gradients are kept).
    :param quiet: no progress bar or per-epoch lines.
    :param validate_steps: keep Pyro's distribution-argument checks on in every training
        step (they always run in the first, warm-up trace and in evaluation).
    """

    epochs: int = 100
    lr: float = 1e-3
    optimizer: str = "adam"
    elbo: str = "trace"
    num_particles: int = 1
    beta: float = 1.0
    anneal_epochs: float = 0.0
    clip_norm: float | None = None
    patience: int | None = None
    eval_batch_size: int = 10_000
    quiet: bool = False
    validate_steps: bool = False

    def __post_init__(self):
        if self.optimizer not in OPTIMIZERS:
            raise PyrovaeError(
                f"unknown optimizer {self.optimizer!r}; choose one of {', '.join(OPTIMIZERS)}"
            )
        for name in ("epochs", "num_particles", "eval_batch_size"):
            if getattr(self, name) < 1:
                raise PyrovaeError(f"--{name.replace('_', '-')} must be at least 1")
        if not self.lr > 0:
            raise PyrovaeError(f"--lr must be positive, got {self.lr}")
        if not self.beta > 0:
            raise PyrovaeError(f"--beta must be positive, got {self.beta}")
        if self.anneal_epochs and is_jit(self.elbo):
            raise PyrovaeError(
                "KL annealing changes the loss every step, which a JIT-compiled ELBO cannot "
                "follow; use --elbo trace or drop --anneal-epochs"
            )


def _with_param_registration(name: str, module: nn.Module) -> Callable:
    """Wrap ``module`` so that each call registers its parameters with Pyro's param store.

    Only the JIT ELBOs need this: they compile the loss with the param-store values as
    inputs. The eager path leaves parameters module-local (no per-step registration).
    """

    def program(*args, **kwargs):
        pyro.module(name, module)
        return module(*args, **kwargs)

    return program


def _fast_optimizer(name: str, params: list[torch.Tensor], lr: float) -> torch.optim.Optimizer:
    """One optimiser over every parameter, with torch's fastest kernels for it.

    A single optimiser (not Pyro's one per parameter) lets torch update all tensors in one
    kernel: the fused Adam/AdamW step takes ~0.4 ms per step for the 784-400-50 VAE on
    2 CPU cores against ~1 ms for the per-tensor loop that torch defaults to on the CPU
    (``benchmarks/speed.py``). The update is the same Adam, to float rounding.
    """
    cls = OPTIMIZERS[name]
    if name in ("adam", "adamw"):
        try:
            return cls(params, lr=lr, fused=True)
        except RuntimeError:  # a device or dtype without fused kernels
            pass
    return cls(params, lr=lr, foreach=True)


def _unique_parameters(*groups) -> list[torch.Tensor]:
    seen, params = set(), []
    for group in groups:
        for p in group:
            if id(p) not in seen:
                seen.add(id(p))
                params.append(p)
    return params


def _state_dict(program) -> dict:
    return program.state_dict() if isinstance(program, nn.Module) else {}


class Trainer:
    """Train ``model``/``guide`` on minibatches, evaluating and checkpointing every epoch.

    :param model: the generative program, ``model(x, ...)``; usually an ``nn.Module``.
    :param guide: the variational program with the same signature.
    :param batches: training minibatches (``TensorBatches`` or anything with ``epoch(e)``
        yielding argument tuples, ``__len__`` and ``num_examples``).
    :param settings: a :class:`TrainSettings`.
    :param val_x: ``(n_val, D)`` rows for early stopping and picking the best epoch.
    :param test_x: ``(n_test, D)`` held-out rows, evaluated every epoch and reported.
    :param checkpoint_path: where to write the checkpoint after every epoch.
    :param on_epoch: called with the history (list of per-epoch dicts) after every epoch.
    :param epoch_metrics: called after each epoch's evaluation; its dict (e.g. a test
        accuracy) joins the epoch's metrics row.
    :param distributed: this process's place in a ``torchrun`` process group: training
        batches and evaluation rows are sharded over the ranks, gradients averaged by
        DDP, and only rank 0 writes checkpoints and calls ``on_epoch``.
    """

    def __init__(
        self,
        model,
        guide,
        batches: TensorBatches,
        settings: TrainSettings,
        *,
        val_x: torch.Tensor | None = None,
        test_x: torch.Tensor | None = None,
        checkpoint_path: str | Path | None = None,
        on_epoch: Callable[[list[dict]], None] | None = None,
        epoch_metrics: Callable[[], dict] | None = None,
        distributed: Distributed | None = None,
    ):
        self.model, self.guide = model, guide
        self.batches = batches
        self.settings = settings
        self.val_x, self.test_x = val_x, test_x
        self.checkpoint_path = Path(checkpoint_path) if checkpoint_path else None
        self.on_epoch = on_epoch
        self.epoch_metrics = epoch_metrics
        self.distributed = distributed
        self.is_main = distributed is None or distributed.is_main
        if distributed is not None:
            self.batches = batches = ShardedBatches(batches, distributed)

        max_plate_nesting = getattr(model, "max_plate_nesting", 1)
        self.train_elbo, self.eval_elbo = build_elbos(
            settings.elbo,
            num_particles=settings.num_particles,
            max_plate_nesting=max_plate_nesting,
        )
        if is_jit(settings.elbo):
            programs = [
                _with_param_registration(n, m) for n, m in (("model", model), ("guide", guide))
            ]
        else:
            programs = [model, guide]
        self.objective = self.train_elbo(*programs)
        self.latent_scale = LatentScaleMessenger(1.0)

        # Trace once: checks that the site names agree and creates any pyro.param sites.
        warmup_args = next(iter(batches.epoch(0)))
        with torch.no_grad():
            check_sites(model, guide, *(a[:2] for a in warmup_args))
        self.parameters = _unique_parameters(
            model.parameters() if isinstance(model, nn.Module) else [],
            guide.parameters() if isinstance(guide, nn.Module) else [],
            (p for _, p in pyro.get_param_store().named_parameters()),
        )
        if not self.parameters:
            raise PyrovaeError("the model and guide have no parameters to train")
        self.optimizer = _fast_optimizer(settings.optimizer, self.parameters, settings.lr)
        self._loss_scale = 1.0
        self._unmanaged: list[torch.Tensor] = []
        if distributed is not None:
            self._wrap_for_distributed(distributed)

        self.epoch = 0  # epochs completed
        self.history: list[dict] = []
        self.best: dict = {"epoch": None, "val_elbo": -math.inf, "model": None, "guide": None}
        self.stale_epochs = 0

    def _wrap_for_distributed(self, group: Distributed) -> None:
        if is_jit(self.settings.elbo):
            raise PyrovaeError(
                "--distributed works with the eager ELBOs (trace, meanfield, tracegraph, enum); "
                f"drop the jit- prefix of --elbo {self.settings.elbo}"
            )
        if not any(p.requires_grad for p in self.objective.parameters()):
            raise PyrovaeError(
                "--distributed needs a model or guide that is an nn.Module with parameters"
            )
        managed = {id(p) for p in self.objective.parameters()}
        self._unmanaged = [p for p in self.parameters if id(p) not in managed]
        self.objective = torch.nn.parallel.DistributedDataParallel(
            self.objective,
            device_ids=[group.device.index] if group.device.type == "cuda" else None,
        )
        # DDP averages gradients over ranks; the loss is a sum over rows, so scaling each
        # rank's loss by N makes the average the gradient of the global minibatch's loss.
        self._loss_scale = float(group.world_size)

    # ---------------------------------------------------------------- checkpoints
    def state(self) -> dict:
        """Everything needed to continue the run exactly where it stopped."""
        return {
            "epoch": self.epoch,
            "model": _state_dict(self.model),
            "guide": _state_dict(self.guide),
            "param_store": {
                n: p.detach().clone() for n, p in pyro.get_param_store().named_parameters()
            },
            "optimizer": self.optimizer.state_dict(),
            "history": self.history,
            "best": self.best,
            "stale_epochs": self.stale_epochs,
            "rng": self._rng_state(),
            "settings": asdict(self.settings),
        }

    def load_state(self, state: dict) -> None:
        """Restore a :meth:`state` (e.g. from :func:`load_checkpoint`)."""
        if isinstance(self.model, nn.Module):
            self.model.load_state_dict(state["model"])
        if isinstance(self.guide, nn.Module):
            self.guide.load_state_dict(state["guide"])
        store = dict(pyro.get_param_store().named_parameters())
        with torch.no_grad():
            for name, value in state["param_store"].items():
                store[name].copy_(value)
        self.optimizer.load_state_dict(state["optimizer"])
        self.epoch = state["epoch"]
        self.history = list(state["history"])
        self.best = state["best"]
        self.stale_epochs = state["stale_epochs"]
        # Under DDP each rank continues its own random stream when the number of ranks is
        # unchanged; otherwise every rank starts from rank 0's, and ranks r > 0 reseed.
        rng, group = state["rng"], self.distributed
        ranks = rng.get("ranks") or []
        same_ranks = group is not None and len(ranks) == group.world_size
        if same_ranks:
            rng = ranks[group.rank]
        torch.set_rng_state(rng["torch"])
        if rng["cuda"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(rng["cuda"])
        if group is not None and not same_ranks and group.rank > 0:
            torch.manual_seed(int(torch.randint(2**62, ())) + group.rank)

    def _rng_state(self) -> dict:
        """This process's random state; under DDP also every rank's (collected on rank 0)."""
        own = {
            "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        }
        if self.distributed is None:
            return own
        return {**own, "ranks": self.distributed.gather(own)}

    def resume(self) -> bool:
        """Load the checkpoint at ``checkpoint_path`` if there is one; True if loaded."""
        if self.checkpoint_path is None or not self.checkpoint_path.exists():
            return False
        self.load_state(load_checkpoint(self.checkpoint_path))
        return True

    # ---------------------------------------------------------------- training
    def train_epoch(self) -> float:
        """One pass over the training batches; returns the mean training ELBO per example."""
        steps = len(self.batches)
        total = torch.zeros(())
        # The warm-up trace validated the programs and the data; checking distribution
        # arguments again on every step costs ~10% of an epoch (measured with
        # benchmarks/speed.py), and a NaN/inf loss is still caught after the epoch.
        with warnings.catch_warnings(), pyro.validation_enabled(self.settings.validate_steps):
            # A NaN loss is reported once, as a divergence, after the epoch.
            warnings.filterwarnings("ignore", message="Encountered NaN", category=UserWarning)
            for i, args in enumerate(self.batches.epoch(self.epoch)):
                total = total + self.step(args, global_step=self.epoch * steps + i)
        if self.distributed is not None:
            total = self.distributed.sum(total)
        return -float(total) / self.batches.num_examples

    def step(self, args: tuple, global_step: int) -> torch.Tensor:
        """One SVI update on the minibatch ``args``; returns the detached loss (nats)."""
        settings = self.settings
        self.latent_scale.scale = beta_schedule(
            global_step, len(self.batches), settings.beta, settings.anneal_epochs
        )
        if self.latent_scale.scale == 1.0:
            loss = self.objective(*args)
        else:
            with self.latent_scale:
                loss = self.objective(*args)
        self.optimizer.zero_grad(set_to_none=True)
        (loss * self._loss_scale if self._loss_scale != 1.0 else loss).backward()
        if self._unmanaged:
            self.distributed.average_gradients(self._unmanaged)
        if settings.clip_norm is not None:
            torch.nn.utils.clip_grad_norm_(self.parameters, settings.clip_norm)
        self.optimizer.step()
        return loss.detach().cpu()

    def evaluate(self, x: torch.Tensor | None) -> float:
        if x is None:
            return float("nan")
        group = self.distributed
        if group is None:
            return evaluate_elbo(
                self.eval_elbo, self.model, self.guide, x, self.settings.eval_batch_size
            )
        # Each rank scores its shard; the sum over ranks is the same number on every rank,
        # so every rank takes the same early-stopping decisions.
        shard = group.shard(x)
        mean = evaluate_elbo(
            self.eval_elbo, self.model, self.guide, shard, self.settings.eval_batch_size
        )
        return group.sum(mean * shard.shape[0] if shard.shape[0] else 0.0) / x.shape[0]

    def _run_epoch(self) -> dict:
        """Train for one epoch and evaluate; the metrics row of that epoch."""
        try:
            start = time.perf_counter()
            train_elbo = self.train_epoch()
            seconds = time.perf_counter() - start
            start = time.perf_counter()
            val_elbo, test_elbo = self.evaluate(self.val_x), self.evaluate(self.test_x)
        except ValueError as exc:
            # Non-finite parameters, or finite ones so large that a network output
            # overflows, fail torch's distribution argument checks before any loss exists:
            # report that as the divergence it is.
            if "found invalid values" not in str(exc):
                raise
            what = "parameters" if self._parameters_finite() else "network outputs"
            self._diverged(what, "NaN/inf")
            raise AssertionError("unreachable") from exc
        row = {
            "epoch": self.epoch + 1,
            "train_elbo": train_elbo,
            "val_elbo": val_elbo,
            "test_elbo": test_elbo,
            "beta": self.latent_scale.scale,
            "seconds": seconds,
        }
        if self.epoch_metrics is not None:
            row.update(self.epoch_metrics())
        row["eval_seconds"] = time.perf_counter() - start
        return row

    def _parameters_finite(self) -> bool:
        return all(bool(torch.isfinite(p).all()) for p in self.parameters)

    def _diverged(self, what: str, value) -> None:
        kept = ""
        if self.checkpoint_path is not None and self.epoch > 0:
            kept = f"; the checkpoint of epoch {self.epoch} is kept in {self.checkpoint_path}"
        raise PyrovaeError(
            f"training diverged in epoch {self.epoch + 1}: the {what} became {value}{kept}; "
            f"lower --lr (now {self.settings.lr:g}), set --clip-norm, or check the "
            "likelihood's scale"
        )

    def _check_finite(self, row: dict) -> None:
        """Stop with a clear message (the last checkpoint stays) when an ELBO is NaN/inf."""
        for key in ("train_elbo", "val_elbo", "test_elbo"):
            if math.isfinite(row[key]) or (key != "train_elbo" and self._absent(key)):
                continue
            self._diverged(key.replace("_", " "), row[key])

    def _absent(self, key: str) -> bool:
        x = self.val_x if key == "val_elbo" else self.test_x
        return x is None or x.shape[0] == 0

    def fit(self) -> list[dict]:
        """Train until ``settings.epochs`` epochs are done or early stopping fires.

        Returns the per-epoch history. When a validation set is given, the parameters of
        the epoch with the best validation ELBO are restored at the end.
        """
        settings = self.settings
        bar = tqdm(
            total=settings.epochs,
            initial=self.epoch,
            disable=settings.quiet or not self.is_main,
            unit="epoch",
            desc="training",
            dynamic_ncols=True,
        )
        try:
            while self.epoch < settings.epochs and not self.stopped_early:
                row = self._run_epoch()
                self._check_finite(row)
                self._track_best(row)
                self.epoch += 1
                self.history.append(row)
                self._save()
                if self.on_epoch is not None and self.is_main:
                    self.on_epoch(self.history)
                bar.update(1)
                bar.set_postfix(train=f"{row['train_elbo']:.2f}", test=f"{row['test_elbo']:.2f}")
                if not settings.quiet and self.is_main:
                    bar.write(_format_row(row))
        finally:
            bar.close()
        self.restore_best()
        return self.history

    def _save(self) -> None:
        """Write the checkpoint (rank 0 only; every rank takes part in collecting it)."""
        if self.checkpoint_path is None:
            return
        state = self.state()
        if self.is_main:
            save_checkpoint(state, self.checkpoint_path)
        if self.distributed is not None:
            self.distributed.barrier()  # no rank runs ahead of a checkpoint being written

    @property
    def stopped_early(self) -> bool:
        patience = self.settings.patience
        return patience is not None and self.stale_epochs >= patience

    def _track_best(self, row: dict) -> None:
        if self._absent("val_elbo"):
            return
        if row["val_elbo"] > self.best["val_elbo"]:
            self.best = {
                "epoch": row["epoch"],
                "val_elbo": row["val_elbo"],
                "model": {k: v.detach().clone() for k, v in _state_dict(self.model).items()},
                "guide": {k: v.detach().clone() for k, v in _state_dict(self.guide).items()},
            }
            self.stale_epochs = 0
        else:
            self.stale_epochs += 1

    def restore_best(self) -> None:
        """Load the parameters of the best validation epoch (no-op without validation)."""
        if self.best["epoch"] is None:
            return
        if isinstance(self.model, nn.Module):
            self.model.load_state_dict(self.best["model"])
        if isinstance(self.guide, nn.Module):
            self.guide.load_state_dict(self.best["guide"])


def _format_row(row: dict) -> str:
    parts = [f"epoch {row['epoch']:4d}", f"train {row['train_elbo']:9.3f}"]
    for key in ("val_elbo", "test_elbo"):
        if not math.isnan(row[key]):
            parts.append(f"{key[:-5]} {row[key]:9.3f}")
    parts.append(f"nats/example  {row['seconds']:.2f}s")
    return "  ".join(parts)
