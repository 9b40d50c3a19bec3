"""A VAE with categorical latents, trained through the Gumbel-softmax relaxation.

Model:  z_m ~ Categorical(1/K) one-hot, m = 1..M,   x ~ p(x | decoder(z))   (z: (M, K))
Guide:  q(z_m | x) = Categorical(softmax(logits_m(x))), the logits from an encoder

In training steps (module in training mode, gradients on) both programs draw ``z`` as a
:class:`GumbelSoftmax`: a reparameterized point of the simplex at ``temperature`` (Jang et
al., 2017) whose KL divergence to another is the categorical one, so ``TraceMeanField_ELBO``
trains Jang et al.'s objective: the likelihood at relaxed codes, minus the exact discrete KL.
(``Trace_ELBO`` would instead estimate the KL from the relaxed densities, the Concrete
objective of Maddison et al., 2017.) Everywhere else (evaluation under ``torch.no_grad``,
``.eval()``) the draws are exactly one-hot, so a held-out ELBO is the discrete model's bound.
``temperature`` is a buffer of each program; whoever trains them sets it.

``M`` is ``spec.latent_dim``; ``K`` is ``spec.options["categories"]`` (default 10). Both
programs take ``(x, y=None)`` with ``x: (batch, D)`` and sample ``"z"`` inside
``pyro.plate("data", batch)``.
"""

import pyro
import pyro.distributions as dist
import torch
from torch import nn
from torch.distributions import kl_divergence, register_kl

from pyrovae.errors import PyrovaeError
from pyrovae.models.likelihoods import likelihood_for
from pyrovae.models.networks import decoder_network, encoder_network
from pyrovae.models.spec import ModelSpec

DEFAULT_CATEGORIES = 10


def _categories(spec: ModelSpec) -> int:
    k = int(spec.options.get("categories") or DEFAULT_CATEGORIES)
    if k < 2:
        raise PyrovaeError(f"--categories must be at least 2, got {k}")
    return k


class GumbelSoftmax(dist.RelaxedOneHotCategorical):
    """``RelaxedOneHotCategorical`` whose KL divergence to another is that of the categorical
    distributions they relax (batch shape ``(..., M)`` for event ``(K,)``)."""


@register_kl(GumbelSoftmax, GumbelSoftmax)
def _kl_gumbel_softmax(q: GumbelSoftmax, p: GumbelSoftmax) -> torch.Tensor:
    return kl_divergence(dist.Categorical(logits=q.logits), dist.Categorical(logits=p.logits))


def categorical_latent(module: nn.Module, logits: torch.Tensor) -> dist.TorchDistribution:
    """One-hot draws ``(..., M, K)`` from ``logits``, relaxed at ``module.temperature`` in
    training steps, exact otherwise; event shape ``(M, K)``."""
    if module.training and torch.is_grad_enabled():
        return GumbelSoftmax(module.temperature, logits=logits).to_event(1)
    return dist.OneHotCategorical(logits=logits).to_event(1)


class GumbelVAE(nn.Module):
    """The generative model: M uniform K-way categoricals, decoded from their one-hot codes."""

    latent_site = "z"
    obs_site = "x"

    def __init__(self, spec: ModelSpec):
        super().__init__()
        self.num_variables, self.num_categories = spec.latent_dim, _categories(spec)
        self.register_buffer("temperature", torch.tensor(1.0))
        self.decoder = decoder_network(spec, self.num_variables * self.num_categories)
        self.likelihood = likelihood_for(spec)

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> None:
        uniform = x.new_zeros(self.num_variables, self.num_categories)
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", categorical_latent(self, uniform))
            pyro.sample("x", self.likelihood(self.decoder(z.flatten(-2))), obs=x)


class GumbelGuide(nn.Module):
    """q(z|x): M independent categoricals whose logits ``(batch, M, K)`` come from an encoder."""

    def __init__(self, spec: ModelSpec):
        super().__init__()
        self.num_variables, self.num_categories = spec.latent_dim, _categories(spec)
        self.register_buffer("temperature", torch.tensor(1.0))
        self.encoder = encoder_network(spec, spec.x_dim, self.num_variables * self.num_categories)

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """``x: (..., D)`` -> logits ``(..., M, K)``."""
        return self.encoder(x).unflatten(-1, (self.num_variables, self.num_categories))

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> None:
        with pyro.plate("data", x.shape[0]):
            pyro.sample("z", categorical_latent(self, self.logits(x)))
