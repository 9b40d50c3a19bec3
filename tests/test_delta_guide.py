"""``--guide delta`` for any model with continuous latents: the sites read from the model,
points in each site's support, and Trace_ELBO's loss equal to -log p(x, point) by hand."""

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.infer import Trace_ELBO
from torch import nn

import pyrovae
from pyrovae.errors import PyrovaeError
from pyrovae.models import ModelSpec
from pyrovae.models.delta_guide import DeltaGuide
from pyrovae.recipes import build_pair

SPEC = ModelSpec(x_dim=5, latent_dim=3, hidden=(8,))


class Mixed(nn.Module):
    """A global positive scale ``tau``, and per row a positive ``s`` and a 3-simplex ``w``."""

    def __init__(self, spec=SPEC):
        super().__init__()
        self.decoder = nn.Linear(1 + 3, spec.x_dim)

    def forward(self, x, y=None):
        tau = pyro.sample("tau", dist.Gamma(2.0, 1.0))
        with pyro.plate("rows", x.shape[0]):
            s = pyro.sample("s", dist.LogNormal(0.0, 1.0))
            w = pyro.sample("w", dist.Dirichlet(torch.ones(3)))
            loc = self.decoder(torch.cat([s.unsqueeze(-1), w], -1))
            pyro.sample("x", dist.Normal(loc, tau).to_event(1), obs=x)


def test_the_vae_point_is_the_encoder_output_and_the_loss_is_minus_log_joint():
    model, _ = build_pair("vae", SPEC)
    guide = DeltaGuide(SPEC, model)
    x = torch.bernoulli(torch.full((4, 5), 0.5))
    assert [s.name for s in guide.local_sites] == ["z"] and not guide.global_sites
    z = guide.encoder(x)  # (4, 3): an MLP 5 -> 8 -> 3
    assert z.shape == (4, 3) and guide.encoder[0].in_features == 5
    logits = model.decoder(z)
    log_joint = (
        dist.Bernoulli(logits=logits).log_prob(x).sum() + dist.Normal(0.0, 1.0).log_prob(z).sum()
    )
    loss = Trace_ELBO().loss(model, guide, x)
    assert loss == pytest.approx(-log_joint.item(), rel=1e-5)


def test_points_of_any_sites_lie_in_their_supports_and_the_loss_is_minus_log_joint():
    model = Mixed()
    guide = DeltaGuide(SPEC, model)
    assert [s.name for s in guide.local_sites] == ["s", "w"]
    assert [s.name for s in guide.global_sites] == ["tau"]
    assert guide.widths == [1, 3]  # a softmax onto the 3-simplex
    assert guide.data_plate == "rows"
    x = torch.randn(6, 5)
    trace = pyro.poutine.trace(guide).get_trace(x)
    s, w, tau = (trace.nodes[n]["value"] for n in ("s", "w", "tau"))
    assert s.shape == (6,) and (s > 0).all()
    assert w.shape == (6, 3) and (w > 0).all()
    torch.testing.assert_close(w.sum(-1), torch.ones(6))
    assert tau.shape == () and tau > 0
    loc = model.decoder(torch.cat([s.unsqueeze(-1), w], -1))
    log_joint = (
        dist.Gamma(2.0, 1.0).log_prob(tau)
        + dist.LogNormal(0.0, 1.0).log_prob(s).sum()
        + dist.Dirichlet(torch.ones(3)).log_prob(w).sum()
        + dist.Normal(loc, tau).log_prob(x).sum()
    )
    assert Trace_ELBO().loss(model, guide, x) == pytest.approx(-log_joint.item(), rel=1e-5)


def test_a_user_model_trains_under_the_delta_guide_through_the_runner(tmp_path):
    run = pyrovae.train(
        model=Mixed, guide="delta", dataset="digits", likelihood=None, epochs=4, hidden=(16,),
        quiet=True, out=str(tmp_path / "mixed"),
    )  # fmt: skip
    first, last = run.history[0], run.history[-1]
    assert last["test_elbo"] > first["test_elbo"]
    assert run.summary["objective"].startswith("MAP")
    reloaded = pyrovae.load_run(tmp_path / "mixed", model=Mixed)
    torch.testing.assert_close(reloaded.guide.points["tau"], run.guide.points["tau"])


@pytest.mark.parametrize("model", ["fa", "bayesian-fa"])
def test_registered_models_take_the_delta_guide(model, tmp_path):
    run = pyrovae.train(model=model, guide="delta", epochs=3, quiet=True, out=str(tmp_path / model))
    assert run.history[-1]["train_objective"] > run.history[0]["train_objective"]
    assert run.summary["objective"].startswith("MAP")
    if model == "bayesian-fa":  # the loadings are a global point
        assert [s.name for s in run.guide.global_sites] == ["W"]


def test_discrete_or_nested_sites_are_refused_in_one_line():
    model, _ = build_pair("ssvae", ModelSpec(x_dim=5, latent_dim=2, hidden=(8,), num_classes=3))
    with pytest.raises(PyrovaeError, match="site 'y' is discrete"):
        DeltaGuide(SPEC, model)

    def nested(x, y=None):
        with pyro.plate("rows", x.shape[0]), pyro.plate("dims", 5):
            pyro.sample("u", dist.Normal(0.0, 1.0))
        with pyro.plate("rows2", x.shape[0]):
            pyro.sample("x", dist.Normal(torch.zeros(5), 1.0).to_event(1), obs=x)

    with pytest.raises(PyrovaeError, match="site 'u' is in \\['rows', 'dims'\\]"):
        DeltaGuide(SPEC, nested)
