"""The ELBO estimators the runner can train with, by name."""

import pyro
import pyro.infer as infer

from pyrovae.errors import PyrovaeError
from pyrovae.inference.iwae import IWAE


class MeanFieldScore(infer.TraceMeanField_ELBO):
    """``TraceMeanField_ELBO`` for scoring held-out rows: analytic KLs for guide sites that
    cannot be reparameterized too (e.g. exact one-hot draws), since no gradient is taken.

    Pyro refuses such sites when validation is on, a check that only gradients need. The
    traces are drawn and checked as usual (``_get_trace``); only the sum of their terms,
    where that check sits, runs without validation.
    """

    def _differentiable_loss_particle(self, model_trace, guide_trace):
        with pyro.validation_enabled(False):
            return super()._differentiable_loss_particle(model_trace, guide_trace)


# name -> (training estimator, evaluation estimator). JIT variants compile the loss once;
# evaluation uses the plain twin so that it can run under ``torch.no_grad``.
ELBOS = {
    "trace": (infer.Trace_ELBO, infer.Trace_ELBO),
    "meanfield": (infer.TraceMeanField_ELBO, MeanFieldScore),
    "tracegraph": (infer.TraceGraph_ELBO, infer.TraceGraph_ELBO),
    "enum": (infer.TraceEnum_ELBO, infer.TraceEnum_ELBO),
    "jit-trace": (infer.JitTrace_ELBO, infer.Trace_ELBO),
    "jit-meanfield": (infer.JitTraceMeanField_ELBO, MeanFieldScore),
    "jit-enum": (infer.JitTraceEnum_ELBO, infer.TraceEnum_ELBO),
    # The per-row importance-weighted bound; held-out rows are still scored by the ELBO.
    "iwae": (IWAE, infer.Trace_ELBO),
}
# Pyro's class names are accepted too: ``--elbo Trace_ELBO`` is ``--elbo trace``.
ALIASES = {train.__name__.lower(): name for name, (train, _) in ELBOS.items()}


def canonical_elbo_name(name: str) -> str:
    key = name.lower()
    key = ALIASES.get(key, key)
    if key not in ELBOS:
        raise PyrovaeError(
            f"unknown ELBO {name!r}; choose one of {', '.join(ELBOS)} (or Pyro's class names, "
            "e.g. Trace_ELBO)"
        )
    return key


def build_elbos(
    name: str,
    *,
    num_particles: int = 1,
    max_plate_nesting: int = 1,
    vectorize: bool = True,
    enumerated: bool = False,
) -> tuple[infer.ELBO, infer.ELBO]:
    """``(train_elbo, eval_elbo)`` for the estimator ``name``.

    :param num_particles: samples of z per data point in each estimate.
    :param max_plate_nesting: plates the model nests (1 for ``pyro.plate("data")``).
    :param vectorize: draw the particles in one vectorized pass instead of a Python loop.
    :param enumerated: the guide enumerates sites: held-out rows are scored by
        ``TraceEnum_ELBO``, which sums them out.
    """
    if num_particles < 1:
        raise PyrovaeError(f"--num-particles must be at least 1, got {num_particles}")
    train_cls, eval_cls = ELBOS[canonical_elbo_name(name)]
    if enumerated:
        eval_cls = infer.TraceEnum_ELBO
    options = dict(
        num_particles=num_particles,
        max_plate_nesting=max_plate_nesting,
        vectorize_particles=vectorize and num_particles > 1,
    )
    return train_cls(**options), eval_cls(**options)


def is_jit(name: str) -> bool:
    return canonical_elbo_name(name).startswith("jit-")
