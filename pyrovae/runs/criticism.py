"""Criticism of a trained run beyond its posterior: does the model reproduce the test data
(posterior predictive checks), and are its images any good (sample quality)?

Both run inside :func:`pyrovae.diagnose` on the run's test rows, with the global sites fixed
as for the other diagnostics; see :mod:`pyrovae.inference.diagnostics.predictive` and
:mod:`pyrovae.inference.diagnostics.quality` for what is measured.
"""

from pathlib import Path

import torch

from pyrovae.atomic import atomic_write_named
from pyrovae.folder.layout import DIAGNOSTIC_FIGURES
from pyrovae.inference.diagnostics import quality
from pyrovae.inference.diagnostics.predictive import (
    PredictiveCheck,
    inference_data,
    predictive_check,
    replicate,
)
from pyrovae.plots import diagnostics as figures

ONE_EPOCH_NOTE = (
    "no one-epoch reference row in the sample-quality table: the run keeps no epoch-1 "
    "parameters; train the same configuration with --epochs 1 and diagnose it (as "
    "benchmarks/sample_quality.py does) to get one"
)
QUALITY_ROWS = {
    "test_vs_train": "training images (the floor)",
    "prior_samples": "prior samples (decoder means)",
    "reconstructions": "reconstructions (decoder means)",
    "noise": "uniform noise",
}
"""The sample-quality rows, each compared with the test images, and how the table names them."""


def run_predictive_check(run, model, guide, x, structure, rows: int, draws: int):
    """:func:`predictive_check` of the first ``rows`` of ``x``, with the data set's image
    shape and the test labels where known."""
    x = x[:rows]
    labels = run.data.y_test
    if labels is not None:
        labels = labels[: x.shape[0]].to(x.device)
    return predictive_check(
        model,
        guide,
        x,
        structure,
        draws=draws,
        image_shape=run.data.dataset.image_shape,
        labels=labels,
        classes=run.data.dataset.num_classes,
    )


def sample_quality_skip(run, rows: int) -> str | None:
    """Why a run gets no sample quality on ``rows`` test rows (None: it gets it)."""
    if run.data.dataset.y_train is None or run.data.y_test is None:
        return "no sample quality: it needs the data set's labels, to train its classifier"
    if not run.data.dataset.num_classes:
        return "no sample quality: the data set declares no number of classes"
    if rows <= quality.NEAREST:
        return (
            f"no sample quality: {rows} test rows are too few for k-NN precision and recall "
            f"(k = {quality.NEAREST}); diagnose more rows"
        )
    return None


def run_sample_quality(run, model, guide, x, structure, rows: int, seed: int) -> tuple[dict, list]:
    """The Fréchet distance and precision/recall of each of :data:`QUALITY_ROWS` against
    the first ``rows`` test images, as numbers for ``diagnostics.json``, and notes."""
    dataset = run.data.dataset
    n = min(rows, x.shape[0])
    real = run.data.x_test_gray if run.data.x_test_gray is not None else run.data.x_test
    real = real[:n].cpu()
    labelled = (dataset.y_train >= 0) & (dataset.y_train < dataset.num_classes)
    net, cached = quality.feature_classifier(
        dataset.x_train[labelled], dataset.y_train[labelled], dataset.num_classes
    )
    generator = torch.Generator().manual_seed(seed)
    train = dataset.x_train[torch.randperm(dataset.x_train.shape[0], generator=generator)[:n]]
    sets = {"test_vs_train": train}
    notes = []
    posterior = replicate(model, guide, x[:n], structure, 1)
    prior = replicate(model, guide, x[:n], structure, 1, prior=True)
    if posterior.means is None or prior.means is None:
        notes.append("sample quality compares drawn images: the likelihood has no mean")
    sets["prior_samples"] = (prior.means if prior.means is not None else prior.samples)[0]
    sets["reconstructions"] = (
        posterior.means if posterior.means is not None else posterior.samples
    )[0]
    sets["noise"] = torch.rand(real.shape, generator=generator)
    compared = quality.compare(net, real, {k: v.cpu() for k, v in sets.items()})
    out = {
        "quality_rows": n,
        "quality_nearest": quality.NEAREST,
        "quality_classifier_test_accuracy": quality.accuracy(net, real, run.data.y_test[:n].cpu()),
        "quality_classifier_cached": cached,
        "sample_quality": {row.name: row.summary() for row in compared},
    }
    return out, [*notes, ONE_EPOCH_NOTE]


def write_criticism(folder: Path, check: PredictiveCheck | None, sample_quality: dict | None):
    """The figures and ``predictive.nc`` of the checks; returns the paths written."""
    written = []
    if check is not None:
        written.append(
            figures.plot_ppc_statistics(
                check.observed,
                check.posterior,
                check.posterior_p_values,
                folder / DIAGNOSTIC_FIGURES["ppc_statistics"],
                prior=check.prior,
            )
        )
        written.append(
            figures.plot_ppc_pixels(
                check.pixel_difference,
                check.image_shape,
                folder / DIAGNOSTIC_FIGURES["ppc_pixels"],
            )
        )
        written.append(write_predictive(folder / "predictive.nc", check))
    if sample_quality:
        rows = {QUALITY_ROWS.get(k, k): v for k, v in sample_quality.items()}
        written.append(
            figures.plot_sample_quality(rows, folder / DIAGNOSTIC_FIGURES["sample_quality"])
        )
    return written


def write_predictive(path: Path, check: PredictiveCheck) -> Path:
    """``predictive.nc``: :func:`inference_data` of the check, written atomically."""
    idata = inference_data(check)
    atomic_write_named(path, idata.to_netcdf)
    return path
