"""Every form of Pyro pair trains, resumes and reloads; broken pairs get one teaching line.

Forms (see pyrovae.runs.programs): one object with model/guide methods as in Pyro's VAE example
(``--pair``), plain functions with ``pyro.module`` / ``pyro.param`` (``--model f --guide g``),
and Python objects passed to ``pyrovae.train``. A reloaded run is re-evaluated and must give
the test ELBO of its summary.json.
"""

import json
import math
import sys
import textwrap

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.infer import Trace_ELBO
from torch import nn

import pyrovae
from pyrovae.inference.checkpoint import load_checkpoint
from tests.test_cli import assert_one_error_line, run_cli

TINY = ["--epochs", "3", "--quiet", "--batch-size", "128"]

# Pyro's examples/vae/vae.py, shrunk to the 8x8 digits: one module, model and guide methods
# registering their networks with pyro.module, built with no arguments.
PYRO_EXAMPLE = """
import pyro
import pyro.distributions as dist
import torch
from torch import nn


class Encoder(nn.Module):
    def __init__(self, z_dim, hidden_dim):
        super().__init__()
        self.fc1 = nn.Linear(64, hidden_dim)
        self.fc21 = nn.Linear(hidden_dim, z_dim)
        self.fc22 = nn.Linear(hidden_dim, z_dim)
        self.softplus = nn.Softplus()

    def forward(self, x):
        hidden = self.softplus(self.fc1(x.reshape(-1, 64)))
        return self.fc21(hidden), torch.exp(self.fc22(hidden))


class Decoder(nn.Module):
    def __init__(self, z_dim, hidden_dim):
        super().__init__()
        self.fc1 = nn.Linear(z_dim, hidden_dim)
        self.fc21 = nn.Linear(hidden_dim, 64)
        self.softplus = nn.Softplus()

    def forward(self, z):
        return torch.sigmoid(self.fc21(self.softplus(self.fc1(z))))


class VAE(nn.Module):
    def __init__(self, z_dim=4, hidden_dim=64):
        super().__init__()
        self.encoder = Encoder(z_dim, hidden_dim)
        self.decoder = Decoder(z_dim, hidden_dim)
        self.z_dim = z_dim

    def model(self, x):
        pyro.module("decoder", self.decoder)
        with pyro.plate("data", x.shape[0]):
            z_loc = x.new_zeros(torch.Size((x.shape[0], self.z_dim)))
            z_scale = x.new_ones(torch.Size((x.shape[0], self.z_dim)))
            z = pyro.sample("latent", dist.Normal(z_loc, z_scale).to_event(1))
            loc_img = self.decoder(z)
            pyro.sample(
                "obs", dist.Bernoulli(loc_img, validate_args=False).to_event(1),
                obs=x.reshape(-1, 64),
            )

    def guide(self, x):
        pyro.module("encoder", self.encoder)
        with pyro.plate("data", x.shape[0]):
            z_loc, z_scale = self.encoder(x)
            pyro.sample("latent", dist.Normal(z_loc, z_scale).to_event(1))
"""

# Plain functions: networks registered with pyro.module, and a constrained pyro.param. The
# guide is a point mass, so the loss has no random draw and a reloaded run re-evaluates to
# exactly the test ELBO of its summary.
FUNCTIONS = """
import pyro
import pyro.distributions as dist
import torch
from torch import nn
from torch.distributions import constraints

decoder = nn.Sequential(nn.Linear(3, 32), nn.Tanh(), nn.Linear(32, 64))
encoder = nn.Sequential(nn.Linear(64, 32), nn.Tanh(), nn.Linear(32, 3))


def model(x, y=None):
    pyro.module("decoder", decoder)
    with pyro.plate("data", x.shape[0]):
        z = pyro.sample("z", dist.Normal(x.new_zeros(3), 1.0).to_event(1))
        pyro.sample("x", dist.Bernoulli(logits=decoder(z)).to_event(1), obs=x)


def guide(x, y=None):
    pyro.module("encoder", encoder)
    gain = pyro.param("gain", torch.full((3,), 0.5), constraint=constraints.positive)
    with pyro.plate("data", x.shape[0]):
        pyro.sample("z", dist.Delta(gain * encoder(x)).to_event(1))
"""


def write(folder, name: str, source: str) -> str:
    (folder / f"{name}.py").write_text(textwrap.dedent(source))
    sys.modules.pop(name, None)
    return name


def reevaluate(run, particles: int = 1) -> float:
    x = run.data.x_test
    with torch.no_grad():
        elbo = Trace_ELBO(num_particles=particles, vectorize_particles=particles > 1)
        return -elbo.loss(run.model, run.guide, x) / x.shape[0]


# ---------------------------------------------------------------------------- the forms


def test_pyro_example_pair_trains_resumes_and_reloads(user_dir, capsys):
    module = write(user_dir, "user_vae", PYRO_EXAMPLE)
    run = user_dir / "run"
    code, _, err = run_cli(["--pair", f"{module}:VAE", *TINY, "--num-particles", "32",
                            "--out", run], capsys)  # fmt: skip
    assert code == 0, err
    code, _, err = run_cli(["--resume", run, "--epochs", "5", "--quiet", "--trust-code"], capsys)
    assert code == 0, err
    summary = json.loads((run / "summary.json").read_text())
    assert summary["model"] == f"{module}:VAE" and summary["epochs"] == 5
    assert summary["likelihood"] == "Bernoulli"
    sys.modules.pop(module)  # as a new process would: the class is imported afresh
    loaded = pyrovae.load_run(run, trust_code=True)
    assert loaded.model.__self__ is loaded.guide.__self__  # the bound methods of one VAE
    assert loaded.model.__name__ == "model" and loaded.guide.__name__ == "guide"
    # A 32-particle estimate in the run, 400 particles here: within Monte Carlo error.
    assert reevaluate(loaded, 400) == pytest.approx(summary["test_elbo"], abs=0.1)
    assert summary["test_elbo"] > -64 * math.log(2)  # better than fair coins


def test_plain_function_pair_trains_resumes_and_reloads_exactly(user_dir, capsys):
    module = write(user_dir, "user_fns", FUNCTIONS)
    run = user_dir / "run"
    argv = ["--model", f"{module}:model", "--guide", f"{module}:guide", "--lr", "3e-2"]
    code, _, err = run_cli([*argv, *TINY, "--patience", "2", "--out", run], capsys)
    assert code == 0, err
    code, _, err = run_cli(["--resume", run, "--epochs", "12", "--quiet", "--trust-code"], capsys)
    assert code == 0, err
    summary = json.loads((run / "summary.json").read_text())
    checkpoint = load_checkpoint(run / "checkpoint.pt")
    best = checkpoint["best"]
    assert summary["best_epoch"] == best["epoch"] and "gain" in best["param_store"]
    sys.modules.pop(module)  # fresh networks with new random weights on import
    loaded = pyrovae.load_run(run, trust_code=True)
    store = dict(pyro.get_param_store().named_parameters())
    for name, value in best["param_store"].items():  # every pyro.param site at the best epoch
        assert torch.equal(store[name], value), name
    assert reevaluate(loaded) == pytest.approx(summary["test_elbo"], abs=1e-4)


class ApiModel(nn.Module):
    """z ~ N(0, I), x ~ N(decoder(z), 0.1): built from a ModelSpec."""

    def __init__(self, spec):
        super().__init__()
        self.k, self.decoder = spec.latent_dim, nn.Linear(spec.latent_dim, spec.x_dim)

    def forward(self, x, y=None):
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", dist.Normal(x.new_zeros(self.k), 1.0).to_event(1))
            pyro.sample("x", dist.Normal(self.decoder(z), 0.1).to_event(1), obs=x)


class ApiGuide(nn.Module):
    def __init__(self, spec):
        super().__init__()
        self.encoder = nn.Linear(spec.x_dim, spec.latent_dim)

    def forward(self, x, y=None):
        with pyro.plate("data", x.shape[0]):
            pyro.sample("z", dist.Delta(self.encoder(x)).to_event(1))


def api_model_fn(x, y=None):
    decoder = pyro.module("decoder", API_DECODER)
    with pyro.plate("data", x.shape[0]):
        z = pyro.sample("z", dist.Normal(x.new_zeros(2), 1.0).to_event(1))
        pyro.sample("x", dist.Normal(decoder(z), 0.1).to_event(1), obs=x)


def api_guide_fn(x, y=None):
    encoder = pyro.module("encoder", API_ENCODER)
    with pyro.plate("data", x.shape[0]):
        pyro.sample("z", dist.Delta(encoder(x)).to_event(1))


API_DECODER, API_ENCODER = nn.Linear(2, 64), nn.Linear(64, 2)


@pytest.mark.parametrize(
    "programs",
    [
        dict(model=ApiModel, guide=ApiGuide, latent_dim=2),  # classes, built from the spec
        dict(model=api_model_fn, guide=api_guide_fn),  # functions: their own networks
    ],
    ids=["classes", "functions"],
)
def test_python_objects_train_and_reload(programs, tmp_path):
    out = tmp_path / "run"
    run = pyrovae.train(epochs=3, quiet=True, out=str(out), **programs)
    # A Gaussian decoder on digits: the gray levels are modeled as they are, not binarized.
    assert run.summary["likelihood"] == "Normal" and not run.data.dynamic_binarization
    assert ((run.data.x_test > 0) & (run.data.x_test < 1)).any()
    config = json.loads((out / "config.json").read_text())
    model = programs["model"]
    assert ("latent_dim" in run.summary) == (model is ApiModel)  # only where it is read
    assert config["model"] == f"{model.__module__}:{model.__qualname__}"
    loaded = pyrovae.load_run(out, trust_code=True)  # by the names in config.json
    assert reevaluate(loaded) == pytest.approx(run.summary["test_elbo"], abs=1e-3)


def test_an_instance_is_the_program_itself(tmp_path):
    from pyrovae.models import ModelSpec

    spec = ModelSpec(x_dim=64, latent_dim=2)
    model, guide = ApiModel(spec), ApiGuide(spec)
    run = pyrovae.train(model=model, guide=guide, epochs=2, quiet=True, out=str(tmp_path / "r"))
    assert run.model is model and run.guide is guide
    # Trained in place: the instance's parameters are the run's.
    assert torch.equal(model.decoder.weight, run.model.decoder.weight)


# ---------------------------------------------------------------------------- broken pairs

GOOD_GUIDE = """
class Guide(nn.Module):
    def __init__(self, spec):
        super().__init__()
        self.encoder = nn.Linear(spec.x_dim, 2 * 3)

    def forward(self, x, y=None):
        loc, raw = self.encoder(x).split(3, dim=-1)
        with pyro.plate("data", x.shape[0]):
            pyro.sample("z", dist.Normal(loc, F.softplus(raw) + 1e-3).to_event(1))
"""
GOOD_MODEL = """
class Model(nn.Module):
    def __init__(self, spec):
        super().__init__()
        self.decoder = nn.Linear(3, spec.x_dim)

    def forward(self, x, y=None):
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", dist.Normal(x.new_zeros(3), 1.0).to_event(1))
            pyro.sample("x", dist.Bernoulli(logits=self.decoder(z)).to_event(1), obs=x)
"""
HEADER = """
import pyro
import pyro.distributions as dist
import torch
import torch.nn.functional as F
from torch import nn

CONSTANT = 3
"""


def model_with(body: str) -> str:
    """A model whose forward is ``body`` (decoder Linear(3, D)), and the good guide."""
    return (
        HEADER
        + textwrap.dedent(
            """
        class Model(nn.Module):
            def __init__(self, spec):
                super().__init__()
                self.decoder = nn.Linear(3, spec.x_dim)

            def forward(self, x, y=None):
        """
        )
        + textwrap.indent(textwrap.dedent(body), " " * 8)
        + GOOD_GUIDE
    )


# name -> (module source, extra argv, words of the one error line)
BROKEN = {
    "missing_plate": (
        model_with("""
            z = pyro.sample("z", dist.Normal(x.new_zeros(x.shape[0], 3), 1.0).to_event(1))
            pyro.sample("x", dist.Bernoulli(logits=self.decoder(z)).to_event(1), obs=x)
        """),
        [],
        ["site 'x'", "outside any pyro.plate", "pyro.plate('data', x.shape[0])"],
    ),
    "missing_to_event_on_x": (
        model_with("""
            with pyro.plate("data", x.shape[0]):
                z = pyro.sample("z", dist.Normal(x.new_zeros(3), 1.0).to_event(1))
                pyro.sample("x", dist.Bernoulli(logits=self.decoder(z)), obs=x)
        """),
        [],
        ["site 'x'", "size 64", "128 rows", ".to_event(1)"],
    ),
    "missing_to_event_on_z": (
        model_with("""
            with pyro.plate("data", x.shape[0]):
                z = pyro.sample("z", dist.Normal(x.new_zeros(3), 1.0))
                pyro.sample("x", dist.Bernoulli(logits=self.decoder(z)).to_event(1), obs=x)
        """),
        [],
        ["site 'z'", "size 3", "128 rows", ".to_event(1)"],
    ),
    "latent_widths_differ": (
        HEADER
        + GOOD_MODEL.replace("nn.Linear(3, spec.x_dim)", "nn.Linear(5, spec.x_dim)").replace(
            "x.new_zeros(3)", "x.new_zeros(5)"
        )
        + GOOD_GUIDE,
        [],
        ["site 'z'", "(128, 3)", "(128, 5)", "widths agree"],
    ),
    "site_names_differ": (
        HEADER + GOOD_MODEL + GOOD_GUIDE.replace('pyro.sample("z"', 'pyro.sample("code"'),
        [],
        ["guide samples ['code']", "matching names"],
    ),
    "missing_obs": (
        model_with("""
            with pyro.plate("data", x.shape[0]):
                z = pyro.sample("z", dist.Normal(x.new_zeros(3), 1.0).to_event(1))
                pyro.sample("x", dist.Bernoulli(logits=self.decoder(z)).to_event(1))
        """),
        [],
        ["site 'x'", "does not observe it", "obs=x"],
    ),
    "observes_something_else": (
        model_with("""
            with pyro.plate("data", x.shape[0]):
                z = pyro.sample("z", dist.Normal(x.new_zeros(3), 1.0).to_event(1))
                logits = self.decoder(z)[:, :10]
                pyro.sample("x", dist.Bernoulli(logits=logits).to_event(1), obs=x[:, :10])
        """),
        [],
        ["no sample site that observes x", "(128, 64)", "obs=x"],
    ),
    "model_raises": (
        model_with("""
            with pyro.plate("data", x.shape[0]):
                z = pyro.sample("z", dist.Normal(x.new_zeros(3), 1.0).to_event(1))
                pyro.sample("x", dist.Bernoulli(logits=self.decodr(z)).to_event(1), obs=x)
        """),
        [],
        ["the model failed on a batch of 128 rows", "user_broken.py:", "decodr"],
    ),
    "guide_without_plate_or_event": (
        HEADER
        + GOOD_MODEL
        + GOOD_GUIDE.replace(
            'with pyro.plate("data", x.shape[0]):\n            pyro.sample("z", '
            "dist.Normal(loc, F.softplus(raw) + 1e-3).to_event(1))",
            'pyro.sample("z", dist.Normal(loc, F.softplus(raw) + 1e-3))',
        ),
        [],
        ["site 'z' in the guide", "batch shape (128, 3)", ".to_event(1)"],
    ),
    "no_latent_site": (
        HEADER
        + GOOD_MODEL.replace(
            'z = pyro.sample("z", dist.Normal(x.new_zeros(3), 1.0).to_event(1))',
            "z = x.new_zeros(x.shape[0], 3)",
        )
        + "\n\ndef Guide(spec):\n    return lambda x, y=None: None\n",
        [],
        ["no latent sample site", "pyro.sample('z'"],
    ),
    "factory_with_wrong_signature": (
        HEADER
        + GOOD_MODEL.replace("def __init__(self, spec):", "def __init__(self, spec, width):")
        + GOOD_GUIDE,
        [],
        ["--model user_broken:Model cannot be built", "(spec, width)", "ModelSpec"],
    ),
    "builtin_as_model": (
        "",
        ["--model", "os:system", "--guide", "mlp-normal"],
        ["built-in system", "not a Pyro program"],
    ),  # fmt: skip
    "constant_as_model": (
        HEADER,
        ["--model", "user_broken:CONSTANT", "--guide", "mlp-normal"],
        ["int, not a callable"],
    ),  # fmt: skip
    "pair_without_methods": (
        HEADER + GOOD_MODEL,
        ["--pair", "user_broken:Model"],
        ["--pair user_broken:Model needs model and guide methods"],
    ),
    "pair_and_model": (
        HEADER + GOOD_MODEL,
        ["--pair", "user_broken:Model", "--model", "vae"],
        ["either --pair or --model"],
    ),  # fmt: skip
    "module_raises_on_import": (
        "raise RuntimeError('half-written module')",
        [],
        ["importing 'user_broken'", "half-written module"],
    ),  # fmt: skip
    "bernoulli_on_real_data": (
        HEADER + GOOD_MODEL + GOOD_GUIDE,
        ["--dataset", "spiral"],
        ["spiral x_train", "Bernoulli", "[0, 1]"],
    ),
    "no_default_guide": (HEADER + GOOD_MODEL, ["--guide", None], ["no default guide", "--guide"]),
}


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_a_broken_user_pair_is_one_teaching_line(case, user_dir, capsys):
    source, extra, words = BROKEN[case]
    write(user_dir, "user_broken", source)
    argv = ["--model", "user_broken:Model", "--guide", "user_broken:Guide"]
    if "--guide" in extra and None in extra:  # no --guide at all
        argv, extra = ["--model", "user_broken:Model"], []
    elif any(flag in extra for flag in ("--model", "--pair")):
        argv = []
    run = user_dir / "run"
    code, _, err = run_cli([*argv, *extra, *TINY, "--out", run], capsys)
    assert_one_error_line(code, err, *words)
    assert not run.exists()  # no half-written run folder


def test_the_table_covers_the_common_mistakes():
    assert len(BROKEN) >= 12
