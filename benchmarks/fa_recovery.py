#!/usr/bin/env python
"""Does SVI recover a known factor-analysis (or PPCA) model? Issue 4's must-show numbers.

Draws data from a known model (seeded), writes ``<dir>/fa.npz`` and ``<dir>/ppca.npz``,
prints the references (sklearn's FactorAnalysis score, the PPCA closed form, the true
model's own log-likelihood, principal angles to the true loadings), then trains each with
the command line exactly as a user would::

    python scripts/train_svi.py --model fa --dataset <dir>/fa.npz --latent-dim 5 --quiet
    python scripts/train_svi.py --model ppca --dataset <dir>/ppca.npz --latent-dim 5 --quiet

and compares: test_log_likelihood against the reference (% gap), the largest principal angle
between the learned and the true (and the reference) loadings, the final test ELBO of the
exact-posterior guide against the exact log-likelihood, and wall time. ``--guides`` adds
runs with other guides (e.g. ``linear-normal mlp-normal``) to show their ELBO gap.

    python benchmarks/fa_recovery.py --dir runs/fa-recovery
    python benchmarks/fa_recovery.py --data-only              # just write the .npz files
"""

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
from sklearn.decomposition import FactorAnalysis

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from pyrovae.folder.config import TrainConfig  # noqa: E402
from pyrovae.models.linear_gaussian import (  # noqa: E402
    fa_log_likelihood,
    largest_principal_angle_deg,
    pca_svd,
    ppca_ml,
    random_fa_parameters,
    sample_fa,
)
from pyrovae.runs.train import prepare_data  # noqa: E402


def write_data(path: Path, D, k, n_train, n_test, isotropic, seed):
    W, mu, psi = random_fa_parameters(D, k, isotropic, seed)
    x = sample_fa(n_train + n_test, W, mu, psi, seed=seed + 1).float().numpy()
    np.savez(path, x_train=x[:n_train], x_test=x[n_train:], W=W, mu=mu, psi=psi)
    return W, mu, psi


def references(path: Path, k: int, isotropic: bool, run_seed: int) -> dict:
    """Closed-form fits on the training rows a run with ``--seed run_seed`` sees (after its
    10% validation split)."""
    seed = run_seed
    data = prepare_data(TrainConfig(dataset=str(path), seed=seed, likelihood="gaussian"))
    x_train = data.x_train.double().numpy()
    x_test = data.x_test.double().numpy()
    archive = np.load(path)
    W, mu, psi = (torch.from_numpy(archive[key]) for key in ("W", "mu", "psi"))
    out = {"true_test_log_likelihood": float(fa_log_likelihood(x_test, W, mu, psi).mean())}
    if isotropic:
        W_ref, mu_ref, sigma2 = ppca_ml(x_train, k)
        out["reference"] = "ppca_ml (Tipping & Bishop)"
        out["reference_test_log_likelihood"] = float(
            fa_log_likelihood(x_test, W_ref, mu_ref, sigma2).mean()
        )
        out["reference_noise_variance"] = sigma2
    else:
        fa = FactorAnalysis(k, svd_method="lapack", random_state=seed).fit(x_train)
        W_ref = fa.components_.T
        out["reference"] = "sklearn FactorAnalysis"
        out["reference_test_log_likelihood"] = float(fa.score(x_test))
        full = FactorAnalysis(k, svd_method="lapack", random_state=seed)
        full.fit(archive["x_train"].astype(np.float64))
        out["sklearn_on_all_train_rows_test_score"] = float(full.score(x_test))
    out["reference_angle_to_true_deg"] = largest_principal_angle_deg(W_ref, W)
    components, _, _ = pca_svd(x_train, k)
    out["pca_angle_to_true_deg"] = largest_principal_angle_deg(components.T, W)
    out["W_true"], out["W_reference"] = W, torch.as_tensor(W_ref)
    return out


def train(model: str, path: Path, k: int, out: Path, extra: list[str]) -> tuple[dict, float]:
    command = [
        sys.executable,
        str(REPO / "scripts" / "train_svi.py"),
        "--model", model, "--dataset", str(path), "--latent-dim", str(k), "--quiet",
        "--out", str(out), *extra,
    ]  # fmt: skip
    print("$ " + " ".join(command[1:]), flush=True)
    start = time.perf_counter()
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    subprocess.run(command, check=True, env=env, cwd=REPO)
    return json.loads((out / "summary.json").read_text()), time.perf_counter() - start


def learned_loadings(out: Path) -> torch.Tensor:
    from pyrovae import load_run

    return load_run(out).model.parameters_f64()[0]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", default="runs/fa-recovery", help="folder for data and runs")
    parser.add_argument("--dim", type=int, default=20, help="data width D")
    parser.add_argument("--latent-dim", type=int, default=5, help="true and fitted k")
    parser.add_argument("--n-train", type=int, default=2000)
    parser.add_argument("--n-test", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--models", nargs="+", default=["fa", "ppca"], choices=["fa", "ppca"])
    parser.add_argument("--guides", nargs="*", default=[], help="extra guides to compare")
    parser.add_argument("--data-only", action="store_true", help="write the data and stop")
    parser.add_argument("train_args", nargs=argparse.REMAINDER, help="-- extra CLI flags")
    args = parser.parse_args(argv)
    folder = Path(args.dir)
    folder.mkdir(parents=True, exist_ok=True)
    extra = [a for a in args.train_args if a != "--"]
    k = args.latent_dim
    results = {}
    for model in args.models:
        isotropic = model == "ppca"
        path = folder / f"{model}.npz"
        write_data(path, args.dim, k, args.n_train, args.n_test, isotropic, args.seed)
        run_seed = int(extra[extra.index("--seed") + 1]) if "--seed" in extra else 0
        ref = references(path, k, isotropic, run_seed)
        W_true, W_ref = ref.pop("W_true"), ref.pop("W_reference")
        print(f"\n== {model}: {path} (D={args.dim}, k={k}, {args.n_train}/{args.n_test} rows)")
        for key, value in ref.items():
            print(f"  {key}: {value:.4f}" if isinstance(value, float) else f"  {key}: {value}")
        if args.data_only:
            continue
        for guide in [None, *args.guides]:
            name = model if guide is None else f"{model}-{guide}"
            out = folder / name
            flags = extra if guide is None else [*extra, "--guide", guide]
            summary, seconds = train(model, path, k, out, flags)
            W = learned_loadings(out)
            row = {
                "guide": summary["guide"],
                "seconds": seconds,
                "epochs": summary["epochs"],
                "best_epoch": summary["best_epoch"],
                "test_elbo": summary["test_elbo"],
                "test_log_likelihood": summary["test_log_likelihood"],
                "elbo_minus_log_likelihood": summary["test_elbo"] - summary["test_log_likelihood"],
                "gap_to_reference_percent": 100
                * (ref["reference_test_log_likelihood"] - summary["test_log_likelihood"])
                / abs(ref["reference_test_log_likelihood"]),
                "angle_to_true_deg": largest_principal_angle_deg(W, W_true),
                "angle_to_reference_deg": largest_principal_angle_deg(W, W_ref),
                "noise_variance": summary["noise_variance"],
            }
            results[name] = {**ref, **row}
            for key, value in row.items():
                text = f"{value:.5g}" if isinstance(value, float) else value
                print(f"  {key}: {text}")
    if results:
        (folder / "fa_recovery.json").write_text(json.dumps(results, indent=2) + "\n")
        print(f"\nwrote {folder / 'fa_recovery.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
