"""What a run records of a user's pair, and what the pair check reads off its traces.

Pyro's ``examples/vae/vae.py`` is re-typed here as written (only the image width adapted to
the 8x8 digits) and given to ``pyrovae.train`` as an instance with constructor arguments: its
folder reopens by itself and re-evaluates to its summary's test ELBO. Objects that cannot be
rebuilt from a folder (bound methods, ``config_enumerate`` wrappers) are recorded as such, and
reopen when given again. Observing is told from recording (``pyro.deterministic``), and a
``pyro.plate("data")`` whose size Pyro infers is accepted.
"""

import json
import shutil
import sys
import textwrap

import pytest

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
