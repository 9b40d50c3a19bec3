"""The recipe of a user's pair that takes labels or a condition beyond x.

A pair ``f(x, y=None)`` given ``--labels N`` trains on the batches of the built-in M2
(:class:`~pyrovae.recipes.ssvae.SSVAERecipe`: N class-balanced labelled rows, each
unlabelled batch ``(x,)`` followed by a labelled batch ``(x, y, weight)``); its auxiliary
loss, when it defines one, weighs ``alpha`` per labelled row, the built-in M2's ``--alpha``
and default. A pair ``f(x, c)`` trains on shuffled batches ``(x, c)``, ``c`` the rows'
labels. How the labels reach the programs is :mod:`pyrovae.inference.arguments`.
"""

from pyrovae.inference.arguments import LABELS
from pyrovae.inference.batches import TensorBatches
from pyrovae.models.ssvae import default_alpha
from pyrovae.recipes.base import Recipe
from pyrovae.recipes.ssvae import SSVAERecipe

FED_OPTIONS = tuple(o for o in SSVAERecipe.options if o.name in ("labels", "alpha"))
"""``--labels`` and ``--alpha``, as the built-in M2 takes them: a user pair ``f(x, y=None)``
accepts them too."""


def auxiliary_weight(spec, data_rows: int, config) -> float:
    """``--alpha``, else the built-in M2's default for the run's labels
    (:func:`~pyrovae.models.ssvae.default_alpha`)."""
    alpha = config.options.get("alpha")
    if alpha is not None:
        return float(alpha)
    labels = config.options["labels"]
    return default_alpha(spec.x_dim, data_rows, labels)


class FedRecipe(Recipe):
    """The base recipe with the batches a labelled (``kind`` :data:`LABELS`) or conditioned
    pair is fed; any other recipe step is the base's."""

    options = FED_OPTIONS

    def __init__(self, kind: str):
        self.kind = kind

    def batches(self, data, config, device):
        if self.kind == LABELS:
            return SSVAERecipe().batches(data, config, device)
        return TensorBatches(
            data.x_train.to(device),
            config.batch_size,
            seed=config.seed,
            transform=data.batch_transform,
            y=data.y_train.to(device),
        )
