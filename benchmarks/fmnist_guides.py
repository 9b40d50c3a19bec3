"""Guides, networks, objectives and latents on Fashion-MNIST, the same epochs for each.

    python benchmarks/fmnist_guides.py --data-root /usr/share/datasets/fashion-mnist
    python benchmarks/fmnist_guides.py --epochs 2 --configs diag-mlp iaf-mlp    # a quick look

Each configuration is a ``pyrovae.train`` run (784-400-50 unless it says otherwise, Bernoulli
likelihood on dynamically binarized images, batch 128, Adam 1e-3, the epoch with the best
validation ELBO kept) followed by ``pyrovae.diagnose`` for the importance-weighted bound
(K = 1000) on the first ``--iwae-rows`` test images. Per configuration the script prints one
Markdown row: test ELBO (all 10,000 test images), IWAE with its standard error over the rows
and the ELBO on the same rows, and the wall times of training (with the per-epoch
evaluation) and of the IWAE. Results are appended to ``--out``/results.jsonl as they come, and
configurations already there are not run again, so an interrupted benchmark goes on where it
stopped.
"""

import argparse
import csv
import json
import time
from pathlib import Path

import torch

import pyrovae

COMMON = dict(dataset="fashion-mnist", hidden=(400,), latent_dim=50, batch_size=128, lr=1e-3)
CONFIGS = {
    "diag-mlp": dict(guide="mlp-normal"),
    "lowrank-mlp": dict(guide="lowrank", rank=5),
    "iaf-mlp": dict(guide="iaf", flows=2),
    "diag-conv": dict(guide="mlp-normal", net="conv"),
    "lowrank-conv": dict(guide="lowrank", rank=5, net="conv"),
    "iaf-conv": dict(guide="iaf", flows=2, net="conv"),
    "iwae5-mlp": dict(guide="mlp-normal", elbo="iwae", num_particles=5),
    "iwae50-mlp": dict(guide="mlp-normal", elbo="iwae", num_particles=50),
    "gumbel-mlp": dict(model="gumbel-vae", latent_dim=20),  # 20 categoricals of 10 classes
}
REFERENCE = "diag-mlp"
HEADER = (
    "| configuration | test ELBO | IWAE (± s.e.) | IWAE - diag-mlp, paired (± s.e.) "
    "| ELBO, same rows | train wall (s) | fastest epoch (s) | IWAE wall (s) |\n"
    "| --- | --- | --- | --- | --- | --- | --- | --- |"
)


def per_row_iwae(folder: Path) -> torch.Tensor | None:
    """``(n,)`` each test row's IWAE of the run in ``folder`` (its posterior.nc), if any."""
    path = folder / "posterior.nc"
    if not path.exists():
        return None
    import arviz as az

    return torch.as_tensor(az.from_netcdf(path)["importance"]["iwae"].values)


def paired(result: dict, out: Path) -> str:
    """The mean over the same test rows of this run's IWAE minus diag-mlp's, with its
    standard error: the rows' own spread (the ± of the IWAE column) cancels."""
    mine, reference = per_row_iwae(out / result["name"]), per_row_iwae(out / REFERENCE)
    if mine is None or reference is None or mine.shape != reference.shape:
        return "n/a"
    difference = mine - reference
    se = difference.std() / difference.numel() ** 0.5
    return f"{float(difference.mean()):+.2f} ± {float(se):.2f}"


def fastest_epoch(folder: Path) -> str:
    """The fewest seconds one training epoch took (metrics.csv): on a shared machine the
    epoch least disturbed by other jobs."""
    path = folder / "metrics.csv"
    if not path.exists():
        return "n/a"
    with path.open() as f:
        return f"{min(float(r['seconds']) for r in csv.DictReader(f)):.1f}"


def row(result: dict, out: Path) -> str:
    return (
        f"| {result['name']} | {result['test_elbo']:.2f} | {result['iwae']:.2f} ± "
        f"{result['iwae_se']:.2f} | {paired(result, out)} | {result['elbo_rows']:.2f} "
        f"| {result['train_seconds']:.0f} | {fastest_epoch(out / result['name'])} "
        f"| {result['iwae_seconds']:.0f} |"
    )


def run_one(name: str, args) -> dict:
    options = {**COMMON, **CONFIGS[name]}
    folder = Path(args.out) / name
    start = time.perf_counter()
    run = pyrovae.train(
        **options,
        data_root=args.data_root,
        epochs=args.epochs,
        patience=0,
        seed=args.seed,
        quiet=True,
        out=str(folder),
    )
    train_seconds = time.perf_counter() - start
    start = time.perf_counter()
    out = pyrovae.diagnose(
        run,
        iwae_samples=args.iwae_samples,
        max_points=args.iwae_rows,
        nuts_points=0,
        amortization_points=0,
        seed=args.seed,
    )
    return {
        "name": name,
        "options": {k: v for k, v in options.items() if k != "dataset"},
        "epochs": args.epochs,
        "best_epoch": run.summary["best_epoch"],
        "test_elbo": run.summary["test_elbo"],
        "iwae": out["iwae_log_likelihood"],
        "iwae_se": out["iwae_standard_error"],
        "elbo_rows": out["elbo_monte_carlo"],
        "iwae_rows": out["num_points"],
        "iwae_samples": args.iwae_samples,
        "train_seconds": train_seconds,
        "iwae_seconds": time.perf_counter() - start,
        "threads": torch.get_num_threads(),
    }


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--iwae-samples", type=int, default=1000)
    parser.add_argument("--iwae-rows", type=int, default=1000, help="test images for the IWAE")
    parser.add_argument("--data-root", default="/usr/share/datasets/fashion-mnist")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="runs/benchmark-fmnist-guides")
    args = parser.parse_args(argv)
    results_path = Path(args.out) / "results.jsonl"
    done = {}
    if results_path.exists():
        for line in results_path.read_text().splitlines():
            result = json.loads(line)
            if result["epochs"] == args.epochs:
                done[result["name"]] = result
    print(
        f"Fashion-MNIST, {args.epochs} epochs each, IWAE K={args.iwae_samples} on "
        f"{args.iwae_rows} test images, torch threads {torch.get_num_threads()}"
    )
    print(HEADER)
    for name in args.configs:
        if name not in done:
            result = run_one(name, args)
            results_path.parent.mkdir(parents=True, exist_ok=True)
            with results_path.open("a") as f:
                f.write(json.dumps(result) + "\n")
            done[name] = result
        print(row(done[name], Path(args.out)), flush=True)


if __name__ == "__main__":
    main()
