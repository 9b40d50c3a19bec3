"""Factor analysis and probabilistic PCA as Pyro model/guide pairs, with their exact references.

Model (``fa``):    z ~ N(0, I_k),  x | z ~ N(W z + mu, diag(psi))
Model (``ppca``):  the same with psi = sigma^2 for every dimension
Model (``bayesian-fa``): the same as ``fa`` with a Normal prior on the entries of W

``W: (D, k)``, ``mu: (D,)`` and ``psi: (D,)`` are point estimates learned by SVI (maximum
likelihood); ``psi = s^2 softplus(raw) + min_variance`` keeps the noise variances positive
and floored (a pixel that never varies would otherwise drive its variance, and the
likelihood, to infinity; ``s`` is the data's scale, see :class:`FactorAnalysis`). The
observation model is always Gaussian, so gray-level images are modeled as real numbers.

Guides, to swap with ``--guide``:

- ``exact-posterior`` (default): q(z|x) = p(z|x), the closed form
  ``N(M^-1 W^T Psi^-1 (x - mu), M^-1)`` with ``M = I + W^T Psi^-1 W``. Then
  ``log p(x, z) - log q(z|x) = log p(x)`` for every sampled z: the ELBO estimate *is* the
  exact log-likelihood, without Monte Carlo noise, and SVI is maximum likelihood.
- ``linear-normal``: an amortized linear-Gaussian encoder, ``N(A x + b, diag(s(x)^2))``.
  The exact posterior has a constant covariance and a mean linear in x; a diagonal
  covariance loses nothing at the optimum because W can rotate to diagonalize it.
- ``mlp-normal``: the VAE's MLP encoder.

Because the model is linear-Gaussian its marginal ``x ~ N(mu, W W^T + Psi)`` is known
(:meth:`FactorAnalysis.log_likelihood`); the closed forms live in
:mod:`pyrovae.models.linear_gaussian`.
"""

import pyro
import pyro.distributions as dist
import pyro.poutine as poutine
import torch
import torch.nn.functional as F
from pyro.infer.autoguide import AutoNormal
from pyro.infer.autoguide.initialization import init_to_sample
from torch import nn

from pyrovae.errors import PyrovaeError
from pyrovae.models.linear_gaussian import fa_log_likelihood, fa_posterior
from pyrovae.models.spec import ModelSpec
from pyrovae.models.vae import MLPNormalGuide

# softplus(0.5413) = 1: noise variances start at one (data units squared).
_UNIT_SOFTPLUS = 0.5413


class FactorAnalysis(nn.Module):
    """Factor analysis ``x = W z + mu + eps``, ``eps ~ N(0, diag(psi))``; ``x: (batch, D)``.

    The parameters are stored for standardized data, ``W = diag(s) W'``, ``mu = m + s mu'``,
    ``psi = s^2 softplus(raw) + min_variance``, with ``m`` and ``s`` the training rows' mean
    and standard deviation, set by :meth:`standardize` before training (buffers, saved with
    the model; without it m = 0 and s = 1). This is the same model family, but Adam's steps
    of about ``lr`` per parameter then mean the same thing on every data set: training
    starts from "all variance is noise" (W' small, mu' = 0, psi' = 1) and has at most
    distances of about one to travel, whatever the units of x.

    :param spec: reads ``x_dim`` (D) and ``latent_dim`` (k); the likelihood is Gaussian with
        learned ``psi`` whatever ``spec.likelihood`` / ``spec.gaussian_scale`` say.
    :param min_variance: floor on every noise variance psi_d (data units squared).
    :param init_scale: standard deviation of the random initial standardized loadings W'.
    """

    latent_site = "z"
    obs_site = "x"

    def __init__(self, spec: ModelSpec, min_variance: float = 1e-4, init_scale: float = 0.1):
        super().__init__()
        self.x_dim, self.latent_dim = spec.x_dim, spec.latent_dim
        self.min_variance = min_variance
        self.weight = nn.Parameter(init_scale * torch.randn(spec.x_dim, spec.latent_dim))
        self.loc = nn.Parameter(torch.zeros(spec.x_dim))
        self.raw_variance = nn.Parameter(torch.full(self._variance_shape(), _UNIT_SOFTPLUS))
        self.register_buffer("data_loc", torch.zeros(spec.x_dim))
        self.register_buffer("data_scale", torch.ones(spec.x_dim))

    def _variance_shape(self) -> tuple[int, ...]:
        return (self.x_dim,)

    @torch.no_grad()
    def standardize(self, x: torch.Tensor) -> None:
        """Set ``m`` and ``s`` from the training rows ``x: (n, D)``, and start the noise
        variances where R's ``factanal`` starts them: ``psi'_d = (1 - k / 2D) / (C^-1)_dd``
        for the correlation matrix C (ridged by 1e-3; averaged over d for PPCA). A constant
        column gets ``s = 1e-3 * max(s)``, so its variance can still shrink to the floor."""
        x = x.to(self.data_loc)
        scale = x.std(0, unbiased=False)
        if self.raw_variance.numel() == 1:  # PPCA: one scale keeps the noise isotropic
            scale = scale.pow(2).mean().sqrt().expand_as(scale)
        self.data_loc.copy_(x.mean(0))
        self.data_scale.copy_(scale.clamp_min(1e-3 * float(scale.max()) + 1e-12))
        z = ((x - self.data_loc) / self.data_scale).double()
        corr = z.T @ z / x.shape[0] + 1e-3 * torch.eye(self.x_dim, dtype=z.dtype)
        start = (1 - 0.5 * self.latent_dim / self.x_dim) / torch.linalg.inv(corr).diagonal()
        start = start.clamp(1e-3, 1.0)
        if self.raw_variance.numel() == 1:
            start = start.mean().reshape(1)
        self.raw_variance.copy_(start.expm1().log())

    def loadings(self, x: torch.Tensor | None = None) -> torch.Tensor:
        """``W: (D, k)`` in data units."""
        return self.data_scale.unsqueeze(-1) * self.weight

    def mean(self) -> torch.Tensor:
        """``mu: (D,)`` in data units."""
        return self.data_loc + self.data_scale * self.loc

    def noise_variance(self) -> torch.Tensor:
        """``psi: (D,)`` in data units squared, floored at ``min_variance``."""
        return self.data_scale**2 * F.softplus(self.raw_variance) + self.min_variance

    def parameters_f64(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(W, mu, psi)`` detached, in float64 on the CPU."""
        with torch.no_grad():
            return tuple(
                t.detach().double().cpu()
                for t in (self.loadings(), self.mean(), self.noise_variance())
            )

    def posterior(self, x: torch.Tensor, W: torch.Tensor | None = None):
        """Exact ``p(z | x)``: ``(loc (n, k), scale_tril (k, k))`` (differentiable); ``W``
        in data units, default the model's own."""
        W = self.loadings() if W is None else W
        loc, cov = fa_posterior(x, W, self.mean(), self.noise_variance())
        return loc, torch.linalg.cholesky(cov)

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> None:
        self._observe(x, self.loadings(x))

    def _observe(self, x: torch.Tensor, W: torch.Tensor) -> None:
        prior = dist.Normal(x.new_zeros(self.latent_dim), x.new_ones(self.latent_dim))
        scale = self.noise_variance().sqrt()
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", prior.to_event(1))
            pyro.sample("x", dist.Normal(z @ W.T + self.mean(), scale).to_event(1), obs=x)

    def log_likelihood(self, x: torch.Tensor) -> torch.Tensor:
        """Exact ``log p(x)`` per row: ``x: (n, D)`` -> ``(n,)`` nats, float64."""
        W, mu, psi = self.parameters_f64()
        return fa_log_likelihood(x.detach().cpu(), W, mu, psi)


class PPCA(FactorAnalysis):
    """Probabilistic PCA: factor analysis with one noise variance ``sigma^2`` for all D."""

    def _variance_shape(self) -> tuple[int, ...]:
        return (1,)


class BayesianFactorAnalysis(FactorAnalysis):
    """Factor analysis with a prior ``W'_dj ~ N(0, prior_scale^2)`` on the standardized
    loadings ``W' = diag(s)^-1 W`` (see :class:`FactorAnalysis`; unit-free, so one prior
    scale suits any data), sampled at the site ``"W"``.

    ``W'`` is a global latent (outside the data plate); ``mu`` and ``psi`` stay point
    estimates. On a minibatch of B of the N training rows the log densities of ``W'`` are
    weighted B / N, so that an epoch's summed loss, and every ELBO the runner reports, is
    the full-data ELBO divided by N: nats per example, with KL(q(W') || p(W')) shared among
    the N rows. (Scaling the data plate by N / B instead gives the same gradients up to a
    constant factor, but reports N / B times the per-example numbers.)
    """

    def __init__(self, spec: ModelSpec, prior_scale: float = 1.0, **kwargs):
        super().__init__(spec, **kwargs)
        del self.weight  # a latent variable here
        self.prior_scale = prior_scale
        self.num_data = spec.num_data

    def global_scale(self, x: torch.Tensor) -> float:
        """Weight B / N of the global site's log densities on a batch of B rows."""
        return x.shape[0] / self.num_data if self.num_data else 1.0

    def loadings(self, x: torch.Tensor | None = None) -> torch.Tensor:
        """With a batch ``x``: sample ``W'`` at the site ``"W"`` and return ``W: (D, k)``."""
        if x is None:
            raise PyrovaeError(
                "Bayesian FA's loadings are a random variable: condition the site 'W' on a "
                "value (e.g. its mean under q) to evaluate the model at one W"
            )
        shape = (self.x_dim, self.latent_dim)
        prior = dist.Normal(x.new_zeros(shape), x.new_full(shape, self.prior_scale))
        with poutine.scale(scale=self.global_scale(x)):
            standardized = pyro.sample("W", prior.to_event(2))
        return self.data_scale.unsqueeze(-1) * standardized


# ----------------------------------------------------------------------------- guides


class LinearNormalGuide(MLPNormalGuide):
    """Amortized linear-Gaussian encoder ``q(z|x) = N(A x + b, diag(softplus(C x + d)^2))``.

    ``x: (batch, D)`` -> ``z: (batch, k)``. Fits any model with a k-dimensional latent "z".
    The MLP guide with no hidden layers.
    """

    def __init__(self, spec: ModelSpec, min_scale: float = 1e-4):
        super().__init__(spec, min_scale, hidden=())


class ExactPosteriorGuide(nn.Module):
    """``q(z|x) = p(z|x)`` of a linear-Gaussian model, computed from the model's current
    parameters (the guide has none of its own): ``MultivariateNormal(loc (batch, k),
    scale_tril (k, k))``.

    :param model: a :class:`FactorAnalysis` or :class:`PPCA`.
    """

    def __init__(self, spec: ModelSpec, model):
        super().__init__()
        if not isinstance(model, FactorAnalysis) or isinstance(model, BayesianFactorAnalysis):
            raise PyrovaeError(
                "--guide exact-posterior needs a linear-Gaussian model with point-estimated "
                f"loadings (--model fa or ppca), got {type(model).__name__}"
            )
        self._model = (model,)  # a reference, not a submodule: its parameters are the model's

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> None:
        loc, scale_tril = self._model[0].posterior(x)
        with pyro.plate("data", x.shape[0]):
            pyro.sample("z", dist.MultivariateNormal(loc, scale_tril=scale_tril))


class BayesianFAGuide(nn.Module):
    """Guide of :class:`BayesianFactorAnalysis`: ``q(W) q(z | x, W)``.

    ``q(W)`` is Pyro's ``AutoNormal`` (a mean-field Normal per entry, initialized at a prior
    draw); ``q(z | x, W)`` is the exact conditional posterior given the sampled W, so the
    only approximation is the one made for W. The ELBO is
    ``E_q(W)[log p(x | W)] - KL(q(W) || p(W))``, reported per example (see the model).
    """

    def __init__(self, spec: ModelSpec, model):
        super().__init__()
        if not isinstance(model, BayesianFactorAnalysis):
            raise PyrovaeError(
                f"--guide bayesian-fa needs --model bayesian-fa, got {type(model).__name__}"
            )
        self._model = (model,)
        self.weights = AutoNormal(poutine.block(model, expose=["W"]), init_loc_fn=init_to_sample)
        # Create q(W)'s parameters now, so that a fresh guide can load a checkpoint.
        with torch.no_grad():
            self.weights._setup_prototype(torch.zeros(2, spec.x_dim))

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> None:
        model = self._model[0]
        with poutine.scale(scale=model.global_scale(x)):
            standardized = self.weights(x)["W"]
        loc, scale_tril = model.posterior(x, model.data_scale.unsqueeze(-1) * standardized)
        with pyro.plate("data", x.shape[0]):
            pyro.sample("z", dist.MultivariateNormal(loc, scale_tril=scale_tril))
