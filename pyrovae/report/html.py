"""``report.html``: one self-contained page that a person reads to see what a run did.

Built from the run folder alone (``config.json``, ``summary.json``, ``metrics.csv``, every
``*.png`` and ``diagnostics.json`` when the run was diagnosed), so it can be rebuilt at any
time: ``pyrovae-report RUN_DIR``. The page holds everything itself: the figures are
base64 PNG data URIs and the CSS is inline, so the one file can be mailed or archived.

It shows: a header (model, guide, data set, likelihood, when), the summary as a table in
which every number has a plain-language description, its units and the epoch it is taken
at, every option of the config, the training curves (the best epoch and the KL weight
marked), every figure of the run, and the diagnostics (headline numbers, notes, figures).
The template is ``pyrovae/report/templates/report.html.j2`` (Jinja2); the words that
describe each key are :mod:`pyrovae.report.keys`.
"""

import base64
import csv
import json
import math
from dataclasses import dataclass
from datetime import datetime
from importlib import resources
from pathlib import Path

from pyrovae.atomic import atomic_write_text
from pyrovae.errors import PyrovaeError
from pyrovae.folder.layout import (
    DIAGNOSTIC_FIGURES,
    REPORT_NAME,
    TRAINING_CURVES,
    check_run_folder,
    own_file,
    own_png,
)
from pyrovae.inference.runner import best_epoch as best_of
from pyrovae.recipes.lookup import names_code, recipe_class
from pyrovae.report.keys import (
    DIAGNOSTICS_KEYS,
    FIGURE_CAPTIONS,
    SUMMARY_KEYS,
    Described,
    config_keys,
    when_phrase,
)

TEMPLATE = "report.html.j2"

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
    """A value as the page shows it: floats to 6 significant digits, lists comma-separated
    (a dict in one as compact JSON), None as 'none'."""
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
    if isinstance(value, dict):  # an item of a list (latent_sites): no ", " inside it
        return json.dumps(value, separators=(",", ": "))
    return str(value)


def readable_title(stem: str) -> str:
    """``kl_per_dim`` -> ``KL per dim``: a file name without extension as a title."""
    words = [WORDS.get(w, w) for w in stem.replace("-", "_").split("_") if w]
    title = " ".join(words) or stem
    return title[0].upper() + title[1:]


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
            when = when_phrase(described, best)
            rows.append(Row(key, str(name), depth, shown, *described[:2], when))
            if nested:
                add(value, key + ".", depth + 1)

    add(values, "", 0)
    return rows


def _read_json(path: Path) -> dict:
    try:
        value = json.loads(own_file(path).read_text())
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
    if not (path.is_symlink() or path.is_file()):
        return []
    with own_file(path).open(newline="") as f:
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


def _diagnostics(run_dir: Path, pngs: dict[str, Path], best: str, summary: dict) -> dict | None:
    path = run_dir / "diagnostics.json"
    if not (path.is_symlink() or path.exists()):
        return None
    diagnostics = _read_json(path)
    files = diagnostics.get("files")
    if files is None:
        files = list(DIAGNOSTIC_FIGURES.values())
    figures = [_figure(pngs.pop(name)) for name in files if name in pngs]
    shown = {k: diagnostics[k] for k in DIAGNOSTICS_KEYS if diagnostics.get(k) is not None}
    by_k = diagnostics.get("iwae_by_k") or {}
    return {
        "rows": table_rows(shown, DIAGNOSTICS_KEYS, best),
        "units": diagnostics.get("units", ""),
        "notes": [*_epoch_mismatch(diagnostics, summary), *(diagnostics.get("notes") or [])],
        "warning": diagnostics.get("collapse_warning"),
        "by_k": [
            (k, format_value(v.get("estimate")), format_value(v.get("standard_error")))
            for k, v in by_k.items()
        ],
        "figures": figures,
    }


def _epoch_mismatch(diagnostics: dict, summary: dict) -> list[str]:
    """A note when the diagnostics describe the parameters of another epoch than the
    summary's (a folder diagnosed while it trained, then trained on)."""
    epoch, kept = diagnostics.get("epoch"), summary.get("best_epoch")
    if epoch is None or kept is None or epoch == kept:
        return []
    return [
        f"these diagnostics describe the parameters of epoch {epoch}, not those of epoch "
        f"{kept} that the summary describes; run pyrovae-diagnose again for epoch {kept}"
    ]


def _modified(path: Path) -> str:
    return datetime.fromtimestamp(path.stat().st_mtime).strftime("%Y-%m-%d %H:%M")


_COLUMN_NAMES = {"val_elbo": "validation ELBO", "val_accuracy": "validation accuracy"}


def _select_by(config: dict) -> tuple[str, ...]:
    """The metric keys by which the run of ``config`` keeps its epoch (its recipe's
    ``select_by``): a registered recipe's; the validation ELBO for a recipe named as code,
    which a report never imports (it is built from the folder's files alone)."""
    recipe, model = config.get("recipe"), config.get("model")
    if names_code(recipe) or not (recipe is None or isinstance(recipe, str)):
        return ("val_elbo",)
    try:
        return recipe_class(recipe, model if isinstance(model, str) else None).select_by
    except PyrovaeError:
        return ("val_elbo",)


def check_sources(run_dir) -> Path:
    """Refuse (one line) a folder whose report would read a file that is not the folder's
    own (a link, not a regular file, a ``*.png`` that is not a PNG), before a diagnosis or a
    probe computes what the report would show."""
    run_dir = check_run_folder(run_dir)
    for name in ("config.json", "summary.json", "metrics.csv", "diagnostics.json"):
        own_file(run_dir / name)
    for path in run_dir.glob("*.png"):
        own_png(path)
    return run_dir


def render_report(run_dir) -> str:
    """The HTML text of the report of ``run_dir`` (see the module docstring)."""
    import jinja2

    run_dir = check_run_folder(run_dir)
    config = _read_json(run_dir / "config.json")
    summary_path = run_dir / "summary.json"
    summary = _read_json(summary_path) if summary_path.is_symlink() or summary_path.exists() else {}
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
    pngs = {p.name: own_png(p) for p in sorted(run_dir.glob("*.png"))}
    curves = pngs.pop(TRAINING_CURVES, None)
    diagnostics = _diagnostics(run_dir, pngs, best, summary)
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
    helps = config_keys()
    option_helps = {k: v for k, v in helps.items() if k.startswith("options.")}
    template = resources.files("pyrovae.report").joinpath("templates", TEMPLATE).read_text()
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
    run_dir = check_run_folder(run_dir)
    path = run_dir / REPORT_NAME
    atomic_write_text(path, render_report(run_dir))
    return path
