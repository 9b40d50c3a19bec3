"""Factor analysis and probabilistic PCA as Pyro model/guide pairs, with their exact references.

Model (``fa``):    z ~ N(0, I_k),  x | z ~ N(W z + mu, diag(psi))
Model (``ppca``):  the same with psi = sigma^2 for every dimension
Model (``bayesian-fa``): the same as ``fa`` with a Normal prior on the entries of W

``W: (D, k)``, ``mu: (D,)`` and ``psi: (D,)`` are point estimates learned by SVI (maximum
likelihood); ``psi = s^2 softplus(raw) + min_variance`` keeps the noise variances positive
and floored (a pixel that never varies would otherwise drive its variance, and the
likelihood, to infinity; ``s`` is the data's scale, see :class:`FactorAnalysis`). The
observation model is always Gaussian: ``--likelihood`` defaults to ``gaussian`` for these
models (any other is refused), so grey-level images are modelled as real numbers, not
binarised, and ``--model fa --dataset digits`` works as it stands.

Guides, to swap with ``--guide``:

- ``exact-posterior`` (default): q(z|x) = p(z|x), the closed form
  ``N(M^-1 W^T Psi^-1 (x - mu), M^-1)`` with ``M = I + W^T Psi^-1 W``. Then
  ``log p(x, z) - log q(z|x) = log p(x)`` for every sampled z: the ELBO estimate *is* the
  exact log-likelihood, without Monte Carlo noise, and SVI is maximum likelihood.
- ``linear-normal``: an amortised linear-Gaussian encoder, ``N(A x + b, diag(s(x)^2))``.
  The exact posterior has a constant covariance and a mean linear in x; a diagonal
  covariance loses nothing at the optimum because W can rotate to diagonalise it.
- ``mlp-normal``: the VAE's MLP encoder.

Because the model is linear-Gaussian its marginal ``x ~ N(mu, W W^T + Psi)`` is known; each
run reports it (``test_log_likelihood``, nats per example) beside the ELBO, and compares
the fit with the closed forms of :mod:`pyrovae.models.linear_gaussian` (sklearn's
FactorAnalysis for ``fa``, Tipping & Bishop's ML solution for ``ppca``).
"""

import math
from pathlib import Path

import pyro
import pyro.distributions as dist
import pyro.poutine as poutine
import torch
import torch.nn.functional as F
from pyro.infer.autoguide import AutoNormal
from pyro.infer.autoguide.initialization import init_to_sample
from torch import nn

from pyrovae import plots
from pyrovae.errors import PyrovaeError
from pyrovae.inference.batches import TensorBatches
from pyrovae.models.linear_gaussian import (
    fa_log_likelihood,
    fa_posterior,
    largest_principal_angle_deg,
    ppca_ml,
)
from pyrovae.models.spec import ModelSpec
from pyrovae.models.vae import MLPNormalGuide
from pyrovae.run_folder import RunFolder
from pyrovae.spiral import spiral_report

# softplus(0.5413) = 1: noise variances start at one (data units squared).
_UNIT_SOFTPLUS = 0.5413


class FactorAnalysis(nn.Module):
    """Factor analysis ``x = W z + mu + eps``, ``eps ~ N(0, diag(psi))``; ``x: (batch, D)``.

    The parameters are stored for standardised data, ``W = diag(s) W'``, ``mu = m + s mu'``,
    ``psi = s^2 softplus(raw) + min_variance``, with ``m`` and ``s`` the training rows' mean
    and standard deviation, set by :meth:`standardise` before training (buffers, saved with
    the model; without it m = 0 and s = 1). This is the same model family, but Adam's steps
    of about ``lr`` per parameter then mean the same thing on every data set: training
    starts from "all variance is noise" (W' small, mu' = 0, psi' = 1) and has at most
    distances of about one to travel, whatever the units of x.

    :param spec: reads ``x_dim`` (D) and ``latent_dim`` (k); the likelihood is Gaussian with
        learned ``psi`` whatever ``spec.likelihood`` / ``spec.gaussian_scale`` say.
    :param min_variance: floor on every noise variance psi_d (data units squared).
    :param init_scale: standard deviation of the random initial standardised loadings W'.
    """

    latent_site = "z"
    obs_site = "x"
    default_guide = "exact-posterior"
    fixed_likelihood = "gaussian"  # the API uses it and refuses any other --likelihood
    reference_name = "sklearn.decomposition.FactorAnalysis"
    # The reference is skipped above this many training values (n * D): sklearn's
    # FactorAnalysis iterates SVDs of the data and would take minutes (e.g. on MNIST).
    reference_max_values = 2_000_000

    def __init__(self, spec: ModelSpec, min_variance: float = 1e-4, init_scale: float = 0.1):
        super().__init__()
        self.x_dim, self.latent_dim = spec.x_dim, spec.latent_dim
        self.min_variance = min_variance
        self.seed = spec.options.get("seed", 0)
        self.weight = nn.Parameter(init_scale * torch.randn(spec.x_dim, spec.latent_dim))
        self.loc = nn.Parameter(torch.zeros(spec.x_dim))
        self.raw_variance = nn.Parameter(torch.full(self._variance_shape(), _UNIT_SOFTPLUS))
        self.register_buffer("data_loc", torch.zeros(spec.x_dim))
        self.register_buffer("data_scale", torch.ones(spec.x_dim))

    def _variance_shape(self) -> tuple[int, ...]:
        return (self.x_dim,)

    @torch.no_grad()
    def standardise(self, x: torch.Tensor) -> None:
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

    def training_batches(self, data, config, device) -> TensorBatches:
        """The usual shuffled minibatches, after :meth:`standardise` on the training rows."""
        self.standardise(data.x_train)
        return TensorBatches(data.x_train.to(device), config.batch_size, seed=config.seed)

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

    # ---------------------------------------------------------------- report
    def reference(self, x_train: torch.Tensor, x_test: torch.Tensor):
        """The closed-form fit on the same training rows: ``(W, test log-lik per example,
        train log-lik per example, extras)``."""
        from sklearn.decomposition import FactorAnalysis as SklearnFA
        from threadpoolctl import threadpool_limits

        fa = SklearnFA(self.latent_dim, svd_method="lapack", random_state=self.seed)
        # One BLAS thread: on a small, busy machine threaded SVDs of thin matrices crawl.
        with threadpool_limits(limits=1):
            fa.fit(x_train.double().numpy())
        psi = fa.noise_variance_
        extras = {"noise_variance_min": float(psi.min()), "noise_variance_mean": float(psi.mean())}
        x_test = x_test.double().numpy()
        return fa.components_.T, fa.score(x_test), fa.score(x_train.double().numpy()), extras

    def report(self, guide, data, out_dir, history=None) -> dict:
        """Exact log-likelihoods, the closed-form reference, the loadings figure and (for a
        1-D latent on the spiral) the spiral numbers; merged into summary.json."""
        return linear_gaussian_report(self, guide, data, out_dir, *self.parameters_f64())


class PPCA(FactorAnalysis):
    """Probabilistic PCA: factor analysis with one noise variance ``sigma^2`` for all D."""

    reference_name = "ppca_ml (Tipping & Bishop closed form)"
    reference_max_values = 100_000_000  # one D x D covariance and its eigenvectors

    def _variance_shape(self) -> tuple[int, ...]:
        return (1,)

    def reference(self, x_train: torch.Tensor, x_test: torch.Tensor):
        W, mu, sigma2 = ppca_ml(x_train, self.latent_dim)
        test = float(fa_log_likelihood(x_test, W, mu, sigma2).mean())
        train = float(fa_log_likelihood(x_train, W, mu, sigma2).mean())
        return W, test, train, {"noise_variance": sigma2}


class BayesianFactorAnalysis(FactorAnalysis):
    """Factor analysis with a prior ``W'_dj ~ N(0, prior_scale^2)`` on the standardised
    loadings ``W' = diag(s)^-1 W`` (see :class:`FactorAnalysis`; unit-free, so one prior
    scale suits any data), sampled at the site ``"W"``.

    ``W'`` is a global latent (outside the data plate); ``mu`` and ``psi`` stay point
    estimates. On a minibatch of B of the N training rows the log densities of ``W'`` are
    weighted B / N, so that an epoch's summed loss, and every ELBO the runner reports, is
    the full-data ELBO divided by N: nats per example, with KL(q(W') || p(W')) shared among
    the N rows. (Scaling the data plate by N / B instead gives the same gradients up to a
    constant factor, but reports N / B times the per-example numbers.)
    """

    global_sites = ("W",)
    default_guide = "bayesian-fa"
    reference_name = "sklearn.decomposition.FactorAnalysis (ours: W at its posterior mean)"

    def __init__(self, spec: ModelSpec, prior_scale: float = 1.0, **kwargs):
        super().__init__(spec, **kwargs)
        del self.weight  # a latent variable here
        self.prior_scale = prior_scale
        self.num_data = spec.num_data
        self.plug_in_weight: torch.Tensor | None = None  # set by report: E_q[W'], (D, k)

    def global_scale(self, x: torch.Tensor) -> float:
        """Weight B / N of the global site's log densities on a batch of B rows."""
        return x.shape[0] / self.num_data if self.num_data else 1.0

    def loadings(self, x: torch.Tensor | None = None) -> torch.Tensor:
        """With a batch ``x``: sample ``W'`` and return ``W: (D, k)``; without: W at the
        plug-in value set by :meth:`report`."""
        if x is None:
            if self.plug_in_weight is None:
                raise PyrovaeError("BayesianFactorAnalysis has no point estimate of W yet")
            return self.data_scale.unsqueeze(-1) * self.plug_in_weight
        shape = (self.x_dim, self.latent_dim)
        prior = dist.Normal(x.new_zeros(shape), x.new_full(shape, self.prior_scale))
        with poutine.scale(scale=self.global_scale(x)):
            standardised = pyro.sample("W", prior.to_event(2))
        return self.data_scale.unsqueeze(-1) * standardised

    def report(self, guide, data, out_dir, history=None) -> dict:
        """As :meth:`FactorAnalysis.report` with W at its approximate posterior mean (a
        plug-in estimate: the marginal over W has no closed form). The run's figures are
        redrawn with that W (the generic ones decode with W drawn from its prior)."""
        self.plug_in_weight = guide.weight_mean().detach()
        model = _Conditioned(self, self.plug_in_weight)
        plug_guide = _Conditioned(guide, self.plug_in_weight)
        RunFolder(out_dir).write_figures(model, plug_guide, data, history)
        W, mu, psi = self.parameters_f64()
        out = linear_gaussian_report(model, plug_guide, data, out_dir, W, mu, psi, owner=self)
        out["log_likelihood_at"] = "posterior mean of W"
        return out


class _Conditioned:
    """A model or guide of Bayesian FA with its site "W" fixed to a value."""

    latent_site, obs_site = "z", "x"

    def __init__(self, program, W: torch.Tensor):
        self.program = poutine.condition(program, data={"W": W})

    def __call__(self, x: torch.Tensor, y: torch.Tensor | None = None):
        return self.program(x)


# ----------------------------------------------------------------------------- guides


class LinearNormalGuide(MLPNormalGuide):
    """Amortised linear-Gaussian encoder ``q(z|x) = N(A x + b, diag(softplus(C x + d)^2))``.

    ``x: (batch, D)`` -> ``z: (batch, k)``. Fits any model with a k-dimensional latent "z".
    The MLP guide with no hidden layers.
    """

    def __init__(self, spec: ModelSpec, min_scale: float = 1e-4):
        super().__init__(spec, min_scale, hidden=())


class ExactPosteriorGuide(nn.Module):
    """``q(z|x) = p(z|x)`` of a linear-Gaussian model, computed from the model's current
    parameters (the guide has none of its own): ``MultivariateNormal(loc (batch, k),
    scale_tril (k, k))``.

    :param model: a :class:`FactorAnalysis` or :class:`PPCA` (anything with ``posterior``).
    """

    for_models = ("fa", "ppca")

    def __init__(self, spec: ModelSpec, model):
        super().__init__()
        if not hasattr(model, "posterior") or isinstance(model, BayesianFactorAnalysis):
            raise PyrovaeError(
                f"--guide exact-posterior needs a linear-Gaussian model with point-estimated "
                f"loadings (--model {' or '.join(self.for_models)}), got {type(model).__name__}"
            )
        self._model = (model,)  # a reference, not a submodule: its parameters are the model's

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> None:
        loc, scale_tril = self._model[0].posterior(x)
        with pyro.plate("data", x.shape[0]):
            pyro.sample("z", dist.MultivariateNormal(loc, scale_tril=scale_tril))


class BayesianFAGuide(nn.Module):
    """Guide of :class:`BayesianFactorAnalysis`: ``q(W) q(z | x, W)``.

    ``q(W)`` is Pyro's ``AutoNormal`` (a mean-field Normal per entry, initialised at a prior
    draw); ``q(z | x, W)`` is the exact conditional posterior given the sampled W, so the
    only approximation is the one made for W. The ELBO is
    ``E_q(W)[log p(x | W)] - KL(q(W) || p(W))``, reported per example (see the model).
    """

    for_models = ("bayesian-fa",)

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

    def weight_mean(self) -> torch.Tensor:
        """Posterior mean of the standardised loadings W' under q: ``(D, k)``."""
        return self.weights.median()["W"]

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> None:
        model = self._model[0]
        with poutine.scale(scale=model.global_scale(x)):
            standardised = self.weights(x)["W"]
        loc, scale_tril = model.posterior(x, model.data_scale.unsqueeze(-1) * standardised)
        with pyro.plate("data", x.shape[0]):
            pyro.sample("z", dist.MultivariateNormal(loc, scale_tril=scale_tril))


# ----------------------------------------------------------------------------- report


def linear_gaussian_report(
    model, guide, data, out_dir, W, mu, psi, owner: FactorAnalysis | None = None
) -> dict:
    """Summary entries and figures of a trained linear-Gaussian model.

    :param model: the program to draw from (for Bayesian FA: conditioned on W).
    :param W, mu, psi: float64 parameters ``(D, k)``, ``(D,)``, ``(D,)``.
    :param owner: the model object with ``reference`` (default: ``model``).
    :return: ``{split}_log_likelihood`` (exact, nats per example) for train, val and test;
        noise variances; ``reference``: the closed-form fit on the same training rows, its
        test log-likelihood, the gap to it in percent and the largest principal angle
        between the two loading subspaces; and the spiral numbers when they apply.
    """
    owner = owner or model
    out = {"log_likelihood": "exact log N(x; mu, W W^T + Psi), nats per example"}
    for split in ("train", "val", "test"):
        x = getattr(data, f"x_{split}").detach().cpu()
        value = float(fa_log_likelihood(x, W, mu, psi).mean()) if x.shape[0] else math.nan
        out[f"{split}_log_likelihood"] = value
    out["noise_variance"] = {"min": float(psi.min()), "mean": float(psi.mean())}
    out["noise_variance"]["max"] = float(psi.max())
    out["reference"] = _reference(owner, data, W, out["test_log_likelihood"])
    dataset = data.dataset
    if dataset.x_dim > 2:
        plots.plot_loadings(
            W.T, dataset.image_shape, Path(out_dir) / "loadings.png", title="Loadings W[:, j]"
        )
    out.update(spiral_report(model, guide, data, out_dir, title=type(owner).__name__))
    return out


def _reference(owner, data, W, test_log_likelihood: float) -> dict:
    x_train = data.x_train.detach().cpu().double()
    x_test = data.x_test.detach().cpu().double()
    k, D = W.shape[1], W.shape[0]
    if not k < D:
        return {"skipped": f"no closed form to compare with for k = {k} >= D = {D}"}
    if x_train.numel() > owner.reference_max_values:
        return {"skipped": f"more than {owner.reference_max_values} training values"}
    ref_W, ref_test, ref_train, extras = owner.reference(x_train, x_test)
    floor = owner.min_variance
    if extras.get("noise_variance_min", extras.get("noise_variance", floor)) < floor:
        extras["note"] = (
            f"the reference has noise variances below this model's floor {floor:g} (e.g. "
            "pixels that never vary), so its log-likelihood is higher by construction"
        )
    return {
        "method": owner.reference_name,
        "fitted_on": "the same training rows",
        "test_log_likelihood": float(ref_test),
        "train_log_likelihood": float(ref_train),
        "test_gap_percent": 100 * (float(ref_test) - test_log_likelihood) / abs(float(ref_test)),
        "largest_principal_angle_deg": largest_principal_angle_deg(W, ref_W),
        **extras,
    }
