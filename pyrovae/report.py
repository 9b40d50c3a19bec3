"""``report.html``: one self-contained page that a person reads to see what a run did.

Built from the run folder alone (``config.json``, ``summary.json``, ``metrics.csv``, every
``*.png`` and ``diagnostics.json`` when the run was diagnosed), so it can be rebuilt at any
time: ``python -m pyrovae.report RUN_DIR``. The page holds everything itself: the figures are
base64 PNG data URIs and the CSS is inline, so the one file can be mailed or archived.

It shows: a header (model, guide, data set, likelihood, when), the summary as a table in
which every number has a plain-language description, its units and the epoch it is taken
at, every option of the config, the training curves (the best epoch and the KL weight
marked), every figure of the run, and the diagnostics (headline numbers, notes, figures).
The template is ``pyrovae/templates/report.html.j2`` (Jinja2).
"""

import base64
import csv
import json
import math
import sys
from dataclasses import dataclass, fields
from datetime import datetime
from importlib import resources
from pathlib import Path
from typing import NamedTuple

from pyrovae.errors import PyrovaeError

REPORT_NAME = "report.html"
TEMPLATE = "report.html.j2"
TRAINING_CURVES = "training_curves.png"

BEST = "best"  # taken at the best epoch (the kept parameters)
RUN = "run"  # a number of the whole run
SETTING = "setting"  # what the run was given or built with, not a measurement


class Described(NamedTuple):
    """What a number is: ``text`` in plain language, its ``units``, and ``when`` it is
    taken (:data:`BEST`, :data:`RUN`, :data:`SETTING`, or any phrase shown as it is)."""

    text: str
    units: str = ""
    when: str = ""


NATS = "nats per example"
SHARE = "share in [0, 1]"
BASELINE = "the baseline's own best epoch"
REFERENCE = "reference fit"


def _beyond(end: str, where: str) -> dict[str, Described]:
    """The descriptions of ``spiral.beyond_<end>`` and its numbers."""
    key = f"spiral.beyond_{end}"
    return {
        key: Described(f"the sweep of z past the code range, towards {where}"),
        f"{key}.mean_distance": Described(
            "mean distance of these decoded points to the extended curve", "data units", BEST
        ),
        f"{key}.max_distance": Described(
            "largest distance of these decoded points to the extended curve", "data units", BEST
        ),
        f"{key}.t_end": Described(
            "t of the curve point nearest the last decoded point", "radians", BEST
        ),
        f"{key}.distance_end": Described(
            "distance of the last decoded point to the extended curve", "data units", BEST
        ),
    }


SUMMARY_KEYS: dict[str, Described] = {
    # The run (pyrovae.api).
    "model": Described("the model p(z) p(x|z): a registered name or package.module:attr"),
    "guide": Described("the guide q(z|x) (empty: the model's own, or the pair's guide method)"),
    "dataset": Described("the data set"),
    "likelihood": Described("the distribution that observes x in the model, p(x|z)"),
    "elbo": Described("the ELBO estimator Pyro trained with (trace, enum, ...)", "", SETTING),
    "options": Described("the model's own options (flags of its recipe)", "", SETTING),
    "epochs": Described("epochs trained", "epochs", RUN),
    "best_epoch": Described(
        "the epoch with the best validation score (the validation ELBO; ssvae: the "
        "validation accuracy, ties by the validation ELBO): the run keeps its parameters, and "
        "the numbers marked 'best epoch' are measured there",
        "epoch",
        RUN,
    ),
    "stopped_early": Described(
        "whether early stopping ended the run (no better validation score for --patience epochs)",
        "",
        RUN,
    ),
    "seconds": Described("wall time of training and evaluation, all epochs", "seconds", RUN),
    "train_objective": Described(
        "the objective SVI maximized on the training rows, averaged over the epoch's "
        "minibatches (the ELBO with its KL term weighted by the KL weight; the IWAE bound "
        "under --elbo iwae; a relaxed ELBO for gumbel-vae)",
        NATS,
        BEST,
    ),
    "train_elbo": Described(
        "ELBO of the training rows (KL weight 1): the epoch's minibatch average, or, when "
        "the objective was not the ELBO, evaluated on training rows at the epoch's end",
        NATS,
        BEST,
    ),
    "val_elbo": Described(
        "ELBO of the validation rows, held out from training; it picks the kept epoch (ssvae: "
        "it breaks ties of the validation accuracy)",
        NATS,
        BEST,
    ),
    "test_elbo": Described(
        "ELBO of the test rows: a lower bound on their log-likelihood log p(x)", NATS, BEST
    ),
    "latent_dim": Described("dimension of the latent z", "dimensions", SETTING),
    "hidden": Described(
        "hidden-layer widths of the encoder (the decoder mirrors them)", "units", SETTING
    ),
    "gaussian_scale": Described(
        "fixed noise scale sigma of a Gaussian p(x|z) (empty: learned, or not Gaussian)",
        "data units",
        SETTING,
    ),
    "num_parameters": Described("trainable numbers in the model and guide", "parameters"),
    "num_train": Described("training rows (after the validation split)", "rows"),
    "num_val": Described("validation rows", "rows"),
    "num_test": Described("test rows", "rows"),
    "units": Described("the units of the ELBOs above"),
    "taken_at": Described("which epoch's parameters the numbers describe"),
    "versions": Described("library versions the run used"),
    "versions.pyro": Described("Pyro's version"),
    "versions.torch": Described("PyTorch's version"),
    "features": Described(
        "with --features: the run whose posterior means E_q[z|x] replaced every row of the "
        "data set (M2 on M1's features)",
        "",
        SETTING,
    ),
    "features.run": Described("the feature run's folder, as given to --features", "", SETTING),
    "features.model": Described("the feature run's model", "", SETTING),
    "features.guide": Described("the feature run's guide q(z|x)", "", SETTING),
    "features.dim": Described(
        "width of the features: the feature run's latent dimensions", "dimensions", SETTING
    ),
    "processes": Described("processes of a data-parallel (torchrun) run", "processes", SETTING),
    "figures": Described("the figures the run drew (shown below)"),
    # The autoencoders (pyrovae.recipes.autoencoders).
    "objective": Described(
        "what this model's 'ELBO' numbers are when they are not a bound on log p(x), or "
        "what its training steps optimized when that was not the ELBO"
    ),
    "features_drawn": Described("hidden units drawn in features.png", "units", BEST),
    "pca_largest_principal_angle_deg": Described(
        "largest principal angle between the linear decoder's columns and PCA's top-k "
        "subspace of the training rows (0: the autoencoder found PCA's subspace)",
        "degrees",
        BEST,
    ),
    "observation_sigma": Described(
        "the learned noise scale sigma of the Gaussian p(x|z)", "data units", BEST
    ),
    # Factor analysis and PPCA (pyrovae.recipes.factor_analysis).
    "log_likelihood": Described("how the *_log_likelihood numbers are computed"),
    "train_log_likelihood": Described(
        "exact mean log p(x) of the training rows under the fitted model", NATS, BEST
    ),
    "val_log_likelihood": Described("exact mean log p(x) of the validation rows", NATS, BEST),
    "test_log_likelihood": Described(
        "exact mean log p(x) of the test rows: compare with test_elbo (equal for an exact "
        "posterior guide)",
        NATS,
        BEST,
    ),
    "log_likelihood_at": Described("the value of the loadings W the log-likelihoods plug in"),
    "noise_variance": Described(
        "the fitted noise variances psi of the data dimensions", "data units squared", BEST
    ),
    "noise_variance.min": Described("smallest noise variance", "data units squared", BEST),
    "noise_variance.mean": Described("mean noise variance", "data units squared", BEST),
    "noise_variance.max": Described("largest noise variance", "data units squared", BEST),
    "reference": Described("a closed-form fit on the same training rows, to compare with"),
    "reference.method": Described("how the reference was fitted"),
    "reference.fitted_on": Described("the rows the reference was fitted on"),
    "reference.test_log_likelihood": Described(
        "exact mean log p(x) of the test rows under the reference", NATS, REFERENCE
    ),
    "reference.train_log_likelihood": Described(
        "exact mean log p(x) of the training rows under the reference", NATS, REFERENCE
    ),
    "reference.test_gap_percent": Described(
        "how far this run's test log-likelihood lies below the reference's, in percent of "
        "the reference's magnitude (negative: above it)",
        "percent",
        BEST,
    ),
    "reference.largest_principal_angle_deg": Described(
        "largest principal angle between this run's loadings and the reference's "
        "(0: the same subspace)",
        "degrees",
        BEST,
    ),
    "reference.noise_variance": Described(
        "the reference's noise variance sigma^2", "data units squared", REFERENCE
    ),
    "reference.noise_variance_min": Described(
        "the reference's smallest noise variance", "data units squared", REFERENCE
    ),
    "reference.noise_variance_mean": Described(
        "the reference's mean noise variance", "data units squared", REFERENCE
    ),
    "reference.note": Described("a caveat on the comparison"),
    "reference.skipped": Described("why no reference was fitted"),
    # The semi-supervised VAE (pyrovae.recipes.ssvae).
    "labels": Described(
        "training rows whose labels were kept (class-balanced, drawn with the seed)",
        "rows",
        SETTING,
    ),
    "alpha": Described(
        "weight of the auxiliary classification term alpha * log q(y|x) per labelled row",
        "",
        SETTING,
    ),
    "val_accuracy": Described(
        "share of the validation rows whose class q(y|x) predicts", SHARE, BEST
    ),
    "test_accuracy": Described(
        "share of the test rows whose class q(y|x) predicts (gray-level images when the "
        "training binarizes dynamically)",
        SHARE,
        BEST,
    ),
    "test_accuracy_binarized": Described(
        "test accuracy of q(y|x) on the one fixed binarization the test ELBO uses", SHARE, BEST
    ),
    "baseline_accuracy": Described(
        "test accuracy of the same classifier network on the same inputs (the features "
        "under --features) trained on the labelled rows alone: what the semi-supervised "
        "model is compared with",
        SHARE,
        BASELINE,
    ),
    "baseline_accuracy_binarized": Described(
        "the baseline's test accuracy on the fixed binarization", SHARE, BASELINE
    ),
    "baseline_val_accuracy": Described("the baseline's validation accuracy", SHARE, BASELINE),
    "baseline_epochs": Described(
        "epochs the baseline trained (early stopping on validation accuracy)", "epochs", RUN
    ),
    "baseline_best_epoch": Described("the baseline epoch kept", "epoch", RUN),
    "baseline_seconds": Described("wall time of the baseline's training", "seconds", RUN),
    # A 1-D latent on the spiral (pyrovae.spiral).
    "spiral": Described(
        "how the decoded sweep of a 1-D latent follows the true spiral, within and beyond "
        "the range of the training codes"
    ),
    "spiral.code_range": Described("range of the training rows' codes z", "latent units", BEST),
    "spiral.inside": Described("the sweep of z within the codes' range"),
    "spiral.inside.mean_distance": Described(
        "mean distance of the decoded points to the true curve", "data units", BEST
    ),
    "spiral.inside.max_distance": Described(
        "largest distance of a decoded point to the true curve", "data units", BEST
    ),
    "spiral.inside.t_span": Described(
        "range of the curve parameter t the decoded points reach", "radians", BEST
    ),
    "spiral.inside.coverage": Described(
        "share of the training arc with a decoded point within 0.1 of it (gaps: below 1)",
        SHARE,
        BEST,
    ),
    "spiral.inside.max_step_ratio": Described(
        "largest jump between consecutive decoded points over the median one (small: smooth)",
        "ratio",
        BEST,
    ),
    "spiral.inside.backtrack_fraction": Described(
        "share of steps whose nearest t moves against the sweep (folds)", SHARE, BEST
    ),
    "spiral.test_reconstruction_rmse": Described(
        "root mean squared distance of the test points to their reconstructions",
        "data units",
        BEST,
    ),
    "spiral.test_reconstruction_distance_to_curve": Described(
        "mean distance of the test reconstructions to the true curve", "data units", BEST
    ),
    "spiral.t_training_range": Described("range of t of the training points", "radians"),
    "spiral.units": Described("the units of the spiral numbers"),
    **_beyond("inner", "the spiral's center"),
    **_beyond("outer", "the outer end"),
}
"""What each key of summary.json is (nested keys dotted: ``spiral.inside.coverage``); the
options of a model (``options.labels``) are described by their recipes' help."""
DIAGNOSTICS_KEYS: dict[str, Described] = {
    "num_points": Described("test rows diagnosed", "rows"),
    "iwae_samples": Described("K, importance samples per row", "samples"),
    "iwae_log_likelihood": Described(
        "importance-weighted bound on log p(x) with K samples per row, mean over the rows: "
        "the best estimate of the test log-likelihood (compare models with it)",
        NATS,
    ),
    "iwae_standard_error": Described("its standard error over the rows", "nats per example"),
    "elbo_monte_carlo": Described("the ELBO from the same draws (K = 1)", NATS),
    "pareto_k_share_above_0.5": Described(
        "share of rows whose Pareto k-hat exceeds 0.5 (q a usable but imperfect proposal)", SHARE
    ),
    "pareto_k_share_above_0.7": Described(
        "share of rows whose k-hat exceeds 0.7: q misses posterior mass there", SHARE
    ),
    "pareto_k_max": Described("the largest k-hat of a row"),
    "kl_total": Described(
        "KL(q(z|x) || p(z)) summed over the latent dimensions, mean over the rows",
        "nats per example",
    ),
    "active_units": Described(
        "latent dimensions whose posterior mean varies across rows (Cov > 0.01); few: "
        "posterior collapse",
        "dimensions",
    ),
    "latent_dims": Described("latent dimensions in all", "dimensions"),
    "nuts_max_rhat": Described(
        "largest split R-hat of the NUTS reference posterior (below 1.01-1.05: trustworthy)"
    ),
    "nuts_min_ess": Described("smallest bulk effective sample size of the NUTS draws", "draws"),
    "nuts_divergences": Described("divergent NUTS transitions", "transitions"),
    "q_mean_error_sd_mean_abs": Described(
        "mean distance of q's means from the NUTS means, in NUTS posterior sds", "sd"
    ),
    "q_sd_ratio_median": Described("median of sd_q / sd_NUTS (1: q's spread is right)", "ratio"),
    "amortization_gap": Described(
        "ELBO gained by refitting q for each row on its own: the encoder's share of the gap "
        "between ELBO and log p(x)",
        "nats per example",
    ),
    "approximation_gap": Described(
        "IWAE minus the refitted ELBO: the share of the gap due to the guide's family",
        "nats per example",
    ),
    "iwae_minus_elbo": Described("IWAE minus the encoder's ELBO on the same rows", "nats"),
}

FIGURE_CAPTIONS = {
    "training_curves": "ELBO per epoch on the training, validation and test rows",
    "reconstructions": "test inputs and their reconstructions (decoder means at q's draw)",
    "samples": "decoder means of draws of z from the prior",
    "latent_space": "posterior means of the test rows (PCA when z has more than 2 dimensions)",
    "interpolation": "decoder means along a straight line between two test rows' codes",
    "spiral": "data, reconstructions and the decoded latent path",
    "spiral_sweep": "the decoded sweep of z within and beyond the codes, against the spiral",
    "loadings": "columns of the loadings W",
    "features": "for each first-layer unit, the unit-norm input that activates it most",
    "accuracy": "accuracy of q(y|x) per epoch, against the labels-only baseline",
    "confusion_matrix": "test classes against the classes q(y|x) predicts",
    "analogies": "one style z per column, decoded with each class y per row",
    "classes": "decoder means with y fixed to each class (rows) and z drawn from the prior",
    "pareto_khat": "Pareto k-hat of each test row's importance weights",
    "iwae_vs_k": "the IWAE bound against the number of samples K",
    "kl_per_dim": "KL(q || p) per latent dimension",
    "nuts_vs_q": "q(z|x) against the NUTS reference posterior on a few rows",
}
WORDS = {"kl": "KL", "iwae": "IWAE", "nuts": "NUTS", "khat": "k-hat", "pca": "PCA", "elbo": "ELBO"}


@dataclass
class Row:
    """One line of a table: ``key`` (dotted for nested values), its formatted ``value``
    (empty for a group of nested rows), and what it is."""

    key: str
    name: str
    depth: int
    value: str
    text: str = ""
    units: str = ""
    when: str = ""


def format_value(value) -> str:
    """A value as the page shows it: floats to 6 significant digits, lists comma-separated,
    None as 'none'."""
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.6g}" if math.isfinite(value) else str(value)
    if isinstance(value, (list, tuple, dict)) and not value:
        return "(none)"
    if isinstance(value, (list, tuple)):
        return ", ".join(format_value(v) for v in value)
    if isinstance(value, dict):
        return json.dumps(value)
    return str(value)


def readable_title(stem: str) -> str:
    """``kl_per_dim`` -> ``KL per dim``: a file name without extension as a title."""
    words = [WORDS.get(w, w) for w in stem.replace("-", "_").split("_") if w]
    title = " ".join(words) or stem
    return title[0].upper() + title[1:]


def _when(described: Described, best: str) -> str:
    return {BEST: best, RUN: "whole run", SETTING: "setting"}.get(described.when, described.when)


def table_rows(values: dict, descriptions: dict[str, Described], best: str) -> list[Row]:
    """Rows of ``values``; a nested dict becomes a group row followed by its own rows
    (``key.sub``), each described by ``descriptions`` where it knows the key."""
    rows = []

    def add(mapping: dict, prefix: str, depth: int) -> None:
        for name, value in mapping.items():
            key = f"{prefix}{name}"
            described = descriptions.get(key, Described(""))
            nested = isinstance(value, dict) and value
            shown = "" if nested else format_value(value)
            rows.append(Row(key, str(name), depth, shown, *described[:2], _when(described, best)))
            if nested:
                add(value, key + ".", depth + 1)

    add(values, "", 0)
    return rows


def _option_help() -> dict[str, Described]:
    """``key`` -> its help text, for every TrainConfig field and every model option."""
    from pyrovae.config import TrainConfig
    from pyrovae.recipes import RECIPES

    # argparse help escapes % as %%
    helps = {
        f.name: Described(f.metadata.get("help", "").replace("%%", "%"))
        for f in fields(TrainConfig)
    }
    for recipe in RECIPES.values():
        for option in recipe.options:
            helps.setdefault(f"options.{option.name}", Described(option.help))
    return helps


def _read_json(path: Path) -> dict:
    try:
        value = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise PyrovaeError(f"{path} is not valid JSON ({exc.msg} at line {exc.lineno})") from exc
    if not isinstance(value, dict):
        raise PyrovaeError(f"{path} does not hold a JSON object; is it a pyrovae run folder?")
    return value


def _number(text: str):
    """A metrics.csv cell as an int, a float, or None for an empty cell."""
    if text is None or text == "":
        return None
    try:
        return int(text)
    except ValueError:
        try:
            return float(text)
        except ValueError:
            return text


def read_metrics(path: Path) -> list[dict]:
    """The rows of ``metrics.csv``, numbers as numbers; [] when there is none."""
    if not path.is_file():
        return []
    with path.open(newline="") as f:
        return [{k: _number(v) for k, v in row.items()} for row in csv.DictReader(f)]


def data_uri(path: Path) -> str:
    """A PNG file as a ``data:image/png;base64,...`` URI."""
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode("ascii")


def _figure(path: Path) -> dict:
    return {
        "file": path.name,
        "title": readable_title(path.stem),
        "caption": FIGURE_CAPTIONS.get(path.stem, ""),
        "src": data_uri(path),
    }


def _kl_weight_sentence(metrics: list[dict]) -> str:
    betas = [row["beta"] for row in metrics if isinstance(row.get("beta"), (int, float))]
    if not betas:
        return ""
    if all(b == 1 for b in betas):
        return "The KL weight was 1 at every epoch: the objective is the ELBO."
    return (
        f"The KL weight went from {format_value(float(betas[0]))} to "
        f"{format_value(float(betas[-1]))}: where it is not 1, the training objective is "
        "not the ELBO, and train_elbo is evaluated apart."
    )


def _diagnostics(run_dir: Path, pngs: dict[str, Path], best: str) -> dict | None:
    path = run_dir / "diagnostics.json"
    if not path.is_file():
        return None
    diagnostics = _read_json(path)
    files = diagnostics.get("files")
    if files is None:
        from pyrovae.diagnosis import FIGURES

        files = list(FIGURES.values())
    figures = [_figure(pngs.pop(name)) for name in files if name in pngs]
    shown = {k: diagnostics[k] for k in DIAGNOSTICS_KEYS if diagnostics.get(k) is not None}
    by_k = diagnostics.get("iwae_by_k") or {}
    return {
        "rows": table_rows(shown, DIAGNOSTICS_KEYS, best),
        "units": diagnostics.get("units", ""),
        "notes": list(diagnostics.get("notes") or []),
        "warning": diagnostics.get("collapse_warning"),
        "by_k": [
            (k, format_value(v.get("estimate")), format_value(v.get("standard_error")))
            for k, v in by_k.items()
        ],
        "figures": figures,
    }


def _modified(path: Path) -> str:
    return datetime.fromtimestamp(path.stat().st_mtime).strftime("%Y-%m-%d %H:%M")


def check_run_folder(run_dir) -> Path:
    """``run_dir`` as a Path, or a one-line PyrovaeError when it is not a run folder."""
    run_dir = Path(run_dir)
    if not run_dir.exists():
        raise PyrovaeError(f"no run folder at {run_dir}")
    if not run_dir.is_dir():
        raise PyrovaeError(f"{run_dir} is a file, not a run folder")
    if not (run_dir / "config.json").is_file():
        raise PyrovaeError(f"{run_dir} is not a pyrovae run folder: it has no config.json")
    return run_dir


_COLUMN_NAMES = {"val_elbo": "validation ELBO", "val_accuracy": "validation accuracy"}


def _select_by(config: dict) -> tuple[str, ...]:
    """The metric keys by which the run of ``config`` keeps its epoch (its recipe's
    ``select_by``); the validation ELBO when the recipe cannot be imported here."""
    from pyrovae.pairs import recipe_class

    try:
        return recipe_class(config.get("recipe"), config.get("model")).select_by
    except PyrovaeError:
        return ("val_elbo",)


def render_report(run_dir) -> str:
    """The HTML text of the report of ``run_dir`` (see the module docstring)."""
    import jinja2

    from pyrovae.figures import best_epoch as best_of

    run_dir = check_run_folder(run_dir)
    config = _read_json(run_dir / "config.json")
    summary_path = run_dir / "summary.json"
    summary = _read_json(summary_path) if summary_path.is_file() else {}
    metrics = read_metrics(run_dir / "metrics.csv")
    select_by = _select_by(config)
    # An unfinished run has no summary: its best epoch so far, from metrics.csv.
    if "best_epoch" in summary:
        best_epoch = summary["best_epoch"]
    else:
        best_epoch = best_of(metrics, select_by)
    if best_epoch is not None:
        best = f"best epoch ({best_epoch})"
    else:
        best = f"last epoch ({summary.get('epochs', len(metrics))})"
    pngs = {p.name: p for p in sorted(run_dir.glob("*.png"))}
    curves = pngs.pop(TRAINING_CURVES, None)
    diagnostics = _diagnostics(run_dir, pngs, best)
    order = [name for name in summary.get("figures", []) if name in pngs]
    order += [name for name in pngs if name not in order]
    best_row = next((r for r in metrics if r.get("epoch") == best_epoch), None)
    shown_metrics = [("best epoch", best_row)] if best_row else []
    if metrics and metrics[-1] is not best_row:
        shown_metrics.append(("last epoch", metrics[-1]))
    columns = list(metrics[0]) if metrics else []
    header = {
        "model": summary.get("model", config.get("pair") or config.get("model") or "vae"),
        "guide": summary.get("guide", config.get("guide")),
        "dataset": summary.get("dataset", config.get("dataset")),
        "likelihood": summary.get("likelihood", config.get("likelihood")),
    }
    helps = _option_help()
    option_helps = {k: v for k, v in helps.items() if k.startswith("options.")}
    template = resources.files("pyrovae").joinpath("templates", TEMPLATE).read_text()
    environment = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined)
    return environment.from_string(template).render(
        run_name=run_dir.resolve().name,
        header={k: format_value(v) for k, v in header.items()},
        finished=_modified(summary_path) if summary else None,
        written=datetime.now().strftime("%Y-%m-%d %H:%M"),
        best_epoch=best_epoch,
        kept_by=" then ".join(_COLUMN_NAMES.get(key, key) for key in select_by),
        best=best,
        taken_at=summary.get("taken_at", ""),
        summary_rows=table_rows(summary, {**option_helps, **SUMMARY_KEYS}, best),
        config_rows=table_rows(config, helps, best),
        curves=_figure(curves) if curves else None,
        kl_weight=_kl_weight_sentence(metrics),
        metric_columns=columns,
        metric_rows=[
            (label, [format_value(row.get(c)) for c in columns]) for label, row in shown_metrics
        ],
        figures=[_figure(pngs[name]) for name in order],
        diagnostics=diagnostics,
        tensorboard=(run_dir / "tensorboard").is_dir(),
    )


def write_report(run_dir) -> Path:
    """Write ``report.html`` into ``run_dir`` (atomically); returns its path."""
    from pyrovae.run_folder import atomic_write_text

    run_dir = check_run_folder(run_dir)
    path = run_dir / REPORT_NAME
    atomic_write_text(path, render_report(run_dir))
    return path


def main(argv: list[str] | None = None) -> int:
    from pyrovae.cli import OneLineErrorParser

    parser = OneLineErrorParser(
        prog="python -m pyrovae.report",
        description="Build report.html, one self-contained page, from a run folder.",
    )
    parser.add_argument("run_dir", metavar="RUN_DIR", help="run folder written by train_svi.py")
    args = parser.parse_args(argv)
    try:
        path = write_report(args.run_dir)
    except PyrovaeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"written to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
