"""The Python entry point: ``pyrovae.train(...)`` does what ``scripts/train_svi.py`` does.

>>> run = pyrovae.train(dataset="digits", epochs=20, quiet=True)   # doctest: +SKIP
>>> run.summary["test_elbo"]                                        # doctest: +SKIP

A run goes: resolve the recipe and its options, load the data (with ``--features RUN_DIR``,
replace its rows by that run's posterior means), build the programs (any of
the forms in :mod:`pyrovae.pairs`), read the distribution that observes x and prepare the data
for it, let the recipe set the programs up, train with :class:`~pyrovae.inference.Trainer`,
and write the run folder with the recipe's report.
"""

import math
from contextlib import nullcontext
from dataclasses import dataclass, fields, replace
from datetime import datetime
from pathlib import Path

import pyro
import torch

from pyrovae import data as data_lib
from pyrovae.config import TrainConfig
from pyrovae.data import Dataset, PreparedData
from pyrovae.errors import PyrovaeError
from pyrovae.inference import Trainer
from pyrovae.inference.checkpoint import load_checkpoint
from pyrovae.inference.contract import check_pair, observation
from pyrovae.inference.distributed import (
    DistributedTrainer,
    init_distributed,
    shutdown_distributed,
)
from pyrovae.inference.parameters import owner_module, restore
from pyrovae.models import ModelSpec
from pyrovae.models.likelihoods import check_likelihood_name
from pyrovae.pairs import build_programs, object_name, recipe_class
from pyrovae.recipes import GUIDE_OPTIONS, Recipe
from pyrovae.report import write_report
from pyrovae.run_folder import RunFolder
from pyrovae.tensorboard_log import TensorBoardLog, chain

PROGRAM_KEYS = ("model", "guide", "pair", "recipe")
TRAIN_ELBO_ROWS = 10_000
"""Training rows on which the ELBO (KL weight 1) is evaluated when the objective is not it."""


@dataclass
class Run:
    """A trained (or loaded) run: the pair, its data and what was measured.

    ``model`` and ``guide`` are the trained programs themselves (bound methods for a pair
    given as one object), ready for e.g. ``Trace_ELBO().loss(run.model, run.guide, x)``.
    """

    config: TrainConfig
    model: object
    guide: object
    data: PreparedData
    history: list[dict]
    summary: dict
    folder: RunFolder
    recipe: Recipe
    spec: ModelSpec
    is_main: bool = True  # False on the ranks > 0 of a distributed run (they write nothing)


@dataclass
class Built:
    """What :func:`build` makes of a config: the prepared data and the programs."""

    data: PreparedData
    spec: ModelSpec
    model: object
    guide: object
    guide_name: str | None
    recipe: Recipe
    config: TrainConfig  # with the recipe's options resolved
    device: torch.device


# Defaults that differ by data set, used where the config leaves a field as None. The
# spiral is a 1-D curve in 2-D with known noise: with a learned noise scale the decoder
# explains every point as noise around the center and ignores z (posterior collapse).
DEFAULT_NETWORK = {"latent_dim": 10, "hidden": (256,)}
DATASET_DEFAULTS = {"spiral": {"latent_dim": 1, "hidden": (64, 64)}}


def _choose_likelihood(config: TrainConfig, recipe: type[Recipe], dataset: Dataset) -> str:
    """The built-in likelihood for models that take one by name: the recipe's, the config's,
    or bernoulli for data in [0, 1] and gaussian otherwise."""
    fixed = recipe.likelihood
    if fixed is not None and config.likelihood not in (None, fixed):
        raise PyrovaeError(
            f"--model {config.model_name} has a {fixed} observation model; "
            f"drop --likelihood {config.likelihood} (or pass --likelihood {fixed})"
        )
    default = "bernoulli" if dataset.support == "unit" else "gaussian"
    return check_likelihood_name(config.likelihood or fixed or default)


def model_spec(config: TrainConfig, dataset: Dataset, recipe: type[Recipe]) -> ModelSpec:
    """What a model or guide factory is told: the data's width and classes, the network
    sizes (the config's, else the data set's, the recipe's, then the defaults), the
    likelihood by name and the recipe's options."""
    own = dataset.name if dataset.features is None else None  # features: no data set's
    defaults = {**DEFAULT_NETWORK, **recipe.network, **DATASET_DEFAULTS.get(own, {})}
    gaussian_scale = config.gaussian_scale
    if gaussian_scale is None and own == "spiral":
        gaussian_scale = max(config.spiral_noise, 1e-2)
    n = dataset.x_train.shape[0]
    return ModelSpec(
        x_dim=dataset.x_dim,
        latent_dim=config.latent_dim or defaults["latent_dim"],
        hidden=config.hidden if config.hidden is not None else defaults["hidden"],
        likelihood=_choose_likelihood(config, recipe, dataset),
        gaussian_scale=gaussian_scale,
        gray_bernoulli=config.gray_bernoulli,
        num_classes=dataset.num_classes,
        num_data=n - round(config.val_fraction * n),
        image_shape=dataset.image_shape,
        net=config.net,
        options=dict(config.options),
    )


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise PyrovaeError("--device cuda was asked for but torch sees no GPU; use --device cpu")
    return torch.device(name)


def default_out(config: TrainConfig) -> Path:
    """``runs/<model>-<dataset>-<timestamp>``."""
    model = config.model_name.replace(":", "-").replace(".", "-")
    dataset = Path(config.dataset).stem if config.dataset.endswith(".npz") else config.dataset
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    return Path("runs") / f"{model}-{dataset}-{stamp}"


def build(config: TrainConfig, programs: dict | None = None, device=None) -> Built:
    """Seed, resolve the recipe, load the data, build the programs and prepare the data for
    the distribution the model observes x with.

    :param programs: Python objects that replace the config's names (``model``, ``guide``,
        ``pair``, ``recipe``).
    :param device: overrides ``config.device`` (a distributed rank's own GPU).
    """
    programs = programs or {}
    pyro.set_rng_seed(config.seed)
    pyro.clear_param_store()
    names = {k: programs.get(k, getattr(config, k)) for k in PROGRAM_KEYS}
    recipe_cls = recipe_class(names["recipe"], names["pair"] or names["model"] or "vae")
    guide_name = names["guide"] if isinstance(names["guide"], str) else None
    if guide_name is None and names["pair"] is None and names["guide"] is None:
        guide_name = recipe_cls.default_guide
    who = f"--model {config.model_name}" + (f" with --guide {guide_name}" if guide_name else "")
    options = recipe_cls.resolve_options(config.options, who, GUIDE_OPTIONS.get(guide_name, ()))
    config = replace(config, options=options, elbo=config.elbo or recipe_cls.elbo)
    dataset = data_lib.load_dataset(
        config.dataset, config.data_root, spiral_noise=config.spiral_noise
    )
    device = device or resolve_device(config.device)
    if config.features is not None:
        from pyrovae.downstream import feature_dataset

        dataset = feature_dataset(config.features, dataset, device=str(device))
        pyro.set_rng_seed(config.seed)  # loading the feature run seeded with its own seed
        pyro.clear_param_store()
    spec = model_spec(config, dataset, recipe_cls)
    pair = build_programs(names["model"], names["guide"], names["pair"], spec, recipe_cls)
    modules = [owner_module(program) for program in (pair.model, pair.guide)]
    for module in modules:
        if module is not None:
            module.to(device)
    if config.net == "conv" and None not in modules and not _convolves(modules):
        raise PyrovaeError(
            f"--net conv: {who} builds no convolutional network; drop --net conv (the "
            "neural models, vae, ssvae, ae and gumbel-vae, offer it)"
        )
    name, support = observation(pair.model, dataset.x_train[: config.batch_size].to(device))
    if dataset.features is not None and support in ("binary", "unit"):
        raise PyrovaeError(
            f"--features gives real-valued posterior means, but the model observes x with a "
            f"{name} on [0, 1]; use --likelihood gaussian (the default for features)"
        )
    data = data_lib.prepare(
        dataset,
        support="real" if support == "other" else support,
        observation=name,
        binarization=config.binarize,
        allow_gray=config.gray_bernoulli,
        val_fraction=config.val_fraction,
        seed=config.seed,
    )
    return Built(data, spec, pair.model, pair.guide, pair.guide_name, recipe_cls(), config, device)


def _convolves(modules) -> bool:
    """Whether any of the ``nn.Module`` s holds a convolution layer."""
    return any(isinstance(m, torch.nn.modules.conv._ConvNd) for p in modules for m in p.modules())


def _split_arguments(kwargs: dict) -> tuple[dict, dict]:
    """Keyword arguments of :func:`train` -> (config fields, Python objects for programs);
    any other keyword is a model option (``labels=100``) and joins ``options``."""
    known = {f.name for f in fields(TrainConfig)}
    programs = {}
    for key in PROGRAM_KEYS:
        value = kwargs.get(key)
        if value is not None and not isinstance(value, str):
            programs[key] = value
            kwargs[key] = object_name(value)
    extra = {k: kwargs.pop(k) for k in list(kwargs) if k not in known}
    if extra:
        kwargs["options"] = {**kwargs.get("options", {}), **extra}
    return kwargs, programs


def train(config: TrainConfig | None = None, *, resume: str | Path | None = None, **kwargs) -> Run:
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

    With ``distributed=True`` (under ``torchrun``) every process calls this; they train
    together and rank 0 alone writes the run folder.
    """
    kwargs, programs = _split_arguments(dict(kwargs))
    if resume is not None:
        kwargs.setdefault("distributed", False)  # as launched now, not as first launched
        for key in PROGRAM_KEYS:
            kwargs.pop(key, None)
        config = replace(RunFolder(resume).read_config(), **kwargs)
    else:
        config = replace(config or TrainConfig(), **kwargs)
    group = init_distributed(config.device) if config.distributed else None
    try:
        return _train(config, resume, group, programs, epochs_given="epochs" in kwargs)
    finally:
        if group is not None:
            shutdown_distributed()


def _train(config: TrainConfig, resume, group, programs: dict, epochs_given: bool) -> Run:
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
    built = build(config, programs, group.device if group else None)
    config, data, recipe, device = built.config, built.data, built.recipe, built.device
    model, guide = built.model, built.guide
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
    batches = recipe.batches(data, config, device)
    if group is None:
        trainer = Trainer(model, guide, batches, config.settings(), **trainer_options)
    else:
        trainer = DistributedTrainer(
            model, guide, batches, config.settings(), group=group, **trainer_options
        )
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
            if board is not None:
                board.add_figures(report.figures, step=trainer.epoch)
                board.close()
            write_report(folder.path)
    return Run(config, model, guide, data, history, summary, folder, recipe, built.spec, is_main)


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
    return {
        "model": config.model_name,
        "guide": built.guide_name,
        "dataset": data.dataset.name,
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
        "latent_dim": spec.latent_dim,
        "hidden": list(spec.hidden),
        "gaussian_scale": spec.gaussian_scale,
        "num_parameters": n_params,
        "num_train": int(data.x_train.shape[0]),
        "num_val": int(data.x_val.shape[0]),
        "num_test": int(data.x_test.shape[0]),
        "units": "nats per example (higher is better)",
        "taken_at": f"best_epoch: the epoch with the best {' then '.join(trainer.select_by)}, "
        "whose parameters the run keeps (the last epoch when there are no validation rows)",
        "versions": {"pyro": pyro.__version__, "torch": torch.__version__},
        **({"features": data.dataset.features} if data.dataset.features else {}),
    }


def load_run(path: str | Path, device: str = "cpu", **programs) -> Run:
    """Rebuild the model and guide of a run folder from its config and checkpoint, with every
    parameter (modules and ``pyro.param`` sites) of its best validation epoch (its last
    epoch without validation rows).

    :param programs: ``model``, ``guide``, ``pair`` or ``recipe`` as Python objects, for a
        run whose programs were given as objects that cannot be imported by name (defined
        in a script's ``__main__`` or a notebook).
    """
    unknown = sorted(set(programs) - set(PROGRAM_KEYS))
    if unknown:
        raise PyrovaeError(f"load_run takes {', '.join(PROGRAM_KEYS)} as programs, got {unknown}")
    folder = RunFolder(path)
    config = replace(folder.read_config(), device=device)
    built = build(config, programs)
    state = load_checkpoint(folder.checkpoint, map_location=built.device)
    # One trace creates the pyro.param sites (with their constraints) that are restored.
    with torch.no_grad():
        check_pair(built.model, built.guide, built.data.x_test[:2].to(built.device))
    restore(built.model, built.guide, state["best"] if state["best"]["epoch"] else state)
    return Run(
        built.config,
        built.model,
        built.guide,
        built.data,
        list(state["history"]),
        folder.read_summary(),
        folder,
        built.recipe,
        built.spec,
    )


def prepare_data(config: TrainConfig) -> PreparedData:
    """The data ``config`` trains on, prepared for its model's observation distribution."""
    return build(config).data
