"""Neural-network builders shared by the models and guides: MLPs, and convolutional
encoders and decoders for images (``spec.net == "conv"``)."""

from collections.abc import Sequence

from torch import nn

from pyrovae.errors import PyrovaeError

ACTIVATIONS = {"relu": nn.ReLU, "softplus": nn.Softplus, "tanh": nn.Tanh, "elu": nn.ELU}


def mlp(sizes: Sequence[int], activation: str = "relu") -> nn.Sequential:
    """A multilayer perceptron ``sizes[0] -> ... -> sizes[-1]``.

    Hidden layers are followed by ``activation``; the last layer is linear, so the
    caller decides what its output means (logits, means, log-scales).
    """
    layers: list[nn.Module] = []
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:], strict=False)):
        layers.append(nn.Linear(n_in, n_out))
        if i < len(sizes) - 2:
            layers.append(ACTIVATIONS[activation]())
    return nn.Sequential(*layers)


NETS = ("mlp", "conv")
CONV_CHANNELS = (32, 64)


def _channels_height_width(image_shape) -> tuple[int, int, int]:
    """``(C, H, W)`` of an ``(H, W)`` (one channel) or ``(C, H, W)`` image shape."""
    *channels, h, w = image_shape
    return (channels[0] if channels else 1), h, w


def _conv_grid(image_shape) -> tuple[int, int]:
    """The ``(h, w)`` left after two stride-2 convolutions of an ``image_shape`` image."""
    if image_shape is None or any(d % 4 for d in _channels_height_width(image_shape)[1:]):
        raise PyrovaeError(
            f"--net conv needs images whose height and width are multiples of 4 (8x8, 28x28), "
            f"got {'no image shape' if image_shape is None else image_shape}; use --net mlp"
        )
    _, h, w = _channels_height_width(image_shape)
    return h // 4, w // 4


class ConvEncoder(nn.Module):
    """Images ``(..., C*H*W)`` -> ``(..., out_features)``: two stride-2 4x4 convolutions (32 and
    64 channels, ReLU), then an MLP ``head`` through ``hidden`` widths; any leading dims.

    With ``extra_features`` the head takes ``[features(x), extra]``: the caller joins
    ``extra: (..., extra_features)`` (e.g. a one-hot label) to :meth:`features` itself.
    """

    def __init__(
        self, image_shape, hidden: Sequence[int], out_features: int, extra_features: int = 0
    ):
        super().__init__()
        h, w = _conv_grid(image_shape)
        self.image_shape = _channels_height_width(image_shape)
        c1, c2 = CONV_CHANNELS
        self.convs = nn.Sequential(
            nn.Conv2d(self.image_shape[0], c1, 4, stride=2, padding=1), nn.ReLU(),
            nn.Conv2d(c1, c2, 4, stride=2, padding=1), nn.ReLU(),
        )  # fmt: skip
        self.head = mlp([c2 * h * w + extra_features, *hidden, out_features])

    def features(self, x):
        """The convolutions' output, flattened: ``(..., C*H*W)`` -> ``(..., 64 H/4 W/4)``."""
        lead = x.shape[:-1]
        images = x.reshape(-1, *self.image_shape)
        return self.convs(images).flatten(1).reshape(*lead, -1)

    def forward(self, x):
        return self.head(self.features(x))


class ConvDecoder(nn.Module):
    """Codes ``(..., in_features)`` -> images ``(..., C*H*W)``: an MLP through ``hidden`` widths to
    a 64-channel grid of H/4 x W/4, then two stride-2 transposed convolutions; any leading
    dims. The output is raw (logits or means: the likelihood decides)."""

    def __init__(self, in_features: int, hidden: Sequence[int], image_shape):
        super().__init__()
        self.grid = _conv_grid(image_shape)
        channels = _channels_height_width(image_shape)[0]
        c1, c2 = CONV_CHANNELS
        h, w = self.grid
        self.head = nn.Sequential(mlp([in_features, *hidden, c2 * h * w]), nn.ReLU())
        self.deconvs = nn.Sequential(
            nn.ConvTranspose2d(c2, c1, 4, stride=2, padding=1), nn.ReLU(),
            nn.ConvTranspose2d(c1, channels, 4, stride=2, padding=1),
        )  # fmt: skip

    def forward(self, z):
        return self.expand(self.head(z))

    def expand(self, hidden):
        """The transposed convolutions over the head's output: ``(..., 64 H/4 W/4)`` ->
        ``(..., C*H*W)``."""
        lead = hidden.shape[:-1]
        grid = hidden.reshape(-1, CONV_CHANNELS[1], *self.grid)
        return self.deconvs(grid).flatten(1).reshape(*lead, -1)


def encoder_network(spec, in_features: int, out_features: int, hidden=None) -> nn.Module:
    """``spec.net``'s encoder from ``in_features`` (the data width) to ``out_features``."""
    hidden = spec.hidden if hidden is None else hidden
    if getattr(spec, "net", "mlp") == "conv":
        return ConvEncoder(spec.image_shape, hidden, out_features)
    return mlp([in_features, *hidden, out_features])


def decoder_network(spec, in_features: int) -> nn.Module:
    """``spec.net``'s decoder from ``in_features`` to the data width ``spec.x_dim``."""
    if getattr(spec, "net", "mlp") == "conv":
        return ConvDecoder(in_features, tuple(reversed(spec.hidden)), spec.image_shape)
    return mlp([in_features, *reversed(spec.hidden), spec.x_dim])
