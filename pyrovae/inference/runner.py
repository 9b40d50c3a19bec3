"""One runner that trains any model/guide pair by stochastic variational inference.

The loss is Pyro's own: ``elbo(model, guide)`` builds an :class:`~pyro.infer.elbo.ELBOModule`
whose forward pass is ``elbo.differentiable_loss``. All parameters (the modules' own and any
``pyro.param`` sites) go to a single torch optimizer. That is the same SVI update as
``pyro.infer.SVI`` with a ``pyro.optim`` wrapper, without the per-parameter optimizer
bookkeeping and global param-store traffic on every step. Data-parallel training is the
subclass :class:`~pyrovae.inference.distributed.DistributedTrainer`.
"""

import math
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, replace
from pathlib import Path

import pyro
import pyro.poutine as poutine
import torch
from tqdm import tqdm

from pyrovae.errors import PyrovaeError
from pyrovae.inference.annealing import LatentScaleMessenger, beta_schedule
from pyrovae.inference.batches import TensorBatches
from pyrovae.inference.checkpoint import load_checkpoint, save_checkpoint
from pyrovae.inference.contract import check_pair
from pyrovae.inference.elbos import build_elbos, canonical_elbo_name, is_jit
from pyrovae.inference.evaluate import evaluate_elbo
from pyrovae.inference.parameters import all_parameters, owner_module, restore, snapshot
from pyrovae.inference.precision import StepPrecision
from pyrovae.inference.settings import OPTIMIZERS, TrainSettings


def _with_param_registration(name: str, program) -> Callable:
    """Wrap ``program`` so that each call registers its module's parameters with Pyro's
    param store (a plain function keeps its own ``pyro.param`` / ``pyro.module`` calls).

    Only the JIT ELBOs need this: they compile the loss with the param-store values as
    inputs. The eager path leaves parameters module-local (no per-step registration).
    """
    module = owner_module(program)
    if module is None:
        return program

    def registered(*args, **kwargs):
        pyro.module(name, module)
        return program(*args, **kwargs)

    return registered


EXPLOSION = 100
"""A held-out ELBO this many times the starting one's magnitude below it has exploded."""


def _with_enumeration(settings: TrainSettings, enumerated: list[str]) -> TrainSettings:
    """``settings`` with ``elbo="enum"`` when the guide enumerates sites and the ELBO is the
    default ``trace``; any other ELBO that cannot sum them out is a one-line error."""
    if not enumerated or canonical_elbo_name(settings.elbo) in ("enum", "iwae"):
        return settings
    if settings.elbo == "trace":
        return replace(settings, elbo="enum")
    raise PyrovaeError(
        f"the guide enumerates {enumerated}, which only --elbo enum (or iwae) sums out; "
        f"got --elbo {settings.elbo}"
    )


def _fast_optimizer(name: str, params: list[torch.Tensor], lr: float) -> torch.optim.Optimizer:
    """One optimizer over every parameter, with torch's fastest kernels for it.

    A single optimizer (not Pyro's one per parameter) lets torch update all tensors in one
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


class Trainer:
    """Train ``model``/``guide`` on minibatches, evaluating and checkpointing every epoch.

    :param model: the generative program, ``model(x, ...)``: an ``nn.Module``, a bound method
        of one, or a function using ``pyro.module`` / ``pyro.param``.
    :param guide: the variational program with the same signature.
    :param batches: training minibatches (``TensorBatches`` or anything with ``epoch(e)``
        yielding argument tuples, ``__len__`` and ``num_examples``).
    :param settings: a :class:`TrainSettings`.
    :param val_x: ``(n_val, D)`` rows for early stopping and picking the best epoch.
    :param select_by: metric keys of an epoch's row (``val_elbo`` or one of ``epoch_metrics``)
        whose values, compared in order (higher is better), pick the epoch whose parameters
        are kept and drive ``settings.patience``; see :func:`selection_score`.
    :param test_x: ``(n_test, D)`` held-out rows, evaluated every epoch and reported.
    :param checkpoint_path: where to write the checkpoint after every epoch.
    :param on_epoch: called with the history (list of per-epoch dicts) after every epoch.
    :param epoch_metrics: called after each epoch's evaluation; its dict (e.g. a test
        accuracy) joins the epoch's metrics row.
    :param train_x: ``(m, D)`` training rows (as the model scores them) on which the ELBO
        with KL weight 1 is evaluated in epochs whose objective was not that ELBO (a
        weighted KL term, ``--elbo iwae``, a relaxation); without them ``train_elbo`` is
        the objective.
    :param start_epoch: called with the epoch's index (from 0) before its first step.
    :param objective_is_elbo: False when the programs' training steps optimize something
        other than the ELBO they are evaluated with (e.g. a relaxed model).
    """

    is_main = True  # the process that writes checkpoints and reports (see DistributedTrainer)

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
        train_x: torch.Tensor | None = None,
        start_epoch: Callable[[int], None] | None = None,
        objective_is_elbo: bool = True,
        select_by: tuple[str, ...] = ("val_elbo",),
    ):
        self.model, self.guide = model, guide
        self.train_x = train_x
        self.start_epoch = start_epoch
        self._kl_weights: set[float] = set()
        self.batches = batches
        self.settings = settings
        self.val_x, self.test_x = val_x, test_x
        self.checkpoint_path = Path(checkpoint_path) if checkpoint_path else None
        self.on_epoch = on_epoch
        self.epoch_metrics = epoch_metrics
        self.select_by = tuple(select_by)

        # Trace once on a whole first batch: checks the pair's contract (one-line errors)
        # and creates any pyro.param sites; then on the first batch of another form, if
        # any (a labelled batch after an unlabelled one).
        warmup_args, other_args = _first_batches(self.batches)
        with torch.no_grad():
            info = check_pair(model, guide, *warmup_args)
        if other_args is not None:
            with torch.no_grad(), torch.random.fork_rng(devices=_cuda_devices()):
                check_pair(model, guide, *other_args)
        self.settings = settings = _with_enumeration(settings, info.enumerated_sites)
        self.objective_is_elbo = objective_is_elbo and canonical_elbo_name(settings.elbo) != "iwae"
        # The scale against which an exploding loss is told from training (see _check_finite).
        self.initial_elbo = info.elbo
        self.train_elbo, self.eval_elbo = build_elbos(
            settings.elbo,
            num_particles=settings.num_particles,
            max_plate_nesting=info.max_plate_nesting,
            enumerated=bool(info.enumerated_sites),
        )
        if is_jit(settings.elbo):
            programs = [
                _with_param_registration(n, m) for n, m in (("model", model), ("guide", guide))
            ]
        else:
            programs = [model, guide]
        self.objective = self.train_elbo(*programs)
        self.latent_scale = LatentScaleMessenger(1.0)
        self.parameters = all_parameters(model, guide)
        if not self.parameters:
            raise PyrovaeError("the model and guide have no parameters to train")
        self.optimizer = _fast_optimizer(settings.optimizer, self.parameters, settings.lr)
        device = self.parameters[0].device
        self.precision = StepPrecision(settings.precision, (model, guide), device)
        if settings.precision != "float32":
            self._check_precision(warmup_args)

        self.epoch = 0  # epochs completed
        self.history: list[dict] = []
        self.best: dict = {"epoch": None}  # and the parameters of that epoch
        self.stale_epochs = 0

    # ---------------------------------------------------------------- checkpoints
    def state(self) -> dict:
        """Everything needed to continue the run exactly where it stopped."""
        return {
            "epoch": self.epoch,
            **snapshot(self.model, self.guide),
            "optimizer": self.optimizer.state_dict(),
            "history": self.history,
            "best": self.best,
            "stale_epochs": self.stale_epochs,
            "initial_elbo": self.initial_elbo,
            "rng": self._rng_state(),
            "settings": asdict(self.settings),
        }

    def load_state(self, state: dict) -> None:
        """Restore a :meth:`state` (e.g. from :func:`load_checkpoint`)."""
        restore(self.model, self.guide, state)
        self.optimizer.load_state_dict(state["optimizer"])
        self.epoch = state["epoch"]
        self.history = list(state["history"])
        self.best = state["best"]
        self.stale_epochs = state["stale_epochs"]
        self.initial_elbo = state.get("initial_elbo", self.initial_elbo)
        self._set_rng_state(state["rng"])

    def _rng_state(self) -> dict:
        """This process's random state."""
        return {
            "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        }

    def _set_rng_state(self, rng: dict) -> None:
        torch.set_rng_state(rng["torch"])
        if rng["cuda"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(rng["cuda"])

    def resume(self) -> bool:
        """Load the checkpoint at ``checkpoint_path`` if there is one; True if loaded."""
        if self.checkpoint_path is None or not self.checkpoint_path.exists():
            return False
        self.load_state(load_checkpoint(self.checkpoint_path))
        return True

    # ---------------------------------------------------------------- training
    def train_epoch(self) -> float:
        """One pass over the training batches; returns the mean training objective per
        example (the ELBO, unless the KL weight differs from 1 or the model adds terms)."""
        steps = len(self.batches)
        total = torch.zeros(())
        self._kl_weights = set()
        if self.start_epoch is not None:
            self.start_epoch(self.epoch)
        # The warm-up trace validated the programs and the data; checking distribution
        # arguments again on every step costs ~10% of an epoch (measured with
        # benchmarks/speed.py), and a NaN/inf loss is still caught after the epoch.
        with warnings.catch_warnings(), pyro.validation_enabled(self.settings.validate_steps):
            # A NaN loss is reported once, as a divergence, after the epoch.
            warnings.filterwarnings("ignore", message="Encountered NaN", category=UserWarning)
            for i, args in enumerate(self.batches.epoch(self.epoch)):
                total = total + self.step(args, global_step=self.epoch * steps + i)
        return -self._sum_over_processes(total) / self.batches.num_examples

    def _sum_over_processes(self, value) -> float:
        return float(value)

    def loss(self, args: tuple) -> torch.Tensor:
        """The (annealed) negative ELBO of the minibatch ``args``, differentiable."""
        with self.precision.context():
            if self.latent_scale.scale == 1.0:
                return self.objective(*args)
            with self.latent_scale:
                return self.objective(*args)

    def _check_precision(self, args: tuple) -> None:
        """Trace the pair once in the step's precision: a site whose log-density comes out in
        reduced precision (from a matrix product outside an ``nn.Linear`` / ``nn.Conv``
        layer) is refused in one line, not left to lose digits or fail deep inside Pyro."""
        with self.precision.context(), torch.no_grad():
            guide_trace = poutine.trace(self.guide).get_trace(*args)
            replayed = poutine.replay(self.model, trace=guide_trace)
            model_trace = poutine.trace(replayed).get_trace(*args)
            reduced = []
            for trace in (guide_trace, model_trace):
                trace.compute_log_prob()
                reduced += [
                    name
                    for name, site in trace.nodes.items()
                    if "log_prob" in site and site["log_prob"].dtype != torch.float32
                ]
        if reduced:
            raise PyrovaeError(
                f"--precision {self.settings.precision}: the log-density of site "
                f"{', '.join(dict.fromkeys(reduced))} comes out in reduced precision (a matrix "
                "product outside an nn.Linear or nn.Conv layer); use --precision float32 or "
                "compute it in a layer"
            )

    def step(self, args: tuple, global_step: int) -> torch.Tensor:
        """One SVI update on the minibatch ``args``; returns the detached loss (nats)."""
        settings = self.settings
        self.latent_scale.scale = beta_schedule(
            global_step, len(self.batches), settings.beta, settings.anneal_epochs
        )
        self._kl_weights.add(self.latent_scale.scale)
        loss = self.loss(args)
        self.optimizer.zero_grad(set_to_none=True)
        self.backward(loss)
        if settings.clip_norm is not None:
            torch.nn.utils.clip_grad_norm_(self.parameters, settings.clip_norm)
        self.optimizer.step()
        return loss.detach().cpu()

    def backward(self, loss: torch.Tensor) -> None:
        loss.backward()

    def evaluate(self, x: torch.Tensor | None) -> float:
        """Mean ELBO per example of ``x: (n, D)`` (nats); NaN without rows."""
        if x is None:
            return float("nan")
        return evaluate_elbo(
            self.eval_elbo, self.model, self.guide, x, self.settings.eval_batch_size
        )

    def _run_epoch(self) -> dict:
        """Train for one epoch and evaluate; the metrics row of that epoch."""
        try:
            start = time.perf_counter()
            train_objective = self.train_epoch()
            seconds = time.perf_counter() - start
            start = time.perf_counter()
            val_elbo, test_elbo = self.evaluate(self.val_x), self.evaluate(self.test_x)
            train_elbo = train_objective
            differs = self._kl_weights != {1.0} or not self.objective_is_elbo
            if differs and self.train_x is not None:
                # The objective was not the ELBO: the true ELBO of training rows apart.
                train_elbo = self.evaluate(self.train_x)
        except ValueError as exc:
            # Non-finite parameters, or finite ones so large that a network output
            # overflows, fail torch's distribution argument checks before any loss exists:
            # report that as the divergence it is.
            if "found invalid values" not in str(exc):
                raise
            what = "network outputs" if self._parameters_finite() else "parameters"
            self._diverged(what, "NaN/inf")
            raise AssertionError("unreachable") from exc
        row = {
            "epoch": self.epoch + 1,
            "train_objective": train_objective,
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
        """Stop with a clear message (the last checkpoint stays) when an ELBO is NaN/inf, or
        when a held-out ELBO has fallen EXPLOSION times further below zero than the first
        batch's ELBO before training: the loss has exploded without reaching NaN."""
        for key in ("train_elbo", "val_elbo", "test_elbo"):
            if math.isfinite(row[key]) or (key != "train_elbo" and self._absent(key)):
                continue
            self._diverged(key.replace("_", " "), row[key])
        floor = self.initial_elbo - EXPLOSION * max(1.0, abs(self.initial_elbo))
        for key in ("val_elbo", "test_elbo"):
            if not self._absent(key) and row[key] < floor:
                self._diverged(
                    key.replace("_", " "),
                    f"{row[key]:.4g} nats, more than {EXPLOSION}x below the "
                    f"{self.initial_elbo:.4g} it started from",
                )

    def _absent(self, key: str) -> bool:
        x = self.val_x if key == "val_elbo" else self.test_x
        return x is None or x.shape[0] == 0

    def fit(self) -> list[dict]:
        """Train until ``settings.epochs`` epochs are done or early stopping fires.

        Returns the per-epoch history. When a validation set is given, the parameters of
        the epoch with the best ``select_by`` score (the validation ELBO by default) are
        restored at the end.
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
        if self.checkpoint_path is not None:
            save_checkpoint(self.state(), self.checkpoint_path)

    @property
    def stopped_early(self) -> bool:
        patience = self.settings.patience
        return bool(patience) and self.stale_epochs >= patience

    def _track_best(self, row: dict) -> None:
        unknown = [key for key in self.select_by if key not in row]
        if unknown:
            raise PyrovaeError(
                f"select_by names {', '.join(unknown)}, which the epoch's metrics do not have "
                f"(they are: {', '.join(row)}); name one of them or add it to epoch_metrics"
            )
        if self._absent("val_elbo"):
            return
        score = selection_score(row, self.select_by)
        if score is None:
            return
        kept = self.best["epoch"]
        best = None if kept is None else selection_score(self.history[kept - 1], self.select_by)
        if best is None or score > best:
            self.best = {"epoch": row["epoch"], **snapshot(self.model, self.guide)}
            self.stale_epochs = 0
        else:
            self.stale_epochs += 1

    def restore_best(self) -> None:
        """Load every parameter of the best validation epoch (no-op without validation)."""
        if self.best["epoch"] is not None:
            restore(self.model, self.guide, self.best)


def _first_batches(batches) -> tuple[tuple, tuple | None]:
    """The first batch of epoch 0 and the first one after it whose arguments are None in
    other places (``(x, y, weight)`` after ``(x,)``), or None; drawn with the random state
    restored after it, so that training draws what it would have drawn."""
    batch_iter = iter(batches.epoch(0))
    first = next(batch_iter)
    pattern = [a is None for a in first]
    with torch.random.fork_rng(devices=_cuda_devices()):
        for _, args in zip(range(3), batch_iter, strict=False):
            if [a is None for a in args] != pattern:
                return first, args
    return first, None


def _cuda_devices() -> list[int]:
    return list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []


def selection_score(row: dict, keys: tuple[str, ...]) -> tuple[float, ...] | None:
    """The values of ``keys`` in a metrics row, to compare epochs by (higher is better, the
    first key first): None when the first is missing or not finite, and a non-finite later
    key counts as -inf."""
    first = row.get(keys[0])
    if first is None or not math.isfinite(first):
        return None
    rest = [row.get(k) for k in keys[1:]]
    return (first, *(v if v is not None and math.isfinite(v) else -math.inf for v in rest))


def best_epoch(history: list[dict], select_by: tuple[str, ...] = ("val_elbo",)) -> int | None:
    """The epoch the runner keeps: the row with the highest ``select_by`` score (see
    :func:`~pyrovae.inference.runner.selection_score`; the first of equal ones), or None when
    no row has a finite first key."""
    scored = [(selection_score(r, select_by), r["epoch"]) for r in history]
    scored = [(score, epoch) for score, epoch in scored if score is not None]
    return max(scored, key=lambda pair: pair[0])[1] if scored else None


def _format_row(row: dict) -> str:
    parts = [f"epoch {row['epoch']:4d}", f"train {row['train_elbo']:9.3f}"]
    for key in ("val_elbo", "test_elbo"):
        if not math.isnan(row[key]):
            parts.append(f"{key[:-5]} {row[key]:9.3f}")
    parts.append(f"nats/example  {row['seconds']:.2f}s")
    return "  ".join(parts)
