"""Every registered model and guide: the contract (sites, plates, shapes), training that
learns, and the registries' errors."""

import pyro
import pyro.distributions as dist
import pytest
import torch

from pyrovae.data import load_dataset
from pyrovae.errors import PyrovaeError
from pyrovae.inference import (
    TensorBatches,
    Trainer,
    TrainSettings,
    check_pair,
    decode,
    encode,
    reconstruct,
    sample_prior,
)
from pyrovae.models import GUIDES, MODELS, ModelSpec, build_guide, build_model
from pyrovae.recipes import RECIPES, build_pair

GAUSSIAN_MODELS = {"fa", "ppca", "bayesian-fa", "linear-ae"}
# Every model with its default guide, and every guide with a model it serves.
PAIRS = sorted(
    {(name, RECIPES[name].default_guide) for name in MODELS}
    | {("vae", g) for g in ("mlp-normal", "linear-normal", "delta", "delta-denoising")}
    | {("vae", "delta-sparse"), ("fa", "linear-normal"), ("fa", "mlp-normal")}
    | {("vae", "lowrank"), ("vae", "iaf"), ("fa", "lowrank")}
)


@pytest.fixture(scope="module")
def digits():
    data = load_dataset("digits")
    binary = torch.bernoulli(data.x_train, generator=torch.Generator().manual_seed(0))
    return data.x_train, binary


def spec_for(name: str, n: int) -> ModelSpec:
    options = {**RECIPES[name].resolve_options({}), "rank": 2, "flows": 2}
    return ModelSpec(
        x_dim=64,
        latent_dim=3,
        hidden=(32,),
        likelihood="gaussian" if name in GAUSSIAN_MODELS else "bernoulli",
        num_classes=10,
        num_data=n,
        options=options,
    )


def test_every_model_and_guide_is_in_a_tested_pair():
    assert {m for m, _ in PAIRS} == set(MODELS)
    assert {g for _, g in PAIRS} == set(GUIDES)


@pytest.mark.parametrize(("model_name", "guide_name"), PAIRS)
def test_registered_pair_keeps_the_contract_and_learns(model_name, guide_name, digits):
    gray, binary = digits
    x = gray if model_name in GAUSSIAN_MODELS else binary
    model, guide = build_pair(model_name, spec_for(model_name, x.shape[0]), guide_name)
    if model_name in ("fa", "ppca", "bayesian-fa"):
        model.standardize(x)
    info = check_pair(model, guide, x[:64])
    assert "z" in info.latent_sites
    rows = x[:5]
    trace = pyro.poutine.trace(model).get_trace(rows)
    # Everything per data point sits in the "data" plate, and "x" observes the rows.
    assert trace.nodes["x"]["is_observed"] and trace.nodes["x"]["value"] is rows
    for name in ("z", "x"):
        assert [f.name for f in trace.nodes[name]["cond_indep_stack"]] == ["data"]
    trainer = Trainer(
        model, guide, TensorBatches(x, 128, seed=0), TrainSettings(epochs=8, lr=1e-2, quiet=True)
    )
    before = trainer.evaluate(x[:300])
    trainer.fit()
    after = trainer.evaluate(x[:300])
    assert after > before + 3.0, (before, after)


def test_mismatched_site_names_are_a_clear_error():
    model = build_model("vae", ModelSpec(x_dim=12, latent_dim=3))

    def guide(x, y=None):
        with pyro.plate("data", x.shape[0]):
            pyro.sample("w", dist.Normal(x.new_zeros(3), 1.0).to_event(1))

    with pytest.raises(PyrovaeError, match=r"guide samples \['w'\]"):
        check_pair(model, guide, torch.zeros(2, 12))


def test_posterior_views_have_documented_shapes():
    spec = ModelSpec(x_dim=12, latent_dim=3, hidden=(16, 8))
    model, guide = build_pair("vae", spec)
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
    spec = ModelSpec(x_dim=12, latent_dim=3)
    with pytest.raises(PyrovaeError, match="choose one of .*vae"):
        build_model("nosuch", spec)
    with pytest.raises(PyrovaeError, match="mlp-normal"):
        build_guide("nosuch", spec, build_model("vae", spec))
