"""Generative models and their guides, and the registries that name them."""

from pyrovae.models.likelihoods import LIKELIHOODS, build_likelihood
from pyrovae.models.registry import GUIDES, MODELS, build_guide, build_model, resolve
from pyrovae.models.spec import ModelSpec
from pyrovae.models.vae import VAE, MLPNormalGuide

__all__ = [
    "GUIDES",
    "LIKELIHOODS",
    "MODELS",
    "MLPNormalGuide",
    "ModelSpec",
    "VAE",
    "build_guide",
    "build_likelihood",
    "build_model",
    "resolve",
]
