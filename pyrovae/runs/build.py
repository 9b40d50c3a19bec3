"""From a run's config to its programs and data: the recipe and its options, the network
sizes (:class:`~pyrovae.models.ModelSpec`), the programs in any of the forms of
:mod:`pyrovae.runs.programs`, and the data prepared for the distribution the model observes x
with."""

import re
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

import pyro
import torch

from pyrovae import data as data_lib
from pyrovae.data import Dataset, PreparedData
from pyrovae.errors import PyrovaeError
from pyrovae.folder.config import TrainConfig
from pyrovae.inference.arguments import (
    CONDITION,
    LABELS,
    FedProgram,
    RowConditions,
    conditioned_on,
    signature_kind,
)
from pyrovae.inference.contract import observation, trace_programs
from pyrovae.inference.parameters import owner_module
from pyrovae.models import ModelSpec
from pyrovae.models.likelihoods import check_likelihood_name
from pyrovae.recipes import GUIDE_OPTIONS, Recipe, recipe_class
from pyrovae.recipes.fed import FED_OPTIONS, FedRecipe, auxiliary_weight
from pyrovae.runs.programs import ReadSpec, build_programs

PROGRAM_KEYS = ("model", "guide", "pair", "recipe")


@dataclass
class Resolved:
    """What :func:`resolve` makes of a config before any data is loaded."""

    config: TrainConfig  # with the recipe's options resolved
    recipe: type[Recipe]
    names: dict  # model, guide, pair, recipe: names or Python objects
    guide_name: str | None
    who: str  # "--model M with --guide G", for messages


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
    # The ModelSpec fields the programs' factories read, when any program is user code
    # (None: registered models and guides only, which take every network flag).
    spec_read: frozenset | None = None


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
        levels=dataset.levels,
        net=config.net,
        options=dict(config.options),
    )


def resolve_device(name: str) -> torch.device:
    """``auto``: a GPU when torch sees one, else the CPU; a one-line error for a missing GPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise PyrovaeError("--device cuda was asked for but torch sees no GPU; use --device cpu")
    return torch.device(name)


def resolve(config: TrainConfig, programs: dict | None = None) -> Resolved:
    """The recipe of ``config`` and its options (checked), before any data is loaded.

    :param programs: Python objects that replace the config's names (``model``, ``guide``,
        ``pair``, ``recipe``).
    """
    programs = programs or {}
    names = {k: programs.get(k, getattr(config, k)) for k in PROGRAM_KEYS}
    recipe_cls = recipe_class(names["recipe"], names["pair"] or names["model"] or "vae")
    guide_name = names["guide"] if isinstance(names["guide"], str) else None
    if guide_name is None and names["pair"] is None and names["guide"] is None:
        guide_name = recipe_cls.default_guide
    who = f"--model {config.model_name}" + (f" with --guide {guide_name}" if guide_name else "")
    extra = GUIDE_OPTIONS.get(guide_name, ())
    if recipe_cls is Recipe and _is_user_pair(names):
        extra = (*extra, *FED_OPTIONS)  # checked against the signatures by settle_feed
    options = recipe_cls.resolve_options(config.options, who, extra)
    config = replace(config, options=options, elbo=config.elbo or recipe_cls.elbo)
    return Resolved(config, recipe_cls, names, guide_name, who)


def build(resolved: Resolved, dataset: Dataset, device: torch.device) -> Built:
    """Seed, build the programs of ``resolved`` on ``dataset`` and prepare the data for the
    distribution the model observes x with.

    :param dataset: the rows to train on (:func:`pyrovae.runs.load.run_dataset`).
    :param device: where the programs' modules go (a distributed rank's own GPU).
    """
    config, recipe_cls, names, who = resolved.config, resolved.recipe, resolved.names, resolved.who
    pyro.set_rng_seed(config.seed)
    pyro.clear_param_store()
    spec = model_spec(config, dataset, recipe_cls)
    watched = ReadSpec.of(spec)
    with _allocation_as_error(who):
        pair = build_programs(
            names["model"], names["guide"], names["pair"], watched, recipe_cls, config.rebuild
        )
        modules = [owner_module(program) for program in (pair.model, pair.guide)]
        for module in modules:
            if module is not None:
                module.to(device)
    if config.net == "conv" and None not in modules and not _convolves(modules):
        raise PyrovaeError(
            f"--net conv: {who} builds no convolutional network; drop --net conv (the "
            "neural models, vae, ssvae, ae and gumbel-vae, offer it)"
        )
    recipe = recipe_cls()
    model, guide = pair.model, pair.guide
    user = _is_user_pair(names)
    if recipe_cls is Recipe and user:
        model, guide, recipe = settle_feed(model, guide, spec, dataset, config, who)
    probe = dataset.x_train[: config.batch_size].to(device)
    probe_labels = None if dataset.y_train is None else dataset.y_train[: probe.shape[0]]
    name, support = _fed_observation(model, guide, probe, probe_labels)
    if dataset.features is not None and support in ("binary", "levels", "unit"):
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
    _register_conditions((model, guide), data)
    check_feed(model, guide, data, config.batch_size, device, who)
    read = watched.fields_read() if user else None
    return Built(data, spec, model, guide, pair.guide_name, recipe, config, device, read)


USER_KEYS = ("model", "guide", "pair")

# The flags that size or choose the networks, by the ModelSpec field that carries them, and
# the config value that means "not given".
NETWORK_FLAGS = {
    "latent_dim": None,
    "hidden": None,
    "likelihood": None,
    "gaussian_scale": None,
    "net": "mlp",
}


def is_registry_name(value) -> bool:
    return isinstance(value, str) and ":" not in value


def check_flags_used(built: Built, who: str) -> None:
    """Refuse (one line) a network flag given for user programs that no factory read from
    its ModelSpec: an instance, a plain function or a class built without arguments builds
    its own networks, and the flag would change nothing but what the run reports."""
    if built.spec_read is None:
        return
    for name, unset in NETWORK_FLAGS.items():
        value = getattr(built.config, name)
        if value != unset and name not in built.spec_read:
            flag = "--" + name.replace("_", "-")
            shown = " ".join(map(str, value)) if isinstance(value, tuple) else value
            raise PyrovaeError(
                f"{flag} {shown}: {who} does not use it (its programs build their own "
                f"networks; only a class or factory f(spec) reading spec.{name} takes it); "
                f"drop {flag}, or set it in your own code"
            )


def _is_user_pair(names: dict) -> bool:
    """Whether the programs are a user's (``--pair``, ``package.module:attr`` or objects),
    not registered ones, whose recipes feed them."""
    return any(v is not None and not is_registry_name(v) for v in map(names.get, USER_KEYS))


def settle_feed(model, guide, spec: ModelSpec, dataset: Dataset, config, who: str):
    """``(model, guide, recipe)``: a user's programs as the runner will call them, fed what
    their signatures take beyond x (:mod:`pyrovae.inference.arguments`), and the recipe that
    batches their rows (:class:`~pyrovae.recipes.fed.FedRecipe`, else the base recipe).

    ``f(x, c)`` gets the rows' labels on every call (and so does the other program of the
    pair if it takes an optional second argument); ``f(x, y=None)`` gets them on labelled
    batches when ``--labels`` is given. Whether the labels go in as one-hot rows or class
    indices is read by tracing the pair on a labelled batch (gradients off, the random state
    left as it was). A signature the runner cannot feed is a one-line error.
    """
    kinds = {
        "model": signature_kind(model, f"the model of {who}"),
        "guide": signature_kind(guide, f"the guide of {who}"),
    }
    conditioned = [(role, arg) for role, (kind, arg) in kinds.items() if kind == CONDITION]
    optional = [(role, arg) for role, (kind, arg) in kinds.items() if kind == LABELS]
    labels = config.options.get("labels")
    if labels is not None and not (conditioned or optional):
        raise PyrovaeError(
            f"--labels {labels}: the model and guide of {who} take x alone, so they have no "
            "argument for labels; give them a second argument, f(x, y=None), or drop --labels"
        )
    if not conditioned and labels is None:
        return model, guide, Recipe()
    role, arg = (conditioned or optional)[0]
    if dataset.y_train is None or not dataset.num_classes:
        wants = "requires" if conditioned else "takes"
        raise PyrovaeError(
            f"the {role} of {who} {wants} {arg!r} beyond x, which the runner fills with the "
            f"data set's labels, but {dataset.name} has none; use a data set with labels "
            f"(digits, mnist, fashion-mnist or an .npz with y_train, y_test) or give {arg!r} "
            "a default"
        )
    kind = CONDITION if conditioned else LABELS
    alpha = 0.0
    owner = getattr(model, "__self__", None)
    auxiliary = [getattr(owner, name, None) for name in ("model_classify", "guide_classify")]
    if kind == LABELS and all(callable(f) for f in auxiliary):
        num_data = spec.num_data or dataset.x_train.shape[0]
        alpha = auxiliary_weight(spec, num_data, config)
    else:
        auxiliary = [None, None]
    table = RowConditions() if kind == CONDITION else None
    fed = [
        FedProgram(
            program,
            # With a conditioned model, a program's optional second argument gets c too.
            CONDITION if kinds[role][0] == LABELS and kind == CONDITION else kinds[role][0],
            dataset.num_classes,
            ENCODINGS[0],
            table,
            aux,
            alpha,
        )
        for role, program, aux in (("model", model, auxiliary[0]), ("guide", guide, auxiliary[1]))
    ]
    return fed[0], fed[1], FedRecipe(kind)


ENCODINGS = ("one-hot", "index")
"""How labels may go in: ``(batch, K)`` one-hot rows or ``(batch,)`` class indices."""


def _fed_observation(model, guide, x: torch.Tensor, y: torch.Tensor | None):
    """:func:`~pyrovae.inference.contract.observation` of ``model`` on ``x``; a fed model is
    given the labels ``y``, as one-hot rows or else as class indices (the first it runs with)."""
    if not isinstance(model, FedProgram) or y is None:
        return observation(model, x)
    failure = None
    for encoding in ENCODINGS:
        _set_encoding((model, guide), encoding)
        with conditioned_on((model, guide), y):
            try:
                return observation(model, x)
            except PyrovaeError as exc:
                failure = failure or exc
    _set_encoding((model, guide), ENCODINGS[0])
    raise failure


def _set_encoding(programs, encoding: str) -> None:
    for program in programs:
        if isinstance(program, FedProgram):
            program.encoding = encoding


def check_feed(model, guide, data: PreparedData, batch_size: int, device, who: str) -> None:
    """Settle how fed programs take labels: trace the pair, with Pyro's argument checks, on a
    labelled batch of the prepared training rows, the labels as one-hot rows and then as
    class indices; keep the first that passes (gradients off, the random state left as it
    was). Neither passing is a one-line error."""
    fed = [p for p in (model, guide) if isinstance(p, FedProgram)]
    if not fed:
        return
    x = data.training_rows(batch_size).to(device)
    y = data.y_train[: x.shape[0]].to(device)
    first = fed[0].encoding
    failures = []
    for encoding in (first, *(e for e in ENCODINGS if e != first)):
        _set_encoding(fed, encoding)
        try:
            with torch.random.fork_rng(devices=_cuda(device)), torch.no_grad():
                with pyro.validation_enabled(True):
                    trace_programs(model, guide, x, y)
        except Exception as exc:  # noqa: BLE001 -- the other encoding may be the one it takes
            failures.append(f"as {encoding}: {str(exc).splitlines()[0]}")
            continue
        return
    raise PyrovaeError(
        f"{who} takes labels beyond x, but fails on a labelled batch with them as one-hot "
        f"rows (batch, {fed[0].num_classes}) and as class indices (batch,) "
        f"({'; '.join(failures)}); make it accept one of them"
    )


def _cuda(device: torch.device) -> list:
    return [device] if device.type == "cuda" else []


def _register_conditions(programs, data: PreparedData) -> None:
    """Give the conditioned programs the labels of every row set the run evaluates: the
    training rows (and their fixed binarization), validation and test rows (and their gray
    levels)."""
    tables = [
        p.conditions for p in programs if isinstance(p, FedProgram) and p.conditions is not None
    ]
    if not tables:
        return
    table = tables[0]
    table.add(data.x_train, data.y_train)
    table.add(data.training_rows(data.x_train.shape[0]), data.y_train)
    for x, y in (
        (data.x_val, data.y_val),
        (data.x_test, data.y_test),
        (data.x_val_gray, data.y_val),
        (data.x_test_gray, data.y_test),
    ):
        if x is not None:
            table.add(x, y)


def _available_bytes() -> int | None:
    """MemAvailable of /proc/meminfo in bytes, where it can be read."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


@contextmanager
def _allocation_as_error(who: str):
    """An allocator failure while the networks are built (``--hidden 100000000``) as one
    line giving the size asked for and the memory available, instead of a traceback."""
    try:
        yield
    except (MemoryError, RuntimeError) as exc:  # torch.OutOfMemoryError is a RuntimeError
        text = str(exc)
        if not isinstance(exc, MemoryError) and not re.search(
            r"can't allocate memory|out of memory|not enough memory", text, re.I
        ):
            raise
        asked = re.search(r"allocate (\d+) bytes", text)
        size = f" {int(asked.group(1)) / 1e9:.3g} GB" if asked else ""
        free = _available_bytes()
        room = f", with {free / 1e9:.3g} GB of memory available" if free else ""
        raise PyrovaeError(
            f"the networks of {who} do not fit in memory (one tensor asked for{size}{room}); "
            "choose smaller --hidden or --latent-dim"
        ) from exc


def _convolves(modules) -> bool:
    """Whether any of the ``nn.Module`` s holds a convolution layer."""
    return any(isinstance(m, torch.nn.modules.conv._ConvNd) for p in modules for m in p.modules())
