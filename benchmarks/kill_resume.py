#!/usr/bin/env python
"""Kill a training run with SIGKILL at many random moments, resume it after each kill, and
check that the finished run equals an uninterrupted one.

The uninterrupted run is ``scripts/train_svi.py ARGS --out DIR/reference``. The killed run
goes through ``tests/kill_harness.py`` (the same command with hooks around file writes): each
launch is killed after a seeded random delay, uniform in [0, D], then resumed (``--resume``;
the same command again while the folder has no config.json). D is chosen before each launch
so that the kills are spread over the whole run: from the startup time and the epochs per
second measured so far, the delays are expected to train 90% of the remaining epochs by the
last kill (``--max-delay`` fixes D). Every write is
spread over ``--slow-write`` seconds (a slow disk: timings change, bytes do not) so that a
fair share of the kills land inside writes; a kill inside a checkpoint write is recognized by
the temporary file it leaves. After every kill the folder is checked (every file whole, the
dead process's lock free); after the last resume, metrics.csv's epochs and ELBOs,
summary.json (wall times aside), every tensor of the checkpoint and the figures are compared
with the uninterrupted run.

    python benchmarks/kill_resume.py --kills 50 --epochs 200 --seed 0
    python benchmarks/kill_resume.py --kills 5 --epochs 20 -- --hidden 32 --latent-dim 4

Arguments after ``--`` go to train_svi.py (default: the default digits run).
"""

import argparse
import math
import random
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

from kill_harness import (  # noqa: E402
    TRAIN_SCRIPT,
    checkpoint_epoch,
    differences,
    inspect,
    kill,
    launch,
    temporary_files,
)


def timed_reference(args: list[str], out: Path) -> tuple[float, float, float]:
    """Run the uninterrupted command; seconds until config.json appeared, from then until
    training ended (the first figure appeared), and from then until the process ended."""
    start = time.monotonic()
    proc = subprocess.Popen(
        [sys.executable, str(TRAIN_SCRIPT), *args, "--out", str(out)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    startup = trained = None
    while proc.poll() is None:
        now = time.monotonic() - start
        if startup is None and (out / "config.json").exists():
            startup = now
        if trained is None and any(out.glob("*.png")):
            trained = now
        time.sleep(0.01)
    if proc.returncode != 0:
        sys.exit(f"the uninterrupted run failed:\n{proc.stderr.read().decode()}")
    total = time.monotonic() - start
    startup = startup or total
    trained = trained or total
    return startup, trained - startup, total - trained


def spread(startup: float, training: float, kills: int) -> float:
    """The D for which ``kills`` delays uniform in [0, D] are expected to train about 90% of
    ``training`` seconds: a kill after ``d > startup`` seconds trains ``d - startup``, so each
    trains ``(D - startup)^2 / (2 D)`` on average; the last resume trains the rest."""
    a = 2 * 0.9 * training / kills
    b = 2 * startup + a
    return (b + math.sqrt(b * b - 4 * startup * startup)) / 2


def where(after, before_epoch: int | None, epochs: int) -> str:
    """Where a kill landed, read from what it left."""
    if after.interrupted_checkpoint:
        return "during a checkpoint write"
    if after.new_temporary:
        names = sorted({n.split(".")[0] + "." + n.split(".")[1] for n in after.new_temporary})
        return f"during a write of {', '.join(names)}"
    if after.checkpoint_epoch is None:
        return "before the first checkpoint"
    if after.checkpoint_epoch == before_epoch:
        if after.checkpoint_epoch >= epochs:
            return "after the last epoch (startup or report)"
        return "before the process saved an epoch (startup or its first epoch)"
    return "during training, between writes"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kills", type=int, default=50, help="SIGKILLs before the last resume")
    parser.add_argument("--epochs", type=int, default=200, help="epochs of the run")
    parser.add_argument("--seed", type=int, default=0, help="seed of the kill delays")
    parser.add_argument("--slow-write", type=float, default=0.1, help="seconds per file write")
    parser.add_argument("--max-delay", type=float, help="longest delay (default: adaptive)")
    parser.add_argument("--dir", type=Path, help="keep the run folders here (default: temp)")
    parser.add_argument("train_args", nargs="*", help="train_svi.py flags, after --")
    opts = parser.parse_args(argv)
    start = time.monotonic()
    with tempfile.TemporaryDirectory() as temporary:
        base = opts.dir or Path(temporary)
        base.mkdir(parents=True, exist_ok=True)
        reference, run, log = base / "reference", base / "run", base / "launches.log"
        args = [*opts.train_args, "--epochs", str(opts.epochs), "--quiet"]
        begun = time.monotonic()
        startup, training, report = timed_reference(args, reference)
        total = time.monotonic() - begun
        print(f"train_svi.py {' '.join(args)}")
        print(
            f"uninterrupted: {total:.1f} s (config.json after {startup:.1f} s, then "
            f"{training:.1f} s of training and {report:.1f} s of report); writes slowed to "
            f"{opts.slow_write} s each in the killed runs"
        )
        # Epochs per second of training with slowed writes, then as measured between kills
        # (other work on the machine changes it): the delays spread the kills over the run.
        rate = opts.epochs / (training + opts.epochs * 2 * opts.slow_write)
        measured = [0, 0.0]  # epochs trained, seconds after startup, by killed launches
        rng = random.Random(opts.seed)
        landed_at, problems, failures, delays = Counter(), [], [], []
        resumes = restarts = launches = kills = 0
        while kills < opts.kills and launches < 4 * opts.kills:
            before = temporary_files(run)
            epoch = checkpoint_epoch(run)
            remaining = opts.epochs - (epoch or 0)
            if opts.max_delay:
                max_delay = opts.max_delay
            elif remaining > 0:
                max_delay = spread(startup, remaining / rate, opts.kills - kills)
            else:  # a finished run: kills land in its resumes' startup and report
                max_delay = startup + report
            resuming = (run / "config.json").exists()
            proc = launch(args, run, log, slow_write=opts.slow_write)
            launches += 1
            resumes += resuming
            restarts += not resuming and launches > 1
            delay = rng.uniform(0, max_delay)
            if kill(proc, delay=delay) is None:
                if proc.returncode != 0:
                    failures.append(f"launch {launches} exited with {proc.returncode}")
                continue  # it finished first: the next launch resumes a finished run
            kills += 1
            delays.append(delay)
            after = inspect(run, before)
            landed_at[where(after, epoch, opts.epochs)] += 1
            problems += [f"kill {kills}: {p}" for p in after.problems]
            if remaining > 0 and delay > startup:
                measured[0] += (after.checkpoint_epoch or 0) - (epoch or 0)
                measured[1] += delay - startup
                if measured[0] >= 5:
                    rate = measured[0] / measured[1]
        resumes += 1
        proc = launch(args, run, log)
        if proc.wait() != 0:
            failures.append(f"the last resume exited with {proc.returncode}")
        differ = differences(reference, run) if not failures else ["(not compared)"]
        wall = time.monotonic() - start

        print(f"kills: {kills}; launches: {launches + 1}; resumes (--resume) that ran: {resumes}")
        if delays:
            print(f"kill delays: {min(delays):.2f} to {max(delays):.2f} s after the launch")
        print(f"restarts with --out (killed before config.json existed): {restarts}")
        for place, count in landed_at.most_common():
            print(f"  {count:3d} {place}")
        in_checkpoint = landed_at["during a checkpoint write"]
        print(f"kills that landed during a checkpoint write: {in_checkpoint}")
        print(f"torn files or held locks after a kill: {problems or 'none'}")
        print(f"failed launches: {failures or 'none'}")
        if differ:
            print(f"final result differs from the uninterrupted run in: {', '.join(differ)}")
        else:
            print(
                "final result reproduces the uninterrupted run: metrics.csv epochs and ELBOs, "
                "summary.json, every checkpoint tensor, figures identical"
            )
        print(f"wall time: {wall:.0f} s")
        return 0 if not (differ or problems or failures) else 1


if __name__ == "__main__":
    sys.exit(main())
