"""Semi-supervised VAE: M2 of Kingma, Rezende, Mohamed & Welling (2014), as a Pyro pair.

Model:  y ~ Cat(1/K),  z ~ N(0, I_k),  x ~ p(x | decoder(z, onehot(y)))
Guide:  q(y | x) = Cat(softmax(classifier(x))),  q(z | x, y) = N(loc(x, y), diag(scale(x, y)^2))

Both take ``(x, y=None, weight=None)`` with ``x: (batch, D)``, ``y: (batch,)`` int64 labels
and ``weight: (batch,)`` per-row loss weights. A labelled row observes ``y``; for an
unlabelled row the guide's ``"y"`` site is configured for enumeration
(``config_enumerate``), so ``TraceEnum_ELBO`` sums it out exactly. The networks are MLPs, or
with ``spec.net == "conv"`` convolutional (:mod:`pyrovae.models.networks`): the classifier,
the encoder (the label joins its MLP head) and the decoder (the label joins its first layer).

Objective (nats, summed over the N training rows; higher is better)::

    J = sum_{x unlabelled} U(x) + sum_{(x, y) labelled} [ L(x, y) + alpha * log q(y | x) ]

    L(x, y) = E_q(z|x,y)[ log p(x, y, z) - log q(z | x, y) ]
    U(x)    = sum_y q(y | x) [ L(x, y) - log q(y | x) ]        (y enumerated, not sampled)

``alpha * log q(y|x)`` is the paper's auxiliary classification term, which trains q(y|x) on
the labels (L(x, y) does not involve it). It is the observed site ``"y_aux"`` of the model
under ``poutine.scale(alpha)``, so the one ELBO the runner optimizes is ``-J``.

**Scaling convention.** ``alpha`` (``spec.options["alpha"]``) is the weight *per labelled
example*, in the same units as one example's ELBO. The paper writes the term as
``alpha' * E_labelled[log q(y|x)]``, a mean over the n_l labelled rows, with
``alpha' = 0.1 N`` (N training rows), i.e. ``alpha = 0.1 N / n_l`` per example.

**The default** (:func:`default_alpha`) is ``alpha = kappa * D * N / n_l`` for rows of width
D, with ``kappa = DEFAULT_KAPPA``. Its derivation: for an unlabelled row, U(x) pulls q(y|x)
towards the model's own posterior over classes, ``softmax_y L(x, y)``, with a force set by
how much L(x, y) differs between classes, a log-likelihood of D pixels, so O(D) nats per
row; summed over the N rows, O(D N). The labels must pull at least as hard for the classes
of q(y|x) to stay the labelled ones rather than clusters of the decoder, and their pull is
``alpha * n_l`` times a cross-entropy of order one. Hence ``alpha * n_l = kappa D N``: the
whole classification term weighs ``kappa`` nats per pixel of every training row, whatever
the number of labels. The paper's ``0.1 N / n_l`` is this with ``kappa D = 0.1``, a weight
that leaves q(y|x) to the decoder's clusters once those differ from the classes (as on
Fashion-MNIST). The sweep that chose ``kappa`` is ``benchmarks/ssvae_alpha.py``; its table
is in the README.

``weight`` scales both programs' log densities per row (``poutine.scale``): the batches of
the ssvae recipe give each labelled row the weight ``n_l / (labelled rows drawn per
epoch)``, so that an epoch's losses estimate ``-J`` without bias.
"""

import math

import pyro
import pyro.distributions as dist
import pyro.poutine as poutine
import torch
import torch.nn.functional as F
from pyro.infer import config_enumerate
from torch import nn

from pyrovae.errors import PyrovaeError
from pyrovae.models.likelihoods import likelihood_for
from pyrovae.models.networks import ConvDecoder, ConvEncoder, decoder_network, encoder_network
from pyrovae.models.spec import ModelSpec

DEFAULT_KAPPA = 0.3
"""Weight of the whole classification term per pixel of every training row (module notes)."""

DEFAULT_LABELS_PER_CLASS = 10
"""``--labels`` defaults to this many labelled rows per class (100 for 10 classes)."""


def default_alpha(x_dim: int, num_data: int, num_labels: int) -> float:
    """Weight of ``log q(y|x)`` per labelled example when ``--alpha`` is not given:
    ``kappa * D * N / n_l`` for rows of width D, N training rows and n_l labelled ones."""
    return DEFAULT_KAPPA * x_dim * num_data / num_labels


def _joined_mlp(net: nn.Sequential, a: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``net([a, onehot(y)])``, broadcasting the batch dimensions of ``a: (..., n)`` and the
    labels ``y: (...)`` (observed, or the ``(K, 1)`` enumerated values).

    The first layer's product is split as ``W [a; onehot(y)] = W_a a + W_y[:, y]``: ``W_a a``
    once per row, not once per enumerated class, and a column lookup for the label. Written
    by hand because it halves the guide's work under enumeration (``a = x`` is the widest
    input); the result equals ``net`` applied to the concatenation.
    """
    first, rest = net[0], net[1:]
    n = a.shape[-1]
    hidden = F.linear(a, first.weight[:, :n], first.bias) + first.weight[:, n:].T[y]
    return rest(hidden)


def _decode(decoder: nn.Module, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``decoder([z, onehot(y)])`` for an MLP or a :class:`ConvDecoder` (whose MLP head takes
    the joined input), broadcasting as :func:`_joined_mlp` does."""
    if isinstance(decoder, ConvDecoder):
        head, activation = decoder.head
        return decoder.expand(activation(_joined_mlp(head, z, y)))
    return _joined_mlp(decoder, z, y)


def _scale(weight: torch.Tensor | None):
    return poutine.scale(scale=1.0 if weight is None else weight)


class SSVAE(nn.Module):
    """The generative model p(y) p(z) p(x | y, z) plus the auxiliary term alpha log q(y|x).

    ``spec.num_classes`` is K; ``spec.options["alpha"]`` the weight of the auxiliary term
    (default :func:`default_alpha`). The classifier q(y|x) lives here and the guide shares
    it: the model needs it for the auxiliary site.
    """

    latent_site = "z"
    obs_site = "x"

    def __init__(self, spec: ModelSpec):
        super().__init__()
        if not spec.num_classes:
            raise PyrovaeError(
                "the ssvae model needs class labels but the data set has none; use digits, "
                "mnist, fashion-mnist or an .npz file with y_train and y_test"
            )
        self.num_classes = spec.num_classes
        self.latent_dim = spec.latent_dim
        options = spec.options or {}
        alpha = options.get("alpha")
        if alpha is None:
            labels = options.get("labels")
            if not labels or labels < 1:  # a bad count is the recipe's to report
                labels = DEFAULT_LABELS_PER_CLASS * self.num_classes
            rows = spec.num_data if spec.num_data else labels
            alpha = default_alpha(spec.x_dim, rows, labels)
        self.alpha = float(alpha)
        if not (math.isfinite(self.alpha) and self.alpha >= 0):
            raise PyrovaeError(f"--alpha must be a finite number >= 0, got {alpha}")
        self.classifier = encoder_network(spec, spec.x_dim, self.num_classes)
        self.decoder = decoder_network(spec, spec.latent_dim + self.num_classes)
        self.likelihood = likelihood_for(spec)

    def forward(
        self, x: torch.Tensor, y: torch.Tensor | None = None, weight: torch.Tensor | None = None
    ) -> None:
        labelled = y is not None
        k, classes = self.latent_dim, self.num_classes
        with pyro.plate("data", x.shape[0]), _scale(weight):
            z = pyro.sample("z", dist.Normal(x.new_zeros(k), x.new_ones(k)).to_event(1))
            y = pyro.sample("y", dist.Categorical(logits=x.new_zeros(classes)), obs=y)
            pyro.sample("x", self.likelihood(_decode(self.decoder, z, y)), obs=x)
            if labelled and self.alpha > 0:
                with poutine.scale(scale=self.alpha):
                    pyro.sample("y_aux", dist.Categorical(logits=self.classifier(x)), obs=y)

    @torch.no_grad()
    def generate(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Decoder means ``E[x | y, z]``: ``z: (..., k)``, ``y: (...)`` -> ``(..., D)``."""
        return self.likelihood(_decode(self.decoder, z, y)).mean


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
        k, classes = spec.latent_dim, self.num_classes
        if getattr(spec, "net", "mlp") == "conv":
            # The label joins the convolutions' features, which are computed once per row.
            self.encoder = ConvEncoder(spec.image_shape, spec.hidden, 2 * k, classes)
        else:
            self.encoder = encoder_network(spec, spec.x_dim + classes, 2 * k)

    def encode(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``x: (batch, D)``, labels ``y`` broadcastable to it -> ``(loc, scale)``, ``(..., k)``."""
        if isinstance(self.encoder, ConvEncoder):
            out = _joined_mlp(self.encoder.head, self.encoder.features(x), y)
        else:
            out = _joined_mlp(self.encoder, x, y)
        loc, raw_scale = out.split(self.latent_dim, -1)
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
