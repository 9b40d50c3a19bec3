"""The cost of ``scripts/diagnose.py`` on the default digits run, every part on.

    python benchmarks/diagnose_cost.py                 # train the default run, then diagnose it
    python benchmarks/diagnose_cost.py --run RUN_DIR   # diagnose a trained run (a copy of it)
    python benchmarks/diagnose_cost.py --repeat 3      # three diagnoses of the same run

Both commands run as a user runs them (``scripts/train_svi.py --out DIR``, then
``scripts/diagnose.py DIR --quiet``), each in its own process. Printed per diagnosis: the
seconds of each part (``diagnostics.json``'s ``seconds``), their sum, the rest of the
process (imports, loading the run, the figures, ``posterior.nc``, ``report.html``) and the
whole wall time, with the load average of the machine before and after, and the process's CPU
time: diagnose runs on one intra-op thread, so on a shared CPU the CPU time (about the wall
time on an idle core) and the parts' shares are the steadier numbers. Target: the whole
under 60 s on 2 cores.
"""

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TARGET_SECONDS = 60.0


def run_script(name: str, *args: str) -> tuple[float, float]:
    """``(wall, CPU)`` seconds of ``python scripts/<name> args...``; exits on its failure."""
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    start = time.perf_counter()
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    done = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / name), *args],
        env=env,
        capture_output=True,
        text=True,
    )
    seconds = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if done.returncode != 0:
        sys.exit(f"error: scripts/{name} failed: {done.stderr.strip().splitlines()[-1:]}")
    return seconds, cpu


def load() -> str:
    return "load average " + " ".join(f"{v:.2f}" for v in os.getloadavg())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", help="a trained run folder (default: train the default run)")
    parser.add_argument("--repeat", type=int, default=1, help="diagnoses of the run")
    parser.add_argument("flags", nargs=argparse.REMAINDER, help="flags for scripts/diagnose.py")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="diagnose_cost."))
    try:
        trained = work / "trained"
        if args.run:
            shutil.copytree(args.run, trained)
        else:
            seconds, _ = run_script("train_svi.py", "--out", str(trained))
            print(f"trained the default run in {seconds:.1f} s ({load()})")
        print(f"{os.cpu_count()} CPUs seen; torch threads as diagnose.py sets them")
        for i in range(args.repeat):
            folder = work / f"diagnosed{i}"
            shutil.copytree(trained, folder)
            before = load()
            wall, cpu = run_script("diagnose.py", str(folder), "--quiet", *args.flags)
            parts = json.loads((folder / "diagnostics.json").read_text())["seconds"]
            total = sum(parts.values())
            print(f"\ndiagnosis {i + 1}: {before} before, {load()} after")
            print(f"{'part':>14} {'seconds':>8} {'share':>6}")
            for name, s in parts.items():
                print(f"{name:>14} {s:8.1f} {s / wall:6.1%}")
            print(f"{'parts':>14} {total:8.1f} {total / wall:6.1%}")
            print(f"{'rest':>14} {wall - total:8.1f} {(wall - total) / wall:6.1%}")
            verdict = "under" if wall < TARGET_SECONDS else "OVER"
            print(f"{'whole':>14} {wall:8.1f}  ({verdict} the {TARGET_SECONDS:.0f} s target)")
            print(f"{'CPU time':>14} {cpu:8.1f}  (user + system: the wall time on an idle core)")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
