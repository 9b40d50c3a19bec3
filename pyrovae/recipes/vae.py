"""The recipe of the VAE: the base recipe with the MLP Normal guide as its default."""

from pyrovae.recipes.base import Recipe


class VAERecipe(Recipe):
    """``--model vae``: z ~ N(0, I), x ~ p(x | MLP(z)), guide ``mlp-normal``."""

    default_guide = "mlp-normal"
