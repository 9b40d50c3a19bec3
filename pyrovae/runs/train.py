"""The Python entry point: ``pyrovae.train(...)`` does what ``scripts/train_svi.py`` does.

>>> run = pyrovae.train(dataset="digits", epochs=20, quiet=True)   # doctest: +SKIP
>>> run.summary["test_elbo"]                                        # doctest: +SKIP

A run goes: resolve the recipe and its options, load the data (with ``--features RUN_DIR``,
replace its rows by that run's posterior means), build the programs (any of the forms in
:mod:`pyrovae.runs.programs`), read the distribution that observes x and prepare the data
for it, let the recipe set the programs up, train with :class:`~pyrovae.inference.Trainer`,
and write the run folder with the recipe's report.
"""

import math
from contextlib import nullcontext
from dataclasses import fields, replace
from datetime import datetime
from pathlib import Path

import pyro
import torch

from pyrovae.data import PreparedData
from pyrovae.errors import PyrovaeError
from pyrovae.folder.config import TrainConfig
from pyrovae.folder.layout import RunFolder, check_run_folder
from pyrovae.inference import Trainer
from pyrovae.inference.arguments import add_conditions
from pyrovae.inference.checkpoint import export_params
from pyrovae.inference.diagnostics.structure import latent_sites
from pyrovae.inference.distributed import (
    DistributedTrainer,
    init_distributed,
    shutdown_distributed,
)
from pyrovae.inference.parameters import parameters_by_module
from pyrovae.report.html import write_report
from pyrovae.report.tensorboard import TensorBoardLog, chain
from pyrovae.runs.build import PROGRAM_KEYS, Built, check_flags_used
from pyrovae.runs.load import Run, build_from_config, check_trusted
from pyrovae.runs.programs import describe, object_name

TRAIN_ELBO_ROWS = 10_000
"""Training rows on which the ELBO (KL weight 1) is evaluated when the objective is not it."""


def default_out(config: TrainConfig) -> Path:
    """``runs/<model>-<dataset>-<timestamp>``."""
    model = config.model_name.replace(":", "-").replace(".", "-")
    dataset = Path(config.dataset).stem if config.dataset.endswith(".npz") else config.dataset
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    return Path("runs") / f"{model}-{dataset}-{stamp}"


def _split_arguments(kwargs: dict) -> tuple[dict, dict]:
    """Keyword arguments of :func:`train` -> (config fields, Python objects for programs);
    any other keyword is a model option (``labels=100``) and joins ``options``."""
    known = {f.name for f in fields(TrainConfig)}
    programs, rebuild = {}, {}
    for key in PROGRAM_KEYS:
        value = kwargs.get(key)
        if value is not None and not isinstance(value, str):
            programs[key] = value
            kwargs[key], record = describe(value) if key != "recipe" else (object_name(value), None)
            if record is not None:
                rebuild[key] = record
    if rebuild:
        kwargs["rebuild"] = rebuild
    extra = {k: kwargs.pop(k) for k in list(kwargs) if k not in known}
    if extra:
        kwargs["options"] = {**kwargs.get("options", {}), **extra}
    return kwargs, programs


def train(
    config: TrainConfig | None = None,
    *,
    resume: str | Path | None = None,
    trust_code: bool = False,
    **kwargs,
) -> Run:
    """Train a model/guide pair and write its run folder.

    :param config: a :class:`TrainConfig`; keyword arguments override its fields
        (``train(epochs=5, dataset="spiral")``). ``model``, ``guide``, ``pair`` and
        ``recipe`` may be Python objects (classes, factories, instances, functions); any
        other keyword is an option of the model's recipe (``train(model="ssvae",
        labels=100)``).
    :param resume: a run folder to continue: its ``config.json`` is used (``epochs``,
        ``quiet``, ``device``, ``eval_batch_size`` and ``distributed`` may be overridden, and
        programs given as objects must be given again) and training goes on from its
        checkpoint.
    :param trust_code: import the ``package.module:attr`` programs that the ``resume``
        folder's (or the ``features`` folder's) ``config.json`` names, as
        :func:`pyrovae.load_run` does. Programs named here, as arguments, need no trust:
        naming them is the opt-in.

    With ``distributed=True`` (under ``torchrun``) every process calls this; they train
    together and rank 0 alone writes the run folder.
    """
    kwargs, programs = _split_arguments(dict(kwargs))
    if resume is not None:
        kwargs.setdefault("distributed", False)  # as launched now, not as first launched
        for key in (*PROGRAM_KEYS, "rebuild"):
            kwargs.pop(key, None)
        folder = RunFolder(check_run_folder(resume))
        folder.check_own_files()
        config = replace(folder.read_config(), **kwargs)
        check_trusted(folder.path, config, programs, trust_code)
    else:
        config = replace(config or TrainConfig(), **kwargs)
    group = init_distributed(config.device) if config.distributed else None
    try:
        return _train(config, resume, group, programs, "epochs" in kwargs, trust_code)
    finally:
        if group is not None:
            shutdown_distributed()


def _train(
    config: TrainConfig, resume, group, programs: dict, epochs_given: bool, trust_code: bool
) -> Run:
    is_main = group is None or group.is_main
    if resume is not None:
        folder = RunFolder(resume)
    else:
        out = str(config.out or default_out(config))
        if group is not None:
            out = group.broadcast(out)  # one folder, named by rank 0's clock
        folder = RunFolder(out)
        config = replace(config, out=out)
        if is_main:
            folder.check_new()  # before building anything
    on_epoch, board = folder.write_metrics, None
    if config.tensorboard and is_main:
        board = TensorBoardLog(folder.path / "tensorboard")  # no tensorboard: fails here
        on_epoch = chain(folder.write_metrics, board.on_epoch)
    built = build_from_config(config, programs, group.device if group else None, trust_code)
    config, data, recipe, device = built.config, built.data, built.recipe, built.device
    model, guide = built.model, built.guide
    if data.dataset.layout and is_main and not config.quiet:
        print(f"data: {data.dataset.layout}")
    if group is not None and group.rank > 0:
        # Same initial parameters on every rank (seeded above); independent draws of z.
        pyro.set_rng_seed(config.seed + 7919 * group.rank)
    recipe.setup(model, guide, data, config)
    trainer_options = dict(
        val_x=data.x_val.to(device) if data.x_val.shape[0] else None,
        test_x=data.x_test.to(device),
        checkpoint_path=folder.checkpoint,
        on_epoch=on_epoch,
        epoch_metrics=lambda: recipe.epoch_metrics(model, guide, data, config),
        train_x=data.training_rows(TRAIN_ELBO_ROWS).to(device),
        start_epoch=lambda epoch: recipe.start_epoch(model, guide, config, epoch),
        objective_is_elbo=recipe.train_objective_is_elbo,
        select_by=recipe.select_by,
    )
    if data.y_train is not None:
        train_x = trainer_options["train_x"]
        add_conditions((model, guide), train_x, data.y_train[: train_x.shape[0]])
    batches = recipe.batches(data, config, device)
    if group is None:
        trainer = Trainer(model, guide, batches, config.settings(), **trainer_options)
    else:
        trainer = DistributedTrainer(
            model, guide, batches, config.settings(), group=group, **trainer_options
        )
    if resume is None:  # after the pair check of the Trainer: a broken pair is told first
        check_flags_used(built, f"--{'pair' if config.pair else 'model'} {config.model_name}")
    with folder.locked(create=resume is None) if is_main else nullcontext():
        if resume is not None:
            _continue(trainer, folder, config, epochs_given)
            if is_main:
                folder.write_config(config)  # records a changed --epochs
                if trainer.history:  # a kill may have come after the checkpoint, before this
                    folder.write_metrics(trainer.history)
        elif is_main:
            folder.create(config)
        if group is not None:
            group.barrier()
        history = trainer.fit()
        summary = _summary(config, built, trainer, history)
        if group is not None:
            summary["processes"] = group.world_size
        if is_main:
            report = recipe.report(model, guide, data, config, folder.path, history)
            summary.update(report.summary)
            summary["figures"] = [Path(p).name for p in report.figures]
            folder.write_summary(summary)
            export_params(model, guide, folder.path)  # the kept epoch's, for plain Pyro
            if board is not None:
                board.add_figures(report.figures, step=trainer.epoch)
                board.close()
            write_report(folder.path)
    kept = trainer.best["epoch"] or trainer.epoch
    run = Run(config, model, guide, data, history, summary, folder, recipe, built.spec, is_main)
    run.epoch = kept
    return run


def _continue(trainer: Trainer, folder: RunFolder, config: TrainConfig, epochs_given: bool):
    """Load the run's checkpoint into ``trainer`` (none yet: the run was stopped in its
    first epoch, and starts again from scratch), refusing an ``--epochs`` it cannot honor."""
    if not trainer.resume():
        return
    trained = trainer.epoch
    if config.epochs < trained:
        raise PyrovaeError(
            f"--epochs {config.epochs} is fewer than the {trained} epochs {folder.path} has "
            f"trained; give --epochs {trained} or more"
        )
    if trainer.stopped_early and epochs_given and config.epochs > trained:
        raise PyrovaeError(
            f"{folder.path} stopped early at epoch {trained}: its {trainer.select_by[0]} has "
            f"not improved for {config.patience} epochs, so more --epochs would train nothing; "
            "start a new run to train longer (e.g. with --patience 0)"
        )


def _summary(config: TrainConfig, built: Built, trainer: Trainer, history) -> dict:
    data, spec = built.data, built.spec
    final = history[-1] if history else {}
    best_epoch = trainer.best["epoch"]
    chosen = history[best_epoch - 1] if best_epoch else final
    n_params = sum(p.numel() for p in trainer.parameters)
    model, guide, x = built.model, built.guide, data.x_test.to(built.device)
    cuda = [built.device.index or 0] if built.device.type == "cuda" else []
    with torch.no_grad(), torch.random.fork_rng(devices=cuda):  # the report's draws unchanged
        sites = latent_sites(model, guide, x)
    # Network sizes only where the programs read them (a user pair builds its own).
    network = {
        key: value
        for key, value in (
            ("latent_dim", spec.latent_dim),
            ("hidden", list(spec.hidden)),
            ("gaussian_scale", spec.gaussian_scale),
        )
        if built.spec_read is None or key in built.spec_read
    }
    return {
        "model": config.model_name,
        "guide": built.guide_name,
        "dataset": data.dataset.name,
        **({"data_layout": data.dataset.layout} if data.dataset.layout else {}),
        "likelihood": data.observation,
        "elbo": trainer.settings.elbo,
        "options": config.options,
        "epochs": len(history),
        "best_epoch": best_epoch,
        "stopped_early": trainer.stopped_early,
        "seconds": sum(row["seconds"] + row["eval_seconds"] for row in history),
        "train_objective": chosen.get("train_objective", math.nan),
        "train_elbo": chosen.get("train_elbo", math.nan),
        "val_elbo": chosen.get("val_elbo", math.nan),
        "test_elbo": chosen.get("test_elbo", math.nan),
        **_bits_per_dim(data, chosen.get("test_elbo", math.nan)),
        **network,
        "latent_sites": sites,
        "num_parameters": n_params,
        "parameters_by_module": [
            {"module": name, "parameters": count}
            for name, count in parameters_by_module(model, guide).items()
        ],
        "num_train": int(data.x_train.shape[0]),
        "num_val": int(data.x_val.shape[0]),
        "num_test": int(data.x_test.shape[0]),
        "units": "nats per example (higher is better)",
        "taken_at": f"best_epoch: the epoch with the best {' then '.join(trainer.select_by)}, "
        "whose parameters the run keeps (the last epoch when there are no validation rows)",
        "versions": {"pyro": pyro.__version__, "torch": torch.__version__},
        **({"features": data.dataset.features} if data.dataset.features else {}),
    }


def _bits_per_dim(data: PreparedData, test_elbo: float) -> dict:
    """``-test_elbo / (D ln 2)`` where the test rows are scored by a probability mass function
    (binary pixels, quantized levels): the unit image models are compared in. Densities of
    continuous values have no such reading, so the key is absent for them."""
    if not data.discrete:
        return {}
    return {"test_bits_per_dim": -test_elbo / (data.x_test.shape[1] * math.log(2))}


def prepare_data(config: TrainConfig) -> PreparedData:
    """The data ``config`` trains on, prepared for its model's observation distribution."""
    return build_from_config(config).data
