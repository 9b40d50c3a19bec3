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

What ``config.json`` records of an object (:func:`describe`): the ``package.module:attr`` of
its class or function (a ``config_enumerate`` wrapper by the function it wraps), and for an
instance (or the object of a bound method) the constructor arguments that rebuild it, when
they are plain JSON values and rebuilding from them is checked to give the same networks;
otherwise ``"pass the object"``, and reopening the folder needs the object again
(``pyrovae.load_run(path, pair=obj)``).
"""

import functools
import inspect
import json
import math
import sys
import types
from dataclasses import dataclass, fields

import torch
from pyro.poutine.messenger import unwrap
from torch import nn

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


PASS_THE_OBJECT = "pass the object"
"""What ``config.json``'s ``rebuild`` holds for an object the run folder cannot rebuild."""


def bound_to(obj) -> tuple[object, str] | None:
    """``(instance, method name)`` when ``obj`` is a method bound to an instance: a plain
    bound method (``vae.model``), or one a Pyro handler wraps (``config_enumerate`` on a
    method gives ``functools.partial(function, instance)``); else None."""
    if inspect.ismethod(obj) and not inspect.isclass(obj.__self__):
        return obj.__self__, obj.__func__.__name__
    if isinstance(obj, functools.partial) and len(obj.args) == 1 and not obj.keywords:
        instance = obj.args[0]
        for klass in type(instance).__mro__:
            for name, attr in vars(klass).items():
                if attr is obj.func or getattr(attr, "func", None) is obj.func:
                    return instance, name
    return None


def _target(obj):
    """The class or function that names ``obj``: Pyro's handler wrappers (``config_enumerate``)
    unwrapped with :func:`pyro.poutine.messenger.unwrap`, a bound method's instance's class."""
    obj = unwrap(obj)
    bound = bound_to(obj)
    if bound is not None:
        return type(bound[0])
    if inspect.isclass(obj) or inspect.isfunction(obj):
        return obj
    return type(obj)


def object_name(obj) -> str:
    """``package.module:qualname`` of a class or function, or of an instance's class, a bound
    method's instance's class, a ``config_enumerate`` wrapper's function (how config.json
    records it)."""
    target = _target(obj)
    return f"{target.__module__}:{target.__qualname__}"


def is_plain(value) -> bool:
    """Whether ``value`` is a JSON value: None, a bool, a number, a string, or lists, tuples
    and string-keyed dicts of them."""
    if value is None or isinstance(value, bool | int | str):
        return True
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, list | tuple):
        return all(is_plain(v) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and is_plain(v) for k, v in value.items())
    return False


def _network_shapes(obj) -> dict:
    """Name -> shape of every tensor of ``obj``'s state dict (itself an ``nn.Module``, or the
    modules it holds as attributes)."""
    if isinstance(obj, nn.Module):
        modules = {"": obj}
    else:
        modules = {k: v for k, v in vars(obj).items() if isinstance(v, nn.Module)}
    return {
        f"{key}.{name}": tuple(t.shape)
        for key, module in modules.items()
        for name, t in module.state_dict().items()
    }


_MISSING, _NOT_PLAIN = object(), object()


def _recorded_value(obj, name: str):
    """What ``obj`` holds for constructor parameter ``name``: ``obj.name``, ``obj._name`` or
    ``obj.hparams[name]`` (as scvi-tools and Lightning keep them); ``_NOT_PLAIN`` when what
    it holds there is no JSON value (a tensor, a module), ``_MISSING`` when nothing."""
    hparams = getattr(obj, "hparams", None)
    candidates = [getattr(obj, name, _MISSING), getattr(obj, "_" + name, _MISSING)]
    if isinstance(hparams, dict):
        candidates.append(hparams.get(name, _MISSING))
    for value in candidates:
        if value is not _MISSING:
            return value if is_plain(value) else _NOT_PLAIN
    return _MISSING


def constructor_arguments(obj) -> dict | None:
    """Keyword arguments that rebuild the instance ``obj`` as ``type(obj)(**arguments)``, read
    from its attributes (:func:`_recorded_value`) for the parameters of its class's
    ``__init__``; None when it holds a value that is not plain for one (a tensor, a
    module), when a parameter without a default has no value, or when the
    object rebuilt from them differs: other network shapes, or another value of an attribute
    named as a parameter. A parameter the object does not keep takes its default, and the
    rebuilt networks tell whether that was the value used."""
    cls = type(obj)
    try:
        parameters = list(inspect.signature(cls.__init__).parameters.values())[1:]
    except (TypeError, ValueError):
        return None
    arguments = {}
    for p in parameters:
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            continue
        value = _recorded_value(obj, p.name)
        if value is _NOT_PLAIN or (value is _MISSING and p.default is p.empty):
            return None
        if value is not _MISSING:
            arguments[p.name] = value
    arguments = json.loads(json.dumps(arguments))  # as config.json will hand them back
    try:
        with torch.random.fork_rng(devices=[]):  # building draws initial weights
            rebuilt = cls(**arguments)
    except Exception:  # the user's constructor refused them: the object must be passed again
        return None
    if _network_shapes(rebuilt) != _network_shapes(obj):
        return None
    for name, value in arguments.items():  # compared as JSON: a tuple kept as a tuple
        again = _recorded_value(rebuilt, name)
        if again in (_MISSING, _NOT_PLAIN) or json.loads(json.dumps(again)) != value:
            return None
    return arguments


def describe(obj) -> tuple[str, dict | str | None]:
    """``(name, rebuild)``: how ``config.json`` records a program or pair given as an object.

    ``rebuild`` is None for a class or a function found by its name; ``{"arguments": {...}}``
    for an instance rebuilt by its class from them (and ``"method"`` for a bound method);
    :data:`PASS_THE_OBJECT` for an object that cannot be rebuilt from the folder (arguments
    that are not plain values or do not rebuild it, code defined in ``__main__`` or inside a
    function)."""
    name = object_name(obj)
    target = _target(obj)
    if target.__module__ == "__main__" or "<locals>" in target.__qualname__:
        return name, PASS_THE_OBJECT
    inner = unwrap(obj)
    if inner is not obj and not inspect.isfunction(inner):
        return name, PASS_THE_OBJECT  # a handler around an instance: rebuilt, it would lack it
    if inspect.isclass(inner) or inspect.isfunction(inner):
        # Found again by its name only if the module holds this very object (a function
        # wrapped by config_enumerate where it is called, not where it is defined, is not).
        found = sys.modules.get(target.__module__)
        for part in target.__qualname__.split("."):
            found = getattr(found, part, None)
        return name, None if found is obj else PASS_THE_OBJECT
    bound = bound_to(obj)
    instance, method = bound if bound is not None else (obj, None)
    arguments = constructor_arguments(instance)
    if arguments is None:
        return name, PASS_THE_OBJECT
    record = {"arguments": arguments}
    if method is not None:
        record["method"] = method
    return name, record


class ReadSpec(ModelSpec):
    """A :class:`ModelSpec` that notes which of its fields are read (:meth:`fields_read`), so
    that a flag no factory reads (``--latent-dim`` for a pair given as an instance) is
    refused rather than reported as the pair's."""

    @classmethod
    def of(cls, spec: ModelSpec) -> "ReadSpec":
        watched = cls(**{f.name: getattr(spec, f.name) for f in fields(ModelSpec)})
        object.__setattr__(watched, "_read", set())
        return watched

    def __getattribute__(self, name):
        if not name.startswith("_"):
            read = object.__getattribute__(self, "__dict__").get("_read")
            if read is not None:
                read.add(name)
        return object.__getattribute__(self, name)

    def fields_read(self) -> frozenset:
        return frozenset(self.__dict__.get("_read", ()))


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


def rebuilt(name: str, record, flag: str, instances: dict | None = None):
    """The object ``config.json`` records as ``name`` with ``record`` (see :func:`describe`):
    its class built with the recorded arguments, or that instance's recorded method.

    :param instances: instances already rebuilt in this run, by name and arguments, so that
        a model and a guide bound to one object share it again.
    """
    if record == PASS_THE_OBJECT:
        raise PyrovaeError(
            f"{flag} {name} was given as a Python object that the run folder cannot rebuild "
            f"(config.json records rebuild: {PASS_THE_OBJECT!r}); pass it again: "
            f"pyrovae.load_run(path, {flag[2:]}=obj) or pyrovae.train(resume=path, "
            f"{flag[2:]}=obj)"
        )
    if not isinstance(record, dict) or not isinstance(record.get("arguments"), dict):
        raise PyrovaeError(
            f"config.json: rebuild of {flag} {name} must be {{'arguments': {{...}}}} or "
            f"{PASS_THE_OBJECT!r}, got {json.dumps(record)[:60]}; fix it or pass the object"
        )
    key = (name, json.dumps(record["arguments"], sort_keys=True))
    instances = {} if instances is None else instances
    if key not in instances:
        cls = resolve_attr(name, flag)
        try:
            instances[key] = cls(**record["arguments"])
        except Exception as exc:  # the user's constructor: its message, in one line
            raise PyrovaeError(
                f"{flag} {name} cannot be rebuilt from config.json's arguments "
                f"{record['arguments']}: {type(exc).__name__}: {exc}; pass the object "
                f"again (pyrovae.load_run(path, {flag[2:]}=obj))"
            ) from exc
    obj = instances[key]
    return getattr(obj, record["method"]) if "method" in record else obj


def _user_program(value, flag: str, spec, what: str, record=None, instances=None, model=None):
    """A program from ``package.module:attr`` (rebuilt from ``record`` when config.json holds
    one) or a Python object; None for a registry name."""
    if isinstance(value, str) and ":" not in value:
        return None  # a registry name: built by the caller
    if isinstance(value, str) and record is not None:
        return rebuilt(value, record, flag, instances)
    obj = resolve_attr(value, flag) if isinstance(value, str) else value
    return as_program(obj, spec, what, model)


def build_programs(
    model, guide, pair, spec: ModelSpec, recipe: type[Recipe], rebuild: dict | None = None
) -> Programs:
    """The model and guide programs of a run (see the module for the forms).

    :param model, guide, pair: names (registry or ``package.module:attr``) or objects; give
        ``pair`` alone, or ``model`` with an optional ``guide``.
    :param rebuild: config.json's records of the names given as objects (:func:`describe`),
        by ``model``, ``guide`` or ``pair``.
    """
    rebuild = rebuild or {}
    instances = {}
    if pair is not None:
        if model is not None or guide is not None:
            raise PyrovaeError("give either --pair or --model/--guide, not both")
        if isinstance(pair, str) and "pair" in rebuild:
            obj = rebuilt(pair, rebuild["pair"], "--pair", instances)
        else:
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
    model_program = _user_program(
        model, "--model", spec, f"--model {model_name}", rebuild.get("model"), instances
    )
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
    guide_program = _user_program(
        guide,
        "--guide",
        spec,
        f"--guide {guide_name}",
        rebuild.get("guide"),
        instances,
        model_program,
    )
    if guide_program is None:
        guide_program = build_guide(guide, spec, model_program)
    return Programs(model_program, guide_program, model_name, guide_name)
