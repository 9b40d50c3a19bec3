"""``pyrovae.features(run, x)``: a trained run's posterior means as features for downstream
tasks (see :mod:`pyrovae.runs.probe` for how much a linear classifier reads from them)."""

import torch

from pyrovae.runs.encoding import encode_run
from pyrovae.runs.load import as_run


def features(
    run, x, *, batch_size: int = 10_000, device: str = "cpu", trust_code: bool = False
) -> torch.Tensor:
    """Posterior means ``E_q[z | x]`` of rows ``x`` under a trained run's guide.

    :param run: a :class:`pyrovae.Run` or the path of a run folder (loaded on ``device``).
    :param x: ``(n, D)`` rows (tensor or array; ``(n, H, W)`` images are flattened) on the
        scale of the run's data set, e.g. ``run.data.x_test``.
    :param batch_size: rows encoded at once.
    :param trust_code: for a folder, as in :func:`pyrovae.load_run`.
    :returns: ``(n, k)`` float32 on the CPU. A latent with a multi-dimensional event (the
        gumbel-vae's ``(M, K)`` one-hot codes) gives its ``M * K`` columns; a guide without a
        closed-form mean (``--guide iaf``) gives the mean of 64 draws, so it varies with
        Pyro's seed, as does the ssvae's ``z``, whose mean is conditional on a class drawn from
        q(y|x); global latent sites are fixed at their mean under q (100 draws).

    The modules are in eval mode while they encode, and go back to their mode afterwards.
    """
    return encode_run(as_run(run, device, trust_code), x, batch_size)
