"""The importance-weighted bound as a training objective (``--elbo iwae``), per data row."""

import math

import pyro
import pytest
import torch
from pyro.infer import Trace_ELBO
from pyro.infer.importance import vectorized_importance_weights

import pyrovae
from pyrovae.inference.diagnostics.importance import point_terms
from pyrovae.inference.diagnostics.structure import inspect_pair
from pyrovae.inference.iwae import IWAE
from pyrovae.models import ModelSpec
from pyrovae.recipes import build_pair


def tiny_vae():
    torch.manual_seed(0)
    model, guide = build_pair("vae", ModelSpec(x_dim=12, latent_dim=2, hidden=(8,)))
    with torch.no_grad():
        for p in model.decoder.parameters():
            p.mul_(3.0)  # a decoder that depends on z: weights that vary
    x = torch.bernoulli(torch.full((2, 12), 0.5), generator=torch.Generator().manual_seed(1))
    return model, guide, x


def test_the_objective_is_the_per_row_bound_not_the_pooled_one():
    """On a two-row batch: the loss is -sum_i log (1/K) sum_k w_ik for the same draws, and
    Pyro's pooled weights (vectorized_importance_weights: one weight per particle for the
    whole batch) give the looser bound log (1/K) sum_k prod_i w_ik."""
    model, guide, x = tiny_vae()
    k = 50
    structure = inspect_pair(model, guide, x)
    with torch.no_grad():
        pyro.set_rng_seed(7)
        lw = point_terms(model, guide, x, k, structure).log_weight  # (K, 2)
        pyro.set_rng_seed(7)
        ours = IWAE(num_particles=k).loss(model, guide, x)
        pyro.set_rng_seed(7)
        pooled_weights, _, _ = vectorized_importance_weights(
            model, guide, x, num_samples=k, max_plate_nesting=1
        )
    per_row = (lw.logsumexp(0) - math.log(k)).sum()  # sum_i log (1/K) sum_k w_ik
    assert ours == pytest.approx(-float(per_row), rel=1e-6)
    # Pyro's weights are the same draws summed over the rows: one weight per particle for
    # the whole batch (that this bound is looser, in expectation, is shown in
    # tests/test_diagnostics.py::test_per_row_weights_sum_to_pyros_pooled_weights...).
    torch.testing.assert_close(pooled_weights, lw.sum(1))
    pooled = pooled_weights.logsumexp(0) - math.log(k)
    assert float(pooled) != pytest.approx(float(per_row), abs=1e-3)


def test_global_latent_sites_are_refused():
    from pyrovae.models import ModelSpec

    spec = ModelSpec(x_dim=6, latent_dim=2, likelihood="gaussian", num_data=10)
    model, guide = build_pair("bayesian-fa", spec)
    with pytest.raises(pyrovae.PyrovaeError, match="'W' outside the data plate"):
        IWAE(num_particles=3).loss(model, guide, torch.randn(4, 6))


def test_one_particle_is_the_elbo():
    model, guide, x = tiny_vae()
    with torch.no_grad():
        pyro.set_rng_seed(3)
        iwae = IWAE(num_particles=1).loss(model, guide, x)
        pyro.set_rng_seed(3)
        elbo = Trace_ELBO(max_plate_nesting=1).loss(model, guide, x)
    assert iwae == pytest.approx(elbo, rel=1e-6)


def test_a_point_mass_guide_is_refused():
    model, guide = build_pair("ae", ModelSpec(x_dim=12, latent_dim=2, hidden=(8,)))
    with pytest.raises(pyrovae.PyrovaeError, match="point mass"):
        IWAE(num_particles=3).loss(model, guide, torch.zeros(4, 12))


@pytest.mark.parametrize("model", ["vae", "ssvae"])
def test_training_with_iwae_improves_the_bound(model, tmp_path):
    extra = {"labels": 50} if model == "ssvae" else {}
    run = pyrovae.train(
        model=model, elbo="iwae", num_particles=5, epochs=4, hidden=(32,), latent_dim=4,
        quiet=True, out=str(tmp_path / "r"), **extra,
    )  # fmt: skip
    assert run.summary["elbo"] == "iwae"
    first, last = run.history[0], run.history[-1]
    assert last["train_objective"] > first["train_objective"] + 2.0
    assert last["test_elbo"] > first["test_elbo"] + 2.0
    if model == "vae":  # train_elbo is the training rows' ELBO, not the IWAE objective
        loaded = pyrovae.load_run(tmp_path / "r")
        rows = loaded.data.training_rows(10_000)
        with torch.no_grad():
            elbo = (
                -Trace_ELBO(num_particles=100, vectorize_particles=True).loss(
                    loaded.model, loaded.guide, rows
                )
                / rows.shape[0]
            )
        assert elbo == pytest.approx(run.summary["train_elbo"], abs=0.3)
