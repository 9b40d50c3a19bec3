"""Objects named ``package.module:attr`` on the command line or in ``config.json``, and the
recipe of a run."""

import importlib
import inspect

from pyrovae.errors import PyrovaeError
from pyrovae.recipes.base import Recipe
from pyrovae.recipes.registry import recipe_for


def names_code(value) -> bool:
    """Is ``value`` a ``package.module:attr`` name, i.e. code that resolving it imports?"""
    return isinstance(value, str) and ":" in value


def resolve_attr(name: str, flag: str):
    """The object named ``package.module:attr``, or a one-line error that says why not."""
    module_name, _, attr = name.partition(":")
    if not module_name or not attr:
        raise PyrovaeError(f"{flag} {name}: give package.module:attr, e.g. my_pair:Model")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise PyrovaeError(
            f"cannot import {module_name!r} for {flag} {name}: {exc}; "
            "make sure the module is on PYTHONPATH (or run from its folder)"
        ) from exc
    except Exception as exc:  # the user's module raised while importing
        raise PyrovaeError(
            f"importing {module_name!r} for {flag} {name} failed: {type(exc).__name__}: {exc}"
        ) from exc
    obj = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise PyrovaeError(f"module {module_name!r} has no attribute {attr!r} ({flag} {name})")
        obj = getattr(obj, part)
    return obj


def recipe_class(recipe, model) -> type[Recipe]:
    """The recipe of a run: named (``package.module:attr``), given, or the model's own."""
    if recipe is None:
        return recipe_for(model if isinstance(model, str) else None)
    cls = resolve_attr(recipe, "--recipe") if isinstance(recipe, str) else recipe
    if not (inspect.isclass(cls) and issubclass(cls, Recipe)):
        raise PyrovaeError(f"--recipe {recipe} is not a subclass of pyrovae.recipes.Recipe")
    return cls
