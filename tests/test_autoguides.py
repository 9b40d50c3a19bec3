"""Pyro's autoguides as guides, and beside an encoder; diagnostics on pairs that do not
broadcast over a particle dimension.

An autoguide named as the guide is built on the model and recovers a conjugate model's exact
posterior; over a per-row latent it is one line before any folder is written. The documented
form (an AutoNormal over the global sites, an encoder for the local one) trains, resumes,
reloads and diagnoses, and posterior.nc holds the global site. A pair whose networks assume
2-D batches (as Pyro's M2 networks do) is diagnosed by a loop over particles, with the numbers
of an equivalent broadcasting pair.
"""

import json
import math
import sys

import arviz as az
import numpy as np
import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.infer.autoguide import AutoNormal

import pyrovae
from pyrovae.inference.checkpoint import load_checkpoint
from pyrovae.inference.diagnostics.importance import importance_weights
from pyrovae.inference.diagnostics.latents import latent_health
from pyrovae.inference.diagnostics.structure import inspect_pair
from tests.test_cli import assert_one_error_line, run_cli
from tests.test_pairs import write

# w ~ N(0, I), x_i ~ N(w, I): the posterior of the global w is N(sum x / (n + 1), I / (n + 1)).
CONJUGATE = """
import pyro
import pyro.distributions as dist


def model(x):
    w = pyro.sample("w", dist.Normal(x.new_zeros(x.shape[1]), 1.0).to_event(1))
    with pyro.plate("data", x.shape[0]):
        pyro.sample("x", dist.Normal(w, 1.0).to_event(1), obs=x)
"""

# The documented form: an AutoNormal over the global decoder bias b, an encoder for z.
GLOBAL_VAE = """
import pyro
import pyro.distributions as dist
from pyro import poutine
from pyro.infer import autoguide
from torch import nn


class GlobalVAE(nn.Module):
    def __init__(self, z_dim=2, part="AutoNormal"):
        super().__init__()
        self.z_dim = z_dim
        self.decoder = nn.Sequential(nn.Linear(z_dim, 32), nn.Tanh(), nn.Linear(32, 64))
        self.encoder = nn.Sequential(nn.Linear(64, 32), nn.Tanh(), nn.Linear(32, 2 * z_dim))
        self.globals = getattr(autoguide, part)(poutine.block(self.model, expose=["b"]))

    def model(self, x):
        pyro.module("decoder", self.decoder)
        b = pyro.sample("b", dist.Normal(x.new_zeros(64), 1.0).to_event(1))
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", dist.Normal(x.new_zeros(self.z_dim), 1.0).to_event(1))
            pyro.sample("x", dist.Bernoulli(logits=self.decoder(z) + b).to_event(1), obs=x)

    def guide(self, x):
        pyro.module("encoder", self.encoder)
        self.globals(x)
        loc, log_scale = self.encoder(x).chunk(2, -1)
        with pyro.plate("data", x.shape[0]):
            pyro.sample("z", dist.Normal(loc, log_scale.exp()).to_event(1))


class MapGlobalVAE(GlobalVAE):
    def __init__(self):
        super().__init__(part="AutoDelta")


def local_model(x):
    decoder = pyro.module("decoder", nn.Linear(2, 64))
    with pyro.plate("data", x.shape[0]):
        z = pyro.sample("z", dist.Normal(x.new_zeros(2), 1.0).to_event(1))
        pyro.sample("x", dist.Bernoulli(logits=decoder(z)).to_event(1), obs=x)
"""

# Networks written for 2-D batches: torch.cat along dim 1 with a (B, 1) column, as Pyro's
# ss_vae_M2.py concatenates z and y. Broadcasting is the same pair written with dim=-1.
FLAT = """
import pyro
import pyro.distributions as dist
import torch
from torch import nn


class Flat(nn.Module):
    broadcast = False

    def __init__(self):
        super().__init__()
        self.decoder = nn.Sequential(nn.Linear(3, 32), nn.Tanh(), nn.Linear(32, 64))
        self.encoder = nn.Sequential(nn.Linear(65, 32), nn.Tanh(), nn.Linear(32, 4))

    def _with_column(self, t):
        if self.broadcast:
            return torch.cat([t, t.new_ones(t.shape[:-1] + (1,))], dim=-1)
        return torch.cat([t, t.new_ones(t.shape[0], 1)], dim=1)

    def model(self, x):
        pyro.module("decoder", self.decoder)
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", dist.Normal(x.new_zeros(2), 1.0).to_event(1))
            logits = self.decoder(self._with_column(z))
            pyro.sample("x", dist.Bernoulli(logits=logits).to_event(1), obs=x)

    def guide(self, x):
        pyro.module("encoder", self.encoder)
        with pyro.plate("data", x.shape[0]):
            loc, log_scale = self.encoder(self._with_column(x)).chunk(2, -1)
            pyro.sample("z", dist.Normal(loc, log_scale.exp()).to_event(1))


class Broadcasting(Flat):
    broadcast = True
"""

SMALL = dict(
    iwae_samples=50,
    nuts_points=0,
    amortization_points=3,
    amortization_steps=20,
    max_points=30,
)
TINY_NUTS = dict(nuts_points=1, nuts_samples=10, nuts_warmup=10)  # its guide draws, not NUTS


# ---------------------------------------------------------------- autoguides as guides


def test_autonormal_named_as_the_guide_recovers_the_exact_posterior(user_dir):
    module = write(user_dir, "user_conjugate", CONJUGATE)
    rng = np.random.default_rng(0)
    w = rng.normal(size=3)
    data = user_dir / "conjugate.npz"
    np.savez(
        data,
        x_train=(w + rng.normal(size=(15, 3))).astype(np.float32),
        x_test=(w + rng.normal(size=(20, 3))).astype(np.float32),
    )
    run = pyrovae.train(
        model=f"{module}:model",
        guide="pyro.infer.autoguide:AutoNormal",
        dataset=str(data),
        val_fraction=0.0,
        batch_size=15,  # one full batch: the exact posterior of all training rows
        epochs=150,
        lr=0.05,
        num_particles=128,
        quiet=True,
        out=str(user_dir / "run"),
    )
    assert isinstance(run.guide, AutoNormal)
    x = run.data.x_train.double()
    n = x.shape[0]
    mean, sd = x.sum(0) / (n + 1), 1 / math.sqrt(n + 1)  # sd 0.25; AutoNormal starts at 0.1
    assert torch.allclose(run.guide.locs.w.double(), mean, atol=0.05)  # 0.012 measured
    assert torch.allclose(run.guide.scales.w.double(), torch.full((3,), sd).double(), atol=0.03)
    summary = json.loads((user_dir / "run" / "summary.json").read_text())
    assert "objective" not in summary  # AutoNormal's Delta sites are draws, not point masses
    config = json.loads((user_dir / "run" / "config.json").read_text())
    assert config["guide"] == "pyro.infer.autoguide:AutoNormal"
    loaded = pyrovae.load_run(user_dir / "run", trust_code=True)  # AutoNormal(model) again
    saved = load_checkpoint(user_dir / "run" / "checkpoint.pt")["guide"]
    restored = dict(loaded.guide.named_parameters())
    assert set(restored) == set(saved) == {"locs.w_unconstrained", "scales.w_unconstrained"}
    assert all(torch.equal(restored[name].detach(), saved[name]) for name in saved)


def test_autonormal_over_a_per_row_latent_is_one_line(user_dir, capsys):
    module = write(user_dir, "user_global_vae", GLOBAL_VAE)
    out = user_dir / "run"
    argv = ["--model", f"{module}:local_model", "--guide", "pyro.infer.autoguide:AutoNormal"]
    code, _, err = run_cli([*argv, "--epochs", "1", "--quiet", "--out", out], capsys)
    line = assert_one_error_line(code, err, "'z'", "pyro.plate('data')", "encoder")
    assert "cannot amortize" in line and "05-your-own-pair.md" in line
    assert not out.exists()  # refused before the folder is written


def test_the_fix_names_the_global_sites_to_expose():
    def model(x):
        b = pyro.sample("b", dist.Normal(x.new_zeros(3), 1.0).to_event(1))
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", dist.Normal(x.new_zeros(3), 1.0).to_event(1))
            pyro.sample("x", dist.Normal(z + b, 1.0).to_event(1), obs=x)

    with pytest.raises(pyrovae.PyrovaeError, match=r"expose=\['b'\]"):
        pyrovae.inference.check_pair(model, AutoNormal(model), torch.zeros(4, 3))


def test_autoguide_draws_are_not_point_masses_but_an_autodelta_part_is(user_dir):
    module = write(user_dir, "user_global_vae", GLOBAL_VAE)
    x = torch.bernoulli(torch.full((5, 64), 0.3))
    normal = __import__(module).GlobalVAE()
    structure = inspect_pair(normal.model, normal.guide, x)
    assert structure.global_sites == ("b",) and structure.local_sites == ("z",)
    assert structure.global_point_mass_sites == () and structure.point_mass_sites == ()
    delta = __import__(module).MapGlobalVAE()
    structure = inspect_pair(delta.model, delta.guide, x)
    assert structure.global_point_mass_sites == ("b",) and structure.guide_is_density


def test_an_autodelta_part_makes_the_summary_say_not_a_bound(user_dir):
    module = write(user_dir, "user_global_vae", GLOBAL_VAE)
    out = user_dir / "run"
    pyrovae.train(pair=f"{module}:MapGlobalVAE", epochs=1, quiet=True, out=str(out))
    objective = json.loads((out / "summary.json").read_text())["objective"]
    assert "not a bound" in objective and "['b']" in objective


def test_amortized_vae_with_a_global_autonormal_trains_resumes_reloads_and_diagnoses(user_dir):
    module = write(user_dir, "user_global_vae", GLOBAL_VAE)
    out = user_dir / "run"
    pyrovae.train(pair=f"{module}:GlobalVAE", epochs=1, batch_size=128, quiet=True, out=str(out))
    pyrovae.train(resume=str(out), epochs=2, quiet=True, trust_code=True)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["epochs"] == 2 and "objective" not in summary
    saved = load_checkpoint(out / "checkpoint.pt")["best"]["model"]
    sys.modules.pop(module)  # as a new process would
    loaded = pyrovae.load_run(out, trust_code=True)
    part = loaded.guide.__self__.globals
    restored = dict(part.named_parameters())  # locs.b_unconstrained, scales.b_unconstrained
    assert len(restored) == 2
    for name, value in restored.items():
        assert torch.equal(value.detach(), saved[f"globals.{name}"]), name

    result = pyrovae.diagnose(out, trust_code=True, **SMALL)
    assert result["global_sites"] == ["b"] and result["latent_sites"] == ["z"]
    assert result["importance_weights_mode"] == "vectorized"
    idata = az.from_netcdf(out / "posterior.nc")
    draws = idata.global_posterior["b"].values  # (chain, draw, 64)
    assert draws.shape == (1, 100, 64)
    # The draws are q(b): their mean is AutoNormal's location within 4 standard errors.
    loc, scale = part.locs.b.detach().numpy(), part.scales.b.detach().numpy()
    assert np.all(np.abs(draws.mean((0, 1)) - loc) < 4 * scale / math.sqrt(100))


# ---------------------------------------------------- pairs that do not broadcast


def _flat_pairs(user_dir):
    module = __import__(write(user_dir, "user_flat", FLAT))
    flat, broadcasting = module.Flat(), module.Broadcasting()
    broadcasting.load_state_dict(flat.state_dict())  # the same networks
    return flat, broadcasting


def test_a_pair_that_does_not_broadcast_gets_the_broadcasting_pairs_numbers(user_dir):
    flat, broadcasting = _flat_pairs(user_dir)
    x = torch.bernoulli(torch.full((40, 64), 0.3))
    with pytest.raises(RuntimeError, match="same number of dimensions"):  # the premise
        with pyro.plate("particles", 2, dim=-2):
            flat.model(x)
    structure = inspect_pair(flat.model, flat.guide, x)
    with torch.no_grad():
        pyro.set_rng_seed(0)
        looped = importance_weights(flat.model, flat.guide, x, 200, structure)
        pyro.set_rng_seed(0)
        vectorized = importance_weights(broadcasting.model, broadcasting.guide, x, 200, structure)
    assert not looped.vectorized and vectorized.vectorized
    # Different draws of the same q: equal within Monte Carlo error, row by row.
    lw_l, lw_v = looped.log_weights, vectorized.log_weights
    se = torch.sqrt((lw_l.var(1) + lw_v.var(1)) / 200)
    assert torch.all((lw_l.mean(1) - lw_v.mean(1)).abs() < 5 * se)
    assert (looped.iwae() - vectorized.iwae()).abs().mean() < 0.05
    # Closed-form KL does not depend on the draws: the repeated rows give the same numbers.
    health_l = latent_health(flat.model, flat.guide, x, structure)
    health_v = latent_health(broadcasting.model, broadcasting.guide, x, structure)
    assert health_l.kl_per_dim["z"] == pytest.approx(health_v.kl_per_dim["z"], rel=1e-5)
    assert health_l.mean_variance["z"] == pytest.approx(health_v.mean_variance["z"], rel=1e-5)


def test_diagnose_runs_on_a_pair_that_does_not_broadcast(user_dir):
    _flat_pairs(user_dir)
    out = user_dir / "run"
    pyrovae.train(pair="user_flat:Flat", epochs=1, batch_size=128, quiet=True, out=str(out))
    options = {**SMALL, **TINY_NUTS, "amortization_points": 2, "amortization_steps": 3}
    result = pyrovae.diagnose(out, trust_code=True, **options)
    assert result["importance_weights_mode"] == "particle loop"
    assert math.isfinite(result["amortization_gap"])  # refit one particle a pass
    assert any("one particle a pass" in note for note in result["notes"])
    assert result["iwae_log_likelihood"] is not None and result["nuts_max_rhat"] is not None
    written = json.loads((out / "diagnostics.json").read_text())
    assert written["importance_weights_mode"] == "particle loop"


def test_an_autonormal_over_the_local_latent_inside_a_function_guide_is_refused_too():
    def model(x):
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", dist.Normal(x.new_zeros(3), 1.0).to_event(1))
            pyro.sample("x", dist.Normal(z, 1.0).to_event(1), obs=x)

    part = AutoNormal(model)

    def guide(x):
        return part(x)

    with pytest.raises(pyrovae.PyrovaeError, match="cannot amortize"):
        pyrovae.inference.check_pair(model, guide, torch.zeros(4, 3))


def test_an_amortized_guide_with_auxiliary_sites_of_its_own_passes_the_check():
    def model(x):
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", dist.Normal(x.new_zeros(3), 1.0).to_event(1))
            pyro.sample("x", dist.Normal(z, 1.0).to_event(1), obs=x)

    def guide(x):
        with pyro.plate("data", x.shape[0]):
            u = pyro.sample("u", dist.Normal(x, 1.0).to_event(1), infer={"is_auxiliary": True})
            pyro.sample("z", dist.Normal(u, 0.5).to_event(1))

    pyrovae.inference.check_pair(model, guide, torch.zeros(4, 3))
