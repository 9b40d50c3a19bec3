"""``pyrovae.features(run, x)`` and ``scripts/features.py``: a trained run's posterior means
as features for downstream tasks, and how much a linear classifier reads from them.

:func:`features` encodes rows ``x: (n, D)`` into ``E_q[z | x]: (n, k)`` with the run's guide.
:func:`linear_probe` encodes the run's training and test rows and fits scikit-learn's
logistic regression on the latent means and, separately, on the pixels, with 100, 1000 and
all training labels (class-balanced, seeded subsets); it reports both test accuracies.
:func:`feature_dataset` replaces every row of a data set by a run's posterior means, for
``--features RUN_DIR`` (any model trained on M1's features, as M2 in Kingma et al., 2014).

Which rows: under dynamic binarization every training batch is a fresh binarization of the
data set's gray levels, so the probe encodes and classifies the gray levels themselves (what
the model's inputs average to; the semi-supervised recipe scores its classifiers on them
too). ``binarized=True`` uses one fixed binarization instead: the test ELBO's test rows and
the training rows of the train ELBO. Otherwise the rows are the prepared rows the model was
trained on (thresholded under ``--binarize threshold``).
"""

import argparse
import json
import sys
import time
import warnings
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np
import pyro
import torch

from pyrovae.errors import PyrovaeError
from pyrovae.inference.diagnostics.structure import evaluation_mode
from pyrovae.inference.settings import option

ALL = "all"
UNITS = "fraction of the test rows whose class the classifier predicts correctly"


def _load(run, device: str):
    from pyrovae.api import Run, load_run

    return run if isinstance(run, Run) else load_run(run, device=device)


def _encoder(run, probe: torch.Tensor):
    """``(model, guide)`` of the run with any global latent site (a Bayesian FA's W) fixed at
    its mean under q, so that every batch of rows is encoded with the same plug-in value."""
    from pyrovae.inference.diagnostics.structure import (
        condition_on_globals,
        global_means,
        inspect_pair,
    )

    structure = inspect_pair(run.model, run.guide, probe)
    return condition_on_globals(run.model, run.guide, global_means(run.guide, structure, probe))


def _encode(model, guide, x: torch.Tensor, batch_size: int, device) -> torch.Tensor:
    from pyrovae.inference.posterior import encode

    parts = [encode(model, guide, chunk.to(device)).cpu() for chunk in x.split(batch_size)]
    return torch.cat(parts)


def _checked_rows(run, x) -> torch.Tensor:
    """``x`` as ``(n, D)`` float32 rows the run's model takes, or a one-line error."""
    from pyrovae.data.dataset import first_line
    from pyrovae.figures import device_of
    from pyrovae.inference.contract import observation

    dataset = run.data.dataset
    try:
        x = torch.as_tensor(np.asarray(x.detach().cpu() if torch.is_tensor(x) else x))
    except (TypeError, ValueError) as exc:
        raise PyrovaeError(
            f"x must be an (n, {dataset.x_dim}) array of numbers ({first_line(exc)})"
        ) from exc
    if not (x.dtype.is_floating_point or x.dtype in (torch.uint8, torch.int32, torch.int64)):
        raise PyrovaeError(f"x must be an (n, {dataset.x_dim}) array of numbers, got {x.dtype}")
    x = x.to(torch.float32)
    if dataset.image_shape is not None and tuple(x.shape[1:]) == tuple(dataset.image_shape):
        x = x.reshape(x.shape[0], -1)  # (n, H, W) images of the run's size
    if x.dim() != 2 or x.shape[1] != dataset.x_dim:
        raise PyrovaeError(
            f"x has shape {tuple(x.shape)} but the run's model takes rows of "
            f"{dataset.x_dim} values ({dataset.name}): pass an (n, {dataset.x_dim}) array"
        )
    bad = int((~torch.isfinite(x)).sum())
    if bad:
        raise PyrovaeError(f"x has {bad} NaN or infinite values; features need finite rows")
    probe = run.data.x_test[:2].to(device_of(run.model, run.guide))
    name, support = observation(run.model, probe)
    if support in ("binary", "unit") and x.numel() and (x.min() < 0 or x.max() > 1):
        raise PyrovaeError(
            f"x has values in [{x.min().item():.4g}, {x.max().item():.4g}] but the run's "
            f"{name} observes values in [0, 1]; scale the rows as the run's data set "
            f"({dataset.name}) was"
        )
    return x


def features(run, x, *, batch_size: int = 10_000, device: str = "cpu") -> torch.Tensor:
    """Posterior means ``E_q[z | x]`` of rows ``x`` under a trained run's guide.

    :param run: a :class:`pyrovae.Run` or the path of a run folder (loaded on ``device``).
    :param x: ``(n, D)`` rows (tensor or array; ``(n, H, W)`` images are flattened) on the
        scale of the run's data set, e.g. ``run.data.x_test``.
    :param batch_size: rows encoded at once.
    :returns: ``(n, k)`` float32 on the CPU. A latent with a multi-dimensional event (the
        gumbel-vae's ``(M, K)`` one-hot codes) gives its ``M * K`` columns; a guide without a
        closed-form mean (``--guide iaf``) gives the mean of 64 draws, so it varies with
        Pyro's seed, as does the ssvae's ``z``, whose mean is conditional on a class drawn from
        q(y|x); global latent sites are fixed at their mean under q (100 draws).

    The modules are in eval mode while they encode, and go back to their mode afterwards.
    """
    from pyrovae.figures import device_of

    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise PyrovaeError(f"batch_size must be a positive whole number, got {batch_size!r}")
    run = _load(run, device)
    x = _checked_rows(run, x)
    on = device_of(run.model, run.guide)
    probe = run.data.x_test[:2].to(on)
    with torch.no_grad(), evaluation_mode(run.model, run.guide):
        model, guide = _encoder(run, probe)
        if x.shape[0] == 0:
            return _encode(model, guide, probe, batch_size, on)[:0]
        return _encode(model, guide, x, batch_size, on)


# ----------------------------------------------------------------------------- M1 + M2


def _feature_run(path, device: str):
    """The run folder ``--features`` names, loaded; a one-line error when it is none."""
    from pyrovae.api import load_run
    from pyrovae.report import check_run_folder

    try:
        check_run_folder(path)
        return load_run(path, device=device)
    except PyrovaeError as exc:
        raise PyrovaeError(
            f"--features {path}: {exc} (give the folder of a trained run, as "
            "train_svi.py --out wrote it)"
        ) from exc


def model_inputs(run, x: torch.Tensor) -> torch.Tensor:
    """Rows ``x: (n, D)`` of the run's data set as its model was trained on them: thresholded
    under ``--binarize threshold`` for a Bernoulli, else as they are (gray levels under
    dynamic binarization, the mean of the binary batches, as :func:`probe_rows` has it)."""
    from pyrovae.figures import device_of
    from pyrovae.inference.contract import observation

    if run.config.binarize != "threshold":
        return x
    _, support = observation(run.model, x[:2].to(device_of(run.model, run.guide)))
    return (x > 0.5).to(x.dtype) if support == "binary" else x


def feature_dataset(path, dataset, device: str = "cpu"):
    """``dataset`` with every row replaced by its posterior mean ``E_q[z | x]`` under the run
    in the folder ``path`` (``--features``: M1 of Kingma et al.'s M1 + M2), computed once
    with :func:`features` on the rows the run was trained on (:func:`model_inputs`).

    :param dataset: the :class:`~pyrovae.data.Dataset` of the run to be trained; the feature
        run must have been trained on the same rows (else a one-line error).
    :returns: a Dataset of ``(n, k)`` real-valued rows, the same labels and row order, no
        image shape, and ``features = {"run", "model", "guide", "dim"}``.
    """
    from pyrovae.data import with_features

    run = _feature_run(path, device)
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
        features(run, model_inputs(run, x), device=device)
        for x in (dataset.x_train, dataset.x_test)
    )
    source = {
        "run": str(path),
        "model": run.config.model_name,
        "guide": run.summary.get("guide") or run.config.guide or type(run.recipe).default_guide,
        "dim": int(x_train.shape[1]),
    }
    return with_features(dataset, x_train, x_test, source)


# ----------------------------------------------------------------------------- the probe


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


def linear_probe(run, *, device: str = "cpu", write: bool = True, **options) -> dict:
    """Logistic-regression test accuracy on a run's latent means against the same
    classifier on its pixels, for each label count; the numbers as a dict.

    :param run: a :class:`pyrovae.Run` or the path of a run folder.
    :param options: fields of :class:`ProbeOptions` (``labels=(100, 1000, "all")``,
        ``seed=0``, ...).
    :param write: write ``features.json`` (atomically) into the run folder.

    Each fit is ``StandardScaler`` then ``LogisticRegression`` (L2, C = 1, L-BFGS) of
    scikit-learn, on the same labelled training rows for both inputs; ``results`` holds, per
    label count, ``latent_accuracy`` and ``pixel_accuracy`` on all test rows (fractions).
    """
    from pyrovae.figures import device_of
    from pyrovae.labels import balanced_label_split

    unknown = sorted(set(options) - {f.name for f in fields(ProbeOptions)})
    if unknown:
        raise PyrovaeError(f"linear_probe has no option {unknown[0]!r}")
    opts = ProbeOptions(**options)
    run = _load(run, device)
    x_train, y_train, x_test, y_test, kind = probe_rows(run, opts.binarized)
    on = device_of(run.model, run.guide)
    pyro.set_rng_seed(opts.seed)
    start = time.perf_counter()
    with torch.no_grad(), evaluation_mode(run.model, run.guide):
        model, guide = _encoder(run, x_test[:2].to(on))
        z_train = _encode(model, guide, x_train, opts.batch_size, on).numpy()
        z_test = _encode(model, guide, x_test, opts.batch_size, on).numpy()
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
        from pyrovae.atomic import atomic_write_text
        from pyrovae.run_folder import json_ready

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


def build_parser() -> argparse.ArgumentParser:
    from pyrovae.cli import OneLineErrorParser

    parser = OneLineErrorParser(
        prog="features.py",
        description="Encode a trained run's training and test rows into posterior means "
        "E_q[z|x] and report the test accuracy of a logistic regression on them against the "
        "same classifier on the pixels, per label count. Writes features.json into the run "
        "folder.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("run_dir", metavar="RUN_DIR", help="run folder written by train_svi.py")
    for f in fields(ProbeOptions):
        flag, extra = "--" + f.name.replace("_", "-"), dict(f.metadata)
        if f.type is bool:
            parser.add_argument(flag, action="store_true", **extra)
        elif f.name == "labels":
            parser.add_argument(flag, default=list(f.default), metavar="N", **extra)
        else:
            parser.add_argument(flag, type=int, default=f.default, **extra)
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        options = {f.name: getattr(args, f.name) for f in fields(ProbeOptions)}
        out = linear_probe(args.run_dir, device=args.device, **options)
    except PyrovaeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: no features.json written", file=sys.stderr)
        return 130
    print(table(out))
    for note in out["notes"]:
        print(f"note: {note}")
    print(f"written to {Path(args.run_dir) / 'features.json'}")
    return 0
