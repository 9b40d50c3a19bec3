"""A model/guide pair whose loss has no random draws (a Delta guide on a linear-Gaussian
model), so that runs can be compared to float tolerance (used by tests/test_distributed.py).
"""

import pyro
import pyro.distributions as dist
from torch import nn


class LinearModel(nn.Module):
    """z ~ N(0, I), x ~ N(W z + b, 0.1^2 I)."""

    latent_site, obs_site = "z", "x"

    def __init__(self, spec):
        super().__init__()
        self.k = spec.latent_dim
        self.decoder = nn.Linear(spec.latent_dim, spec.x_dim)

    def forward(self, x, y=None):
        prior = dist.Normal(x.new_zeros(self.k), x.new_ones(self.k)).to_event(1)
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", prior)
            pyro.sample("x", dist.Normal(self.decoder(z), 0.1).to_event(1), obs=x)


class DeltaGuide(nn.Module):
    """q(z|x) = delta(z - encoder(x)): MAP inference, no sampling noise."""

    def __init__(self, spec):
        super().__init__()
        self.encoder = nn.Sequential(
            nn.Linear(spec.x_dim, 16), nn.Tanh(), nn.Linear(16, spec.latent_dim)
        )

    def forward(self, x, y=None):
        with pyro.plate("data", x.shape[0]):
            pyro.sample("z", dist.Delta(self.encoder(x)).to_event(1))


def pair_options() -> dict:
    return {
        "model": "tests.deterministic_pair:LinearModel",
        "guide": "tests.deterministic_pair:DeltaGuide",
    }
