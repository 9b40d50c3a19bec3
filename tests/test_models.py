"""The model/guide contract: matching sites, plates and shapes."""

import pyro
import pyro.distributions as dist
import pyro.poutine as poutine
import pytest
import torch

from pyrovae.errors import PyrovaeError
from pyrovae.inference import check_sites, decode, encode, reconstruct, sample_prior
from pyrovae.models import GUIDES, MODELS, ModelSpec, build_guide, build_model

SPEC = ModelSpec(x_dim=12, latent_dim=3, hidden=(16, 8), likelihood="bernoulli", num_classes=3)


@pytest.mark.parametrize("model_name", sorted(MODELS))
def test_registered_model_and_default_guide_share_site_names(model_name):
    model = build_model(model_name, SPEC)
    guide = build_guide(None, SPEC, model)
    x = torch.bernoulli(torch.full((5, 12), 0.5))
    latents = check_sites(model, guide, x)
    assert model.latent_site in latents  # besides it: ssvae's class y, a global W, ...
    trace = poutine.trace(model).get_trace(x)
    obs = trace.nodes[model.obs_site]
    assert obs["is_observed"] and obs["value"] is x
    # Everything per data point sits in the "data" plate.
    for name in (model.latent_site, model.obs_site):
        assert [f.name for f in trace.nodes[name]["cond_indep_stack"]] == ["data"]


# Guides that are another model's own (ssvae's q(y|x) q(z|x,y), ...) are tested with it above.
OWN_GUIDES = {getattr(m, "default_guide", None) for name, m in MODELS.items() if name != "vae"}


@pytest.mark.parametrize("guide_name", sorted(set(GUIDES) - OWN_GUIDES))
def test_every_guide_fits_the_vae(guide_name):
    model = build_model("vae", SPEC)
    guide = build_guide(guide_name, SPEC, model)
    assert check_sites(model, guide, torch.zeros(4, 12)) == ["z"]


def test_mismatched_site_names_are_a_clear_error():
    model = build_model("vae", SPEC)

    def guide(x, y=None):
        with pyro.plate("data", x.shape[0]):
            pyro.sample("w", dist.Normal(x.new_zeros(3), 1.0).to_event(1))

    with pytest.raises(PyrovaeError, match=r"guide samples \['w'\]"):
        check_sites(model, guide, torch.zeros(2, 12))


def test_posterior_views_have_documented_shapes():
    model = build_model("vae", SPEC)
    guide = build_guide(None, SPEC, model)
    x = torch.bernoulli(torch.full((7, 12), 0.5))
    z = encode(model, guide, x)
    assert z.shape == (7, 3)
    assert torch.allclose(z, guide.encode(x)[0])
    recon = reconstruct(model, guide, x)
    assert recon.shape == (7, 12) and ((recon >= 0) & (recon <= 1)).all()
    assert torch.allclose(recon, torch.sigmoid(model.decoder(z)), atol=1e-6)
    assert decode(model, z, "z", 12).shape == (7, 12)
    assert sample_prior(model, 9, 12).shape == (9, 12)


def test_unknown_names_list_the_choices():
    with pytest.raises(PyrovaeError, match="choose one of .*vae"):
        build_model("nosuch", SPEC)
    with pytest.raises(PyrovaeError, match="mlp-normal"):
        build_guide("nosuch", SPEC, build_model("vae", SPEC))
