"""The convolutional encoder and decoder (``--net conv``): shapes, leading dims, training."""

import pytest
import torch

import pyrovae
from pyrovae.models import ModelSpec
from pyrovae.models.networks import ConvDecoder, ConvEncoder
from pyrovae.recipes import build_pair


@pytest.mark.parametrize("shape", [(8, 8), (28, 28)])
def test_conv_networks_map_images_and_codes_with_any_leading_dims(shape):
    pixels = shape[0] * shape[1]
    encoder, decoder = ConvEncoder(shape, (32,), 6), ConvDecoder(3, (32,), shape)
    x = torch.rand(5, 2, pixels)
    assert encoder(x).shape == (5, 2, 6)
    assert decoder(torch.randn(7, 5, 2, 3)).shape == (7, 5, 2, pixels)
    # One image at a time gives the same as the batch: no mixing across leading dims.
    torch.testing.assert_close(encoder(x[1, 0]), encoder(x)[1, 0], atol=1e-5, rtol=1e-5)


def test_conv_pairs_learn_on_digits(tmp_path):
    spec = ModelSpec(x_dim=64, latent_dim=4, hidden=(32,), image_shape=(8, 8), net="conv")
    model, guide = build_pair("vae", spec)
    assert isinstance(model.decoder, ConvDecoder) and isinstance(guide.encoder, ConvEncoder)
    run = pyrovae.train(
        net="conv", epochs=4, hidden=(32,), latent_dim=4, quiet=True, out=str(tmp_path / "r")
    )
    assert run.history[-1]["test_elbo"] > run.history[0]["test_elbo"] + 2.0
    for guide_name in ("lowrank", "iaf"):
        other = pyrovae.train(
            net="conv", guide=guide_name, epochs=1, hidden=(32,), latent_dim=4, quiet=True,
            out=str(tmp_path / guide_name),
        )  # fmt: skip
        assert isinstance(other.guide.encoder if guide_name == "lowrank" else
                          other.guide.features[0], ConvEncoder)  # fmt: skip


def test_conv_needs_images_of_a_multiple_of_four(tmp_path):
    with pytest.raises(pyrovae.PyrovaeError, match="--net conv needs images"):
        pyrovae.train(net="conv", dataset="spiral", epochs=1, quiet=True, out=str(tmp_path / "r"))


@pytest.mark.parametrize("model", ["fa", "linear-ae"])
def test_conv_for_a_model_without_networks_is_refused(model, tmp_path):
    # Linear models would otherwise train as if --net conv had not been given.
    with pytest.raises(pyrovae.PyrovaeError, match="--net conv: --model .* builds no conv"):
        pyrovae.train(model=model, net="conv", epochs=1, quiet=True, out=str(tmp_path / "r"))
    assert not (tmp_path / "r").exists()
