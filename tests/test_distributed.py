"""Data-parallel training (``torchrun ... --distributed``) against a single process.

Slow (two processes start torch each): run by ``.ci/run`` with ``-m slow``.
"""

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from pyrovae import train
from pyrovae.cli.train import main
from pyrovae.inference.checkpoint import load_checkpoint
from tests.deterministic_pair import pair_options

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
RUN_FILES = ("config.json", "checkpoint.pt", "metrics.csv", "summary.json", "training_curves.png")
# SGD, not Adam (blind to a constant factor in the gradient), so a wrong gradient scale
# shows. 720 training rows (800 spiral rows less 10% validation), batch 96: 8 batches per
# epoch, the last of 48 rows, split 24/24 over two processes.
OPTIONS = [
    "--dataset",
    "spiral",
    "--batch-size",
    "96",
    "--optimizer",
    "sgd",
    "--lr",
    "1e-4",
    "--quiet",
]


def torchrun(args: list[str], processes: int = 2) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--standalone",
        f"--nproc_per_node={processes}", str(ROOT / "scripts" / "train_svi.py"), *args,
    ]  # fmt: skip
    result = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def single(out: Path, epochs: int):
    pair = pair_options()
    return train(
        dataset="spiral",
        batch_size=96,
        optimizer="sgd",
        lr=1e-4,
        quiet=True,
        epochs=epochs,
        out=str(out),
        **pair,
    )


def train_elbos(run: Path) -> list[float]:
    with open(run / "metrics.csv") as f:
        return [float(row["train_elbo"]) for row in csv.DictReader(f)]


def final_parameters(run: Path) -> dict[str, torch.Tensor]:
    state = load_checkpoint(run / "checkpoint.pt")
    return {**state["model"], **state["guide"]}


def assert_same_run(run: Path, reference: Path):
    assert train_elbos(run) == pytest.approx(train_elbos(reference), rel=1e-5)
    got, want = final_parameters(run), final_parameters(reference)
    assert got.keys() == want.keys()
    for name in want:
        torch.testing.assert_close(got[name], want[name], rtol=1e-4, atol=1e-5, msg=name)


@pytest.fixture(scope="module")
def distributed_run(tmp_path_factory):
    """Two processes, 3 epochs, then resumed under torchrun to 5 epochs."""
    root = tmp_path_factory.mktemp("ddp")
    pair = pair_options()
    args = [*OPTIONS, "--model", pair["model"], "--guide", pair["guide"], "--distributed"]
    first = torchrun([*args, "--epochs", "3", "--out", str(root / "run")])
    three = root / "after-3"
    three.mkdir()
    (three / "metrics.csv").write_text((root / "run" / "metrics.csv").read_text())
    (three / "checkpoint.pt").write_bytes((root / "run" / "checkpoint.pt").read_bytes())
    torchrun(
        ["--resume", str(root / "run"), "--epochs", "5", "--quiet", "--distributed", "--trust-code"]
    )
    return root, first


def test_two_processes_match_one_with_the_same_global_batch(distributed_run, tmp_path):
    root, _ = distributed_run
    single(tmp_path / "single", epochs=3)
    assert_same_run(root / "after-3", tmp_path / "single")


def test_distributed_run_resumes_under_torchrun(distributed_run, tmp_path):
    root, _ = distributed_run
    single(tmp_path / "single", epochs=5)
    assert len(train_elbos(root / "run")) == 5
    assert_same_run(root / "run", tmp_path / "single")


def test_only_rank_zero_writes_a_whole_run_folder(distributed_run):
    root, first = distributed_run
    run = root / "run"
    for name in RUN_FILES:
        assert (run / name).is_file(), name
    assert not list(run.glob("*.tmp"))
    summary = (run / "summary.json").read_text()
    assert '"processes": 2' in summary
    # one final line, from rank 0
    assert first.stdout.count("run folder") == 1
    assert sorted(p.name for p in root.iterdir()) == ["after-3", "run"]


def test_distributed_without_torchrun_is_a_one_line_error(monkeypatch, capsys, tmp_path):
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(name, raising=False)
    code = main(["--dataset", "spiral", "--epochs", "1", "--distributed", "--out", str(tmp_path)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(err) == 1 and "torchrun --nproc_per_node" in err[0]
