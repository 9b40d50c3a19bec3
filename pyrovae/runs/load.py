"""A run brought back from its folder (:func:`load_run`), and the rows a run trains on
(:func:`run_dataset`: its data set, or with ``--features RUN_DIR`` another run's posterior
means, as M1 of Kingma et al.'s M1 + M2)."""

from dataclasses import dataclass, replace
from pathlib import Path

import pyro
import torch

from pyrovae import data as data_lib
from pyrovae.data import Dataset, PreparedData, with_features
from pyrovae.errors import PyrovaeError
from pyrovae.folder.config import TrainConfig
from pyrovae.folder.layout import RunFolder, check_run_folder
from pyrovae.inference.checkpoint import export_params, load_checkpoint
from pyrovae.inference.contract import check_pair
from pyrovae.inference.parameters import restore
from pyrovae.models import ModelSpec
from pyrovae.recipes import Recipe, names_code
from pyrovae.runs.build import PROGRAM_KEYS, Built, build, resolve, resolve_device
from pyrovae.runs.encoding import encode_run, model_inputs
from pyrovae.runs.programs import PASS_THE_OBJECT


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
    epoch: int | None = None  # the epoch whose parameters the programs hold

    def export_params(self, folder: str | Path | None = None) -> list[Path]:
        """Write ``params.pt`` (for ``pyro.get_param_store().load``) and ``modules.pt`` (the
        programs' ``state_dict`` s, for ``torch.load(..., weights_only=True)``) of the
        parameters the programs hold into ``folder`` (default: the run folder); see
        :func:`~pyrovae.inference.checkpoint.export_params`."""
        return export_params(self.model, self.guide, self.folder.path if folder is None else folder)


def as_run(run, device: str = "cpu", trust_code: bool = False) -> Run:
    """``run`` itself, or the run in the folder ``run`` names, loaded on ``device``
    (:func:`load_run`, with its ``trust_code``)."""
    return run if isinstance(run, Run) else load_run(run, device=device, trust_code=trust_code)


def check_trusted(path, config: TrainConfig, programs: dict, trust_code: bool) -> None:
    """Refuse (one line) to open the folder ``path`` whose ``config`` names code to import
    (``package.module:attr`` for its model, guide, pair or recipe) that ``programs`` does not
    replace, unless ``trust_code``: importing a module runs it, and a folder from elsewhere
    may name any module on ``sys.path``. Registered names import nothing. A program that
    config.json records as ``"pass the object"`` is asked for first (one line)."""
    for key, record in config.rebuild.items():
        if record == PASS_THE_OBJECT and programs.get(key) is None:
            raise PyrovaeError(
                f"{path}: its --{key} {getattr(config, key)} was given as a Python object that "
                f"the folder cannot rebuild (config.json: rebuild {PASS_THE_OBJECT!r}); pass it "
                f"again: pyrovae.load_run(path, {key}=obj) (to resume: pyrovae.train("
                f"resume=path, {key}=obj))"
            )
    named = [
        f"--{key} {value}"
        for key in PROGRAM_KEYS
        if names_code(value := getattr(config, key)) and programs.get(key) is None
    ]
    if named and not trust_code:
        raise PyrovaeError(
            f"{path} names code to import and run: {', '.join(named)}; open it only if you "
            "trust where it came from, with --trust-code (pyrovae.load_run(path, "
            "trust_code=True)), or pass the objects themselves (load_run(path, model=...))"
        )


def run_dataset(config: TrainConfig, device: torch.device, trust_code: bool = False) -> Dataset:
    """The rows ``config`` trains on: its data set, or with ``config.features`` that run's
    posterior means of the data set's rows (:func:`feature_dataset`; ``trust_code`` opens
    that folder as :func:`load_run` does)."""
    dataset = data_lib.load_dataset(
        config.dataset,
        config.data_root,
        spiral_noise=config.spiral_noise,
        image_size=config.image_size,
    )
    if config.features is not None:
        dataset = feature_dataset(config.features, dataset, str(device), trust_code)
    return dataset


def build_from_config(
    config: TrainConfig, programs: dict | None = None, device=None, trust_code: bool = False
) -> Built:
    """Resolve ``config``'s recipe, load its rows (:func:`run_dataset`) and build its
    programs and prepared data (:func:`~pyrovae.runs.build.build`).

    :param programs: Python objects that replace the config's names (``model``, ``guide``,
        ``pair``, ``recipe``).
    :param device: overrides ``config.device`` (a distributed rank's own GPU).
    :param trust_code: passed to the ``--features`` folder's :func:`load_run`.
    """
    resolved = resolve(config, programs)
    on = device or resolve_device(resolved.config.device)
    return build(resolved, run_dataset(resolved.config, on, trust_code), on)


def _feature_run(path, device: str, trust_code: bool):
    """The run folder ``--features`` names, loaded; a one-line error when it is none."""
    try:
        check_run_folder(path)
        return load_run(path, device=device, trust_code=trust_code)
    except PyrovaeError as exc:
        raise PyrovaeError(
            f"--features {path}: {exc} (give the folder of a trained run, as "
            "train_svi.py --out wrote it)"
        ) from exc


def feature_dataset(path, dataset, device: str = "cpu", trust_code: bool = False):
    """``dataset`` with every row replaced by its posterior mean ``E_q[z | x]`` under the run
    in the folder ``path`` (``--features``: M1 of Kingma et al.'s M1 + M2), computed once
    with :func:`~pyrovae.runs.encoding.encode_run` on the rows the run was trained on
    (:func:`~pyrovae.runs.encoding.model_inputs`).

    :param dataset: the :class:`~pyrovae.data.Dataset` of the run to be trained; the feature
        run must have been trained on the same rows (else a one-line error).
    :returns: a Dataset of ``(n, k)`` real-valued rows, the same labels and row order, no
        image shape, and ``features = {"run", "model", "guide", "dim"}``.
    """
    run = _feature_run(path, device, trust_code)
    trained_on = run.data.dataset
    if trained_on.features is not None:
        raise PyrovaeError(
            f"--features {path} was itself trained on the features of "
            f"{trained_on.features['run']}; give a run trained on the {dataset.name} rows"
        )
    if trained_on.name != dataset.name:
        raise PyrovaeError(
            f"--features {path} was trained on {trained_on.name}, not {dataset.name}; give a "
            f"run trained with --dataset {dataset.name}, or train this one on {trained_on.name}"
        )
    same = all(
        a.shape == b.shape and torch.equal(a, b)
        for a, b in ((trained_on.x_train, dataset.x_train), (trained_on.x_test, dataset.x_test))
    )
    if not same:
        raise PyrovaeError(
            f"--features {path} was trained on other {dataset.name} rows than this run's "
            "(its x_train or x_test differ); give a run trained on the same data (the same "
            ".npz file, --spiral-noise, --data-root)"
        )
    pyro.set_rng_seed(run.config.seed)  # sampled means (an IAF guide) are seeded
    x_train, x_test = (
        encode_run(run, model_inputs(run, x)) for x in (dataset.x_train, dataset.x_test)
    )
    source = {
        "run": str(path),
        "model": run.config.model_name,
        "guide": run.summary.get("guide") or run.config.guide or type(run.recipe).default_guide,
        "dim": int(x_train.shape[1]),
    }
    return with_features(dataset, x_train, x_test, source)


def load_run(path: str | Path, device: str = "cpu", *, trust_code: bool = False, **programs) -> Run:
    """Rebuild the model and guide of a run folder from its config and checkpoint, with every
    parameter (modules and ``pyro.param`` sites) of its best validation epoch (its last
    epoch without validation rows).

    :param trust_code: import the ``package.module:attr`` programs that the folder's
        ``config.json`` names. Without it such a folder is refused with one line: importing
        a module runs its code, so only a folder you trust should be opened this way.
        Built-in models, guides and recipes are found by registered name and need no trust;
        the checkpoint is always read with ``torch.load(..., weights_only=True)``.
    :param programs: ``model``, ``guide``, ``pair`` or ``recipe`` as Python objects, for a
        run whose programs were given as objects that cannot be imported by name (defined
        in a script's ``__main__`` or a notebook); what they replace is not imported.
    """
    unknown = sorted(set(programs) - set(PROGRAM_KEYS))
    if unknown:
        raise PyrovaeError(f"load_run takes {', '.join(PROGRAM_KEYS)} as programs, got {unknown}")
    folder = RunFolder(check_run_folder(path))
    folder.check_own_files()
    holder = folder.holder()
    if holder is not None:
        raise PyrovaeError(
            f"{folder.path} is being trained by {holder}; open it when training has ended "
            "(its checkpoint changes every epoch), or open a copy (cp -r) of it now"
        )
    config = replace(folder.read_config(), device=device)
    check_trusted(folder.path, config, programs, trust_code)
    built = build_from_config(config, programs, trust_code=trust_code)
    state = load_checkpoint(folder.checkpoint, map_location=built.device)
    # One trace creates the pyro.param sites (with their constraints) that are restored.
    with torch.no_grad():
        check_pair(built.model, built.guide, built.data.x_test[:2].to(built.device))
    kept = state["best"] if state["best"]["epoch"] else state
    restore(built.model, built.guide, kept)
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
        epoch=kept["epoch"],
    )
