"""A class-conditional VAE as a user module: ``model(x, c)`` and ``guide(x, c)`` with the class
``c: (batch, K)`` one-hot, written in the form of Pyro's ``examples/vae/vae.py``, the
condition joining the encoder's and the decoder's inputs. The model refuses to run without
its condition, so any call that leaves it out is seen.
"""

import pyro
import pyro.distributions as dist
import torch
import torch.nn as nn


class Encoder(nn.Module):
    def __init__(self, x_dim, c_dim, z_dim, hidden_dim):
        super().__init__()
        self.fc1 = nn.Linear(x_dim + c_dim, hidden_dim)
        self.fc21 = nn.Linear(hidden_dim, z_dim)
        self.fc22 = nn.Linear(hidden_dim, z_dim)
        self.softplus = nn.Softplus()

    def forward(self, x, c):
        hidden = self.softplus(self.fc1(torch.cat([x, c], dim=-1)))
        return self.fc21(hidden), torch.exp(self.fc22(hidden))


class Decoder(nn.Module):
    def __init__(self, x_dim, c_dim, z_dim, hidden_dim):
        super().__init__()
        self.fc1 = nn.Linear(z_dim + c_dim, hidden_dim)
        self.fc21 = nn.Linear(hidden_dim, x_dim)
        self.softplus = nn.Softplus()
        self.sigmoid = nn.Sigmoid()

    def forward(self, z, c):
        c = c.expand(z.shape[:-1] + c.shape[-1:])
        hidden = self.softplus(self.fc1(torch.cat([z, c], dim=-1)))
        return self.sigmoid(self.fc21(hidden))


class CVAE(nn.Module):
    def __init__(self, x_dim=64, num_classes=10, z_dim=4, hidden_dim=64):
        super().__init__()
        self.encoder = Encoder(x_dim, num_classes, z_dim, hidden_dim)
        self.decoder = Decoder(x_dim, num_classes, z_dim, hidden_dim)
        self.z_dim, self.num_classes = z_dim, num_classes

    def model(self, x, c):
        if c is None or c.shape != (x.shape[0], self.num_classes):
            raise ValueError(f"the CVAE needs its condition c of shape (batch, K), got {c}")
        pyro.module("decoder", self.decoder)
        with pyro.plate("data", x.shape[0]):
            z_loc = x.new_zeros(torch.Size((x.shape[0], self.z_dim)))
            z_scale = x.new_ones(torch.Size((x.shape[0], self.z_dim)))
            z = pyro.sample("latent", dist.Normal(z_loc, z_scale).to_event(1))
            loc_img = self.decoder(z, c)
            pyro.sample("obs", dist.Bernoulli(loc_img, validate_args=False).to_event(1), obs=x)

    def guide(self, x, c):
        pyro.module("encoder", self.encoder)
        with pyro.plate("data", x.shape[0]):
            z_loc, z_scale = self.encoder(x, c)
            pyro.sample("latent", dist.Normal(z_loc, z_scale).to_event(1))
