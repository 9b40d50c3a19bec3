"""Closed forms for the linear-Gaussian models: PCA, probabilistic PCA and factor analysis.

The model is ``z ~ N(0, I_k)``, ``x = W z + mu + eps`` with ``eps ~ N(0, Psi)``, so

    x ~ N(mu, W W^T + Psi)                                   (the marginal likelihood)
    z | x ~ N(M^-1 W^T Psi^-1 (x - mu), M^-1),  M = I_k + W^T Psi^-1 W   (the posterior)

with ``Psi = diag(psi)`` for factor analysis and ``Psi = sigma^2 I`` for PPCA. Shapes: data
``x: (n, D)``, loadings ``W: (D, k)``, mean ``mu: (D,)``, noise variances ``psi: (D,)``.
Everything is computed in float64 and returned as torch tensors; log-likelihoods are in nats.
These are the references the trained models are checked against, and the exact quantities
the models' reports and exact-posterior guide use.
"""

import math

import numpy as np
import torch
from scipy.linalg import subspace_angles
from torch.distributions import LowRankMultivariateNormal

from pyrovae.errors import PyrovaeError


def _f64(a) -> torch.Tensor:
    return torch.as_tensor(np.asarray(a) if not isinstance(a, torch.Tensor) else a).to(
        torch.float64
    )


def _check_rank(x: torch.Tensor, k: int) -> None:
    if x.dim() != 2:
        raise PyrovaeError(f"x must have shape (n, D), got {tuple(x.shape)}")
    if not 1 <= k < x.shape[1]:
        raise PyrovaeError(
            f"the closed forms need 1 <= k < D latent dimensions, got k = {k} for D = {x.shape[1]}"
        )


def pca_svd(x, k: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """PCA by SVD of the centered data.

    :param x: ``(n, D)`` data.
    :param k: number of components.
    :return: ``(components (k, D)`` with orthonormal rows, largest variance first;
        ``explained_variance (k,)`` = squared singular values / (n - 1), as sklearn's PCA;
        ``mean (D,))``.
    """
    x = _f64(x)
    _check_rank(x, k)
    mean = x.mean(0)
    _, s, vh = torch.linalg.svd(x - mean, full_matrices=False)
    return vh[:k], s[:k] ** 2 / (x.shape[0] - 1), mean


def ppca_ml(x, k: int) -> tuple[torch.Tensor, torch.Tensor, float]:
    """The maximum-likelihood PPCA solution (Tipping & Bishop, 1999, eqs. 7-8).

    With ``S = (1/n) sum (x - mean)(x - mean)^T`` and its eigenvalues ``l_1 >= ... >= l_D``
    (eigenvectors ``U``): ``sigma^2 = mean(l_{k+1}, ..., l_D)`` and
    ``W = U_k (L_k - sigma^2 I)^{1/2}`` (the rotation R = I), ``mu = mean``.

    :return: ``(W (D, k), mu (D,), sigma2)`` with ``sigma2`` a float (data units squared).
    """
    x = _f64(x)
    _check_rank(x, k)
    mu = x.mean(0)
    centered = x - mu
    cov = centered.T @ centered / x.shape[0]
    eigenvalues, eigenvectors = torch.linalg.eigh(cov)  # ascending
    eigenvalues, eigenvectors = eigenvalues.flip(0), eigenvectors.flip(1)
    sigma2 = float(eigenvalues[k:].mean())
    W = eigenvectors[:, :k] * (eigenvalues[:k] - sigma2).clamp_min(0).sqrt()
    return W, mu, sigma2


def fa_log_likelihood(x, W, mu, psi) -> torch.Tensor:
    """Exact ``log N(x; mu, W W^T + diag(psi))`` per row: ``(n,)`` nats, float64.

    Uses the Woodbury identity and the matrix determinant lemma (``O(n D k + D k^2)``), so
    it is cheap for wide data. ``psi`` may be a scalar (PPCA's ``sigma^2``) or ``(D,)``.
    """
    x, W, mu = _f64(x), _f64(W), _f64(mu)
    psi = _f64(psi).expand(x.shape[-1])
    return LowRankMultivariateNormal(mu, W, psi).log_prob(x)


def fa_posterior(x, W, mu, psi) -> tuple[torch.Tensor, torch.Tensor]:
    """The exact posterior ``p(z | x)`` of the model: ``(loc (n, k), cov (k, k))``.

    ``M = I + W^T Psi^-1 W``, ``cov = M^-1``, ``loc = (x - mu) Psi^-1 W M^-1``. Computed in
    the dtype of the inputs (differentiable), so a guide can use it during training.
    """
    psi = torch.as_tensor(psi, dtype=W.dtype, device=W.device).expand(W.shape[0])
    scaled = W / psi.unsqueeze(-1)  # Psi^-1 W: (D, k)
    eye = torch.eye(W.shape[1], dtype=W.dtype, device=W.device)
    precision = eye + W.T @ scaled
    cov = torch.cholesky_inverse(torch.linalg.cholesky(precision))
    return (x - mu) @ scaled @ cov, cov


def principal_angles(a, b) -> np.ndarray:
    """Principal angles (radians, largest first) between the column spaces of ``a: (D, k)``
    and ``b: (D, m)`` (scipy.linalg.subspace_angles)."""
    return subspace_angles(_f64(a).numpy(), _f64(b).numpy())


def largest_principal_angle_deg(a, b) -> float:
    """The largest principal angle between the column spaces of ``a`` and ``b``, in degrees:
    0 when one space contains the other, 90 when some direction is orthogonal to it."""
    return math.degrees(float(principal_angles(a, b)[0]))


def random_fa_parameters(D: int, k: int, isotropic: bool = False, seed: int = 0):
    """A random FA (or PPCA) model ``(W (D, k), mu (D,), psi (D,))``, float64:
    ``W``, ``mu`` ~ N(0, 1); ``psi`` ~ U(0.2, 1), or 0.5 everywhere when ``isotropic``."""
    g = torch.Generator().manual_seed(seed)
    W = torch.randn(D, k, generator=g, dtype=torch.float64)
    mu = torch.randn(D, generator=g, dtype=torch.float64)
    if isotropic:
        psi = torch.full((D,), 0.5, dtype=torch.float64)
    else:
        psi = 0.2 + 0.8 * torch.rand(D, generator=g, dtype=torch.float64)
    return W, mu, psi


def sample_fa(n: int, W, mu, psi, seed: int = 0) -> torch.Tensor:
    """``n`` rows drawn from the factor-analysis model: ``(n, D)`` float64."""
    W, mu = _f64(W), _f64(mu)
    psi = _f64(psi).expand(W.shape[0])
    generator = torch.Generator().manual_seed(seed)
    z = torch.randn(n, W.shape[1], generator=generator, dtype=torch.float64)
    eps = torch.randn(n, W.shape[0], generator=generator, dtype=torch.float64)
    return z @ W.T + mu + eps * psi.sqrt()
