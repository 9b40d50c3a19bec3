"""A run folder from someone else, opened as an attacker would hope: a ``.lock`` that is a
symbolic link to a file of yours, a ``*.png`` that links to a secret, a config.json naming a
module that runs code on import. No file outside the folder changes, no secret byte reaches
report.html, and no code runs without ``--trust-code``; with it, the folder loads as before."""

import base64
import json
import shutil
import sys
import textwrap

import pytest

import pyrovae
from pyrovae.cli import diagnose as diagnose_cli
from pyrovae.cli import features as features_cli
from pyrovae.cli import report as report_cli
from pyrovae.cli import train as train_cli
from tests.test_cli import assert_one_error_line

TINY = ["--epochs", "2", "--quiet", "--hidden", "16", "--latent-dim", "2"]
PAIR_TINY = ["--epochs", "2", "--quiet"]  # the pair builds its own networks
SECRET = b"-----BEGIN OPENSSH PRIVATE KEY----- b3BlbnNzaC1rZXktdjEAAAAA -----END-----\n"

# A user pair whose module leaves a marker file when it is imported: the "code that runs".
MARKED_PAIR = """
import os
from pathlib import Path

import pyro
import pyro.distributions as dist
from torch import nn

Path(os.environ["PYROVAE_MARKER"]).write_text("imported")


class VAE(nn.Module):
    def __init__(self, z_dim=2, x_dim=64):
        super().__init__()
        self.z_dim = z_dim
        self.decoder = nn.Linear(z_dim, x_dim)
        self.encoder = nn.Linear(x_dim, 2 * z_dim)

    def model(self, x):
        pyro.module("decoder", self.decoder)
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", dist.Normal(x.new_zeros(self.z_dim), 1.0).to_event(1))
            pyro.sample("x", dist.Bernoulli(logits=self.decoder(z)).to_event(1), obs=x)

    def guide(self, x):
        pyro.module("encoder", self.encoder)
        loc, log_scale = self.encoder(x).split(self.z_dim, dim=-1)
        with pyro.plate("data", x.shape[0]):
            pyro.sample("z", dist.Normal(loc, log_scale.exp()).to_event(1))
"""


def run_main(main, argv, capsys):
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("trained") / "run"
    assert train_cli.main([*TINY, "--out", str(out)]) == 0
    return out


@pytest.fixture
def run_dir(trained, tmp_path):
    target = tmp_path / "sent" / "run"
    shutil.copytree(trained, target)
    return target


# ----------------------------------------------------------------------------- the lock


def test_a_symlinked_lock_is_refused_and_its_target_kept(run_dir, tmp_path, capsys):
    victim = tmp_path / "mine.txt"
    victim.write_text("my thesis, chapter 3\n")
    (run_dir / ".lock").unlink(missing_ok=True)
    (run_dir / ".lock").symlink_to(victim)
    before = {p.name: p.read_bytes() for p in run_dir.iterdir() if p.is_file()}
    code, _, err = run_main(train_cli.main, ["--resume", run_dir, "--epochs", "3"], capsys)
    assert_one_error_line(code, err, ".lock is a symbolic link", "remove the link")
    assert victim.read_text() == "my thesis, chapter 3\n"
    after = {p.name: p.read_bytes() for p in run_dir.iterdir() if p.is_file()}
    assert after == before
    (run_dir / ".lock").unlink()  # with the link removed, the run resumes
    code, _, err = run_main(train_cli.main, ["--resume", run_dir, "--epochs", "3"], capsys)
    assert code == 0, err
    assert json.loads((run_dir / "summary.json").read_text())["epochs"] == 3


# ----------------------------------------------------------------------------- linked files


def secret_bytes_in(text: str) -> bool:
    """Does ``text`` hold the secret, plain or base64-encoded at any alignment?"""
    if SECRET.decode() in text:
        return True
    for shift in range(3):
        chunk = base64.b64encode(SECRET[shift : shift + 30]).decode()[:-4]
        if chunk in text:
            return True
    return False


@pytest.mark.parametrize("command", ["report", "diagnose", "features"])
def test_a_png_linked_to_a_secret_never_reaches_the_report(command, run_dir, tmp_path, capsys):
    secret = tmp_path / "id_ed25519"
    secret.write_bytes(SECRET)
    (run_dir / "zzz.png").symlink_to(secret)
    report_before = (run_dir / "report.html").read_bytes()
    main, extra = {
        "report": (report_cli.main, []),
        "diagnose": (diagnose_cli.main, ["--iwae-samples", "10", "--nuts-points", "0"]),
        "features": (features_cli.main, ["--labels", "100"]),
    }[command]
    code, _, err = run_main(main, [run_dir, *extra], capsys)
    assert_one_error_line(code, err, "zzz.png is a symbolic link")
    assert (run_dir / "report.html").read_bytes() == report_before
    assert not secret_bytes_in((run_dir / "report.html").read_text())
    written = {"diagnostics.json", "posterior.nc", "features.json"}
    assert not written & {p.name for p in run_dir.iterdir()}  # refused before computing


def test_the_secret_check_sees_an_embedded_secret(run_dir, tmp_path):
    """The detector above finds the secret where the old report put it (a data URI)."""
    page = "<img src='data:image/png;base64," + base64.b64encode(SECRET).decode() + "'>"
    assert secret_bytes_in(page)


@pytest.mark.parametrize("name", ["config.json", "summary.json", "metrics.csv"])
def test_a_run_file_that_is_a_link_is_refused(name, run_dir, tmp_path, capsys):
    elsewhere = tmp_path / name
    shutil.move(run_dir / name, elsewhere)
    (run_dir / name).symlink_to(elsewhere)
    code, _, err = run_main(report_cli.main, [run_dir], capsys)
    assert_one_error_line(code, err, f"{name} is a symbolic link")
    with pytest.raises(pyrovae.PyrovaeError, match="symbolic link"):
        pyrovae.load_run(run_dir)


def test_a_file_named_png_that_is_not_one_is_refused(run_dir, capsys):
    (run_dir / "notes.png").write_text("not an image")
    code, _, err = run_main(report_cli.main, [run_dir], capsys)
    assert_one_error_line(code, err, "notes.png is not a PNG image")


# ----------------------------------------------------------------------------- named code


@pytest.fixture
def marked_run(tmp_path, monkeypatch, capsys):
    """A run of a user pair whose module writes a marker when imported, trained by naming it
    on the command line (the opt-in); then the marker is removed and the module forgotten."""
    code_dir = tmp_path / "code"
    code_dir.mkdir()
    (code_dir / "marked_pair.py").write_text(textwrap.dedent(MARKED_PAIR))
    marker = tmp_path / "marker"
    monkeypatch.setenv("PYROVAE_MARKER", str(marker))
    monkeypatch.syspath_prepend(str(code_dir))
    out = tmp_path / "run"
    code, _, err = run_main(
        train_cli.main, ["--pair", "marked_pair:VAE", *PAIR_TINY, "--out", out], capsys
    )
    assert code == 0, err
    assert marker.read_text() == "imported"  # naming it on the command line ran it
    marker.unlink()
    sys.modules.pop("marked_pair", None)
    yield out, marker
    sys.modules.pop("marked_pair", None)


COMMANDS = {
    "load_run": None,
    "resume": (train_cli.main, ["--resume", "{run}", "--epochs", "3"]),
    "diagnose": (diagnose_cli.main, ["{run}", "--iwae-samples", "10", "--nuts-points", "0"]),
    "features": (features_cli.main, ["{run}", "--labels", "100"]),
    "features_of": (train_cli.main, [*TINY, "--features", "{run}", "--out", "{new}"]),
}


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_named_code_runs_only_with_trust_code(command, marked_run, tmp_path, capsys):
    run, marker = marked_run
    before = {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()}
    if command == "load_run":
        with pytest.raises(pyrovae.PyrovaeError, match="--pair marked_pair:VAE.*--trust-code"):
            pyrovae.load_run(run)
        assert not marker.exists()
        loaded = pyrovae.load_run(run, trust_code=True)
        assert marker.exists()
        assert loaded.summary["model"] == "marked_pair:VAE"
        return
    main, argv = COMMANDS[command]
    argv = [a.format(run=run, new=tmp_path / "new") for a in argv]
    code, _, err = run_main(main, argv, capsys)
    assert_one_error_line(code, err, "names code to import", "marked_pair:VAE", "--trust-code")
    assert not marker.exists()
    assert {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()} == before
    code, _, err = run_main(main, [*argv, "--trust-code"], capsys)
    assert code == 0, err
    assert marker.exists()


def test_rebuilding_a_report_imports_nothing_the_folder_names(marked_run, capsys):
    run, marker = marked_run
    config = json.loads((run / "config.json").read_text())
    config["recipe"] = "marked_pair:Recipe"
    (run / "config.json").write_text(json.dumps(config))
    code, out, err = run_main(report_cli.main, [run], capsys)
    assert code == 0, err
    assert not marker.exists()
    assert "marked_pair" not in sys.modules


def test_given_objects_replace_the_named_code(marked_run, tmp_path):
    run, marker = marked_run
    import marked_pair  # the user imports it, knowingly

    marker.unlink()
    loaded = pyrovae.load_run(run, pair=marked_pair.VAE())
    assert callable(loaded.model)
