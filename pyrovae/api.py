"""The Python entry point: ``pyrovae.train(...)`` does what ``scripts/train_svi.py`` does.

>>> run = pyrovae.train(dataset="digits", epochs=20, quiet=True)   # doctest: +SKIP
>>> run.summary["test_elbo"]                                        # doctest: +SKIP
"""

import math
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path

import pyro
import torch
from torch import nn

from pyrovae import data as data_lib
from pyrovae.config import TrainConfig
from pyrovae.data import PreparedData
from pyrovae.errors import PyrovaeError
from pyrovae.inference import TensorBatches, Trainer
from pyrovae.inference.checkpoint import load_checkpoint
from pyrovae.inference.distributed import (
    DistributedTrainer,
    init_distributed,
    shutdown_distributed,
)
from pyrovae.inference.elbos import canonical_elbo_name
from pyrovae.inference.parameters import restore
from pyrovae.inference.posterior import check_sites
from pyrovae.models import MODELS, ModelSpec, build_guide, build_model, resolve
from pyrovae.models.likelihoods import check_likelihood_name
from pyrovae.run_folder import RunFolder


@dataclass
class Run:
    """A trained (or loaded) run: the pair, its data and what was measured."""

    config: TrainConfig
    model: nn.Module
    guide: nn.Module
    data: PreparedData
    history: list[dict]
    summary: dict
    folder: RunFolder
    is_main: bool = True  # False on the ranks > 0 of a distributed run (they write nothing)


def _choose_likelihood(config: TrainConfig, dataset: data_lib.Dataset) -> str:
    # A model with a fixed observation model (fa, ppca, linear-ae) names it: its default.
    fixed = getattr(resolve(config.model, MODELS, "model"), "fixed_likelihood", None)
    if fixed is not None and config.likelihood not in (None, fixed):
        raise PyrovaeError(
            f"--model {config.model} has a {fixed} observation model; "
            f"drop --likelihood {config.likelihood} (or pass --likelihood {fixed})"
        )
    default = "bernoulli" if dataset.support == "unit" else "gaussian"
    return check_likelihood_name(config.likelihood or fixed or default)


# The support each built-in likelihood scores (see pyrovae.data.prepare).
LIKELIHOOD_SUPPORT = {"bernoulli": "binary", "continuous-bernoulli": "unit", "gaussian": "real"}


def prepare_data(config: TrainConfig) -> PreparedData:
    """Load ``config.dataset``, check it suits the likelihood, split off validation rows."""
    dataset = data_lib.load_dataset(
        config.dataset, config.data_root, spiral_noise=config.spiral_noise
    )
    likelihood = _choose_likelihood(config, dataset)
    return data_lib.prepare(
        dataset,
        support=LIKELIHOOD_SUPPORT[likelihood],
        observation=likelihood,
        binarization=config.binarize,
        allow_grey=config.grey_bernoulli,
        val_fraction=config.val_fraction,
        seed=config.seed,
    )


# Defaults that differ by data set, used where the config leaves a field as None. The
# spiral is a 1-D curve in 2-D with known noise: with a learned noise scale the decoder
# explains every point as noise around the centre and ignores z (posterior collapse).
DEFAULT_NETWORK = {"latent_dim": 10, "hidden": (256,)}
DATASET_DEFAULTS = {"spiral": {"latent_dim": 1, "hidden": (64, 64)}}


def model_spec(config: TrainConfig, data: PreparedData) -> ModelSpec:
    dataset = data.dataset
    # A model may name its own network defaults (ssvae: two hidden layers); data sets first.
    own = getattr(resolve(config.model, MODELS, "model"), "default_network", {})
    defaults = {**DEFAULT_NETWORK, **own, **DATASET_DEFAULTS.get(dataset.name, {})}
    gaussian_scale = config.gaussian_scale
    if gaussian_scale is None and dataset.name == "spiral":
        gaussian_scale = max(config.spiral_noise, 1e-2)
    return ModelSpec(
        x_dim=dataset.x_dim,
        latent_dim=config.latent_dim or defaults["latent_dim"],
        hidden=config.hidden if config.hidden is not None else defaults["hidden"],
        likelihood=data.observation,
        gaussian_scale=gaussian_scale,
        grey_bernoulli=config.grey_bernoulli,
        num_classes=dataset.num_classes,
        num_data=data.x_train.shape[0],
        image_shape=dataset.image_shape,
        options={
            "labels": config.labels,
            "alpha": config.alpha,
            "corruption": config.corruption,
            "sparsity_target": config.sparsity_target,
            "sparsity_weight": config.sparsity_weight,
            "seed": config.seed,
        },
    )


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise PyrovaeError("--device cuda was asked for but torch sees no GPU; use --device cpu")
    return torch.device(name)


def with_required_elbo(config: TrainConfig, model) -> TrainConfig:
    """``config`` with the ELBO the model declares in ``required_elbo`` (e.g. ``"enum"``).

    It replaces the default ``trace``; any other estimator the user asked for is a one-line
    error.
    """
    required = getattr(model, "required_elbo", None)
    if required is None or canonical_elbo_name(config.elbo) == required:
        return config
    if config.elbo == "trace":
        return replace(config, elbo=required)
    raise PyrovaeError(f"--model {config.model} needs --elbo {required}, got --elbo {config.elbo}")


def training_batches(model, data: PreparedData, config: TrainConfig, device):
    """The model's own ``training_batches(data, config, device)`` if it defines one (e.g.
    interleaved labelled/unlabelled batches), else shuffled minibatches of the rows."""
    hook = getattr(model, "training_batches", None)
    if hook is not None:
        return hook(data, config, device)
    return TensorBatches(
        data.x_train.to(device),
        config.batch_size,
        seed=config.seed,
        transform=data.batch_transform,
    )


def _hook(model, name: str, *args):
    """``model.<name>(*args)`` bound as a no-argument callable, or None if not defined."""
    method = getattr(model, name, None)
    return None if method is None else (lambda: method(*args))


def default_out(config: TrainConfig) -> Path:
    """``runs/<model>-<dataset>-<timestamp>``."""
    model = config.model.replace(":", "-").replace(".", "-")
    dataset = Path(config.dataset).stem if config.dataset.endswith(".npz") else config.dataset
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    return Path("runs") / f"{model}-{dataset}-{stamp}"


def build(config: TrainConfig, device: torch.device | None = None):
    """Seed, load the data and build ``(data, spec, model, guide, device)`` for ``config``.

    ``device`` overrides ``config.device`` (a distributed rank's own GPU).
    """
    pyro.set_rng_seed(config.seed)
    pyro.clear_param_store()
    data = prepare_data(config)
    spec = model_spec(config, data)
    device = device or resolve_device(config.device)
    model = build_model(config.model, spec)
    guide = build_guide(config.guide, spec, model)
    for program in (model, guide):
        if isinstance(program, nn.Module):
            program.to(device)
    return data, spec, model, guide, device


def train(config: TrainConfig | None = None, *, resume: str | Path | None = None, **options) -> Run:
    """Train a model/guide pair and write its run folder.

    :param config: a :class:`TrainConfig`; keyword ``options`` override its fields
        (``train(epochs=5, dataset="spiral")``).
    :param resume: a run folder to continue: its ``config.json`` is used (``epochs``,
        ``quiet``, ``device``, ``eval_batch_size`` and ``distributed`` may be overridden) and
        training goes on from its checkpoint.

    With ``distributed=True`` (under ``torchrun``) every process calls this; they train
    together and rank 0 alone writes the run folder.
    """
    if resume is not None:
        options.setdefault("distributed", False)  # as launched now, not as first launched
        config = replace(RunFolder(resume).read_config(), **options)
    else:
        config = replace(config or TrainConfig(), **options)
    group = init_distributed(config.device) if config.distributed else None
    try:
        return _train(config, resume, group)
    finally:
        if group is not None:
            shutdown_distributed()


def _train(config: TrainConfig, resume, group) -> Run:
    is_main = group is None or group.is_main
    if resume is not None:
        folder = RunFolder(resume)
    else:
        out = str(config.out or default_out(config))
        if group is not None:
            out = group.broadcast(out)  # one folder, named by rank 0's clock
        folder = RunFolder(out)
        config = replace(config, out=out)
    data, spec, model, guide, device = build(config, group.device if group else None)
    config = with_required_elbo(config, model)
    if group is not None and group.rank > 0:
        # Same initial parameters on every rank (seeded above); independent draws of z.
        pyro.set_rng_seed(config.seed + 7919 * group.rank)
    trainer_options = dict(
        val_x=data.x_val.to(device) if data.x_val.shape[0] else None,
        test_x=data.x_test.to(device),
        checkpoint_path=folder.checkpoint,
        on_epoch=folder.write_metrics,
        epoch_metrics=_hook(model, "epoch_metrics", guide, data),
    )
    batches = training_batches(model, data, config, device)
    if group is None:
        trainer = Trainer(model, guide, batches, config.settings(), **trainer_options)
    else:
        trainer = DistributedTrainer(
            model, guide, batches, config.settings(), group=group, **trainer_options
        )
    if resume is not None:
        if not trainer.resume():
            raise PyrovaeError(f"{folder.path} has no checkpoint.pt to resume from")
        if is_main:
            folder.write_config(config)  # records a changed --epochs
    elif is_main:
        folder.create(config)
    if group is not None:
        group.barrier()
    history = trainer.fit()
    summary = _summary(config, data, spec, model, guide, trainer, history)
    if group is not None:
        summary["processes"] = group.world_size
    if is_main:
        folder.write_figures(model, guide, data, history)
        report = getattr(model, "report", None)
        if report is not None:
            summary.update(report(guide, data, folder.path, history=history))
        folder.write_summary(summary)
    return Run(config, model, guide, data, history, summary, folder, is_main)


def _summary(config, data, spec, model, guide, trainer, history) -> dict:
    final = history[-1] if history else {}
    best_epoch = trainer.best["epoch"]
    chosen = history[best_epoch - 1] if best_epoch else final
    n_params = sum(p.numel() for p in trainer.parameters)
    return {
        "model": config.model,
        "guide": config.guide or getattr(model, "default_guide", None),
        "dataset": data.dataset.name,
        "likelihood": data.observation,
        "elbo": config.elbo,
        "epochs": len(history),
        "best_epoch": best_epoch,
        "stopped_early": trainer.stopped_early,
        "seconds": sum(row["seconds"] + row["eval_seconds"] for row in history),
        "train_elbo": chosen.get("train_elbo", math.nan),
        "val_elbo": chosen.get("val_elbo", math.nan),
        "test_elbo": chosen.get("test_elbo", math.nan),
        "latent_dim": spec.latent_dim,
        "hidden": list(spec.hidden),
        "gaussian_scale": spec.gaussian_scale,
        "num_parameters": n_params,
        "num_train": int(data.x_train.shape[0]),
        "num_val": int(data.x_val.shape[0]),
        "num_test": int(data.x_test.shape[0]),
        "units": "nats per example (higher is better)",
        "versions": {"pyro": pyro.__version__, "torch": torch.__version__},
    }


def load_run(path: str | Path, device: str = "cpu") -> Run:
    """Rebuild the model and guide of a run folder from its config and checkpoint, with the
    parameters of its best validation epoch (its last epoch without validation rows)."""
    folder = RunFolder(path)
    config = replace(folder.read_config(), device=device)
    data, spec, model, guide, device = build(config)
    state = load_checkpoint(folder.checkpoint, map_location=device)
    # One trace creates the pyro.param sites (with their constraints) that are restored.
    with torch.no_grad():
        check_sites(model, guide, data.x_test[:2].to(device))
    restore(model, guide, state["best"] if state["best"]["epoch"] else state)
    summary = folder.read_summary()
    return Run(config, model, guide, data, list(state["history"]), summary, folder)
