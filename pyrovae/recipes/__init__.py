"""Recipes: what each registered model needs beyond its program (see :mod:`.base`).

``RECIPES[model name]`` is the recipe of a registered model; a model without one (a user's
own) gets the base :class:`Recipe`, whose defaults serve any pair. :func:`register` adds a
model, its default guide and its recipe in one call.

May import: :mod:`pyrovae.models`, :mod:`pyrovae.inference`, :mod:`pyrovae.data`,
:mod:`pyrovae.plots` and the base; nothing above it (the run folder, reports, runs, CLI).
"""

from pyrovae.recipes.base import Recipe, RecipeOption, Report
from pyrovae.recipes.lookup import names_code, recipe_class, resolve_attr
from pyrovae.recipes.registry import GUIDE_OPTIONS, RECIPES, build_pair, recipe_for, register

__all__ = [
    "GUIDE_OPTIONS",
    "RECIPES",
    "Recipe",
    "RecipeOption",
    "Report",
    "build_pair",
    "names_code",
    "recipe_class",
    "recipe_for",
    "register",
    "resolve_attr",
]
