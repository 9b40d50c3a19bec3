"""Autoencoders as Pyro model/guide pairs: a deterministic encoder is a Delta guide.

Model:  z ~ N(0, I_k),  x ~ p(x | decoder(z))  (the VAE's model, likelihood by name)
Guide:  q(z|x) = Delta(encoder(x))

With a Delta guide ``log q(z|x) = 0`` at its own point, so Trace_ELBO's loss is
``-log p(x | z) - log p(z)`` at ``z = encoder(x)``: maximum a posteriori (MAP) codes and a
reconstruction loss with a penalty ``||z||^2 / 2``. It is *not* a bound on ``log p(x)``;
``summary.json`` says so under ``objective``. The variants:

- ``ae``: an MLP encoder (``--hidden``).
- ``dae`` (denoising): during training steps the encoder sees the input with a fraction
  ``--corruption`` (default 0.3) of each row's entries set to 0 (masking noise, Vincent et
  al., 2010); the loss still scores the clean x. Held-out ELBOs and figures encode clean rows.
- ``sae`` (sparse): the first hidden layer is sigmoid and the guide adds
  ``weight * KL(rho || rho_hat)`` per example to the loss (Ng's sparse autoencoder), with
  ``rho_hat_j`` the mean activation of hidden unit j over the batch, ``rho`` =
  ``--sparsity-target`` (0.05) and ``weight`` = ``--sparsity-weight`` (1).
- ``linear-ae``: linear encoder and decoder with an isotropic Gaussian ``N(W z + b,
  sigma^2 I)`` (sigma learned, or ``--gaussian-scale``): a squared error, whose optimal
  k-dimensional subspace is PCA's.

The models ``ae``, ``dae`` and ``sae`` are the VAE's program (:class:`~pyrovae.models.vae.VAE`)
with these guides; ``linear-ae`` has a model of its own.
"""

import math

import pyro
import pyro.distributions as dist
import torch
import torch.nn.functional as F
from torch import nn

from pyrovae.errors import PyrovaeError
from pyrovae.models.delta_guide import DeltaGuide
from pyrovae.models.networks import mlp
from pyrovae.models.spec import ModelSpec


class LinearAE(nn.Module):
    """Linear decoder ``x ~ N(W z + b, sigma^2 I)``; ``W: (D, k)``, one sigma for all D."""

    latent_site = "z"
    obs_site = "x"

    def __init__(self, spec: ModelSpec, min_scale: float = 1e-3):
        super().__init__()
        self.latent_dim, self.min_scale = spec.latent_dim, min_scale
        self.decoder = nn.Linear(spec.latent_dim, spec.x_dim)
        if spec.gaussian_scale is None:
            self.raw_scale = nn.Parameter(torch.tensor(0.5413))  # softplus: 1
            self.register_buffer("fixed_scale", None)
        else:
            self.raw_scale = None
            self.register_buffer("fixed_scale", torch.tensor(float(spec.gaussian_scale)))

    def scale(self) -> torch.Tensor:
        """sigma: a scalar tensor."""
        if self.raw_scale is None:
            return self.fixed_scale
        return F.softplus(self.raw_scale) + self.min_scale

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> None:
        prior = dist.Normal(x.new_zeros(self.latent_dim), x.new_ones(self.latent_dim))
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", prior.to_event(1))
            loc = self.decoder(z)
            pyro.sample("x", dist.Normal(loc, self.scale().expand_as(loc)).to_event(1), obs=x)


# ----------------------------------------------------------------------------- guides


class LinearDeltaGuide(DeltaGuide):
    """``q(z|x) = Delta(A x + c)``: the linear autoencoder's encoder."""

    def __init__(self, spec: ModelSpec):
        nn.Module.__init__(self)
        self.data_plate = "data"
        self.set_sites(self.default_sites(spec))
        self.encoder = nn.Linear(spec.x_dim, spec.latent_dim)


class DenoisingDeltaGuide(DeltaGuide):
    """The Delta guide of a denoising AE: ``Delta(encoder(corrupt(x)))`` in training steps.

    :param spec: ``spec.options["corruption"]`` is the fraction of each row's D entries set
        to 0 (``round(corruption * D)`` entries, chosen uniformly at random per row).
    """

    def __init__(self, spec: ModelSpec):
        super().__init__(spec)
        self.corruption = float(spec.options.get("corruption", 0.3))
        if not 0 <= self.corruption < 1:
            raise PyrovaeError(f"--corruption must be in [0, 1), got {self.corruption}")

    def corrupt(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """``x: (batch, D)`` with ``round(corruption * D)`` entries of every row set to 0."""
        masked = round(self.corruption * x.shape[-1])
        noise = torch.rand(x.shape, generator=generator).to(x.device)
        ranks = noise.argsort(dim=-1).argsort(dim=-1)
        return x * (ranks >= masked).to(x.dtype)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        # Training steps run with gradients on; evaluation and the figures run without.
        if self.training and torch.is_grad_enabled():
            x = self.corrupt(x)
        return self.encoder(x)


def sparsity_kl(rho: float, rho_hat: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """``sum_j KL(Bernoulli(rho) || Bernoulli(rho_hat_j))`` in nats; ``rho_hat: (units,)``."""
    rho_hat = rho_hat.clamp(eps, 1 - eps)
    return (
        rho * (math.log(rho) - rho_hat.log())
        + (1 - rho) * (math.log(1 - rho) - (1 - rho_hat).log())
    ).sum()


class SparseDeltaGuide(DeltaGuide):
    """The Delta guide of a sparse AE: sigmoid first hidden layer, KL sparsity penalty.

    The penalty is a ``pyro.factor`` in the guide. A guide's factor counts as ``log q``, and
    the loss is ``E[log q - log p]``, so a guide factor of ``+f`` adds ``+f`` to the loss:
    here ``f = batch * weight * KL(rho || rho_hat)``, i.e. ``weight * KL`` per example.
    """

    def __init__(self, spec: ModelSpec):
        if not spec.hidden:
            raise PyrovaeError("--model sae needs at least one hidden layer (--hidden 256)")
        nn.Module.__init__(self)
        self.data_plate = "data"
        self.set_sites(self.default_sites(spec))
        self.hidden_layer = nn.Sequential(nn.Linear(spec.x_dim, spec.hidden[0]), nn.Sigmoid())
        self.head = mlp([*spec.hidden, spec.latent_dim])
        self.target = float(spec.options.get("sparsity_target", 0.05))
        self.weight = float(spec.options.get("sparsity_weight", 1.0))
        if not 0 < self.target < 1:
            raise PyrovaeError(f"--sparsity-target must be in (0, 1), got {self.target}")

    def activations(self, x: torch.Tensor) -> torch.Tensor:
        """First-layer sigmoid activations ``(batch, hidden[0])`` in (0, 1)."""
        return self.hidden_layer(x)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.activations(x))

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> None:
        hidden = self.activations(x)
        code = self.head(hidden)
        kl = sparsity_kl(self.target, hidden.mean(0))
        # has_rsample: the term is differentiated directly (no score-function estimator).
        pyro.factor("sparsity", x.shape[0] * self.weight * kl, has_rsample=True)
        with pyro.plate("data", x.shape[0]):
            pyro.sample("z", dist.Delta(code).to_event(1))
