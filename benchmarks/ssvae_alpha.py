"""The sweep behind the ssvae's default alpha: accuracy of q(y|x) against kappa, per label count.

    python benchmarks/ssvae_alpha.py --labels 100 3000 --epochs 5   # the README sweep

alpha, the weight of log q(y|x) per labelled example, is ``kappa * D * N / n_l`` here (D
pixels, N training rows, n_l labelled rows): kappa is the weight of the whole classification
loss against the whole ELBO, per pixel of every training row (see pyrovae/models/ssvae.py).
For each (label count, kappa) the script trains ``--model ssvae`` for ``--epochs`` epochs
(patience 0) and prints the test accuracy at the epoch with the best validation ELBO, at the
epoch with the best validation accuracy, and at the last epoch, beside the baseline's (the same
classifier network trained on the labelled rows alone), with the seconds per epoch.
"""

import argparse
import time
from pathlib import Path

import torch

import pyrovae
from pyrovae.folder.config import TrainConfig
from pyrovae.runs.train import prepare_data


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", default="fashion-mnist")
    parser.add_argument("--data-root", default="/usr/share/datasets/fashion-mnist")
    parser.add_argument("--labels", type=int, nargs="+", default=[100, 1000, 3000])
    parser.add_argument("--kappas", type=float, nargs="+", default=[0.03, 0.1, 0.3])
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--out", default="runs/benchmark-ssvae-alpha")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    data_root = args.data_root if args.dataset in ("mnist", "fashion-mnist") else None
    data = prepare_data(TrainConfig(dataset=args.dataset, data_root=data_root, seed=args.seed))
    n_train, x_dim = data.x_train.shape
    print(
        f"{args.dataset}: ssvae defaults but alpha, {args.epochs} epochs, seed {args.seed}, "
        f"torch threads {torch.get_num_threads()}, N = {n_train}, D = {x_dim}"
    )
    print(
        "| labels | kappa | alpha | test acc. (best val ELBO) | test acc. (best val acc.) "
        "| test acc. (last) | baseline | s/epoch |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    stamp = time.strftime("%Y%m%d-%H%M%S")
    for labels in args.labels:
        for kappa in args.kappas:
            alpha = kappa * x_dim * n_train / labels
            run = pyrovae.train(
                model="ssvae",
                dataset=args.dataset,
                data_root=data_root,
                labels=labels,
                alpha=alpha,
                epochs=args.epochs,
                patience=0,
                seed=args.seed,
                quiet=True,
                out=str(Path(args.out) / f"{stamp}-labels{labels}-kappa{kappa:g}"),
            )
            rows = run.history
            by_elbo = max(rows, key=lambda r: r["val_elbo"])
            by_accuracy = max(rows, key=lambda r: r["val_accuracy"])
            seconds = sum(r["seconds"] for r in rows) / len(rows)
            print(
                f"| {labels} | {kappa:g} | {alpha:.0f} | {by_elbo['test_accuracy']:.4f} "
                f"| {by_accuracy['test_accuracy']:.4f} | {rows[-1]['test_accuracy']:.4f} "
                f"| {run.summary['baseline_accuracy']:.4f} | {seconds:.1f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
