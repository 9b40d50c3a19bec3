"""What a model or guide factory is told about the data and the user's choices."""

from dataclasses import dataclass, field


@dataclass
class ModelSpec:
    """Everything a factory needs to build a model or a guide.

    Factories receive one of these and read the fields they use; a user-written
    factory can ignore all but ``x_dim``.

    :param x_dim: width D of a data row (pixels of a flattened image, or features).
    :param latent_dim: dimension k of the latent code z.
    :param hidden: hidden-layer widths of the encoder; the decoder mirrors them.
    :param likelihood: name of the observation model p(x|z) (see ``LIKELIHOODS``).
    :param gaussian_scale: fixed sigma of a Gaussian likelihood; ``None`` learns it.
    :param gray_bernoulli: score gray levels with a Bernoulli (not a normalized likelihood).
    :param num_classes: number of classes K when the data are labelled.
    :param num_data: number of training rows (for models with global latent variables).
    :param image_shape: ``(H, W)`` when rows are flattened images.
    :param levels: L when every value is one of ``k / (L - 1)``, k = 0..L-1 (L <= 256;
        e.g. 256 for 8-bit images), else None.
    :param net: ``"mlp"`` or ``"conv"``: the networks of models and guides that offer both.
    :param options: model-specific extras, passed through untouched.
    """

    x_dim: int
    latent_dim: int = 10
    hidden: tuple[int, ...] = (256,)
    likelihood: str = "bernoulli"
    gaussian_scale: float | None = None
    gray_bernoulli: bool = False
    num_classes: int | None = None
    num_data: int | None = None
    image_shape: tuple[int, int] | None = None
    levels: int | None = None
    net: str = "mlp"
    options: dict = field(default_factory=dict)
