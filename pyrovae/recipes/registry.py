"""The registry of recipes by model name, and of the options of registered guides."""

from pyrovae.models import GUIDES, MODELS, build_guide, build_model
from pyrovae.recipes.autoencoders import AERecipe, DAERecipe, LinearAERecipe, SAERecipe
from pyrovae.recipes.base import Recipe, RecipeOption
from pyrovae.recipes.factor_analysis import BayesianFARecipe, FARecipe, PPCARecipe
from pyrovae.recipes.gumbel_vae import GumbelVAERecipe
from pyrovae.recipes.ssvae import SSVAERecipe
from pyrovae.recipes.vae import VAERecipe

GUIDE_OPTIONS: dict[str, tuple[RecipeOption, ...]] = {
    "lowrank": (
        RecipeOption("rank", int, 2, "lowrank: rank r of the covariance's low-rank factor",
                     lambda v: None if v >= 1 else f"must be at least 1, got {v}"),
    ),
    "iaf": (
        RecipeOption("flows", int, 2, "iaf: inverse autoregressive flows after the Normal",
                     lambda v: None if v >= 1 else f"must be at least 1, got {v}"),
    ),
}  # fmt: skip
"""Options of registered guides (given like a model's, they land in ``config.options``)."""

RECIPES: dict[str, type[Recipe]] = {
    "vae": VAERecipe,
    "ssvae": SSVAERecipe,
    "fa": FARecipe,
    "ppca": PPCARecipe,
    "bayesian-fa": BayesianFARecipe,
    "ae": AERecipe,
    "dae": DAERecipe,
    "sae": SAERecipe,
    "linear-ae": LinearAERecipe,
    "gumbel-vae": GumbelVAERecipe,
}


def recipe_for(model_name: str | None) -> type[Recipe]:
    """The recipe of a registered model, else the base :class:`Recipe`."""
    return RECIPES.get(model_name, Recipe) if isinstance(model_name, str) else Recipe


def register(name: str, model, guide=None, recipe: type[Recipe] | None = None) -> None:
    """Register ``model`` (a ``spec -> model`` factory) as ``--model name``.

    :param guide: its default guide: a registered guide name, or a ``(spec, model) -> guide``
        factory, registered under ``name`` too.
    :param recipe: its recipe (default: the base :class:`Recipe`).
    """
    MODELS[name] = model
    default_guide = guide
    if guide is not None and not isinstance(guide, str):
        GUIDES[name] = guide
        default_guide = name
    base = recipe or Recipe
    RECIPES[name] = type(f"{name}Recipe", (base,), {"default_guide": default_guide})


def build_pair(name: str, spec, guide: str | None = None):
    """``(model, guide)`` of the registered model ``name`` (its default guide unless
    ``guide`` names another)."""
    model = build_model(name, spec)
    return model, build_guide(guide or recipe_for(name).default_guide, spec, model)
