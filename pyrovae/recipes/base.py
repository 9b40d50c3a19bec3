"""What a model needs beyond its Pyro program: a recipe.

A model in :mod:`pyrovae.models` is only a program (and its networks). Everything else a run
does with it lives in a :class:`Recipe` beside it: its default guide and network, the
likelihood it insists on, its own command-line options, how its training rows are prepared
and batched, extra metrics per epoch, and the numbers and figures of its report. The base
class's defaults serve any pair, a user's included: shuffled minibatches, the run's usual
figures, and the spiral numbers for a 1-D latent on the spiral.

The runner (:mod:`pyrovae.runs.train`) calls a recipe in this order: :meth:`Recipe.resolve_options`
(into ``config.options``), then, once the programs are built, :meth:`Recipe.setup`,
:meth:`Recipe.batches`, :meth:`Recipe.start_epoch` before and :meth:`Recipe.epoch_metrics`
after every epoch, and :meth:`Recipe.report` once at the end. A recipe holds no state
between these calls: each is a function of its arguments (``config`` is the run's
:class:`~pyrovae.TrainConfig`).
"""

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pyrovae.errors import PyrovaeError
from pyrovae.inference.batches import TensorBatches
from pyrovae.inference.diagnostics.structure import inspect_pair
from pyrovae.inference.parameters import device_of
from pyrovae.recipes.figures import run_figures
from pyrovae.recipes.spiral import spiral_report

MAP_OBJECTIVE = (
    "MAP: log p(x|z) + log p(z) at z = encoder(x) (Delta guide); not a bound on log p(x)"
)
GLOBAL_MAP_OBJECTIVE = (
    "the ELBO of the other latents with the global sites {sites} at a point estimate (a Delta "
    "guide part: MAP), plus their log prior there; not a bound on log p(x)"
)


@dataclass(frozen=True)
class RecipeOption:
    """A model-specific option, shown by ``--help`` in its model's group.

    :param name: the option's name (``labels`` -> flag ``--labels``).
    :param type: ``int``, ``float`` or ``str``.
    :param default: its value when not given (``None``: the recipe decides, and says how).
    :param help: one line for ``--help``.
    :param check: ``check(value) -> str | None``: a message when the value is out of range.
    """

    name: str
    type: type
    default: Any
    help: str
    check: Callable[[Any], str | None] | None = None

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")


def in_range(low: float, high: float, *, low_open=False, high_open=True) -> Callable:
    """A :class:`RecipeOption` check that the value lies in the interval from low to high."""

    def check(value) -> str | None:
        ok = math.isfinite(value) and (low < value if low_open else low <= value)
        ok = ok and (value < high if high_open else value <= high)
        if ok:
            return None
        left, right = "(" if low_open else "[", ")" if high_open else "]"
        return f"must be in {left}{low:g}, {high:g}{right}, got {value}"

    return check


@dataclass
class Report:
    """What a recipe adds to the end of a run: ``summary`` fields and figure files."""

    summary: dict = field(default_factory=dict)
    figures: list[Path] = field(default_factory=list)

    def update(self, other: "Report") -> "Report":
        self.summary.update(other.summary)
        self.figures.extend(other.figures)
        return self


class Recipe:
    """Defaults that serve any model/guide pair; subclass it for a model with needs of its own.

    Class attributes:

    - ``default_guide``: the registered guide used when ``--guide`` is not given (None: the
      user must name one).
    - ``network``: defaults for ``latent_dim`` and ``hidden`` (data-set defaults apply after).
    - ``likelihood``: the only likelihood the model accepts (None: any, chosen by the data).
    - ``options``: the model's own :class:`RecipeOption` s.
    - ``objective``: a line for ``summary.json`` when the ELBO the runner reports is not a
      bound on log p(x) (e.g. a point-mass guide), or the training steps optimize another
      objective.
    - ``elbo``: the ELBO estimator when ``--elbo`` is not given.
    - ``train_objective_is_elbo``: False when the training steps' objective differs from
      the ELBO the runner evaluates (a relaxation): the training rows' ELBO is then
      evaluated apart every epoch.
    - ``own_figures``: file names of the run's usual figures
      (:func:`~pyrovae.recipes.figures.run_figures`) that the recipe's :meth:`report` draws itself,
      e.g. with what the model needs beyond its traces.
    - ``select_by``: metric keys (``val_elbo`` or keys of :meth:`epoch_metrics`) whose
      values, compared in order, higher is better, choose the epoch whose parameters the run
      keeps and drive ``--patience``.
    """

    default_guide: str | None = None
    network: dict = {}
    likelihood: str | None = None
    options: tuple[RecipeOption, ...] = ()
    objective: str | None = None
    elbo: str = "trace"
    train_objective_is_elbo: bool = True
    own_figures: tuple[str, ...] = ()
    select_by: tuple[str, ...] = ("val_elbo",)

    # ------------------------------------------------------------------ options
    @classmethod
    def resolve_options(
        cls, given: dict, model_name: str = "this model", extra: tuple[RecipeOption, ...] = ()
    ) -> dict:
        """``given`` options checked against :attr:`options` (and ``extra`` ones, e.g. the
        guide's), defaults filled in."""
        known = {o.name: o for o in (*cls.options, *extra)}
        unknown = sorted(set(given) - set(known))
        if unknown:
            flag = "--" + unknown[0].replace("_", "-")
            if known:
                choices = ", ".join(o.flag for o in known.values())
                raise PyrovaeError(
                    f"{flag} is not an option of {model_name} (its options: {choices})"
                )
            raise PyrovaeError(f"{flag} is not an option of {model_name}, which takes none")
        resolved = {}
        for name, option in known.items():
            value = given.get(name, option.default)
            if value is not None:
                value = _coerce(option, value)
                problem = option.check(value) if option.check else None
                if problem:
                    raise PyrovaeError(f"{option.flag} {problem}")
            resolved[name] = value
        return resolved

    # ------------------------------------------------------------------ training
    def setup(self, model, guide, data, config) -> None:
        """Adapt freshly built programs to the training rows (e.g. a data scale) before the
        first step; their state is then saved with them. Default: nothing."""

    def batches(self, data, config, device):
        """The training minibatches: default, shuffled batches of ``config.batch_size``
        training rows, each through the data's batch transform (dynamic binarization)."""
        return TensorBatches(
            data.x_train.to(device),
            config.batch_size,
            seed=config.seed,
            transform=data.batch_transform,
        )

    def start_epoch(self, model, guide, config, epoch: int) -> None:
        """Set up the steps of epoch ``epoch`` (from 0; e.g. a temperature schedule, a
        function of the epoch alone so that a resumed run continues it). Default: nothing."""

    def epoch_metrics(self, model, guide, data, config) -> dict:
        """Extra numbers for each epoch's row of metrics.csv. Default: none."""
        return {}

    # ------------------------------------------------------------------ report
    def report(self, model, guide, data, config, out_dir: Path, history: list) -> Report:
        """The numbers (for summary.json) and figures of a finished run: by default the
        run's usual figures and, for a 1-D latent on the spiral, the spiral numbers."""

        figures = run_figures(
            model, guide, data, history, out_dir, skip=self.own_figures, select_by=self.select_by
        )
        report = Report(figures=figures)
        objective = self.objective
        probe = data.x_test[:3].to(device_of(model, guide))
        structure = inspect_pair(model, guide, probe) if objective is None else None
        if structure is not None and structure.point_mass_sites:
            objective = MAP_OBJECTIVE  # any model under a Delta guide
        elif structure is not None and structure.global_point_mass_sites:
            objective = GLOBAL_MAP_OBJECTIVE.format(sites=list(structure.global_point_mass_sites))
        if objective:
            report.summary["objective"] = objective
        report.summary.update(spiral_report(model, guide, data, out_dir))
        return report


def _coerce(option: RecipeOption, value):
    if option.type is int and isinstance(value, bool):
        raise PyrovaeError(f"{option.flag} must be a whole number, got {value!r}")
    try:
        converted = option.type(value)
    except (TypeError, ValueError) as exc:
        raise PyrovaeError(f"{option.flag} must be {option.type.__name__}, got {value!r}") from exc
    if option.type is int and converted != value:
        raise PyrovaeError(f"{option.flag} must be a whole number, got {value!r}")
    return converted
