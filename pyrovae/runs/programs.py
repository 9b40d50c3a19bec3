"""From what a user names or passes to the two Pyro programs the runner trains.

Four forms of a pair are accepted, on the command line and in ``pyrovae.train``:

1. a model and a guide built from a :class:`~pyrovae.models.ModelSpec`: registered names
   (``--model vae --guide mlp-normal``) or ``package.module:attr`` naming classes or
   factory functions ``f(spec)``;
2. one object with ``model`` and ``guide`` methods, as in Pyro's ``examples/vae/vae.py``
   (``--pair my_vae:VAE``): a class built from a ``ModelSpec`` or with no arguments, or an
   instance (Python API);
3. plain functions ``model(x)`` and ``guide(x)`` that use ``pyro.module`` / ``pyro.param``
   (``--model my_fns:model --guide my_fns:guide``);
4. any of these passed as Python objects: classes, factories, instances or functions.

An autoguide class (``--guide pyro.infer.autoguide:AutoNormal``) is built on the model,
``AutoNormal(model)`` (see :mod:`pyrovae.inference.autoguides`).

A class is always built (with the spec, or with no arguments if it takes none). A function is
a factory when its first parameter is named ``spec`` or annotated ``ModelSpec``; any other
function, and any callable instance, is the program itself.
"""

import inspect
import types
from dataclasses import dataclass

from pyrovae.errors import PyrovaeError
from pyrovae.inference.autoguides import build_autoguide, is_autoguide_class
from pyrovae.models import GUIDES, ModelSpec, build_guide, build_model
from pyrovae.recipes import Recipe
from pyrovae.recipes.lookup import resolve_attr


@dataclass
class Programs:
    """The two programs of a pair, and how the run folder names them.

    :param model, guide: the programs, ``model(x, ...)`` and ``guide(x, ...)``.
    :param model_name, guide_name: registry names or ``package.module:attr`` (what
        ``config.json`` records to rebuild them).
    """

    model: object
    guide: object
    model_name: str
    guide_name: str | None


def object_name(obj) -> str:
    """``package.module:qualname`` of a class or function (how config.json records it)."""
    target = obj if inspect.isclass(obj) or inspect.isfunction(obj) else type(obj)
    return f"{target.__module__}:{target.__qualname__}"


def _is_factory_function(fn) -> bool:
    params = list(inspect.signature(fn).parameters.values())
    return bool(params) and (params[0].name == "spec" or params[0].annotation is ModelSpec)


def build_object(factory, spec: ModelSpec, what: str):
    """Call a class or factory with ``spec`` when it takes one (its first parameter is named
    ``spec``, annotated ``ModelSpec``, or is its only required one), else with no arguments."""
    try:
        signature = inspect.signature(factory)
    except (TypeError, ValueError):
        return factory(spec)
    params = [
        p
        for p in signature.parameters.values()
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
    ]
    required = [p for p in signature.parameters.values() if p.default is p.empty and p.kind
                not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]  # fmt: skip
    takes_spec = bool(params) and (params[0].name == "spec" or params[0].annotation is ModelSpec)
    if takes_spec and len(required) <= 1:
        return factory(spec)
    if not required:
        return factory()
    if len(required) == 1 and required[0] is (params[0] if params else None):
        return factory(spec)
    raise PyrovaeError(
        f"{what} cannot be built: it takes {signature}, but a factory takes one ModelSpec "
        "argument (or none); give a class or function f(spec), or the program itself"
    )


def as_program(obj, spec: ModelSpec, what: str, model=None):
    """A Pyro program from a class, a factory, an instance or a function (see the module);
    an autoguide class is built on ``model`` (the guide's model)."""
    if is_autoguide_class(obj):
        if model is None:
            raise PyrovaeError(
                f"{what} is an autoguide, a guide built on a model: give it as --guide "
                f"(with --model), not as the model"
            )
        return build_autoguide(obj, model, what)
    if isinstance(obj, types.BuiltinFunctionType | types.BuiltinMethodType):
        raise PyrovaeError(
            f"{what} is the built-in {obj.__qualname__}, not a Pyro program: give a class, a "
            "factory f(spec), or a function model(x) that calls pyro.sample"
        )
    if inspect.isclass(obj) or (inspect.isfunction(obj) and _is_factory_function(obj)):
        obj = build_object(obj, spec, what)
    if not callable(obj):
        raise PyrovaeError(f"{what} is a {type(obj).__name__}, not a callable Pyro program")
    return obj


def _user_program(value, flag: str, spec, what: str, model=None):
    """A program from ``package.module:attr`` or a Python object; None for a registry name."""
    if isinstance(value, str) and ":" not in value:
        return None  # a registry name: built by the caller
    obj = resolve_attr(value, flag) if isinstance(value, str) else value
    return as_program(obj, spec, what, model)


def build_programs(model, guide, pair, spec: ModelSpec, recipe: type[Recipe]) -> Programs:
    """The model and guide programs of a run (see the module for the forms).

    :param model, guide, pair: names (registry or ``package.module:attr``) or objects; give
        ``pair`` alone, or ``model`` with an optional ``guide``.
    """
    if pair is not None:
        if model is not None or guide is not None:
            raise PyrovaeError("give either --pair or --model/--guide, not both")
        obj = resolve_attr(pair, "--pair") if isinstance(pair, str) else pair
        name = pair if isinstance(pair, str) else object_name(pair)
        if inspect.isclass(obj):
            obj = build_object(obj, spec, f"--pair {name}")
        methods = [getattr(obj, m, None) for m in ("model", "guide")]
        if not all(callable(m) for m in methods):
            raise PyrovaeError(
                f"--pair {name} needs model and guide methods (as in Pyro's VAE example); "
                "for separate programs use --model and --guide"
            )
        return Programs(*methods, model_name=name, guide_name=None)

    model = "vae" if model is None else model
    model_name = model if isinstance(model, str) else object_name(model)
    model_program = _user_program(model, "--model", spec, f"--model {model_name}")
    if model_program is None:
        model_program = build_model(model, spec)

    if guide is None:
        guide = recipe.default_guide
        if guide is None:
            raise PyrovaeError(
                f"--model {model_name} has no default guide; pass --guide NAME (one of "
                f"{', '.join(sorted(GUIDES))}) or --guide package.module:attr"
            )
    guide_name = guide if isinstance(guide, str) else object_name(guide)
    guide_program = _user_program(guide, "--guide", spec, f"--guide {guide_name}", model_program)
    if guide_program is None:
        guide_program = build_guide(guide, spec, model_program)
    return Programs(model_program, guide_program, model_name, guide_name)
