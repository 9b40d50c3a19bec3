"""The categorical-latent VAE: relaxed draws in training steps, exact ones elsewhere, the
categorical KL, the temperature schedule, and a run that uses its latents."""

import math

import numpy as np
import pyro
import pyro.poutine as poutine
import pytest
import torch

import pyrovae
from pyrovae.inference.elbos import MeanFieldScore
from pyrovae.models import ModelSpec
from pyrovae.models.gumbel_vae import GumbelGuide, GumbelSoftmax, GumbelVAE
from pyrovae.recipes.gumbel_vae import temperature_at

SPEC = ModelSpec(x_dim=6, latent_dim=3, hidden=(16,), options={"categories": 4})


def traces(model, guide, x):
    guide_trace = poutine.trace(guide).get_trace(x)
    model_trace = poutine.trace(poutine.replay(model, trace=guide_trace)).get_trace(x)
    return model_trace, guide_trace


def test_training_steps_draw_relaxed_codes_and_everything_else_exact_one_hot():
    model, guide = GumbelVAE(SPEC), GumbelGuide(SPEC)
    x = torch.bernoulli(torch.full((5, 6), 0.5))
    model_trace, guide_trace = traces(model, guide, x)  # training mode, gradients on
    z = guide_trace.nodes["z"]["value"]
    assert z.shape == (5, 3, 4) and guide_trace.nodes["z"]["fn"].event_shape == (3, 4)
    assert [f.name for f in guide_trace.nodes["z"]["cond_indep_stack"]] == ["data"]
    torch.testing.assert_close(z.sum(-1), torch.ones(5, 3))
    assert ((z > 0) & (z < 1)).all()  # inside the simplex: relaxed
    assert z.requires_grad  # reparameterized
    assert model_trace.nodes["x"]["value"] is x
    with torch.no_grad():
        _, exact = traces(model, guide, x)
    z = exact.nodes["z"]["value"]
    assert set(z.unique().tolist()) == {0.0, 1.0} and (z.sum(-1) == 1).all()
    model.eval(), guide.eval()
    _, exact = traces(model, guide, x)
    assert set(exact.nodes["z"]["value"].unique().tolist()) == {0.0, 1.0}


def test_kl_of_the_relaxations_is_the_categorical_kl():
    q_logits, p_logits = torch.randn(2, 3, 4), torch.randn(3, 4)
    q = GumbelSoftmax(torch.tensor(0.5), logits=q_logits).to_event(1)
    p = GumbelSoftmax(torch.tensor(0.5), logits=p_logits).to_event(1)
    kl = torch.distributions.kl_divergence(q, p)
    qp = q_logits.softmax(-1).numpy()
    pp = p_logits.softmax(-1).numpy()
    expected = (qp * (np.log(qp) - np.log(pp))).sum(axis=(-1, -2))  # summed over M
    np.testing.assert_allclose(kl.numpy(), expected, rtol=1e-5)


def test_held_out_elbo_is_the_discrete_models_bound():
    """MeanFieldScore of exact one-hot draws against the ELBO enumerated by hand:
    sum_z q(z|x) log p(x|z) - KL(q || uniform), with M = 1 variable of K = 3 classes."""
    spec = ModelSpec(x_dim=4, latent_dim=1, hidden=(8,), options={"categories": 3})
    pyro.set_rng_seed(0)
    model, guide = GumbelVAE(spec), GumbelGuide(spec)
    x = torch.bernoulli(torch.full((2, 4), 0.5))
    with torch.no_grad():
        q = guide.logits(x).softmax(-1)[:, 0]  # (2, 3)
        codes = torch.eye(3)
        logits = model.decoder(codes)  # (3, 4): the decoder at each class
        log_lik = torch.distributions.Bernoulli(logits=logits[None]).log_prob(x[:, None]).sum(-1)
        expected = (q * log_lik).sum(-1) - (q * (q * 3).log()).sum(-1)  # (2,)
        elbo = MeanFieldScore(num_particles=20000, vectorize_particles=True, max_plate_nesting=1)
        ours = -elbo.loss(model, guide, x)
    assert ours == pytest.approx(float(expected.sum()), abs=0.05)


def test_the_temperature_schedule_per_epoch():
    assert temperature_at(0, 1.0, 0.5, 0.05) == 1.0
    assert temperature_at(4, 1.0, 0.5, 0.05) == pytest.approx(math.exp(-0.2))
    assert temperature_at(100, 1.0, 0.5, 0.05) == 0.5
    assert temperature_at(7, 2.0, 0.1, 0.0) == 2.0


def test_each_epoch_trains_at_its_temperature_and_a_resumed_run_goes_on(tmp_path):
    seen = []
    original = GumbelVAE.forward

    def spy(self, x, y=None):
        if torch.is_grad_enabled():
            seen.append(float(self.temperature))
        return original(self, x, y)

    common = dict(
        model="gumbel-vae", epochs=3, hidden=(16,), latent_dim=4, quiet=True,
        temperature=2.0, min_temperature=0.6, temperature_decay=math.log(2), val_fraction=0.0,
    )  # fmt: skip
    GumbelVAE.forward = spy
    try:
        run = pyrovae.train(**common, out=str(tmp_path / "run"))
        steps = len(seen) // 3
        assert seen == pytest.approx([2.0] * steps + [1.0] * steps + [0.6] * steps)
        seen.clear()
        pyrovae.train(resume=str(tmp_path / "run"), epochs=4, quiet=True)
        assert seen == pytest.approx([0.6] * steps)
    finally:
        GumbelVAE.forward = original
    assert run.config.elbo == "meanfield"  # the recipe's default
    row = run.history[-1]
    assert row["train_objective"] != row["train_elbo"]  # the relaxed objective, apart


def test_the_elbo_given_is_kept(tmp_path):
    run = pyrovae.train(
        model="gumbel-vae", elbo="trace", epochs=1, hidden=(16,), quiet=True,
        out=str(tmp_path / "trace"),
    )  # fmt: skip
    assert run.config.elbo == "trace"
    assert (
        pyrovae.train(epochs=1, hidden=(16,), quiet=True, out=str(tmp_path / "vae")).config.elbo
        == "trace"
    )


def test_a_run_uses_its_categorical_latents(tmp_path):
    """After 40 epochs on digits the discrete test ELBO beats the best that a model ignoring
    z can reach on the binarized test rows: independent Bernoulli pixels at those rows' own
    means (the maximum-likelihood constant decoder, KL 0)."""
    run = pyrovae.train(model="gumbel-vae", epochs=40, lr=3e-3, quiet=True, out=str(tmp_path / "g"))
    x = run.data.x_test
    p = x.mean(0).clamp(1e-6, 1 - 1e-6)
    collapsed = float((x * p.log() + (1 - x) * (1 - p).log()).sum(-1).mean())
    assert run.summary["test_elbo"] > collapsed + 0.5
    z = pyrovae.inference.posterior.encode(run.model, run.guide, x[:10])
    assert z.shape == (10, 20 * 10)  # posterior probabilities, flattened
    torch.testing.assert_close(z.reshape(10, 20, 10).sum(-1), torch.ones(10, 20))
    files = set(run.summary["figures"])
    assert {"samples.png", "latent_space.png", "interpolation.png"} <= files
    assert "traversals.png" not in files  # no -3..3 sweep of a one-hot code


def test_diagnostics_of_categorical_latents(tmp_path):
    """The KL of each categorical variable is the closed form averaged over the rows; NUTS,
    which cannot sample one-hot codes, is skipped with a note."""
    run = pyrovae.train(
        model="gumbel-vae", epochs=2, hidden=(16,), latent_dim=4, quiet=True,
        out=str(tmp_path / "g"),
    )  # fmt: skip
    out = pyrovae.diagnose(
        run, iwae_samples=10, nuts_points=1, amortization_points=0, max_points=30, write=False
    )
    with torch.no_grad():
        q = run.guide.logits(run.data.x_test[:30]).softmax(-1)  # (30, 4, 10)
    expected = (q * (q * 10).log()).sum(-1).mean(0)  # KL(q_m || uniform), per variable
    np.testing.assert_allclose(out["kl_per_dim"]["z"], expected.numpy(), rtol=1e-4)
    assert out["kl_total"] == pytest.approx(float(expected.sum()), rel=1e-4)
    assert out["nuts_max_rhat"] is None
    assert any(note.startswith("no NUTS reference") for note in out["notes"])
    assert out["iwae_log_likelihood"] >= out["elbo_monte_carlo"]
