"""Bad input, as a user gives it on the command line: one table of flags, files, data, run
folders and user programs. Each case must exit non-zero with exactly one ``error:`` line, and
leave every file that existed before exactly as it was (the run folders' ``.lock`` aside)."""

import fcntl
import hashlib
import json
import os
import shutil
import struct
import subprocess
import textwrap
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import torch

from pyrovae.cli.train import main
from tests.test_cli import assert_one_error_line, run_cli

TINY = ["--epochs", "2", "--quiet", "--hidden", "16", "--latent-dim", "2"]


def unit(n=40, d=6, seed=0):
    return np.random.default_rng(seed).uniform(size=(n, d)).astype(np.float32)


BROKEN_PAIR = """
import pyro
import pyro.distributions as dist
from torch import nn


class Model(nn.Module):
    def __init__(self, spec):
        super().__init__()
        self.decoder = nn.Linear(2, spec.x_dim)

    def forward(self, x, y=None):
        z = pyro.sample("z", dist.Normal(x.new_zeros(x.shape[0], 2), 1.0).to_event(2))
        pyro.sample("x", dist.Bernoulli(logits=self.decoder(z)).to_event(2), obs=x)


class Guide(nn.Module):
    def __init__(self, spec):
        super().__init__()
        self.encoder = nn.Linear(spec.x_dim, 2)

    def forward(self, x, y=None):
        pyro.sample("z", dist.Delta(self.encoder(x)).to_event(2))


class Raises(Model):
    def forward(self, x, y=None):
        raise ValueError("a bug in the model")


class NoMethods(nn.Module):
    def __init__(self):
        super().__init__()
"""


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    """A finished 2-epoch digits run, copied into each test that needs one."""
    out = tmp_path_factory.mktemp("finished") / "run"
    assert main([*TINY, "--out", str(out)]) == 0
    return out


@pytest.fixture(scope="module")
def stopped_run(tmp_path_factory):
    """A run stopped early (patience 1, a learning rate that overshoots)."""
    out = tmp_path_factory.mktemp("stopped") / "run"
    argv = [*TINY, "--epochs", "40", "--patience", "1", "--lr", "0.5", "--out", str(out)]
    assert main(argv) == 0
    assert json.loads((out / "summary.json").read_text())["stopped_early"]
    return out


def files(root: Path) -> dict[str, tuple[str, int]]:
    """Every file under ``root`` but lock files: relative path -> (sha256, mode)."""
    return {
        str(p.relative_to(root)): (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mode)
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.name != ".lock"
    }


def setup_files(root: Path, finished: Path, stopped: Path) -> dict[str, str]:
    """The files the cases point at; returns the ``{name}`` placeholders."""
    paths = {}

    def npz(name, **arrays):
        path = root / f"{name}.npz"
        np.savez(path, **arrays)
        paths[name] = str(path)

    npz("ok", x_train=unit(), x_test=unit(seed=1))
    npz("nan", x_train=np.where(np.eye(40, 6) > 0, np.nan, unit()), x_test=unit())
    npz("inf", x_train=unit(), x_test=np.where(np.eye(40, 6) > 0, np.inf, unit()))
    npz("no_test", x_train=unit())
    npz("rank4", x_train=unit().reshape(40, 1, 2, 3, 1), x_test=unit())
    npz("strings", x_train=np.array([["a"] * 6] * 40), x_test=unit())
    npz("widths", x_train=unit(), x_test=unit(d=5))
    npz("labels", x_train=unit(), x_test=unit(), y_train=np.zeros(3, int), y_test=np.zeros(40))
    npz("negative_labels", x_train=unit(), x_test=unit(), y_train=-np.ones(40))
    npz("outside_unit", x_train=unit() * 3 - 1, x_test=unit())
    npz("empty", x_train=np.zeros((0, 6), np.float32), x_test=unit())
    npz("huge_labels", x_train=unit(), x_test=unit(), y_train=np.full(40, 10**12))
    npz("sparse_labels", x_train=unit(), x_test=unit(), y_train=np.arange(40) * 1000)
    npz("fractional_labels", x_train=unit(), x_test=unit(), y_train=np.linspace(0, 3, 40))
    npz("one_test_row", x_train=unit(), x_test=unit(n=1))
    for name, count in (("idx_empty", 0), ("idx_impossible", 10**9)):
        folder = root / name
        folder.mkdir()
        for stem in ("train", "t10k"):
            images = struct.pack(">IIII", 0x803, count, 28, 28)
            (folder / f"{stem}-images-idx3-ubyte").write_bytes(images)
            (folder / f"{stem}-labels-idx1-ubyte").write_bytes(struct.pack(">II", 0x801, count))
        paths[name] = str(folder)
    (root / "corrupt.npz").write_bytes(b"PK\x03\x04 not a zip archive" * 10)
    paths["corrupt"] = str(root / "corrupt.npz")
    np.save(root / "single.npy", unit())
    paths["npy"] = str(root / "single.npy")
    paths["missing"] = str(root / "missing.npz")

    (root / "a_file").write_text("keep me\n")
    paths["file"] = str(root / "a_file")
    paths["under_file"] = str(root / "a_file" / "run")
    other = root / "other"
    other.mkdir()
    (other / "notes.txt").write_text("my notes\n")
    paths["other"] = str(other)
    paths["new"] = str(root / "new_run")

    def run_copy(name, source):
        target = root / name
        shutil.copytree(source, target)
        paths[name] = str(target)
        return target

    run_copy("run", finished)
    run_copy("stopped", stopped)
    run_copy("no_config", finished).joinpath("config.json").unlink()
    run_copy("bad_config", finished).joinpath("config.json").write_text("{not json")
    unknown = run_copy("unknown_keys", finished) / "config.json"
    unknown.write_text(json.dumps({**json.loads(unknown.read_text()), "colour": "red"}))
    run_copy("corrupt_checkpoint", finished).joinpath("checkpoint.pt").write_bytes(b"garbage")
    partial = run_copy("partial_checkpoint", finished) / "checkpoint.pt"
    state = torch.load(partial, weights_only=True)
    del state["optimizer"], state["rng"]
    torch.save(state, partial)
    run_copy("locked", finished)

    def edited_config(name, **changes):
        config = run_copy(name, finished) / "config.json"
        config.write_text(json.dumps({**json.loads(config.read_text()), **changes}))

    edited_config("config_string_epochs", epochs="10")
    edited_config("config_null_lr", lr=None)
    edited_config("config_list_options", options=[1])
    edited_config("config_other_width", latent_dim=5)
    edited_config("config_other_model", model="fa")
    run_copy("config_list", finished).joinpath("config.json").write_text("[]\n")
    paths["empty_folder"] = str(root / "empty_folder")
    (root / "empty_folder").mkdir()

    (root / "user_broken.py").write_text(textwrap.dedent(BROKEN_PAIR))
    return paths


# name -> (argv, with {placeholders} from setup_files, words of the error line)
CASES = {
    # flags
    "clip_norm_negative": (["--clip-norm", "-1"], ["--clip-norm", "positive"]),
    "clip_norm_zero": (["--clip-norm", "0"], ["--clip-norm", "positive"]),
    "patience_negative": (["--patience", "-1"], ["--patience", "0 (never stop early)"]),
    "seed_negative": (["--seed", "-1"], ["--seed", "whole number"]),
    "anneal_negative": (["--anneal-epochs", "-3"], ["--anneal-epochs", "0 or more"]),
    "labels_without_labels_model": (["--labels", "100"], ["--labels", "not an option of"]),
    "lr_zero": (["--lr", "0"], ["--lr", "positive"]),
    "lr_nan": (["--lr", "nan"], ["--lr", "positive"]),
    "beta_negative": (["--beta", "-1"], ["--beta", "positive"]),
    "epochs_zero": (["--epochs", "0"], ["--epochs", "at least 1"]),
    "batch_size_zero": (["--batch-size", "0"], ["--batch-size", "at least 1"]),
    "particles_zero": (["--num-particles", "0"], ["--num-particles", "at least 1"]),
    "latent_zero": (["--latent-dim", "0"], ["--latent-dim", "at least 1"]),
    "hidden_zero": (["--hidden", "0"], ["--hidden", "positive"]),
    "val_fraction_one": (["--val-fraction", "1.5"], ["--val-fraction", "[0, 1)"]),
    "device_unknown": (["--device", "tpu"], ["--device", "cpu, cuda or auto"]),
    "device_cuda_without_gpu": (["--device", "cuda"], ["no GPU", "--device cpu"]),
    "optimizer_unknown": (["--optimizer", "lbfgs"], ["unknown optimizer", "adam"]),
    "elbo_unknown": (["--elbo", "nosuch"], ["unknown ELBO", "trace"]),
    "likelihood_unknown": (["--likelihood", "nosuch"], ["unknown likelihood", "gaussian"]),
    "model_unknown": (["--model", "nosuch"], ["unknown model", "vae"]),
    "guide_unknown": (["--guide", "nosuch"], ["unknown guide", "mlp-normal"]),
    "fa_with_bernoulli": (["--model", "fa", "--likelihood", "bernoulli"], ["gaussian"]),
    "epochs_not_a_number": (["--epochs", "ten"], ["--epochs", "invalid int"]),
    "unknown_flag": (["--learning-rate", "0.1"], ["unrecognized arguments"]),
    "alpha_negative": (["--model", "ssvae", "--alpha", "-1"], ["--alpha", ">= 0"]),
    "corruption_one": (["--model", "dae", "--corruption", "1.5"], ["--corruption", "[0, 1)"]),
    "rank_without_lowrank": (["--rank", "3"], ["--rank", "--guide mlp-normal"]),
    "flows_zero": (["--guide", "iaf", "--flows", "0"], ["--flows", "at least 1"]),
    "labels_not_a_multiple": (["--model", "ssvae", "--labels", "15"], ["multiple of 10"]),
    "anneal_with_jit": (["--anneal-epochs", "2", "--elbo", "jit-trace"], ["JIT", "anneal"]),
    "gaussian_scale_negative": (
        ["--dataset", "spiral", "--gaussian-scale", "-1"],
        ["--gaussian-scale", "positive"],
    ),
    "spiral_noise_negative": (["--dataset", "spiral", "--spiral-noise", "-1"], ["spiral noise"]),
    # files and data
    "npz_missing": (["--dataset", "{missing}"], ["no such file"]),
    "npz_corrupt": (["--dataset", "{corrupt}"], ["cannot read", ".npz"]),
    "npy_not_npz": (["--dataset", "{npy}"], ["single .npy array"]),
    "npz_without_x_test": (["--dataset", "{no_test}"], ["'x_test'"]),
    "npz_nan": (["--dataset", "{nan}"], ["NaN values"]),
    "npz_inf": (["--dataset", "{inf}"], ["inf values"]),
    "npz_rank4": (["--dataset", "{rank4}"], ["expected (n, features)"]),
    "npz_strings": (["--dataset", "{strings}"], ["dtype", "numbers"]),
    "npz_widths_differ": (["--dataset", "{widths}"], ["differ"]),
    "npz_label_count": (["--dataset", "{labels}"], ["y_train", "one label per row"]),
    "npz_negative_labels": (["--dataset", "{negative_labels}"], ["non-negative integer"]),
    "npz_empty_rows": (["--dataset", "{empty}"], ["no data"]),
    "npz_huge_labels": (["--dataset", "{huge_labels}"], ["label 1000000000000", "0..K-1"]),
    "npz_far_more_classes_than_rows": (["--dataset", "{sparse_labels}"], ["39001 classes"]),
    "npz_fractional_labels": (["--dataset", "{fractional_labels}"], ["integer class labels"]),
    "npz_one_test_row": (["--dataset", "{one_test_row}"], ["1 test row", "at least 2"]),
    "idx_no_images": (
        ["--dataset", "fashion-mnist", "--data-root", "{idx_empty}"],
        ["hold no x_train", "images"],
    ),
    "idx_impossible_header": (
        ["--dataset", "fashion-mnist", "--data-root", "{idx_impossible}"],
        ["truncated or corrupt"],
    ),
    "hidden_too_large_for_memory": (["--hidden", "100000000"], ["do not fit in memory", "GB"]),
    "out_empty": (["--out", ""], ["--out is empty"]),
    "npz_outside_bernoulli": (
        ["--dataset", "{outside_unit}", "--likelihood", "bernoulli"],
        ["[0, 1]", "Bernoulli"],
    ),
    "gray_levels_unbinarized": (["--binarize", "none"], ["gray levels", "--binarize dynamic"]),
    "mnist_offline": (
        ["--dataset", "mnist", "--data-root", "{new}"],
        ["mnist not found", "--data-root"],
    ),
    # run folders
    "out_is_a_file": (["--out", "{file}"], ["is a file"]),
    "out_under_a_file": (["--out", "{under_file}"], ["under the file"]),
    "out_unwritable": (["--out", "/proc/pyrovae-run"], ["cannot create the run folder"]),
    "out_holds_other_files": (["--out", "{other}"], ["holds other files", "notes.txt"]),
    "out_holds_a_run": (["--out", "{run}"], ["already holds a run", "--resume"]),
    "resume_missing_folder": (["--resume", "{new}"], ["no run folder"]),
    "resume_empty_folder": (["--resume", "{empty_folder}"], ["no config.json"]),
    "resume_without_config": (["--resume", "{no_config}"], ["no config.json"]),
    "resume_bad_config": (["--resume", "{bad_config}"], ["not valid JSON"]),
    "resume_unknown_config_keys": (["--resume", "{unknown_keys}"], ["unknown config keys"]),
    "resume_config_string_number": (
        ["--resume", "{config_string_epochs}"],
        ["epochs must be a whole number", '"10"'],
    ),
    "resume_config_null": (["--resume", "{config_null_lr}"], ["lr must be a number", "null"]),
    "resume_config_list_options": (["--resume", "{config_list_options}"], ["options must be"]),
    "resume_config_is_a_list": (["--resume", "{config_list}"], ["holds a JSON list"]),
    "resume_checkpoint_of_another_width": (
        ["--resume", "{config_other_width}"],
        ["does not match config.json", "(16, 2)", "(16, 5)"],
    ),
    "resume_checkpoint_of_another_model": (
        ["--resume", "{config_other_model}"],
        ["does not match config.json", "lacks model parameter"],
    ),
    "resume_corrupt_checkpoint": (["--resume", "{corrupt_checkpoint}"], ["corrupt"]),
    "resume_partial_checkpoint": (["--resume", "{partial_checkpoint}"], ["lacks", "optimizer"]),
    "resume_fewer_epochs": (["--resume", "{run}", "--epochs", "1"], ["fewer than the 2 epochs"]),
    "resume_changes_settings": (["--resume", "{run}", "--lr", "0.1"], ["drop --lr"]),
    "resume_after_early_stop": (
        ["--resume", "{stopped}", "--epochs", "80"],
        ["stopped early", "--patience 0"],
    ),
    "resume_while_locked": (["--resume", "{locked}"], ["is in use by", "process"]),
    "features_unknown_folder": (["--features", "{missing}"], ["--features", "no run folder"]),
    "features_not_a_run": (["--features", "{other}"], ["--features", "not a pyrovae run"]),
    "features_a_file": (["--features", "{file}"], ["--features", "is a file"]),
    "features_corrupt_run": (["--features", "{corrupt_checkpoint}"], ["--features", "corrupt"]),
    "features_of_another_dataset": (
        ["--dataset", "{ok}", "--features", "{run}"],
        ["--features", "trained on digits, not ok", "--dataset ok"],
    ),
    "features_under_a_bernoulli": (
        ["--features", "{run}", "--likelihood", "bernoulli"],
        ["real-valued", "--likelihood gaussian"],
    ),
    # user programs
    "model_builtin": (["--model", "os:system", "--guide", "mlp-normal"], ["built-in system"]),
    "model_not_importable": (["--model", "nosuchmodule:Model"], ["cannot import"]),
    "model_attribute_missing": (["--model", "user_broken:Nothing"], ["no attribute"]),
    "pair_missing_plate": (
        ["--model", "user_broken:Model", "--guide", "user_broken:Guide"],
        ["site 'x'", "pyro.plate"],
    ),
    "model_raises": (
        ["--model", "user_broken:Raises", "--guide", "user_broken:Guide"],
        ["the model failed", "a bug in the model"],
    ),
    "pair_without_methods": (["--pair", "user_broken:NoMethods"], ["model and guide methods"]),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input_is_one_error_line_and_loses_nothing(
    case, tmp_path, finished_run, stopped_run, capsys, monkeypatch
):
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.chdir(tmp_path)  # a default --out would land here, and be seen
    paths = setup_files(tmp_path, finished_run, stopped_run)
    argv, words = CASES[case]
    argv = [a.format(**paths) for a in argv]
    if "--resume" not in argv:
        argv = [*TINY, *argv]
        if "--out" not in argv:
            argv += ["--out", paths["new"]]
    before = files(tmp_path)
    lock = None
    if case == "resume_while_locked":  # another process trains in that folder
        lock = os.open(Path(paths["locked"]) / ".lock", os.O_RDWR | os.O_CREAT)
        fcntl.flock(lock, fcntl.LOCK_EX)
        os.write(lock, b"process 4242 on somehost since 2026-11-22 10:00:00")
    try:
        code, _, err = run_cli(argv, capsys)
    except SystemExit as exc:  # argparse exits for a flag it cannot parse
        code, err = exc.code, capsys.readouterr().err
    finally:
        if lock is not None:
            os.close(lock)
    assert code != 0
    assert_one_error_line(code, err, *words)
    after = files(tmp_path)
    assert {k: v for k, v in after.items() if k in before} == before  # nothing changed or lost
    assert not Path(paths["new"]).exists()  # and no half-made run folder


def test_the_table_has_at_least_forty_cases():
    assert len(CASES) >= 40


# ----------------------------------------------------------------------------- opening a folder

# name -> (command, argv with {placeholders}, words of the error line)
FOLDER_CASES = {
    "diagnose_iwae_samples_one": (
        "diagnose",
        ["{run}", "--iwae-samples", "1"],
        ["--iwae-samples 1"],
    ),
    "diagnose_checkpoint_of_another_width": (
        "diagnose",
        ["{config_other_width}"],
        ["does not match config.json", "(16, 5)"],
    ),
    "diagnose_config_string_number": (
        "diagnose",
        ["{config_string_epochs}"],
        ["epochs must be a whole number"],
    ),
    "diagnose_config_is_a_list": ("diagnose", ["{config_list}"], ["holds a JSON list"]),
    "diagnose_while_training": ("diagnose", ["{locked}"], ["is being trained by", "cp -r"]),
    "diagnose_missing_folder": ("diagnose", ["{new}"], ["no run folder"]),
    "features_while_training": ("features", ["{locked}"], ["is being trained by"]),
    "features_checkpoint_of_another_model": (
        "features",
        ["{config_other_model}"],
        ["does not match config.json"],
    ),
    "features_config_null": ("features", ["{config_null_lr}"], ["lr must be a number"]),
    "report_config_is_a_list": ("report", ["{config_list}"], ["does not hold a JSON object"]),
}


@pytest.mark.parametrize("case", sorted(FOLDER_CASES))
def test_opening_a_bad_folder_is_one_error_line_and_loses_nothing(
    case, tmp_path, finished_run, stopped_run, capsys, monkeypatch
):
    from pyrovae.cli import diagnose, features, report

    monkeypatch.chdir(tmp_path)
    paths = setup_files(tmp_path, finished_run, stopped_run)
    command, argv, words = FOLDER_CASES[case]
    main_of = {"diagnose": diagnose.main, "features": features.main, "report": report.main}
    argv = [a.format(**paths) for a in argv]
    if command == "diagnose":
        argv += ["--quiet", "--nuts-points", "0"]
    before = files(tmp_path)
    lock = None
    if "while_training" in case:
        lock = os.open(Path(paths["locked"]) / ".lock", os.O_RDWR | os.O_CREAT)
        fcntl.flock(lock, fcntl.LOCK_EX)
        os.write(lock, b"process 4242 on somehost since 2026-11-22 10:00:00")
    try:
        code = main_of[command](argv)
    except SystemExit as exc:
        code = exc.code
    finally:
        if lock is not None:
            os.close(lock)
    err = capsys.readouterr().err
    assert_one_error_line(code, err, *words)
    assert files(tmp_path) == before


def test_the_tables_hold_every_failure_tried():
    """Every bad input tried ends in one line: the two tables above, and the tests below."""
    assert len(CASES) + len(FOLDER_CASES) >= 100


# ----------------------------------------------------------------------------- the disk itself


@contextmanager
def mounted(target: Path, *options: str):
    """``mount`` (tmpfs or a read-only bind) for the block; skips the test where this
    process cannot mount (not root, or no mount namespace of its own)."""
    target.mkdir(parents=True, exist_ok=True)
    result = subprocess.run(["mount", *options, str(target)], capture_output=True, text=True)
    if result.returncode != 0:
        pytest.skip(f"cannot mount here ({result.stderr.strip() or 'mount failed'})")
    try:
        yield target
    finally:
        subprocess.run(["umount", "-l", str(target)], check=False)


def test_a_full_disk_is_one_line_and_keeps_the_saved_epoch(tmp_path, capsys):
    with mounted(tmp_path / "small", "-t", "tmpfs", "-o", "size=120k", "tmpfs") as disk:
        run = disk / "run"
        code, _, err = run_cli([*TINY, "--out", run], capsys)
        line = assert_one_error_line(code, err, "no space is left on the device", "--resume")
        assert "is saved" in line
        assert not list(run.glob("*.tmp"))  # no half-written file left behind
        saved = torch.load(run / "checkpoint.pt", weights_only=True)  # whole
        copy = tmp_path / "copy"
        shutil.copytree(run, copy)
    assert f"epoch {saved['epoch']} is saved" in line
    code, _, err = run_cli(["--resume", copy], capsys)  # free space: it finishes
    assert code == 0, err
    assert json.loads((copy / "summary.json").read_text())["epochs"] == 2


@pytest.mark.parametrize("command", ["diagnose", "features"])
def test_a_read_only_folder_is_refused_before_computing(command, tmp_path, finished_run, capsys):
    from pyrovae.cli import diagnose, features

    source = tmp_path / "source"
    shutil.copytree(finished_run, source)
    before = files(source)
    with mounted(tmp_path / "ro", "--bind", "-o", "ro", str(source)) as run:
        main = {"diagnose": diagnose.main, "features": features.main}[command]
        start = time.perf_counter()
        code = main([str(run), "--quiet"] if command == "diagnose" else [str(run)])
        seconds = time.perf_counter() - start
        err = capsys.readouterr().err
    assert_one_error_line(code, err, "cannot write into", "Read-only file system", "cp -r")
    assert seconds < 30  # refused up front, not after minutes of diagnosis
    assert files(source) == before
