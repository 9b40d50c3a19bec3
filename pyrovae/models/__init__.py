"""Generative models and their guides as Pyro programs, and the registries that name them.

Nothing here knows how a program is trained, evaluated, plotted or saved: that is the job of
the recipes (:mod:`pyrovae.recipes`) and the runner.

May import: :mod:`pyrovae.errors` only (and torch and Pyro); never plotting, scikit-learn,
ArviZ or anything that trains.
"""

from pyrovae.models.autoencoders import (
    DeltaGuide,
    DenoisingDeltaGuide,
    LinearAE,
    LinearDeltaGuide,
    SparseDeltaGuide,
)
from pyrovae.models.factor_analysis import (
    PPCA,
    BayesianFactorAnalysis,
    BayesianFAGuide,
    ExactPosteriorGuide,
    FactorAnalysis,
    LinearNormalGuide,
)
from pyrovae.models.gumbel_vae import GumbelGuide, GumbelVAE
from pyrovae.models.likelihoods import LIKELIHOODS, build_likelihood
from pyrovae.models.registry import GUIDES, MODELS, build_guide, build_model
from pyrovae.models.rich_guides import IAFGuide, LowRankNormalGuide
from pyrovae.models.spec import ModelSpec
from pyrovae.models.ssvae import SSVAE, SSVAEGuide
from pyrovae.models.vae import VAE, MLPNormalGuide

__all__ = [
    "BayesianFAGuide",
    "BayesianFactorAnalysis",
    "DeltaGuide",
    "DenoisingDeltaGuide",
    "ExactPosteriorGuide",
    "FactorAnalysis",
    "IAFGuide",
    "GUIDES",
    "GumbelGuide",
    "GumbelVAE",
    "LIKELIHOODS",
    "LinearAE",
    "LinearDeltaGuide",
    "LinearNormalGuide",
    "LowRankNormalGuide",
    "MLPNormalGuide",
    "MODELS",
    "ModelSpec",
    "PPCA",
    "SSVAE",
    "SSVAEGuide",
    "SparseDeltaGuide",
    "VAE",
    "build_guide",
    "build_likelihood",
    "build_model",
]
