"""Registries of models and guides: name -> factory, plus ``package.module:attr`` for user code.

A model factory is called as ``factory(spec)``; a guide factory as ``factory(spec)`` or,
when it has a parameter named ``model``, ``factory(spec, model=model)`` (guides such as an
exact posterior need the model's parameters). Classes are factories too.
"""

import importlib
import inspect
from collections.abc import Callable

from torch import nn

from pyrovae.errors import PyrovaeError
from pyrovae.models.autoencoders import (
    AE,
    DAE,
    SAE,
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
from pyrovae.models.spec import ModelSpec
from pyrovae.models.ssvae import SSVAE, SSVAEGuide
from pyrovae.models.vae import VAE, MLPNormalGuide

MODELS: dict[str, Callable[..., nn.Module]] = {"vae": VAE, "ssvae": SSVAE}
GUIDES: dict[str, Callable[..., nn.Module]] = {"mlp-normal": MLPNormalGuide, "ssvae": SSVAEGuide}
# Issue 4: the linear-Gaussian models and the autoencoder family.
MODELS.update(
    {
        "fa": FactorAnalysis,
        "ppca": PPCA,
        "bayesian-fa": BayesianFactorAnalysis,
        "ae": AE,
        "dae": DAE,
        "sae": SAE,
        "linear-ae": LinearAE,
    }
)
GUIDES.update(
    {
        "linear-normal": LinearNormalGuide,
        "exact-posterior": ExactPosteriorGuide,
        "bayesian-fa": BayesianFAGuide,
        "delta": DeltaGuide,
        "delta-denoising": DenoisingDeltaGuide,
        "delta-sparse": SparseDeltaGuide,
        "delta-linear": LinearDeltaGuide,
    }
)


def resolve(name: str, registry: dict[str, Callable], kind: str) -> Callable:
    """The factory registered as ``name``, or the attribute named by ``package.module:attr``."""
    if ":" not in name:
        if name not in registry:
            raise PyrovaeError(
                f"unknown {kind} {name!r}; choose one of {', '.join(sorted(registry))} "
                f"or give your own as package.module:attr"
            )
        return registry[name]
    module_name, _, attr = name.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise PyrovaeError(
            f"cannot import {module_name!r} for --{kind} {name}: {exc}; "
            "make sure the module is on PYTHONPATH (or run from its folder)"
        ) from exc
    if not hasattr(module, attr):
        raise PyrovaeError(f"module {module_name!r} has no attribute {attr!r} (--{kind} {name})")
    return getattr(module, attr)


def build_model(name: str, spec: ModelSpec) -> nn.Module:
    """Instantiate the model registered as ``name`` (or ``module:attr``) for ``spec``."""
    return resolve(name, MODELS, "model")(spec)


def build_guide(name: str | None, spec: ModelSpec, model: nn.Module) -> nn.Module:
    """Instantiate the guide ``name``; ``None`` takes the model's ``default_guide``."""
    if name is None:
        name = getattr(model, "default_guide", None)
        if name is None:
            raise PyrovaeError(
                f"model {type(model).__name__} names no default_guide; pass --guide NAME "
                "(a registered guide or package.module:attr)"
            )
    factory = resolve(name, GUIDES, "guide")
    try:
        wants_model = "model" in inspect.signature(factory).parameters
    except (TypeError, ValueError):
        wants_model = False
    return factory(spec, model=model) if wants_model else factory(spec)
