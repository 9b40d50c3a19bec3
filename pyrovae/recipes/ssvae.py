"""The recipe of the semi-supervised VAE (M2): labelled rows, interleaved batches, accuracies.

``--labels N`` keeps the labels of N training rows, N/K per class, drawn with the run's seed
after the validation split; the other training rows are unlabelled. Each unlabelled batch
``(x,)`` (``(x, None, weight)`` when its rows are revisited) is followed by a labelled batch
``(x, y, weight)`` (see :class:`~pyrovae.data.labels.SemiSupervisedBatches`). The kept epoch is
the one with the best validation accuracy (``select_by``). After every epoch the validation and test
accuracy of q(y|x) join the metrics; the report adds the accuracy of the same classifier
network trained on the N labelled rows alone (the baseline) and its figures:
``reconstructions.png`` and ``interpolation.png`` decoded with the class q(y|x) predicts
(drawn here, not by the base recipe, whose traces would draw y from its prior),
``classes.png``, ``analogies.png``, ``confusion_matrix.png`` and ``accuracy.png``.

Classifiers trained on dynamically binarized batches are scored on the gray-level held-out
images (the mean of the binarizations they were trained on); ``*_binarized`` accuracies score
the one fixed binarization that the held-out ELBOs use.
"""

import math
from copy import deepcopy
from pathlib import Path

import torch
from torch import nn

from pyrovae import plots
from pyrovae.data.labels import SemiSupervisedBatches, balanced_label_split, check_num_labels
from pyrovae.errors import PyrovaeError
from pyrovae.inference.classifier import accuracy, predict, train_classifier
from pyrovae.inference.runner import best_epoch
from pyrovae.models.ssvae import DEFAULT_KAPPA, DEFAULT_LABELS_PER_CLASS
from pyrovae.plots import ssvae as ssvae_plots
from pyrovae.recipes.base import Recipe, RecipeOption, Report
from pyrovae.recipes.figures import interpolate, interpolation_ends

BASELINE_MAX_EPOCHS = 3000
BASELINE_PATIENCE = 200
"""The supervised-only baseline trains for at most this many passes over the labelled rows
and stops after ``BASELINE_PATIENCE`` passes without a better validation accuracy."""


def _nonnegative(value) -> str | None:
    return (
        None
        if math.isfinite(value) and value >= 0
        else f"must be a finite number >= 0, got {value}"
    )


class SSVAERecipe(Recipe):
    """``--model ssvae``: guide ``ssvae`` (q(y|x) q(z|x, y)), two hidden layers of 256."""

    default_guide = "ssvae"
    network = {"hidden": (256, 256)}
    # Drawn by report() with the class q(y|x) predicts; from traces alone, y is a prior draw.
    own_figures = ("reconstructions.png", "interpolation.png")
    # Kept epoch and patience: the validation accuracy of q(y|x), the baseline's own rule;
    # ties (frequent on small validation sets) go to the better validation ELBO.
    select_by = ("val_accuracy", "val_elbo")
    options = (
        RecipeOption(
            "labels",
            int,
            None,
            f"ssvae: labelled training rows, class-balanced (default {DEFAULT_LABELS_PER_CLASS} "
            "per class)",
        ),
        RecipeOption(
            "alpha",
            float,
            None,
            "ssvae: weight of the auxiliary classification loss per labelled example "
            f"(default {DEFAULT_KAPPA:g} D N / n_l: D pixels, N training rows, n_l labelled "
            "rows; see pyrovae.models.ssvae)",
            _nonnegative,
        ),
    )

    @staticmethod
    def num_labels(data, config) -> int:
        classes = data.dataset.num_classes
        labels = config.options.get("labels")
        if labels is None:
            labels = DEFAULT_LABELS_PER_CLASS * classes
        return check_num_labels(labels, classes, data.x_train.shape[0])

    def label_split(self, data, config) -> tuple[torch.Tensor, torch.Tensor]:
        """``(labelled, unlabelled)`` row indices of ``data.x_train``: class-balanced, seeded."""
        if data.y_train is None:
            raise PyrovaeError("the ssvae model needs y_train labels; the data set has none")
        return balanced_label_split(
            data.y_train, self.num_labels(data, config), data.dataset.num_classes, config.seed
        )

    def batches(self, data, config, device) -> SemiSupervisedBatches:
        labelled, unlabelled = self.label_split(data, config)
        x, y = data.x_train, data.y_train
        return SemiSupervisedBatches(
            x[labelled].to(device),
            y[labelled].to(device),
            x[unlabelled].to(device),
            config.batch_size,
            seed=config.seed,
            transform=data.batch_transform,
        )

    def epoch_metrics(self, model, guide, data, config) -> dict:
        x_val, x_test = classifier_inputs(data, _device(model))
        # One pass of the classifier over the validation and test rows together.
        rows = torch.cat([x_val, x_test])
        predicted = predict(model.classifier, rows, batch_size=max(1, rows.shape[0]))
        return {
            "val_accuracy": _hits(predicted[: x_val.shape[0]], data.y_val),
            "test_accuracy": _hits(predicted[x_val.shape[0] :], data.y_test),
        }

    def report(self, model, guide, data, config, out_dir, history) -> Report:

        report = super().report(model, guide, data, config, out_dir, history)
        out_dir = Path(out_dir)
        device = _device(model)
        x_val, x_test = classifier_inputs(data, device)
        summary = report.summary
        summary.update(
            labels=self.num_labels(data, config),
            alpha=model.alpha,
            val_accuracy=accuracy(model.classifier, x_val, data.y_val),
            test_accuracy=accuracy(model.classifier, x_test, data.y_test),
        )
        if data.x_test_gray is not None:
            binary = data.x_test.to(device)
            summary["test_accuracy_binarized"] = accuracy(model.classifier, binary, data.y_test)
        summary.update(self.train_baseline(model, data, config))
        figures = report.figures
        figures += class_figures(model, guide, data, config.seed, x_test, out_dir)
        if history:
            figures.append(
                ssvae_plots.plot_accuracy_curves(
                    history,
                    out_dir / "accuracy.png",
                    summary["baseline_accuracy"],
                    best_epoch(history, self.select_by),
                )
            )
        if data.y_test is not None and data.y_test.shape[0]:
            y_pred = predict(model.classifier, x_test).cpu()
            figures.append(
                ssvae_plots.plot_confusion_matrix(
                    data.y_test,
                    y_pred,
                    model.num_classes,
                    out_dir / "confusion_matrix.png",
                    class_names=data.dataset.class_names,
                )
            )
        if data.dataset.image_shape is not None:
            sources, generated = analogies(model, guide, x_test, data.y_test)
            figures.append(
                ssvae_plots.plot_analogies(
                    sources.cpu(),
                    generated.cpu(),
                    data.dataset.image_shape,
                    out_dir / "analogies.png",
                    class_names=data.dataset.class_names,
                )
            )
        return report

    def train_baseline(self, model, data, config) -> dict:
        """The same classifier architecture, trained on the labelled rows alone.

        Fresh weights drawn with the run's seed, the same labelled rows (and dynamic
        binarization) as the ssvae, Adam with the run's batch size and learning rate, early
        stopping on the same validation rows.
        """
        labelled, _ = self.label_split(data, config)
        device = _device(model)
        x_val, x_test = classifier_inputs(data, device)
        # Its own seeded random stream (initial weights, shuffles, binarizations): the same
        # baseline for the same seed and labels, whatever the ssvae's training drew.
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            torch.manual_seed(config.seed)
            network = fresh_copy(model.classifier)
            fit = train_classifier(
                network,
                data.x_train[labelled].to(device),
                data.y_train[labelled].to(device),
                x_val,
                None if data.y_val is None else data.y_val.to(device),
                batch_size=config.batch_size,
                lr=config.lr,
                seed=config.seed,
                transform=data.batch_transform,
                max_epochs=BASELINE_MAX_EPOCHS,
                patience=BASELINE_PATIENCE,
            )
        scores = {"baseline_accuracy": accuracy(network, x_test, data.y_test)}
        if data.x_test_gray is not None:
            binary = data.x_test.to(device)
            scores["baseline_accuracy_binarized"] = accuracy(network, binary, data.y_test)
        return {
            **scores,
            "baseline_val_accuracy": fit.val_accuracy,
            "baseline_epochs": fit.epochs,
            "baseline_best_epoch": fit.best_epoch,
            "baseline_seconds": fit.seconds,
        }


def fresh_copy(network: nn.Module) -> nn.Module:
    """A copy of ``network`` with every layer's parameters drawn anew from the global random
    stream (``reset_parameters``, in module order: for an MLP the draws of building it)."""
    fresh = deepcopy(network)
    for module in fresh.modules():
        if hasattr(module, "reset_parameters"):
            module.reset_parameters()
    return fresh


CLASS_SAMPLES = 10
"""Columns of classes.png: prior draws of z, each decoded with every class."""


def class_figures(model, guide, data, seed: int, x: torch.Tensor, out_dir) -> list[Path]:
    """``reconstructions.png`` and ``interpolation.png`` decoded with the class q(y|x)
    predicts (:func:`predicted_codes`), and, for images, ``classes.png``
    (:func:`class_samples`), written into ``out_dir``.

    :param x: ``(n, D)`` test rows as the classifier takes them (:func:`classifier_inputs`).
    """

    out_dir = Path(out_dir)
    shape = data.dataset.image_shape
    names = data.dataset.class_names or range(model.num_classes)
    names = [f"y = {name}" for name in names]
    shown = x[:16]
    written = [
        plots.plot_reconstructions(
            shown.cpu(), reconstructions(model, guide, shown).cpu(), shape,
            out_dir / "reconstructions.png",
        )
    ]  # fmt: skip
    ends = list(interpolation_ends(None if data.y_test is None else data.y_test))
    classes, decoded = class_interpolation(model, guide, x[ends])
    path = out_dir / "interpolation.png"
    if shape is None:
        title = f"Latent interpolation, {names[classes[0]]}"
        written.append(plots.plot_interpolation(decoded[0].cpu(), None, path, title=title))
        return written
    xlabel = "z from the mean of q(z|x, y) of one test row (left) to another's (right)"
    written.append(
        ssvae_plots.plot_class_rows(
            decoded.cpu(), shape, [names[c] for c in classes], path,
            title="Latent interpolation", xlabel=xlabel,
        )
    )  # fmt: skip
    _, generated = class_samples(model, CLASS_SAMPLES, seed)
    written.append(
        ssvae_plots.plot_class_rows(
            generated.cpu(), shape, names, out_dir / "classes.png",
            title="Samples per class", xlabel="z drawn from the prior (the same z in a column)",
        )
    )  # fmt: skip
    return written


@torch.no_grad()
def predicted_codes(model, guide, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(y, z)`` of rows ``x: (n, D)``: the class q(y|x) predicts (its argmax), ``(n,)``,
    and the mean of q(z | x, y) at that class, ``(n, k)``."""
    y = model.classifier(x).argmax(-1)
    z, _ = guide.encode(x, y)
    return y, z


@torch.no_grad()
def reconstructions(model, guide, x: torch.Tensor) -> torch.Tensor:
    """``E[x | y, z]`` at the predicted class and the mean of q(z | x, y): ``(n, D)``."""
    y, z = predicted_codes(model, guide, x)
    return model.generate(z, y)


@torch.no_grad()
def class_interpolation(model, guide, ends: torch.Tensor, steps: int = 10):
    """``(classes, decoded)``: the straight line from z_a to z_b, the means of q(z | x, y) of
    the two rows ``ends: (2, D)`` at their predicted classes y_a, y_b, decoded with each of
    these classes (one row each; one row when they agree): ``decoded: (R, steps, D)``."""

    y, z = predicted_codes(model, guide, ends)
    classes = list(dict.fromkeys(int(c) for c in y))
    rows = torch.tensor(classes, device=z.device).unsqueeze(-1)
    return classes, model.generate(interpolate(z, None, steps), rows)


@torch.no_grad()
def class_samples(model, per_class: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(z, x)``: ``per_class`` draws ``z: (n, k)`` from the prior N(0, I) (a generator
    seeded with ``seed``) and ``E[x | y = k, z_j]`` for every class: ``x: (K, n, D)``."""
    device = _device(model)
    z = torch.randn(per_class, model.latent_dim, generator=torch.Generator().manual_seed(seed))
    labels = torch.arange(model.num_classes, device=device).unsqueeze(-1)
    return z, model.generate(z.to(device), labels)


@torch.no_grad()
def analogies(model, guide, x: torch.Tensor, y: torch.Tensor | None, columns: int = 10):
    """Sources ``(n, D)`` and ``E[x | y = k, z_j]`` as ``(K, n, D)`` for the analogies grid.

    The sources are the first test row of each class (as far as ``columns`` allows), and
    ``z_j`` is the mean of q(z | x_j, y_j) at the class q(y|x) predicts for x_j.
    """
    classes = model.num_classes
    rows = list(range(min(columns, x.shape[0])))
    if y is not None:
        firsts = [int((y == c).nonzero()[0]) for c in range(classes) if (y == c).any()]
        rows = (firsts + [r for r in range(x.shape[0]) if r not in firsts])[:columns]
    sources = x[rows]
    z, _ = guide.encode(sources, model.classifier(sources).argmax(-1))
    labels = torch.arange(classes, device=x.device).unsqueeze(-1)
    return sources, model.generate(z, labels)


def classifier_inputs(data, device) -> tuple[torch.Tensor, torch.Tensor]:
    """The validation and test rows a classifier is scored on, ``(n_val, D)``, ``(n_test, D)``:
    the gray-level images under dynamic binarization, else the rows the model sees."""
    x_val = data.x_val if data.x_val_gray is None else data.x_val_gray
    x_test = data.x_test if data.x_test_gray is None else data.x_test_gray
    return x_val.to(device), x_test.to(device)


def _hits(predicted: torch.Tensor, y: torch.Tensor | None) -> float:
    """Fraction of ``predicted: (n,)`` equal to the labels ``y: (n,)``; NaN without labels."""
    if y is None or y.shape[0] == 0:
        return math.nan
    return float((predicted.cpu() == y.cpu()).double().mean())


def _device(model) -> torch.device:
    return next(model.parameters()).device
