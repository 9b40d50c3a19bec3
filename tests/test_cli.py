"""The command line (``scripts/train_svi.py`` / ``pyrovae.cli.main``): run folders, resume,
user-defined pairs, and one-line ``error:`` messages (exit 2, no traceback) for bad input.

Most cases call ``main(argv)`` in-process; two run the real script in a subprocess to prove
that a real process prints no traceback and that ``package.module:attr`` pairs load from
PYTHONPATH.
"""

import csv
import json
import math
import os
import re
import shutil
import subprocess
import sys
import warnings
from dataclasses import fields
from pathlib import Path

import numpy as np
import pytest
import torch

from pyrovae.cli.train import main
from pyrovae.folder.config import TrainConfig
from pyrovae.recipes import RECIPES

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "scripts" / "train_svi.py"
TINY = ["--epochs", "2", "--quiet", "--hidden", "32", "--latent-dim", "2"]
# The user pair below reads spec.latent_dim, not spec.hidden: --hidden would be refused.
PAIR_TINY = ["--epochs", "2", "--quiet", "--latent-dim", "2"]
FIGURES = (
    "training_curves.png",
    "reconstructions.png",
    "samples.png",
    "latent_space.png",
    "interpolation.png",
)
RUN_FILES = ("config.json", "checkpoint.pt", "metrics.csv", "summary.json", *FIGURES)

# A user-written model/guide pair: the model names no default_guide; GUIDE_SITE is the
# guide's latent site (the model's is "z"), and BOOM in the environment makes the model's
# log density -inf (a stand-in for a loss that blows up) while its gradients stay finite.
PAIR_SOURCE = """
import os

import pyro
import pyro.distributions as dist
import torch.nn.functional as F
from torch import nn


class Model(nn.Module):
    def __init__(self, spec):
        super().__init__()
        self.latent_dim = spec.latent_dim
        self.decoder = nn.Linear(spec.latent_dim, spec.x_dim)

    def forward(self, x, y=None):
        with pyro.plate("data", x.shape[0]):
            prior = dist.Normal(x.new_zeros(self.latent_dim), 1.0).to_event(1)
            z = pyro.sample("z", prior)
            pyro.sample("x", dist.Bernoulli(logits=self.decoder(z)).to_event(1), obs=x)
            if os.environ.get("BOOM"):
                pyro.factor("boom", x.new_full((x.shape[0],), float("-inf")))


class Guide(nn.Module):
    def __init__(self, spec):
        super().__init__()
        self.latent_dim = spec.latent_dim
        self.encoder = nn.Linear(spec.x_dim, 2 * spec.latent_dim)

    def forward(self, x, y=None):
        loc, raw_scale = self.encoder(x).split(self.latent_dim, dim=-1)
        with pyro.plate("data", x.shape[0]):
            pyro.sample(GUIDE_SITE, dist.Normal(loc, F.softplus(raw_scale) + 1e-4).to_event(1))
"""


# --------------------------------------------------------------------------- helpers


def run_cli(argv, capsys):
    """``main(argv)`` in-process: (exit code, stdout, stderr).

    Python warnings are recorded, not printed (nor turned into errors by ``-W error``), so
    that stderr holds only what the CLI itself prints; a real process's stderr, warnings
    included, is checked by the subprocess tests.
    """
    with warnings.catch_warnings(record=True):
        warnings.simplefilter("always")
        code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def assert_one_error_line(code, err, *words):
    """Exit code 2 and a single non-empty stderr line ``error: ...`` containing ``words``."""
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("error: ") and len(lines[0]) > len("error: "), err
    for word in words:
        assert word in lines[0], (word, lines[0])
    assert code == 2, (code, err)
    return lines[0]


def write_npz(path, **arrays):
    np.savez(path, **arrays)
    return path


def unit_data(rows=40, cols=6, seed=0):
    return np.random.default_rng(seed).uniform(0, 1, size=(rows, cols)).astype(np.float32)


def write_pair(folder, name, guide_site="z"):
    """Write the user pair as ``<folder>/<name>.py`` (imported as ``name:Model``)."""
    source = PAIR_SOURCE.replace("GUIDE_SITE", repr(guide_site))
    (folder / f"{name}.py").write_text(source)


@pytest.fixture
def user_path(tmp_path, monkeypatch):
    """``tmp_path`` on sys.path for in-process ``module:attr`` imports, undone afterwards."""
    monkeypatch.syspath_prepend(str(tmp_path))
    for name in ("pair_noguide", "pair_badsite", "pair_boom"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    return tmp_path


def read_metrics(run):
    with open(run / "metrics.csv") as f:
        return list(csv.DictReader(f))


def read_summary(run):
    return json.loads((run / "summary.json").read_text())


def load_ckpt(run):
    return torch.load(run / "checkpoint.pt", map_location="cpu", weights_only=True)


def script(args, *, pythonpath, cwd):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(str(p) for p in pythonpath)}
    return subprocess.run(
        [sys.executable, str(SCRIPT), *map(str, args)],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    """A completed 2-epoch digits run; tests copy it before touching it."""
    run = tmp_path_factory.mktemp("base") / "run"
    assert main([*TINY, "--out", str(run)]) == 0
    return run


@pytest.fixture
def run_copy(finished_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(finished_run, run)
    return run


# --------------------------------------------------------------------------- good runs


def test_digits_run_writes_complete_run_folder(tmp_path, capsys):
    run = tmp_path / "run"
    code, out, err = run_cli([*TINY, "--out", run], capsys)
    assert code == 0, err
    assert "Traceback" not in err
    assert str(run) in out and "test ELBO" in out

    for name in RUN_FILES:
        assert (run / name).is_file() and (run / name).stat().st_size > 0, name
    assert not (run / "spiral.png").exists()  # digits rows are 64-D images

    summary = read_summary(run)
    for key in ("model", "guide", "dataset", "epochs", "seconds", "train_elbo", "test_elbo"):
        assert key in summary, key
    assert (summary["model"], summary["guide"], summary["dataset"]) == (
        "vae",
        "mlp-normal",
        "digits",
    )
    assert summary["epochs"] == 2
    assert summary["seconds"] > 0
    for key in ("train_elbo", "test_elbo"):
        assert math.isfinite(summary[key]) and summary[key] < 0, (key, summary[key])
    assert summary["likelihood"] == "Bernoulli"

    rows = read_metrics(run)
    assert [int(r["epoch"]) for r in rows] == [1, 2]
    assert float(rows[-1]["test_elbo"]) == pytest.approx(summary["test_elbo"])

    config = TrainConfig.load(run / "config.json")
    expected = TrainConfig(
        epochs=2, quiet=True, hidden=(32,), latent_dim=2, out=str(run), elbo="trace"
    )  # the ELBO not given is recorded as resolved: the model's default
    assert config == expected
    raw = json.loads((run / "config.json").read_text())
    assert json.loads(json.dumps(config.to_json())) == raw
    assert load_ckpt(run)["epoch"] == 2


def test_spiral_run_uses_gaussian_and_draws_spiral(tmp_path, capsys):
    run = tmp_path / "run"
    code, _, err = run_cli([*TINY, "--dataset", "spiral", "--out", run], capsys)
    assert code == 0, err
    for name in (*RUN_FILES, "spiral.png"):
        assert (run / name).is_file(), name
    summary = read_summary(run)
    assert summary["dataset"] == "spiral"
    assert summary["likelihood"] == "Normal"
    assert math.isfinite(summary["test_elbo"])
    assert len(read_metrics(run)) == 2


def test_help_lists_every_option(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    text = capsys.readouterr().out
    # options (the models' own) and rebuild (written by train) are no flags
    cli = [f for f in fields(TrainConfig) if f.metadata.get("cli", True)]
    flags = ["--" + f.name.replace("_", "-") for f in cli] + ["--resume"]
    flags += [option.flag for recipe in RECIPES.values() for option in recipe.options]
    for flag in flags:
        assert re.search(rf"(?<![\w-]){re.escape(flag)}(?![\w-])", text), flag
    # The models' own options are grouped under their model, and the registries are listed.
    ssvae = text.index("options of --model ssvae:")
    assert text.index("--labels LABELS", ssvae) < text.index("options of --model dae:")
    assert "registered models: vae, ssvae" in " ".join(text.split())


# --------------------------------------------------------------------------- bad input

# name -> (extra argv, with {npz} standing for an npz written by NPZ_CASES, words in message)
NPZ_CASES = {
    "nan_train": dict(x_train=np.where(np.eye(40, 6) > 0, np.nan, unit_data()), x_test=unit_data()),
    "inf_test": dict(x_train=unit_data(), x_test=np.where(np.eye(40, 6) > 0, np.inf, unit_data())),
    "rank1_train": dict(x_train=unit_data()[:, 0], x_test=unit_data()),
    "out_of_unit": dict(x_train=unit_data() * 3 - 1, x_test=unit_data() * 3 - 1),
    "no_x_test": dict(x_train=unit_data(), y_train=np.zeros(40, dtype=np.int64)),
}

BAD_INPUTS = {
    "nan_in_x_train": (["--dataset", "{nan_train}"], ["x_train", "NaN"]),
    "inf_in_x_test": (["--dataset", "{inf_test}"], ["x_test", "inf values"]),
    "wrong_rank": (["--dataset", "{rank1_train}"], ["x_train", "shape"]),
    "outside_unit_for_bernoulli": (
        ["--dataset", "{out_of_unit}", "--likelihood", "bernoulli"],
        ["x_train", "[0, 1]", "Bernoulli"],
    ),
    "npz_without_x_test": (["--dataset", "{no_x_test}"], ["'x_test'"]),
    "missing_npz": (["--dataset", "{missing}"], ["no such file"]),
    "corrupt_npz": (["--dataset", "{corrupt}"], ["cannot read", ".npz"]),
    "unknown_dataset": (["--dataset", "nosuchdata"], ["unknown data set", "nosuchdata"]),
    "unknown_model": (["--model", "nosuch"], ["unknown model", "nosuch"]),
    "unknown_guide": (["--guide", "nosuch"], ["unknown guide", "nosuch"]),
    "unknown_elbo": (["--elbo", "nosuch"], ["unknown ELBO", "nosuch"]),
    "unknown_likelihood": (["--likelihood", "nosuch"], ["unknown likelihood", "nosuch"]),
    "model_module_not_importable": (
        ["--model", "nosuchmodule:Thing"],
        ["cannot import", "nosuchmodule"],
    ),
    "model_attr_missing": (
        ["--model", "pyrovae.models:NoSuchAttr"],
        ["no attribute", "NoSuchAttr"],
    ),
}


def bad_input_paths(tmp_path):
    # Neutral file names: the data set name (the file's stem) appears in the messages.
    paths = {
        name: write_npz(tmp_path / f"set{i}.npz", **arrays)
        for i, (name, arrays) in enumerate(NPZ_CASES.items())
    }
    paths["missing"] = tmp_path / "missing.npz"
    paths["corrupt"] = tmp_path / "corrupt.npz"
    paths["corrupt"].write_bytes(b"PK\x03\x04 this is not a zip archive" * 10)
    return paths


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input_is_one_error_line(case, tmp_path, capsys):
    extra, words = BAD_INPUTS[case]
    paths = bad_input_paths(tmp_path)
    extra = [a.format(**paths) for a in extra]
    run = tmp_path / "run"
    code, _, err = run_cli([*TINY, "--out", run, *extra], capsys)
    assert_one_error_line(code, err, *words)
    # Nothing was trained: the same --out can be used again once the input is fixed.
    assert not (run / "checkpoint.pt").exists()


def test_gray_levels_with_bernoulli_need_an_explicit_choice(tmp_path, capsys):
    gray = write_npz(tmp_path / "levels.npz", x_train=unit_data(300), x_test=unit_data(60, seed=1))
    argv = [*TINY, "--dataset", gray, "--likelihood", "bernoulli", "--binarize", "none"]
    code, _, err = run_cli([*argv, "--out", tmp_path / "refused"], capsys)
    line = assert_one_error_line(code, err, "gray levels")
    assert "continuous-bernoulli" in line or "--gray-bernoulli" in line, line

    run = tmp_path / "run"
    code, _, err = run_cli([*argv, "--gray-bernoulli", "--out", run], capsys)
    assert code == 0, err
    summary = read_summary(run)
    assert summary["likelihood"] == "Bernoulli" and math.isfinite(summary["test_elbo"])


@pytest.mark.slow
def test_bad_input_in_a_real_process_prints_no_traceback(tmp_path):
    bad = write_npz(tmp_path / "set.npz", **NPZ_CASES["nan_train"])
    proc = script(
        [*TINY, "--dataset", bad, "--out", tmp_path / "run"], pythonpath=[REPO], cwd=tmp_path
    )
    assert_one_error_line(proc.returncode, proc.stderr, "NaN", "x_train")
    assert proc.stdout == ""


# --------------------------------------------------------------------------- run folders


def test_resume_of_missing_folder(tmp_path, capsys):
    code, _, err = run_cli(["--resume", tmp_path / "nowhere", "--quiet"], capsys)
    assert_one_error_line(code, err, "no run folder", "nowhere")


def test_resume_of_corrupt_checkpoint(run_copy, capsys):
    (run_copy / "checkpoint.pt").write_bytes(b"\x00garbage, not a torch file\xff" * 50)
    code, _, err = run_cli(["--resume", run_copy, "--epochs", "4", "--quiet"], capsys)
    line = assert_one_error_line(code, err, "checkpoint")
    assert "corrupt" in line or "unreadable" in line, line


def test_resume_refuses_fixed_options(run_copy, capsys):
    code, _, err = run_cli(["--resume", run_copy, "--epochs", "4", "--lr", "0.1"], capsys)
    assert_one_error_line(code, err, "--lr", "--resume")
    assert len(read_metrics(run_copy)) == 2  # untouched


def test_existing_run_folder_is_not_overwritten(run_copy, capsys):
    before = (run_copy / "checkpoint.pt").read_bytes()
    code, _, err = run_cli([*TINY, "--out", run_copy], capsys)
    assert_one_error_line(code, err, "already", "--resume")
    assert (run_copy / "checkpoint.pt").read_bytes() == before


def test_resume_matches_an_uninterrupted_run(run_copy, tmp_path, capsys):
    code, _, err = run_cli(["--resume", run_copy, "--epochs", "4", "--quiet"], capsys)
    assert code == 0, err
    assert [int(r["epoch"]) for r in read_metrics(run_copy)] == [1, 2, 3, 4]

    straight = tmp_path / "straight"
    code, _, err = run_cli([*TINY[2:], "--epochs", "4", "--out", straight], capsys)
    assert code == 0, err

    resumed, direct = read_summary(run_copy), read_summary(straight)
    assert resumed["epochs"] == direct["epochs"] == 4
    assert resumed["test_elbo"] == pytest.approx(direct["test_elbo"], rel=1e-6)

    a, b = load_ckpt(run_copy), load_ckpt(straight)
    assert a["epoch"] == b["epoch"] == 4
    for part in ("model", "guide"):
        assert a[part].keys() == b[part].keys()
        for key in a[part]:
            torch.testing.assert_close(a[part][key], b[part][key], rtol=1e-6, atol=1e-7)
    for row_a, row_b in zip(a["history"], b["history"], strict=True):
        for key in ("train_elbo", "val_elbo", "test_elbo"):
            assert row_a[key] == pytest.approx(row_b[key], rel=1e-6), (row_a, row_b)


# --------------------------------------------------------------------------- divergence

DIVERGING = {
    "adam_huge_lr": ["--lr", "1e9"],
    "tiny_gaussian_scale": ["--likelihood", "gaussian", "--gaussian-scale", "1e-20"],
    "sgd_lr_0.01": ["--optimizer", "sgd", "--lr", "0.01"],
}


@pytest.mark.parametrize("extra", list(DIVERGING.values()), ids=list(DIVERGING))
def test_diverging_training_is_one_error_line(extra, tmp_path, capsys):
    run = tmp_path / "run"
    code, _, err = run_cli([*TINY, "--out", run, *extra], capsys)
    line = assert_one_error_line(code, err, "diverged", "epoch 1")
    # It diverged in the first epoch: no checkpoint was written and none is claimed.
    assert not (run / "checkpoint.pt").exists()
    assert "kept" not in line


@pytest.mark.slow
def test_divergence_in_a_real_process_is_one_error_line(tmp_path):
    run = tmp_path / "run"
    proc = script([*TINY, "--lr", "1e9", "--out", run], pythonpath=[REPO], cwd=tmp_path)
    assert_one_error_line(proc.returncode, proc.stderr, "diverged")


def test_divergence_keeps_last_good_checkpoint(user_path, capsys, monkeypatch):
    write_pair(user_path, "pair_boom")
    run = user_path / "run"
    pair = ["--model", "pair_boom:Model", "--guide", "pair_boom:Guide"]
    code, _, err = run_cli([*PAIR_TINY, *pair, "--out", run], capsys)
    assert code == 0, err

    monkeypatch.setenv("BOOM", "1")  # from now on the model's log density is -inf
    code, _, err = run_cli(["--resume", run, "--epochs", "4", "--quiet", "--trust-code"], capsys)
    line = assert_one_error_line(code, err, "diverged", "epoch 3")
    assert "epoch 2" in line and "checkpoint" in line, line

    state = load_ckpt(run)
    assert state["epoch"] == 2
    for part in ("model", "guide"):
        assert all(torch.isfinite(t).all() for t in state[part].values())
    assert len(read_metrics(run)) == 2


# --------------------------------------------------------------------------- user pairs


@pytest.mark.slow
def test_user_pair_trains_through_the_script(tmp_path):
    write_pair(tmp_path, "my_pair")
    run = tmp_path / "run"
    args = ["--model", "my_pair:Model", "--guide", "my_pair:Guide", "--dataset", "digits"]
    proc = script([*args, *PAIR_TINY, "--out", run], pythonpath=[tmp_path, REPO], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    summary = read_summary(run)
    assert summary["model"] == "my_pair:Model"
    assert summary["guide"] == "my_pair:Guide"
    assert summary["epochs"] == 2 and math.isfinite(summary["test_elbo"])
    for name in RUN_FILES:
        assert (run / name).is_file(), name


def test_user_model_without_default_guide_needs_guide(user_path, capsys):
    write_pair(user_path, "pair_noguide")
    run = user_path / "run"
    code, _, err = run_cli([*PAIR_TINY, "--model", "pair_noguide:Model", "--out", run], capsys)
    assert_one_error_line(code, err, "--guide", "no default guide")
    assert not (run / "checkpoint.pt").exists()


def test_user_guide_with_mismatched_site_names(user_path, capsys):
    write_pair(user_path, "pair_badsite", guide_site="w")
    pair = ["--model", "pair_badsite:Model", "--guide", "pair_badsite:Guide"]
    code, _, err = run_cli([*PAIR_TINY, *pair, "--out", user_path / "run"], capsys)
    assert_one_error_line(code, err, "'w'", "site")


def test_bad_flag_value_is_one_error_line(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--epochs", "abc"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert_one_error_line(2, err, "--epochs", "abc")


def test_resume_records_the_new_epoch_count(tmp_path, capsys):
    run = tmp_path / "run"
    assert run_cli([*TINY, "--out", run], capsys)[0] == 0
    assert run_cli(["--resume", run, "--epochs", "3", "--quiet"], capsys)[0] == 0
    assert TrainConfig.load(run / "config.json").epochs == 3
