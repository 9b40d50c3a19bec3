"""Pyro's autoguides as guides of a run, and as parts of a guide beside an encoder.

An autoguide (a subclass of :class:`pyro.infer.autoguide.AutoGuide`) named as the guide
(``--guide pyro.infer.autoguide:AutoNormal``) is built on the run's model,
``AutoNormal(model)``. An autoguide keeps parameters of its own for every value it draws,
so it cannot amortize over rows: over a site inside the plate of the data rows it would hold
one location per row of the first batch and fail at the next batch of another size. Such a
guide is refused before training (:func:`check_no_local_autoguide`). The form that works
puts an autoguide on the global sites and an encoder on the local ones::

    self.globals = AutoNormal(poutine.block(self.model, expose=["b"]))

    def guide(self, x):
        self.globals(x)  # q(b): global, one set of parameters
        with pyro.plate("data", x.shape[0]):
            pyro.sample("z", dist.Normal(*self.encoder(x)).to_event(1))  # q(z | x)

An autoguide draws its latents in an unconstrained space, at auxiliary sites
(``infer={"is_auxiliary": True}``), and hands each value out through a ``Delta`` site whose
``log_density`` is the transform's Jacobian: that ``Delta`` is a density, not a point mass.
:func:`transformed_draws` tells such sites from a MAP part (``AutoDelta``), whose ``Delta``
has no density.
"""

import inspect

import pyro.poutine as poutine
import torch
from pyro.infer.autoguide import AutoGuide, AutoGuideList
from pyro.poutine.util import site_is_subsample

from pyrovae.errors import PyrovaeError

ENCODER_FIX = "write an encoder guide for the per-row latent"
GLOBAL_FIX = (
    " and use an autoguide for the global sites only, "
    "AutoNormal(poutine.block(model, expose={globals})) called inside that guide"
)
DOCS = " (docs/tutorials/05-your-own-pair.md)"


def is_autoguide_class(obj) -> bool:
    """Whether ``obj`` is an autoguide class (``pyro.infer.autoguide.AutoNormal``, ...)."""
    return inspect.isclass(obj) and issubclass(obj, AutoGuide)


def build_autoguide(cls, model, what: str):
    """``cls(model)``: the autoguide class ``cls`` built on the run's model."""
    try:
        return cls(model)
    except (TypeError, ValueError, NotImplementedError) as exc:
        raise PyrovaeError(f"{what} cannot be built on the model: {exc}") from exc


def autoguide_parts(guide) -> list[AutoGuide]:
    """The autoguides a guide is or holds: itself, the parts of an ``AutoGuideList``, or the
    autoguides among the attributes of the module whose bound method it is."""
    owner = getattr(guide, "__self__", None)
    found, todo = [], [guide] + ([owner] if owner is not None else [])
    while todo:
        obj = todo.pop()
        if isinstance(obj, AutoGuideList):
            todo.extend(obj)
        elif isinstance(obj, AutoGuide):
            found.append(obj)
        elif isinstance(obj, torch.nn.Module):
            todo.extend(m for m in obj.children() if isinstance(m, AutoGuide))
    return found


def _in_plates(site, plates: set[str]) -> bool:
    return any(f.name in plates for f in site["cond_indep_stack"])


def check_no_local_autoguide(guide, guide_trace, model_trace, data_plates: set[str]) -> None:
    """A one-line error when an autoguide draws a site inside a plate over the data rows
    (``data_plates``): its parameters would be one per row of this batch."""
    local = []
    for part in autoguide_parts(guide):
        prototype = getattr(part, "prototype_trace", None)
        if prototype is None:
            continue
        local += [
            name
            for name, site in prototype.iter_stochastic_nodes()
            if _in_plates(site, data_plates)
        ]
    # An autoguide called from a plain function: AutoNormal's draw of site s is made at the
    # auxiliary site "s_unconstrained" (an amortized guide's own auxiliary sites are fine).
    local += [
        name.removesuffix("_unconstrained")
        for name, site in guide_trace.nodes.items()
        if site["type"] == "sample"
        and site["infer"].get("is_auxiliary", False)
        and name.endswith("_unconstrained")
        and name.removesuffix("_unconstrained") in guide_trace.nodes
        and _in_plates(site, data_plates)
    ]
    if not local:
        return
    globals_ = [
        name
        for name, site in model_trace.nodes.items()
        if site["type"] == "sample"
        and not site["is_observed"]
        and not site_is_subsample(site)
        and not _in_plates(site, data_plates)
    ]
    fix = ENCODER_FIX + (GLOBAL_FIX.format(globals=globals_) if globals_ else "") + DOCS
    plate = sorted(data_plates)[0]
    raise PyrovaeError(
        f"the guide's autoguide draws the per-row latent {sorted(set(local))[0]!r} (inside "
        f"pyro.plate({plate!r})) from parameters of its own for each row of one batch; an "
        f"autoguide cannot amortize over rows: {fix}"
    )


def transformed_draws(guide, guide_trace, *args) -> set[str]:
    """The ``Delta`` sites of ``guide_trace`` through which an autoguide hands out a draw made
    at an auxiliary site: present only where the trace has auxiliary sites, and told from a
    point mass (a MAP part) by changing between two draws of the guide on the same ``args``."""
    aux = any(
        site["type"] == "sample" and site["infer"].get("is_auxiliary", False)
        for site in guide_trace.nodes.values()
    )
    if not aux:
        return set()
    with poutine.block(), torch.no_grad():
        again = poutine.trace(guide).get_trace(*args)
    moved = set()
    for name, site in guide_trace.nodes.items():
        other = again.nodes.get(name)
        if site["type"] != "sample" or other is None or other["type"] != "sample":
            continue
        if not torch.equal(site["value"].detach(), other["value"].detach()):
            moved.add(name)
    return moved
