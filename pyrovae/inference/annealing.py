"""KL (beta) annealing: scale the log densities of the latent sites only."""

from pyro.poutine.scale_messenger import ScaleMessenger


class LatentScaleMessenger(ScaleMessenger):
    """``poutine.scale`` restricted to unobserved sample sites.

    Inside this handler ``log p(z)`` in the model and ``log q(z|x)`` in the guide are
    multiplied by ``scale`` while observations keep weight 1, so the ELBO becomes
    ``E_q[log p(x|z)] - scale * KL(q(z|x) || p(z))`` (a beta-VAE objective). Plain
    ``poutine.scale`` would scale the likelihood as well. ``scale`` may be changed between
    steps to anneal it.
    """

    def _process_message(self, msg) -> None:
        if msg["type"] == "sample" and not msg["is_observed"] and self.scale != 1.0:
            super()._process_message(msg)


def beta_schedule(step: int, steps_per_epoch: int, beta: float, anneal_epochs: float) -> float:
    """Linear warm-up of the KL weight: ``beta * min(1, (step + 1) / warm-up steps)``.

    Starts at a small positive value (Pyro's scale must be positive) and reaches ``beta``
    after ``anneal_epochs`` epochs; ``anneal_epochs=0`` holds it at ``beta`` throughout.
    """
    warmup_steps = anneal_epochs * steps_per_epoch
    if warmup_steps <= 0:
        return beta
    return beta * min(1.0, (step + 1) / warmup_steps)
