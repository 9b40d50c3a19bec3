"""The semi-supervised VAE (M2): its objective, the label split, the batches and the CLI."""

import json
import math
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pyro.poutine as poutine
import pytest
import torch
import torch.nn.functional as F
from pyro.infer import Trace_ELBO, TraceEnum_ELBO

import pyrovae
from pyrovae.data.labels import SemiSupervisedBatches, balanced_label_split
from pyrovae.errors import PyrovaeError
from pyrovae.inference import check_pair
from pyrovae.models import ModelSpec
from pyrovae.models.networks import ConvDecoder, ConvEncoder, mlp
from pyrovae.models.ssvae import SSVAE
from pyrovae.plots import ssvae as ssvae_plots
from pyrovae.recipes import build_pair
from pyrovae.recipes import ssvae as ssvae_recipe
from pyrovae.report.html import render_report
from tests.test_cli import assert_one_error_line, run_cli
from tests.test_plots import keep_figures

REPO = Path(__file__).resolve().parents[1]
K, D, LATENT = 3, 6, 2
SPEC = ModelSpec(
    x_dim=D, latent_dim=LATENT, hidden=(8,), num_classes=K, options={"labels": 3, "alpha": 2.5}
)
LOG_2PI = math.log(2 * math.pi)


# Convolutional networks need images: 4x4, one stride-2 grid cell after two convolutions.
CONV_SPEC = replace(SPEC, x_dim=16, image_shape=(4, 4), net="conv")


def tiny_pair(spec=SPEC):
    return build_pair("ssvae", spec)


def recording(guide, store: dict):
    """``guide`` with the trace of its last run (inside the ELBO's handlers) kept in ``store``."""

    def program(*args):
        with poutine.trace() as tracer:
            guide(*args)
        store["trace"] = tracer.trace

    return program


def log_normal(z, loc, scale):
    return (-0.5 * ((z - loc) / scale) ** 2 - scale.log() - 0.5 * LOG_2PI).sum(-1)


def labelled_elbo(model, guide, x, k: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """log p(x, y=k, z) - log q(z | x, y=k) per row, written out by hand: ``(batch,)``."""
    one_hot = F.one_hot(k, K).float().expand(x.shape[0], K)
    log_p_z = (-0.5 * z**2 - 0.5 * LOG_2PI).sum(-1)
    log_p_y = -math.log(K)
    logits = model.decoder(torch.cat([z, one_hot], -1))
    log_p_x = -F.binary_cross_entropy_with_logits(logits, x, reduction="none").sum(-1)
    if isinstance(guide.encoder, ConvEncoder):  # the label joins the convolutions' features
        encoded = guide.encoder.head(torch.cat([guide.encoder.features(x), one_hot], -1))
    else:
        encoded = guide.encoder(torch.cat([x, one_hot], -1))
    loc, raw_scale = encoded.split(LATENT, -1)
    log_q_z = log_normal(z, loc, F.softplus(raw_scale) + guide.min_scale)
    return log_p_z + log_p_y + log_p_x - log_q_z


@pytest.mark.parametrize("spec", [SPEC, CONV_SPEC], ids=["mlp", "conv"])
def test_enumeration_equals_the_explicit_sum_over_classes(spec):
    model, guide = tiny_pair(spec)
    x = torch.bernoulli(torch.full((5, spec.x_dim), 0.4))
    store = {}
    loss = TraceEnum_ELBO(max_plate_nesting=1).loss(model, recording(guide, store), x)
    z = store["trace"].nodes["z"]["value"]
    assert z.shape == (K, 5, LATENT)  # one z per class and row: y was enumerated, not sampled
    log_q_y = torch.log_softmax(model.classifier(x), -1)
    # U(x) = sum_k q(k|x) [log p(x, k, z_k) - log q(z_k | x, k) - log q(k|x)]
    per_class = [labelled_elbo(model, guide, x, torch.tensor(k), z[k]) for k in range(K)]
    elbo = sum(log_q_y[:, k].exp() * (per_class[k] - log_q_y[:, k]) for k in range(K))
    assert loss == pytest.approx(-float(elbo.sum().detach()), rel=1e-5)


@pytest.mark.parametrize("spec", [SPEC, CONV_SPEC], ids=["mlp", "conv"])
def test_labelled_rows_observe_y_and_add_the_scaled_auxiliary_term(spec):
    model, guide = tiny_pair(spec)
    x = torch.bernoulli(torch.full((4, spec.x_dim), 0.6))
    y = torch.tensor([0, 2, 1, 2])
    weight = torch.full((4,), 0.25)
    store = {}
    loss = Trace_ELBO().loss(model, recording(guide, store), x, y, weight)
    assert "y" not in store["trace"].nodes  # observed: the guide does not sample it
    z = store["trace"].nodes["z"]["value"]
    log_q_y = torch.log_softmax(model.classifier(x), -1).gather(-1, y[:, None]).squeeze(-1)
    elbo = labelled_elbo(model, guide, x, y, z) + model.alpha * log_q_y
    assert loss == pytest.approx(-float((weight * elbo).sum().detach()), rel=1e-5)


def test_pair_shares_the_classifier_and_its_sites():
    model, guide = tiny_pair()
    assert guide.classifier is model.classifier
    unlabelled = check_pair(model, guide, torch.zeros(2, D))
    assert unlabelled.latent_sites == ["y", "z"] and unlabelled.enumerated_sites == ["y"]
    labelled = check_pair(model, guide, torch.zeros(2, D), torch.tensor([0, 1]))
    assert labelled.latent_sites == ["z"] and labelled.enumerated_sites == []


def test_label_split_is_class_balanced_seeded_and_a_partition():
    y = torch.randint(0, 10, (600,), generator=torch.Generator().manual_seed(3))
    labelled, unlabelled = balanced_label_split(y, 50, 10, seed=0)
    assert torch.bincount(y[labelled], minlength=10).tolist() == [5] * 10
    assert torch.equal(torch.sort(torch.cat([labelled, unlabelled])).values, torch.arange(600))
    again, _ = balanced_label_split(y, 50, 10, seed=0)
    other, _ = balanced_label_split(y, 50, 10, seed=1)
    assert torch.equal(labelled, again)
    assert not torch.equal(labelled, other)


@pytest.mark.parametrize(
    "labels, words",
    [
        (-1, ["--labels must be positive", "multiple of 10"]),
        (0, ["--labels must be positive"]),
        (15, ["--labels 15", "multiple of 10", "e.g. 10 or 20"]),
        (10_000, ["--labels 10000", "more than the 600", "at most 600"]),
    ],
)
def test_bad_label_counts_are_one_line_errors(labels, words):
    y = torch.arange(600) % 10
    with pytest.raises(PyrovaeError) as info:
        balanced_label_split(y, labels, 10, seed=0)
    message = str(info.value)
    assert len(message.splitlines()) == 1, message
    for word in words:
        assert word in message, (word, message)


def test_a_class_too_small_for_its_share_is_an_error():
    y = torch.cat([torch.zeros(50), torch.ones(3)]).long()
    with pytest.raises(PyrovaeError, match="class 1 has only 3"):
        balanced_label_split(y, 10, 2, seed=0)


def test_batches_interleave_and_weigh_labelled_rows_once_per_epoch():
    x_l, y_l = torch.rand(7, D), torch.arange(7) % K
    x_u = torch.rand(45, D)
    batches = SemiSupervisedBatches(x_l, y_l, x_u, batch_size=10, seed=4)
    epoch = list(batches.epoch(2))
    assert len(epoch) == len(batches) == 10
    assert [len(args) for args in epoch] == [1, 3] * 5  # unlabelled, labelled, ...
    seen = torch.cat([args[0] for args in epoch[::2]])
    assert torch.equal(seen.sort(0).values, x_u.sort(0).values)  # every unlabelled row once
    weights = torch.cat([args[2] for args in epoch[1::2]])
    assert float(weights.sum()) == pytest.approx(7)  # labelled rows count once per epoch
    for x, y, _ in epoch[1::2]:
        rows = (x[:, None] == x_l[None]).all(-1).float().argmax(-1)
        assert torch.equal(y, y_l[rows])
    for first, again in zip(epoch, batches.epoch(2), strict=True):  # seeded: same batches
        assert all(torch.equal(a, b) for a, b in zip(first, again, strict=True))


def test_with_more_labelled_than_unlabelled_rows_both_count_once_per_epoch():
    """45 labelled, 7 unlabelled rows, batches of 10: five pairs, so that every labelled row
    is visited; the unlabelled rows are revisited and weighed down to count once in all."""
    x_l, y_l = torch.rand(45, D), torch.arange(45) % K
    x_u = torch.rand(7, D)
    batches = SemiSupervisedBatches(x_l, y_l, x_u, batch_size=10, seed=1)
    epoch = list(batches.epoch(0))
    assert len(epoch) == len(batches) == 10
    unlabelled, labelled = epoch[::2], epoch[1::2]
    assert all(y is None and x.shape[0] == 7 for x, y, _ in unlabelled)
    assert float(sum(w.sum() for _, _, w in unlabelled)) == pytest.approx(7)
    assert float(sum(w.sum() for _, _, w in labelled)) == pytest.approx(45)
    drawn = torch.cat([x for x, _, _ in labelled])
    assert torch.equal(drawn.unique(dim=0), x_l.unique(dim=0))  # every labelled row visited


# --------------------------------------------------------------------------- command line

TINY = ["--model", "ssvae", "--epochs", "2", "--quiet", "--hidden", "16", "--latent-dim", "2"]


@pytest.mark.parametrize(
    "extra, words",
    [
        (["--labels", "-1"], ["--labels", "positive"]),
        (["--labels", "15"], ["--labels 15", "multiple of 10"]),
        (["--labels", "5000"], ["--labels 5000", "more than"]),
        (["--dataset", "spiral"], ["ssvae", "labels"]),
        (["--elbo", "meanfield"], ["--elbo enum"]),
        (["--elbo", "jit-enum"], ["--elbo enum"]),
    ],
)
def test_bad_options_are_one_error_line_before_any_run_folder(extra, words, tmp_path, capsys):
    run = tmp_path / "run"
    code, _, err = run_cli([*TINY, *extra, "--out", run], capsys)
    assert_one_error_line(code, err, *words)
    assert not (run / "checkpoint.pt").exists()


@pytest.mark.slow
def test_negative_labels_in_a_real_process(tmp_path):
    proc = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "train_svi.py"), *TINY, "--labels", "-1"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"},
        timeout=120,
    )
    assert_one_error_line(proc.returncode, proc.stderr, "--labels")


def test_short_run_writes_accuracies_and_figures(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(ssvae_recipe, "BASELINE_MAX_EPOCHS", 20)
    drawn = keep_figures(monkeypatch, ssvae_plots)
    run = tmp_path / "run"
    code, _, err = run_cli([*TINY, "--labels", "50", "--out", run], capsys)
    assert code == 0, err
    summary = json.loads((run / "summary.json").read_text())
    assert summary["elbo"] == "enum" and summary["labels"] == 50
    # The default alpha = 0.3 D N / n_l: the classification term weighs 0.3 nats per pixel
    # of each of the N training rows (digits: 1437 training images, 10% held out), for any n_l.
    rows = 1437 - round(0.1 * 1437)
    assert summary["alpha"] == pytest.approx(0.3 * 64 * rows / 50)
    for key in ("test_accuracy", "baseline_accuracy", "val_accuracy", "test_accuracy_binarized"):
        assert 0 <= summary[key] <= 1, key
    assert summary["baseline_epochs"] <= 20
    for name in ("analogies.png", "confusion_matrix.png", "accuracy.png", "samples.png"):
        assert (run / name).stat().st_size > 0, name
    # The figures show what summary.json reports.
    assert summary["figures"][-3:] == ["accuracy.png", "confusion_matrix.png", "analogies.png"]
    (ax,) = drawn["accuracy.png"].axes
    _, test, baseline, kept = ax.lines
    assert list(test.get_xdata()) == [1, 2]
    tested = dict(zip(test.get_xdata(), test.get_ydata(), strict=True))
    assert tested[summary["best_epoch"]] == pytest.approx(summary["test_accuracy"])
    assert list(baseline.get_ydata()) == [summary["baseline_accuracy"]] * 2
    assert list(kept.get_xdata()) == [summary["best_epoch"]] * 2
    ax = drawn["confusion_matrix.png"].axes[0]
    assert ax.images[0].get_array().sum(1).tolist() == pytest.approx([1.0] * 10)
    assert sum(int(text.get_text()) for text in ax.texts) == summary["num_test"]
    assert ax.get_title() == f"Confusion matrix (accuracy {summary['test_accuracy']:.3f})"
    (ax,) = drawn["analogies.png"].axes
    rows = [text.get_text() for text in ax.get_yticklabels()]
    assert rows == ["input (z)", *(f"y = {c}" for c in range(10))]
    assert ax.images[0].get_array().shape[0] == 11 * (8 + 2) + 2  # 11 rows of 8x8 digits
    header = (run / "metrics.csv").read_text().splitlines()[0]
    assert "val_accuracy" in header and "test_accuracy" in header


def test_the_run_keeps_the_epoch_with_the_best_validation_accuracy(tmp_path, monkeypatch):
    """The ssvae keeps (and patience watches) q(y|x)'s validation accuracy, ties broken by
    the validation ELBO: the parameters restored at the end classify the validation rows as
    that epoch's row of metrics.csv says, not as the best-ELBO epoch's."""
    monkeypatch.setattr(ssvae_recipe, "BASELINE_MAX_EPOCHS", 2)
    run = pyrovae.train(
        model="ssvae", labels=50, epochs=6, patience=0, hidden=(16,), latent_dim=2,
        lr=1e-2, seed=0, quiet=True, out=str(tmp_path / "run"),
    )  # fmt: skip
    history, summary = run.history, run.summary
    scores = [(r["val_accuracy"], r["val_elbo"]) for r in history]
    kept = max(range(len(history)), key=scores.__getitem__) + 1
    assert summary["best_epoch"] == kept
    # In this run the validation ELBO peaks later than the accuracy, which tells them apart.
    assert kept != max(history, key=lambda r: r["val_elbo"])["epoch"]
    assert summary["val_accuracy"] == history[kept - 1]["val_accuracy"] == max(scores)[0]
    assert summary["test_accuracy"] == history[kept - 1]["test_accuracy"]
    assert "val_accuracy then val_elbo" in summary["taken_at"]
    # An unfinished run's report (no summary.json yet) marks the same epoch from metrics.csv.
    (tmp_path / "run" / "summary.json").unlink()
    page = render_report(tmp_path / "run")
    assert f"marks epoch {kept}, the best validation accuracy then validation ELBO." in page


# --------------------------------------------------------------------------- figures of a run


def test_figures_decode_the_class_q_predicts_and_each_class_row_its_own(tmp_path, monkeypatch):
    """reconstructions.png, interpolation.png and classes.png of a trained ssvae, read back
    from the figures drawn and computed again here from the networks themselves."""
    import numpy as np

    import pyrovae
    from pyrovae.plots import run as run_plots
    from tests.test_plots import as_images, tiled

    monkeypatch.setattr(ssvae_recipe, "BASELINE_MAX_EPOCHS", 2)
    drawn = keep_figures(monkeypatch, run_plots)
    drawn_ssvae = keep_figures(monkeypatch, ssvae_plots)
    k, classes = 3, 10
    run = pyrovae.train(
        model="ssvae", labels=50, epochs=2, hidden=(16,), latent_dim=k, lr=1e-2, seed=3,
        quiet=True, out=str(tmp_path / "run"),
    )  # fmt: skip
    model, guide = run.model, run.guide

    def one_hot(y):
        return F.one_hot(y, classes).float()

    def q_loc(x, y):  # the mean of q(z | x, y)
        return guide.encoder(torch.cat([x, one_hot(y)], -1)).split(k, -1)[0]

    def bernoulli_mean(z, y):  # E[x | y, z]
        return torch.sigmoid(model.decoder(torch.cat([z, one_hot(y)], -1)))

    def shown(name, kept=drawn):
        (ax,) = kept[name].axes
        labels = [t.get_text() for t in ax.get_yticklabels()]
        return ax.images[0].get_array().data, labels

    figures = run.summary["figures"]
    assert {"reconstructions.png", "interpolation.png", "classes.png"} <= set(figures)
    with torch.no_grad():
        # Reconstructions: the gray-level test rows, decoded at y = argmax q(y|x), z = its mean.
        x = run.data.x_test_gray[:16]
        y = model.classifier(x).argmax(-1)
        recon = bernoulli_mean(q_loc(x, y), y)
        pixels, _ = shown("reconstructions.png")
        np.testing.assert_allclose(pixels, tiled(as_images(torch.cat([x, recon])), 16), atol=1e-6)
        wrong = (y + 1) % classes  # another class gives other images: the check has teeth
        other = tiled(as_images(torch.cat([x, bernoulli_mean(q_loc(x, wrong), wrong)])), 16)
        assert np.abs(other - pixels).max() > 1e-2

        # Interpolation: from the first test row to the first of another class, each row
        # decoded with one of the two predicted classes.
        x_test, y_test = run.data.x_test_gray, run.data.y_test
        ends = x_test[[0, int((y_test != y_test[0]).nonzero()[0])]]
        y_ends = model.classifier(ends).argmax(-1)
        z_ends = q_loc(ends, y_ends)
        w = torch.linspace(0, 1, 10).unsqueeze(-1)
        path = (1 - w) * z_ends[0] + w * z_ends[1]
        rows = list(dict.fromkeys(y_ends.tolist()))
        decoded = torch.cat([bernoulli_mean(path, torch.full((10,), c)) for c in rows])
        pixels, labels = shown("interpolation.png", drawn_ssvae)
        np.testing.assert_allclose(pixels, tiled(as_images(decoded), 10), atol=1e-6)
        assert labels == [f"y = {c}" for c in rows]

        # classes.png: row c decodes the same 10 prior draws of z with y = c.
        z = torch.randn(10, k, generator=torch.Generator().manual_seed(3))
        samples = torch.stack([bernoulli_mean(z, torch.full((10,), c)) for c in range(classes)])
        pixels, labels = shown("classes.png", drawn_ssvae)
        np.testing.assert_allclose(pixels, tiled(as_images(samples.reshape(-1, 64)), 10), atol=1e-6)
        assert labels == [f"y = {c}" for c in range(classes)]
        assert all((samples[c] - samples[0]).abs().max() > 1e-3 for c in range(1, classes))


@pytest.mark.parametrize("labels", [20, 100, 1000])
def test_default_alpha_gives_the_labels_the_same_total_weight_for_any_count(labels):
    """alpha * n_l = 0.3 D N: the classification term weighs 0.3 nats per pixel of every
    training row, however many rows are labelled; without --labels, n_l = 10 per class."""
    spec = ModelSpec(x_dim=784, latent_dim=2, hidden=(8,), num_classes=10, num_data=54_000)
    model = SSVAE(replace(spec, options={"labels": labels}))
    assert model.alpha * labels == pytest.approx(0.3 * 784 * 54_000)
    assert SSVAE(spec).alpha == pytest.approx(0.3 * 784 * 54_000 / 100)
    assert SSVAE(replace(spec, options={"labels": labels, "alpha": 3.0})).alpha == 3.0


def test_fresh_copy_draws_new_weights_for_the_same_architecture():
    original = mlp([6, 8, 3])
    torch.manual_seed(5)
    built = mlp([6, 8, 3])
    torch.manual_seed(5)
    copied = ssvae_recipe.fresh_copy(original)
    # For an MLP the draws are those of building it: the baseline of an MLP run is unchanged.
    for a, b in zip(built.parameters(), copied.parameters(), strict=True):
        assert torch.equal(a, b)
    conv = ConvEncoder((4, 4), (8,), 3)
    fresh = ssvae_recipe.fresh_copy(conv)
    assert isinstance(fresh, ConvEncoder)
    for a, b in zip(conv.parameters(), fresh.parameters(), strict=True):
        assert a.shape == b.shape and not torch.equal(a, b)


def test_conv_networks_train_the_ssvae_and_its_baseline(tmp_path, monkeypatch):
    monkeypatch.setattr(ssvae_recipe, "BASELINE_MAX_EPOCHS", 20)
    run = pyrovae.train(
        model="ssvae", net="conv", labels=100, epochs=2, hidden=(64,), quiet=True,
        out=str(tmp_path / "run"),
    )  # fmt: skip
    assert isinstance(run.model.classifier, ConvEncoder)
    assert isinstance(run.model.decoder, ConvDecoder)
    assert isinstance(run.guide.encoder, ConvEncoder)
    # Ten classes of digits: chance is 0.1 (here 0.73 and, after 20 short epochs, 0.63).
    assert run.summary["test_accuracy"] > 0.6
    assert run.summary["baseline_accuracy"] > 0.4
