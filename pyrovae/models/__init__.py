"""Generative models and their guides, and the registries that name them."""

from pyrovae.models.autoencoders import AE, DAE, SAE, LinearAE
from pyrovae.models.factor_analysis import PPCA, BayesianFactorAnalysis, FactorAnalysis
from pyrovae.models.likelihoods import LIKELIHOODS, build_likelihood
from pyrovae.models.registry import GUIDES, MODELS, build_guide, build_model, resolve
from pyrovae.models.spec import ModelSpec
from pyrovae.models.ssvae import SSVAE, SSVAEGuide
from pyrovae.models.vae import VAE, MLPNormalGuide

__all__ = [
    "AE",
    "BayesianFactorAnalysis",
    "DAE",
    "FactorAnalysis",
    "LinearAE",
    "PPCA",
    "SAE",
    "GUIDES",
    "LIKELIHOODS",
    "MODELS",
    "MLPNormalGuide",
    "ModelSpec",
    "SSVAE",
    "SSVAEGuide",
    "VAE",
    "build_guide",
    "build_likelihood",
    "build_model",
    "resolve",
]
