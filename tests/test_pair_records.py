"""What a run records of a user's pair, and what the pair check reads off its traces.

Pyro's ``examples/vae/vae.py`` is re-typed here as written (only the image width adapted to
the 8x8 digits) and given to ``pyrovae.train`` as an instance with constructor arguments: its
folder reopens by itself and re-evaluates to its summary's test ELBO. Objects that cannot be
rebuilt from a folder (bound methods, ``config_enumerate`` wrappers) are recorded as such, and
reopen when given again. Observing is told from recording (``pyro.deterministic``), and a
``pyro.plate("data")`` whose size Pyro infers is accepted.
"""

import json
import math
import shutil
import sys
import textwrap
import warnings

import pyro
import pytest
import torch

import pyrovae
from pyrovae.cli import diagnose as diagnose_cli
from pyrovae.errors import PyrovaeError
from tests.test_cli import assert_one_error_line, run_cli

TINY = ["--epochs", "2", "--quiet", "--batch-size", "128"]

HEADER = """
import pyro
import pyro.distributions as dist
import torch
from torch import nn
"""

# A guide shared by the contract cases: z of width 3 in a plate over the rows.
GUIDE = """
class Guide(nn.Module):
    def __init__(self):
        super().__init__()
        self.encoder = nn.Linear(64, 6)

    def forward(self, x):
        loc, raw = self.encoder(x).split(3, dim=-1)
        with pyro.plate("data", x.shape[0]):
            pyro.sample("z", dist.Normal(loc, raw.exp()).to_event(1))
"""


def model_with(body: str) -> str:
    """A module with ``Model`` (decoder Linear(3, 64), forward(x) = ``body``) and ``Guide``."""
    model = textwrap.dedent(
        """
        class Model(nn.Module):
            def __init__(self):
                super().__init__()
                self.decoder = nn.Linear(3, 64)

            def forward(self, x):
        """
    ) + textwrap.indent(textwrap.dedent(body), " " * 8)
    return HEADER + model + GUIDE


def write(folder, name: str, source: str) -> str:
    (folder / f"{name}.py").write_text(source)
    sys.modules.pop(name, None)
    return name


def train_cli(user_dir, source: str, capsys, *extra):
    module = write(user_dir, "user_pair", source)
    out = user_dir / "run"
    argv = ["--model", f"{module}:Model", "--guide", f"{module}:Guide", *TINY, *extra]
    return (*run_cli([*argv, "--out", out], capsys), out)


# ---------------------------------------------------------------- observing, not recording


def test_a_deterministic_record_of_x_is_not_an_observation(user_dir, capsys):
    """The model observes y (a summary of the rows) and only records x: one line naming
    both sites, before any folder is written."""
    source = model_with("""
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", dist.Normal(x.new_zeros(3), 1.0).to_event(1))
            pyro.deterministic("x", torch.sigmoid(self.decoder(z)), event_dim=1)
            pyro.sample("y", dist.Normal(self.decoder(z)[:, :4], 1.0).to_event(1),
                        obs=x[:, :4])
    """)
    code, _, err, out = train_cli(user_dir, source, capsys)
    assert_one_error_line(
        code, err, "site 'x'", "pyro.deterministic", "'y' of shape (128, 4)", "obs=x"
    )
    assert not out.exists()


def test_an_observation_of_another_shape_is_named(user_dir, capsys):
    source = model_with("""
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", dist.Normal(x.new_zeros(3), 1.0).to_event(1))
            pyro.sample("x", dist.Bernoulli(logits=self.decoder(z)).to_event(1),
                        obs=x.reshape(-1, 8, 8).sum(-1).clamp(max=1))
    """)
    code, _, err, _ = train_cli(user_dir, source, capsys)
    assert_one_error_line(code, err, "no sample site that observes x", "(128, 64)",
                          "'x' of shape (128, 8)", "obs=x")  # fmt: skip


# ---------------------------------------------------------------- plates Pyro sizes itself

SIZELESS = (
    HEADER
    + """
class Model(nn.Module):
    def __init__(self):
        super().__init__()
        self.decoder = nn.Linear(3, 64)

    def forward(self, x):
        with pyro.plate("data"{args}):
            z = pyro.sample("z", dist.Normal(x.new_zeros(x.shape[0], 3), 1.0).to_event(1))
            pyro.sample("x", dist.Bernoulli(logits=self.decoder(z)).to_event(1), obs=x)


class Guide(nn.Module):
    def __init__(self):
        super().__init__()
        self.encoder = nn.Linear(64, 6)

    def forward(self, x):
        loc, raw = self.encoder(x).split(3, dim=-1)
        with pyro.plate("data"{args}):
            pyro.sample("z", dist.Normal(loc, raw.exp()).to_event(1))
"""
)


def test_a_plate_whose_size_pyro_infers_trains_as_a_sized_one(user_dir, capsys):
    """``pyro.plate("data")`` (and with ``dim=-1``) trains to the very numbers of
    ``pyro.plate("data", x.shape[0])``: same seed, same draws, same plate."""
    elbos = {}
    for args in [", x.shape[0]", "", ", size=None, dim=-1"]:
        code, _, err, out = train_cli(user_dir, SIZELESS.format(args=args), capsys)
        assert code == 0, (args, err)
        elbos[args] = json.loads((out / "summary.json").read_text())["test_elbo"]
        shutil.rmtree(out)
    sized = elbos.pop(", x.shape[0]")
    assert sized > -64 * 0.75  # it learned something
    for args, elbo in elbos.items():
        assert elbo == pytest.approx(sized, rel=1e-6), args


def test_a_sizeless_plate_still_needs_its_rows_in_it(user_dir, capsys):
    """A plate of inferred size over the latent only leaves x outside: still refused."""
    source = SIZELESS.format(args="").replace(
        '            pyro.sample("x", dist.Bernoulli(logits=self.decoder(z)).to_event(1), obs=x)',
        '        pyro.sample("x", dist.Bernoulli(logits=self.decoder(z)).to_event(1), obs=x)',
        1,
    )
    code, _, err, _ = train_cli(user_dir, source, capsys)
    assert_one_error_line(code, err, "site 'x'", "outside any pyro.plate")


# ---------------------------------------------------------------- pairs given as objects

# Pyro's examples/vae/vae.py as written, the image width 784 adapted to the 8x8 digits' 64.
PYRO_VAE = """
import pyro
import pyro.distributions as dist
import torch
import torch.nn as nn
from pyro.infer import config_enumerate


class Encoder(nn.Module):
    def __init__(self, z_dim, hidden_dim):
        super().__init__()
        # setup the three linear transformations used
        self.fc1 = nn.Linear(64, hidden_dim)
        self.fc21 = nn.Linear(hidden_dim, z_dim)
        self.fc22 = nn.Linear(hidden_dim, z_dim)
        # setup the non-linearities
        self.softplus = nn.Softplus()

    def forward(self, x):
        # define the forward computation on the image x
        # first shape the mini-batch to have pixels in the rightmost dimension
        x = x.reshape(-1, 64)
        # then compute the hidden units
        hidden = self.softplus(self.fc1(x))
        # then return a mean vector and a (positive) square root covariance
        # each of size batch_size x z_dim
        z_loc = self.fc21(hidden)
        z_scale = torch.exp(self.fc22(hidden))
        return z_loc, z_scale


class Decoder(nn.Module):
    def __init__(self, z_dim, hidden_dim):
        super().__init__()
        # setup the two linear transformations used
        self.fc1 = nn.Linear(z_dim, hidden_dim)
        self.fc21 = nn.Linear(hidden_dim, 64)
        # setup the non-linearities
        self.softplus = nn.Softplus()
        self.sigmoid = nn.Sigmoid()

    def forward(self, z):
        # define the forward computation on the latent z
        # first compute the hidden units
        hidden = self.softplus(self.fc1(z))
        # return the parameter for the output Bernoulli
        # each is of size batch_size x 64
        loc_img = self.sigmoid(self.fc21(hidden))
        return loc_img


class VAE(nn.Module):
    # by default our latent space is 50-dimensional
    # and we use 400 hidden units
    def __init__(self, z_dim=50, hidden_dim=400, use_cuda=False):
        super().__init__()
        # create the encoder and decoder networks
        self.encoder = Encoder(z_dim, hidden_dim)
        self.decoder = Decoder(z_dim, hidden_dim)

        if use_cuda:
            # calling cuda() here will put all the parameters of
            # the encoder and decoder networks into gpu memory
            self.cuda()
        self.use_cuda = use_cuda
        self.z_dim = z_dim

    # define the model p(x|z)p(z)
    def model(self, x):
        # register PyTorch module `decoder` with Pyro
        pyro.module("decoder", self.decoder)
        with pyro.plate("data", x.shape[0]):
            # setup hyperparameters for prior p(z)
            z_loc = x.new_zeros(torch.Size((x.shape[0], self.z_dim)))
            z_scale = x.new_ones(torch.Size((x.shape[0], self.z_dim)))
            # sample from prior (value will be sampled by guide when computing the ELBO)
            z = pyro.sample("latent", dist.Normal(z_loc, z_scale).to_event(1))
            # decode the latent code z
            loc_img = self.decoder(z)
            # score against actual images (with relaxed Bernoulli values)
            pyro.sample(
                "obs",
                dist.Bernoulli(loc_img, validate_args=False).to_event(1),
                obs=x.reshape(-1, 64),
            )
            # return the loc so we can visualize it later
            return loc_img

    # define the guide (i.e. variational distribution) q(z|x)
    def guide(self, x):
        # register PyTorch module `encoder` with Pyro
        pyro.module("encoder", self.encoder)
        with pyro.plate("data", x.shape[0]):
            # use the encoder to get the parameters used to define q(z|x)
            z_loc, z_scale = self.encoder(x)
            # sample the latent code z
            pyro.sample("latent", dist.Normal(z_loc, z_scale).to_event(1))


# Plain functions around one VAE's networks, the guide wrapped by config_enumerate where it
# is defined (a no-op here: no discrete site), as Pyro's ss_vae_M2.py wraps its guide.
NETWORKS = VAE(z_dim=3, hidden_dim=16)


def model(x):
    return NETWORKS.model(x)


@config_enumerate
def guide(x):
    return NETWORKS.guide(x)
"""


def run_main(main, argv, capsys):
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def linear_count(n_in: int, n_out: int) -> int:
    return n_in * n_out + n_out  # weight and bias


def elbo_of(model, guide, x, seed: int = 0, particles: int = 1) -> float:
    """-Trace_ELBO loss per row of ``x``, with ``particles`` draws from seed ``seed``."""
    from pyro.infer import Trace_ELBO

    pyro.set_rng_seed(seed)
    with torch.no_grad():
        elbo = Trace_ELBO(num_particles=particles, vectorize_particles=particles > 1)
        return -elbo.loss(model, guide, x) / x.shape[0]


def test_pyros_vae_given_as_an_instance_reopens_and_reevaluates_to_its_test_elbo(user_dir):
    """``train(pair=VAE(z_dim=4, hidden_dim=400))``: config.json records the arguments it can
    read back from the instance (``z_dim``, ``use_cuda``; ``hidden_dim`` is not kept, and
    rebuilding checks that its default gives the same networks); the folder reopens in a new
    import of the module and re-evaluates to the summary's test ELBO. summary.json reports
    the pair's latent site and parameter counts, and no --latent-dim or --hidden it ignored."""
    module = write(user_dir, "user_pyro_vae", PYRO_VAE)
    vae = __import__(module).VAE(z_dim=4, hidden_dim=400)
    out = user_dir / "run"
    pyrovae.train(pair=vae, epochs=2, num_particles=32, quiet=True, out=str(out))
    config = json.loads((out / "config.json").read_text())
    assert config["pair"] == f"{module}:VAE"
    assert config["rebuild"] == {"pair": {"arguments": {"z_dim": 4, "use_cuda": False}}}
    summary = json.loads((out / "summary.json").read_text())
    assert summary["latent_sites"] == [
        {"name": "latent", "event_shape": [4], "size": 4, "per_row": True,
         "distribution": "Normal", "guide_distribution": "Normal"}
    ]  # fmt: skip
    assert not {"latent_dim", "hidden", "gaussian_scale"} & set(summary)
    encoder = linear_count(64, 400) + 2 * linear_count(400, 4)
    decoder = linear_count(4, 400) + linear_count(400, 64)
    assert summary["parameters_by_module"] == [
        {"module": "encoder", "parameters": encoder},
        {"module": "decoder", "parameters": decoder},
    ]
    assert summary["num_parameters"] == encoder + decoder

    sys.modules.pop(module)  # as a new process would: the class is imported afresh
    pyro.clear_param_store()
    loaded = pyrovae.load_run(out, trust_code=True)
    rebuilt = loaded.model.__self__
    assert type(rebuilt).__module__ == module and rebuilt is not vae
    assert rebuilt is loaded.guide.__self__ and rebuilt.z_dim == 4
    assert rebuilt.encoder.fc1.out_features == 400
    x = loaded.data.x_test
    # A 32-particle estimate in the run, 400 particles here: within Monte Carlo error.
    assert elbo_of(loaded.model, loaded.guide, x, particles=400) == pytest.approx(
        summary["test_elbo"], abs=0.1
    )
    assert summary["test_elbo"] > -64 * math.log(2)  # better than fair coins


def test_an_instance_it_cannot_rebuild_is_passed_again(user_dir, capsys):
    """``hidden_dim=32`` is kept nowhere in the instance, and its default builds other
    networks: config.json says ``pass the object``; load_run, diagnose and resume say so in
    one line, and work with the object given again, to the same numbers."""
    module = write(user_dir, "user_pyro_vae", PYRO_VAE)
    VAE = __import__(module).VAE
    out = user_dir / "run"
    run = pyrovae.train(pair=VAE(z_dim=4, hidden_dim=32), epochs=2, quiet=True, out=str(out))
    assert json.loads((out / "config.json").read_text())["rebuild"] == {"pair": "pass the object"}
    with pytest.raises(PyrovaeError, match=r"pass it again: pyrovae.load_run\(path, pair=obj\)"):
        pyrovae.load_run(out, trust_code=True)
    code, _, err = run_main(diagnose_cli.main, [out, "--trust-code"], capsys)
    assert_one_error_line(code, err, "cannot rebuild", "pair=obj")

    loaded = pyrovae.load_run(out, pair=VAE(z_dim=4, hidden_dim=32))
    x = loaded.data.x_test
    assert elbo_of(loaded.model, loaded.guide, x) == pytest.approx(
        elbo_of(run.model, run.guide, x), abs=1e-5
    )  # the same parameters: the same ELBO on the same draws
    numbers = pyrovae.diagnose(loaded, iwae_samples=10, nuts_points=0, amortization_points=0,
                               max_points=10, write=False)  # fmt: skip
    # log-mean-exp of each row's weights is at least their mean (Jensen), on the same draws
    assert math.isfinite(numbers["elbo_monte_carlo"])
    assert numbers["iwae_log_likelihood"] >= numbers["elbo_monte_carlo"]
    resumed = pyrovae.train(resume=out, pair=VAE(z_dim=4, hidden_dim=32), epochs=3, quiet=True)
    assert [row["epoch"] for row in resumed.history] == [1, 2, 3]


def test_bound_methods_and_config_enumerate_wrappers_are_recorded_by_what_they_are(user_dir):
    """``model=vae.model, guide=vae.guide``: the instance's class, its arguments and the
    method names, one instance again when reopened; a function wrapped by config_enumerate
    where it is defined: the function's own name, never Pyro's wrapper class."""
    module = write(user_dir, "user_pyro_vae", PYRO_VAE)
    user = __import__(module)
    vae = user.VAE(z_dim=4, hidden_dim=400)
    out = user_dir / "methods"
    pyrovae.train(model=vae.model, guide=vae.guide, epochs=1, quiet=True, out=str(out))
    config = json.loads((out / "config.json").read_text())
    assert config["model"] == config["guide"] == f"{module}:VAE"
    arguments = {"z_dim": 4, "use_cuda": False}
    assert config["rebuild"] == {
        "model": {"arguments": arguments, "method": "model"},
        "guide": {"arguments": arguments, "method": "guide"},
    }
    loaded = pyrovae.load_run(out, trust_code=True)
    assert loaded.model.__self__ is loaded.guide.__self__
    assert (loaded.model.__name__, loaded.guide.__name__) == ("model", "guide")

    out = user_dir / "functions"
    run = pyrovae.train(model=user.model, guide=user.guide, epochs=1, quiet=True, out=str(out))
    config = json.loads((out / "config.json").read_text())
    assert (config["model"], config["guide"]) == (f"{module}:model", f"{module}:guide")
    assert "rebuild" not in config or config["rebuild"] == {}
    loaded = pyrovae.load_run(out, trust_code=True)
    assert loaded.guide is user.guide  # the wrapper itself, found by its name
    assert elbo_of(loaded.model, loaded.guide, loaded.data.x_test) == pytest.approx(
        run.summary["test_elbo"], abs=0.5
    )


@pytest.mark.parametrize(
    "flag", [["--latent-dim", "3"], ["--hidden", "16"], ["--likelihood", "gaussian"]]
)
def test_network_flags_a_user_pair_does_not_read_are_refused(flag, user_dir, capsys):
    module = write(user_dir, "user_pyro_vae", PYRO_VAE)
    out = user_dir / "run"
    code, _, err = run_cli(["--pair", f"{module}:VAE", *TINY, *flag, "--out", out], capsys)
    assert_one_error_line(code, err, " ".join(flag), "does not use it", f"drop {flag[0]}")
    assert not (out / "config.json").exists()


def test_the_exported_parameters_are_read_back_by_plain_pyro_and_torch(user_dir):
    """params.pt: ``pyro.get_param_store().load`` (then ``pyro.module(...,
    update_module_params=True)``, as Pyro's docs say for loaded modules) gives a new VAE the
    trained networks; modules.pt: ``torch.load(weights_only=True)`` into the module does.
    Either evaluates to the run's own ELBO on the same draws."""
    module = write(user_dir, "user_pyro_vae", PYRO_VAE)
    VAE = __import__(module).VAE
    out = user_dir / "run"
    run = pyrovae.train(pair=VAE(z_dim=4, hidden_dim=32), epochs=2, quiet=True, out=str(out))
    x = run.data.x_test
    trained = elbo_of(run.model, run.guide, x, seed=3)
    untrained = elbo_of(VAE(z_dim=4, hidden_dim=32).model, VAE(z_dim=4, hidden_dim=32).guide, x)
    assert abs(untrained - trained) > 1  # the check below can tell trained from not

    pyro.clear_param_store()
    pyro.get_param_store().load(out / "params.pt")
    vae = VAE(z_dim=4, hidden_dim=32)
    pyro.module("decoder", vae.decoder, update_module_params=True)
    pyro.module("encoder", vae.encoder, update_module_params=True)
    assert elbo_of(vae.model, vae.guide, x, seed=3) == pytest.approx(trained, abs=1e-5)

    pyro.clear_param_store()
    vae = VAE(z_dim=4, hidden_dim=32)
    state = torch.load(out / "modules.pt", weights_only=True)
    assert set(state) == {"model", "guide"}  # both the VAE's, as its methods are the programs
    vae.load_state_dict(state["model"])
    assert elbo_of(vae.model, vae.guide, x, seed=3) == pytest.approx(trained, abs=1e-5)

    again = user_dir / "exported"
    again.mkdir()
    written = pyrovae.load_run(out, pair=VAE(z_dim=4, hidden_dim=32)).export_params(again)
    assert sorted(p.name for p in written) == ["modules.pt", "params.pt"]
    exported = torch.load(again / "modules.pt", weights_only=True)  # the kept epoch's again
    for part in ("model", "guide"):
        for key, value in state[part].items():
            assert torch.equal(exported[part][key], value), (part, key)


@pytest.mark.parametrize("form", ["methods", "functions"])
def test_diagnosing_a_pyro_module_pair_warns_nothing_and_arviz_draws_its_energy(form, user_dir):
    """``pyro.module`` inside the programs meets the frozen parameters of the diagnosis:
    the pair's networks are in eval mode, so Pyro passes over them without a warning per
    parameter per trace. The posterior.nc written holds NUTS's sample stats, and ArviZ
    draws its energy plot from the file, reading the site names from it."""
    import arviz as az
    import matplotlib

    matplotlib.use("Agg")
    user = __import__(write(user_dir, "user_pyro_vae", PYRO_VAE))
    out = user_dir / "run"
    programs = (
        dict(pair=user.VAE(z_dim=2, hidden_dim=400))
        if form == "methods"  # a pair of bound methods; else functions on global networks
        else dict(model=user.model, guide=user.guide)
    )
    pyrovae.train(**programs, epochs=1, quiet=True, out=str(out))
    options = dict(iwae_samples=10, nuts_points=2, nuts_samples=30, nuts_warmup=30,
                   amortization_points=2, amortization_steps=5, max_points=20)  # fmt: skip
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        pyrovae.diagnose(out, trust_code=True, **options)
    assert [str(w.message) for w in caught] == []
    idata = az.from_netcdf(out / "posterior.nc")
    names = list(idata.posterior.data_vars)
    assert any(name.startswith("latent") for name in names), names
    for stat in ("energy", "lp", "step_size", "acceptance_rate", "tree_depth"):
        assert stat in idata.sample_stats, stat
    axes = az.plot_energy(idata)
    assert len(axes.get_lines() if hasattr(axes, "get_lines") else axes.ravel()) > 0
    az.plot_trace(idata, var_names=names[:1])  # the docs' example, with the file's own names
    matplotlib.pyplot.close("all")


# ---------------------------------------------------------------- what describe() records


class KeepsUnderscored(torch.nn.Module):
    def __init__(self, width: int = 3, scale: float = 1.0):
        super().__init__()
        self._width, self.hparams = width, {"scale": scale}
        self.net = torch.nn.Linear(2, width)


class KeepsATensor(torch.nn.Module):
    def __init__(self, prior_loc=None):
        super().__init__()
        self.prior_loc = torch.zeros(2) if prior_loc is None else prior_loc


class NeedsAnArgument:
    def __init__(self, width):
        self.net = torch.nn.Linear(2, width)

    def model(self, x):
        pass


def test_describe_reads_arguments_back_and_checks_them_by_rebuilding():
    from pyrovae.runs.programs import PASS_THE_OBJECT, describe

    here = f"{__name__}:"
    # self._width and hparams["scale"], checked: the rebuilt Linear(2, 5) has the same shapes
    assert describe(KeepsUnderscored(width=5, scale=0.5)) == (
        here + "KeepsUnderscored",
        {"arguments": {"width": 5, "scale": 0.5}},
    )
    # a tensor argument cannot be written to config.json (its default builds zeros)
    assert describe(KeepsATensor(torch.ones(2))) == (here + "KeepsATensor", PASS_THE_OBJECT)
    # a required argument kept nowhere
    assert describe(NeedsAnArgument(4)) == (here + "NeedsAnArgument", PASS_THE_OBJECT)
    assert describe(NeedsAnArgument(4).model) == (here + "NeedsAnArgument", PASS_THE_OBJECT)

    def local_model(x):
        pass

    assert describe(local_model)[1] == PASS_THE_OBJECT  # not importable by its name
    assert describe(KeepsUnderscored) == (here + "KeepsUnderscored", None)  # a class: by name
    assert describe(elbo_of) == (here + "elbo_of", None)
