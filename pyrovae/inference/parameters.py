"""Where the parameters of a Pyro program live, and how to save and restore all of them.

A program's parameters are ``nn.Module`` parameters (of the program itself, or of the module
whose bound method it is: ``vae.model``), or ``pyro.param`` sites in Pyro's param store
(which also holds the modules registered with ``pyro.module``). A snapshot holds both: the
modules' ``state_dict`` and the store's unconstrained values, so constrained sites come back
exactly.
"""

import functools
import inspect

import pyro
import torch
from pyro.poutine.messenger import unwrap
from torch import nn

from pyrovae.errors import PyrovaeError
from pyrovae.inference.arguments import user_program


def owner_module(program) -> nn.Module | None:
    """The ``nn.Module`` holding ``program``'s parameters: the program itself, or the object
    of a bound method (``vae.model``); None for a plain function. A
    :class:`~pyrovae.inference.arguments.FedProgram` is looked through."""
    program = user_program(program)
    if isinstance(program, nn.Module):
        return program
    owner = getattr(program, "__self__", None)
    return owner if isinstance(owner, nn.Module) else None


def program_modules(program) -> list[nn.Module]:
    """The ``nn.Module`` s a program runs: its :func:`owner_module` (also the instance of a
    method a Pyro handler wraps, ``config_enumerate`` on a method), else, for a function, the
    modules it names as globals or closure variables (a plain ``model(x)`` calling
    ``pyro.module("decoder", decoder)`` on a module-level network). Pyro does not keep the
    module a ``pyro.module`` call registered, only its parameters, so this is where it is
    found again (to set eval mode, or freeze it)."""
    owner = owner_module(program)
    if owner is not None:
        return [owner]
    program = unwrap(program)
    if isinstance(program, functools.partial):
        held = [a for a in program.args if isinstance(a, nn.Module)]
        if held:
            return held
        program = unwrap(program.func)
    if not inspect.isfunction(program):
        return []
    names = inspect.getclosurevars(program)
    found = [*names.nonlocals.values(), *names.globals.values()]
    return list({id(m): m for m in found if isinstance(m, nn.Module)}.values())


def module_state(program) -> dict[str, torch.Tensor]:
    """A detached copy of the ``state_dict`` of ``program``'s module (``{}`` without one)."""
    module = owner_module(program)
    if module is None:
        return {}
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def check_module_state(program, state: dict, role: str) -> None:
    """A one-line error naming the first parameter where a saved ``state`` and ``program``'s
    module differ (a missing or extra name, another shape), so that a checkpoint of another
    model or another width is refused before anything is copied."""
    module = owner_module(program)
    own = module.state_dict() if module is not None else {}
    if not isinstance(state, dict):
        raise PyrovaeError(f"the checkpoint's {role} parameters are not a state dict")
    missing, extra = sorted(set(own) - set(state)), sorted(set(state) - set(own))
    problem = None
    if missing:
        problem = f"it lacks {role} parameter {missing[0]!r}"
    elif extra:
        problem = f"it has {role} parameter {extra[0]!r}, which the {role} does not"
    else:
        for name, value in own.items():
            saved = state[name]
            if not torch.is_tensor(saved) or saved.shape != value.shape:
                shape = tuple(saved.shape) if torch.is_tensor(saved) else type(saved).__name__
                problem = (
                    f"its {role} parameter {name!r} has shape {shape}, the {role} built from "
                    f"config.json has {tuple(value.shape)}"
                )
                break
    if problem:
        raise PyrovaeError(
            f"the checkpoint does not match config.json: {problem}; it was written by another "
            "model or other settings (restore the config.json it was trained with, or start "
            "the run afresh)"
        )


def load_module_state(program, state: dict[str, torch.Tensor]) -> None:
    module = owner_module(program)
    if module is not None:
        module.load_state_dict(state)


def param_store_state() -> dict[str, torch.Tensor]:
    """A detached copy of every ``pyro.param`` site's unconstrained value."""
    return {n: p.detach().clone() for n, p in pyro.get_param_store().named_parameters()}


@torch.no_grad()
def load_param_store_state(state: dict[str, torch.Tensor]) -> None:
    """Copy saved unconstrained values into the param store's sites (created beforehand by
    running the programs once, which also sets their constraints)."""
    store = dict(pyro.get_param_store().named_parameters())
    missing = sorted(set(state) - set(store))
    if missing:
        raise PyrovaeError(
            f"the checkpoint has pyro.param sites {missing[:3]} that the programs no longer "
            "create; load it with the program code it was trained with"
        )
    for name, value in state.items():
        if not torch.is_tensor(value) or value.shape != store[name].shape:
            shape = tuple(value.shape) if torch.is_tensor(value) else type(value).__name__
            raise PyrovaeError(
                f"the checkpoint does not match config.json: its pyro.param site {name!r} has "
                f"shape {shape}, the programs create {tuple(store[name].shape)}; restore the "
                "config.json it was trained with"
            )
    for name, value in state.items():
        store[name].copy_(value)


def snapshot(model, guide) -> dict:
    """``{"model", "guide", "param_store"}``: every parameter of the pair, detached."""
    return {
        "model": module_state(model),
        "guide": module_state(guide),
        "param_store": param_store_state(),
    }


def restore(model, guide, state: dict) -> None:
    """Load a :func:`snapshot` back into the pair, after checking that every saved module
    parameter has the name and shape of the pair's own (:func:`check_module_state`)."""
    check_module_state(model, state["model"], "model")
    check_module_state(guide, state["guide"], "guide")
    load_module_state(model, state["model"])
    load_module_state(guide, state["guide"])
    load_param_store_state(state.get("param_store", {}))


def all_parameters(model, guide) -> list[torch.Tensor]:
    """The distinct tensors to optimize: the modules' parameters, then the param store's."""
    seen, params = set(), []
    groups = [owner_module(p).parameters() for p in (model, guide) if owner_module(p)]
    groups.append(p for _, p in pyro.get_param_store().named_parameters())
    for group in groups:
        for p in group:
            if id(p) not in seen and p.requires_grad:
                seen.add(id(p))
                params.append(p)
    return params


def device_of(*programs) -> torch.device:
    """The device of the first parameter of the programs' modules (CPU without one)."""
    for program in programs:
        module = owner_module(program)
        if module is not None:
            for p in module.parameters():
                return p.device
    return torch.device("cpu")


def parameters_by_module(model, guide) -> dict[str, int]:
    """Trainable numbers of the pair by the network that holds them: the child modules of
    the programs' own ``nn.Module`` s (``model.decoder``, ``guide.encoder`` when model and
    guide are two modules; ``decoder`` for the methods of one), then the param store's
    sites by ``pyro.module`` name (``decoder`` of ``decoder$$$fc1.weight``) or by their own
    ``pyro.param`` name. Each tensor counts once (a module registered with ``pyro.module``
    is also in the store), so the counts add up to :func:`all_parameters`' total."""
    seen, counts = set(), {}

    def add(name: str, tensors) -> None:
        for p in tensors:
            if id(p) not in seen and p.requires_grad:
                seen.add(id(p))
                counts[name] = counts.get(name, 0) + p.numel()

    owners = [(role, owner_module(p)) for role, p in (("model", model), ("guide", guide))]
    owners = [(role, m) for role, m in owners if m is not None]
    shared = len({id(m) for _, m in owners}) < len(owners) or len(owners) == 1
    for role, module in owners:
        prefix = "" if shared else f"{role}."
        add(prefix + type(module).__name__, module.parameters(recurse=False))
        for child_name, child in module.named_children():
            add(prefix + child_name, child.parameters())
    for name, p in pyro.get_param_store().named_parameters():
        add(name.split("$$$")[0], [p])
    return counts
