#!/usr/bin/env python
"""Autoencoder against VAE on the 2-D spiral with a 1-D latent: interpolation and extrapolation.

Trains ``--model ae`` (a Delta guide: MAP codes) and ``--model vae`` with the same networks,
data and seed through ``pyrovae.train``, decodes a sweep of z over the training codes'
range and half that range again beyond each end, and measures every decoded point against
the true (noise-free) spiral (see :mod:`pyrovae.recipes.spiral`). Writes
``<out>/spiral_comparison.png`` (one row per model) and ``<out>/spiral_comparison.json``,
and prints the numbers; each model's own run folder is ``<out>/<model>``.

    python scripts/spiral_demo.py --out runs/spiral-demo
    python scripts/spiral_demo.py --epochs 50 --seeds 0 1 2     # quicker; several seeds
"""

import argparse
import json
import sys
import time
from pathlib import Path

import pyrovae
from pyrovae import plots
from pyrovae.recipes.spiral import sweep, sweep_numbers, true_curve

MODELS = ("ae", "vae")


def run_one(model: str, seed: int, out: Path, epochs: int) -> tuple[dict, dict, float]:
    start = time.perf_counter()
    run = pyrovae.train(
        model=model, dataset="spiral", epochs=epochs, seed=seed, quiet=True, out=str(out)
    )
    seconds = time.perf_counter() - start
    result = sweep(run.model, run.guide, run.data)
    numbers = sweep_numbers(result, tuple(run.data.dataset.extras["t_range"]))
    numbers["test_elbo"] = run.summary["test_elbo"]
    numbers["epochs"] = run.summary["epochs"]
    return result, numbers, seconds


def line(model: str, seed: int, n: dict, seconds: float) -> str:
    inside, inner, outer = n["inside"], n["beyond_inner"], n["beyond_outer"]
    return (
        f"{model:>4} seed {seed}: inside mean {inside['mean_distance']:.3f} "
        f"max {inside['max_distance']:.3f} coverage {inside['coverage']:.2f} "
        f"step ratio {inside['max_step_ratio']:.1f} | beyond inner mean "
        f"{inner['mean_distance']:.3f} | beyond outer mean {outer['mean_distance']:.3f}, "
        f"end t {outer['t_end']:.2f} at {outer['distance_end']:.3f} | "
        f"recon to curve {n['test_reconstruction_distance_to_curve']:.3f} | "
        f"test ELBO {n['test_elbo']:.2f} ({n['epochs']} epochs, {seconds:.1f} s)"
    )


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="runs/spiral-demo", help="output folder")
    parser.add_argument("--epochs", type=int, default=200, help="epochs per model")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0], help="seeds to run")
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    panels, table = [], {}
    print(
        "distances in data units (spiral within about [-1, 1]^2, noise sd 0.05); training "
        "t in [pi/2, 3pi] = [1.57, 9.42]"
    )
    for seed in args.seeds:
        for model in MODELS:
            result, numbers, seconds = run_one(
                model, seed, out / f"{model}-seed{seed}", args.epochs
            )
            numbers["seconds"] = seconds
            table[f"{model}-seed{seed}"] = numbers
            print(line(model, seed, numbers, seconds), flush=True)
            if seed == args.seeds[0]:
                panels.append({"title": f"{model} (seed {seed})", **result})
    figure = plots.plot_spiral_sweeps(panels, true_curve(), out / "spiral_comparison.png")
    (out / "spiral_comparison.json").write_text(json.dumps(table, indent=2) + "\n")
    print(f"wrote {figure} and {out / 'spiral_comparison.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
