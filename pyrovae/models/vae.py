"""The variational autoencoder (Kingma & Welling, 2014) as a Pyro model/guide pair.

Model:  z ~ N(0, I_k),  x ~ p(x | decoder(z))   (likelihood chosen by name)
Guide:  q(z | x) = N(loc(x), diag(scale(x)^2)), an MLP encoder

Both take ``(x, y=None)`` with ``x: (batch, D)``; every per-datapoint statement sits in
``pyro.plate("data", batch)`` and the sample sites are named ``"z"`` (latent) and ``"x"``.
"""

import pyro
import pyro.distributions as dist
import torch
import torch.nn.functional as F
from torch import nn

from pyrovae.models.likelihoods import likelihood_for
from pyrovae.models.networks import decoder_network, encoder_network
from pyrovae.models.spec import ModelSpec


class VAE(nn.Module):
    """The generative model p(z) p(x|z) with an MLP decoder."""

    latent_site = "z"
    obs_site = "x"

    def __init__(self, spec: ModelSpec):
        super().__init__()
        self.latent_dim = spec.latent_dim
        self.decoder = decoder_network(spec, spec.latent_dim)
        self.likelihood = likelihood_for(spec)

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> None:
        prior = dist.Normal(x.new_zeros(self.latent_dim), x.new_ones(self.latent_dim))
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", prior.to_event(1))
            pyro.sample("x", self.likelihood(self.decoder(z)), obs=x)


class MLPNormalGuide(nn.Module):
    """The amortized guide q(z|x): a diagonal Normal whose loc and scale come from an MLP."""

    def __init__(
        self, spec: ModelSpec, min_scale: float = 1e-4, hidden: tuple[int, ...] | None = None
    ):
        """``hidden`` overrides ``spec.hidden`` (``()``: a linear encoder)."""
        super().__init__()
        self.latent_dim = spec.latent_dim
        self.min_scale = min_scale
        hidden = spec.hidden if hidden is None else hidden
        self.encoder = encoder_network(spec, spec.x_dim, 2 * spec.latent_dim, hidden)

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``x: (batch, D)`` -> ``(loc, scale)``, each ``(batch, k)``."""
        loc, raw_scale = self.encoder(x).split(self.latent_dim, dim=-1)
        return loc, F.softplus(raw_scale) + self.min_scale

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> None:
        loc, scale = self.encode(x)
        with pyro.plate("data", x.shape[0]):
            pyro.sample("z", dist.Normal(loc, scale).to_event(1))
