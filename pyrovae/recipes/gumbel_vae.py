"""The recipe of the categorical-latent VAE: the temperature schedule of its relaxation.

In epoch ``e`` (from 0) the training steps draw relaxed one-hot codes at temperature
``max(--min-temperature, --temperature * exp(-e * --temperature-decay))`` (Jang et al., 2017
anneal ``exp(-r t)`` per step down to 0.5; here per epoch, so a run resumed at epoch ``e``
uses the same temperature). The default ELBO is ``meanfield``: with it the training steps
optimize Jang et al.'s relaxed objective (likelihood at relaxed codes, exact categorical
KL), which is not a bound on the discrete model's log p(x); ``train_elbo``, ``val_elbo`` and
``test_elbo`` are the discrete model's ELBOs (exact one-hot draws, discrete KL).
"""

import math

from pyrovae.models.gumbel_vae import DEFAULT_CATEGORIES
from pyrovae.recipes.base import Recipe, RecipeOption, in_range

RELAXED_OBJECTIVE = (
    "relaxed (Gumbel-softmax) ELBO in training steps; the ELBOs are the discrete model's"
)


def temperature_at(epoch: int, start: float, minimum: float, decay: float) -> float:
    """The relaxation's temperature in epoch ``epoch`` (from 0)."""
    return max(minimum, start * math.exp(-decay * epoch))


class GumbelVAERecipe(Recipe):
    """``--model gumbel-vae``: 20 categoricals of 10 classes, guide ``gumbel``."""

    default_guide = "gumbel"
    network = {"latent_dim": 20}
    elbo = "meanfield"
    train_objective_is_elbo = False
    objective = RELAXED_OBJECTIVE
    options = (
        RecipeOption(
            "categories",
            int,
            DEFAULT_CATEGORIES,
            "gumbel-vae: classes K of each of the --latent-dim categorical latents",
            lambda v: None if v >= 2 else f"must be at least 2, got {v}",
        ),
        RecipeOption(
            "temperature",
            float,
            1.0,
            "gumbel-vae: temperature of the relaxation in the first epoch",
            in_range(0, math.inf, low_open=True),
        ),
        RecipeOption(
            "min_temperature",
            float,
            0.5,
            "gumbel-vae: the temperature is annealed down to this",
            in_range(0, math.inf, low_open=True),
        ),
        RecipeOption(
            "temperature_decay",
            float,
            0.05,
            "gumbel-vae: temperature = max(min, start * exp(-decay * epoch))",
            in_range(0, math.inf),
        ),
    )

    def start_epoch(self, model, guide, config, epoch: int) -> None:
        options = config.options
        tau = temperature_at(
            epoch, options["temperature"], options["min_temperature"], options["temperature_decay"]
        )
        for program in (model, guide):
            buffer = getattr(program, "temperature", None)
            if buffer is not None:
                buffer.fill_(tau)
