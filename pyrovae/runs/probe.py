"""``pyrovae.linear_probe(run)`` and ``pyrovae-features``: how much a linear classifier reads
from a run's posterior means.

:func:`linear_probe` encodes the run's training and test rows and fits scikit-learn's
logistic regression on the latent means and, separately, on the pixels, with 100, 1000 and
all training labels (class-balanced, seeded subsets); it reports both test accuracies.

Which rows: under dynamic binarization every training batch is a fresh binarization of the
data set's gray levels, so the probe encodes and classifies the gray levels themselves (what
the model's inputs average to; the semi-supervised recipe scores its classifiers on them
too). ``binarized=True`` uses one fixed binarization instead: the test ELBO's test rows and
the training rows of the train ELBO. Otherwise the rows are the prepared rows the model was
trained on (thresholded under ``--binarize threshold``).
"""

import json
import time
import warnings
from dataclasses import dataclass, fields

import numpy as np
import pyro
import torch

from pyrovae.atomic import atomic_write_text
from pyrovae.data.labels import balanced_label_split
from pyrovae.errors import PyrovaeError
from pyrovae.folder.layout import check_writable, json_ready
from pyrovae.inference.diagnostics.structure import evaluation_mode
from pyrovae.inference.parameters import device_of
from pyrovae.inference.settings import option
from pyrovae.report.html import check_sources
from pyrovae.runs.encoding import encode_rows, plug_in_globals
from pyrovae.runs.load import as_run

ALL = "all"
UNITS = "fraction of the test rows whose class the classifier predicts correctly"


def _label_budget(value) -> int | str:
    """``value`` as a positive int or ``"all"``, else a one-line error."""
    if isinstance(value, str) and value.strip().lower() == ALL:
        return ALL
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise PyrovaeError(f"--labels takes positive whole numbers or 'all', got {value!r}")
    return value


@dataclass
class ProbeOptions:
    """What :func:`linear_probe` computes; ``scripts/features.py`` makes a flag of each field."""

    labels: tuple = option(
        (100, 1000, ALL),
        "labelled training rows per fit, class-balanced (a multiple of the number of "
        "classes), or 'all'; counts above the training rows are skipped",
        nargs="+",
    )
    seed: int = option(0, "seed of the labelled subsets (and of a sampled guide's means)")
    max_iter: int = option(1000, "L-BFGS iterations of each logistic regression")
    binarized: bool = option(
        False, "under dynamic binarization, use one fixed binarization, not the gray levels"
    )
    batch_size: int = option(10_000, "rows encoded at once")

    def __post_init__(self):
        labels = [self.labels] if isinstance(self.labels, int | str) else list(self.labels)
        if not labels:
            raise PyrovaeError("--labels needs at least one count or 'all'")
        budgets = [_label_budget(v) for v in labels]
        self.labels = tuple(dict.fromkeys(budgets))  # in order, without repeats
        for name in ("max_iter", "batch_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                flag = "--" + name.replace("_", "-")
                raise PyrovaeError(f"{flag} must be a positive whole number, got {value!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise PyrovaeError(f"--seed must be a whole number >= 0, got {self.seed!r}")


def probe_rows(run, binarized: bool = False):
    """``(x_train, y_train, x_test, y_test, kind)``: the rows :func:`linear_probe` uses (see
    the module's docstring), ``kind`` naming them; a one-line error without labels."""
    data = run.data
    name = data.dataset.name
    if data.y_train is None or data.y_test is None:
        raise PyrovaeError(
            f"the run's data set {name} has no labels (y_train and y_test): the linear probe "
            "needs classes to predict"
        )
    if data.x_train.shape[0] == 0 or data.x_test.shape[0] == 0:
        raise PyrovaeError(f"the run's data set {name} has no training or no test rows")
    if not data.dynamic_binarization:
        return data.x_train, data.y_train, data.x_test, data.y_test, "the prepared rows"
    if binarized:
        rows = data.training_rows(data.x_train.shape[0])
        return rows, data.y_train, data.x_test, data.y_test, "one fixed binarization"
    return data.x_train, data.y_train, data.x_test_gray, data.y_test, "gray levels"


def _classifier(max_iter: int):
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(StandardScaler(), LogisticRegression(max_iter=max_iter))


def _fit_and_score(inputs, y, rows, x_test, y_test, max_iter: int) -> tuple[float, bool]:
    """Test accuracy of the classifier fitted on ``inputs[rows]``; whether L-BFGS converged."""
    from sklearn.exceptions import ConvergenceWarning
    from threadpoolctl import threadpool_limits

    classifier = _classifier(max_iter)
    # One BLAS thread: OpenBLAS's idle threads spin, and on a 2-core machine shared with other
    # jobs 50 L-BFGS iterations on the 54,000 x 784 Fashion-MNIST pixels took 108 s with two
    # threads and 11 s with one (a 1293 x 64 digits fit: 4.5 s and 0.05 s).
    with warnings.catch_warnings(record=True) as caught, threadpool_limits(1, user_api="blas"):
        warnings.simplefilter("always", ConvergenceWarning)
        classifier.fit(inputs[rows], y[rows])
    converged = not any(issubclass(w.category, ConvergenceWarning) for w in caught)
    return float(classifier.score(x_test, y_test)), converged


def linear_probe(
    run, *, device: str = "cpu", write: bool = True, trust_code: bool = False, **options
) -> dict:
    """Logistic-regression test accuracy on a run's latent means against the same
    classifier on its pixels, for each label count; the numbers as a dict.

    :param run: a :class:`pyrovae.Run` or the path of a run folder.
    :param options: fields of :class:`ProbeOptions` (``labels=(100, 1000, "all")``,
        ``seed=0``, ...).
    :param write: write ``features.json`` (atomically) into the run folder.
    :param trust_code: for a folder, as in :func:`pyrovae.load_run`.

    Each fit is ``StandardScaler`` then ``LogisticRegression`` (L2, C = 1, L-BFGS) of
    scikit-learn, on the same labelled training rows for both inputs; ``results`` holds, per
    label count, ``latent_accuracy`` and ``pixel_accuracy`` on all test rows (fractions).
    """
    unknown = sorted(set(options) - {f.name for f in fields(ProbeOptions)})
    if unknown:
        raise PyrovaeError(f"linear_probe has no option {unknown[0]!r}")
    opts = ProbeOptions(**options)
    run = as_run(run, device, trust_code)
    if write:
        check_sources(run.folder.path)
        check_writable(run.folder.path, "features.json")
    x_train, y_train, x_test, y_test, kind = probe_rows(run, opts.binarized)
    on = device_of(run.model, run.guide)
    pyro.set_rng_seed(opts.seed)
    start = time.perf_counter()
    with torch.no_grad(), evaluation_mode(run.model, run.guide):
        model, guide = plug_in_globals(run, x_test[:2].to(on))
        z_train = encode_rows(model, guide, x_train, opts.batch_size, on).numpy()
        z_test = encode_rows(model, guide, x_test, opts.batch_size, on).numpy()
    seconds = {"encode": time.perf_counter() - start}
    y_train, y_test = y_train.cpu().numpy(), y_test.cpu().numpy()
    pixels_train, pixels_test = x_train.cpu().numpy(), x_test.cpu().numpy()
    dataset = run.data.dataset
    num_classes = dataset.num_classes or int(max(y_train.max(), y_test.max())) + 1
    n_train = len(y_train)
    results, skipped, not_converged = [], [], []
    for budget in opts.labels:
        if budget != ALL and budget > n_train:
            skipped.append(f"{budget} labels: more than the {n_train} training rows")
            continue
        if budget == ALL:
            rows = np.arange(n_train)
        else:
            labelled, _ = balanced_label_split(
                torch.as_tensor(y_train), budget, num_classes, opts.seed
            )
            rows = labelled.numpy()
        row = {"labels": budget, "num_labels": len(rows)}
        for name, train, test in (
            ("latent", z_train, z_test),
            ("pixel", pixels_train, pixels_test),
        ):
            start = time.perf_counter()
            score, converged = _fit_and_score(train, y_train, rows, test, y_test, opts.max_iter)
            row[f"{name}_accuracy"] = score
            seconds[f"{name}_{budget}"] = time.perf_counter() - start
            if not converged:
                not_converged.append(f"{name} inputs with {budget} labels")
        results.append(row)
    notes = [f"skipped {s}" for s in skipped]
    if opts.binarized and not run.data.dynamic_binarization:
        notes.append("binarized has no effect: the run's rows are not dynamically binarized")
    if not_converged:
        notes.append(
            f"L-BFGS did not converge in {opts.max_iter} iterations for: "
            f"{', '.join(not_converged)} (raise --max-iter)"
        )
    out = {
        "run": str(run.folder.path),
        "model": run.summary.get("model", run.config.model),
        "guide": run.summary.get("guide", run.config.guide),
        "dataset": dataset.name,
        "rows": kind,
        "num_train": n_train,
        "num_test": len(y_test),
        "num_classes": num_classes,
        "latent_dim": int(z_train.shape[1]),
        "pixel_dim": int(pixels_train.shape[1]),
        "classifier": f"StandardScaler + LogisticRegression(C=1, max_iter={opts.max_iter})",
        "units": UNITS,
        "seed": opts.seed,
        "results": results,
        "notes": notes,
        "seconds": seconds,
    }
    if write:
        atomic_write_text(
            run.folder.path / "features.json", json.dumps(json_ready(out), indent=2) + "\n"
        )
    return out


def table(out: dict) -> str:
    """The results of :func:`linear_probe` as a plain-text table."""
    head = (
        f"{out['dataset']}, {out['model']} ({out['rows']}): logistic-regression test "
        f"accuracy on {out['num_test']} test rows"
    )
    dims = (f"(k = {out['latent_dim']})", f"(D = {out['pixel_dim']})")
    lines = [head, f"{'labels':>12}  {'latent means':>14}  {'raw pixels':>12}"]
    lines.append(f"{'':>12}  {dims[0]:>14}  {dims[1]:>12}")
    for r in out["results"]:
        labels = f"all ({r['num_labels']})" if r["labels"] == ALL else str(r["labels"])
        lines.append(f"{labels:>12}  {r['latent_accuracy']:>14.4f}  {r['pixel_accuracy']:>12.4f}")
    return "\n".join(lines)
