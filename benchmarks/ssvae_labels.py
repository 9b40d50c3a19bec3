"""M2 (semi-supervised VAE) against its supervised-only baseline as the number of labels grows.

    python benchmarks/ssvae_labels.py                       # Fashion-MNIST, 100/1000/3000 labels
    python benchmarks/ssvae_labels.py --epochs 3 --labels 100    # a quick look

For each label count N the script trains ``--model ssvae --labels N`` through
``pyrovae.train`` (the same runner and run folder as the CLI: class-balanced labelled subset
drawn with ``--seed``, interleaved labelled/unlabelled batches, best epoch by validation
ELBO) and reads from its summary.json the test accuracy of q(y|x), the test accuracy of the
baseline (the same classifier network trained on the N labelled rows alone, same seed, same
validation split) and the wall times. It prints one Markdown table row per N.

alpha, the weight of log q(y|x) per labelled example, is ``0.1 * D * N / N_labels`` unless
``--alpha`` is given (D pixels, N training rows): the paper's ``0.1 N`` on the labelled mean,
times D. The model's default ``0.1 * D`` is too weak with 100 labels among 54,000 rows (see
pyrovae/models/ssvae.py).
"""

import argparse
import time
from pathlib import Path

import torch

import pyrovae
from pyrovae.api import prepare_data
from pyrovae.config import TrainConfig


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", default="fashion-mnist")
    parser.add_argument("--labels", type=int, nargs="+", default=[100, 1000, 3000])
    parser.add_argument("--epochs", type=int, default=10, help="M2 epochs per label count")
    parser.add_argument("--hidden", type=int, nargs="+", default=None, help="default: ssvae's")
    parser.add_argument("--latent-dim", type=int, default=None, help="default: ssvae's")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--alpha", type=float, default=None, help="default: 0.1 * D * N / N_labels")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: all)")
    parser.add_argument("--out", default="runs/benchmark-ssvae", help="folder for the runs")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    print(
        f"{args.dataset}: M2 for {args.epochs} epochs (best by validation ELBO), batch "
        f"{args.batch_size}, seed {args.seed}, torch threads {torch.get_num_threads()}"
    )
    header = (
        "| labels | alpha | M2 test accuracy | baseline test accuracy | M2 best epoch | "
        "M2 wall (s) | baseline wall (s) |"
    )
    print(header)
    print("| --- | --- | --- | --- | --- | --- | --- |")
    stamp = time.strftime("%Y%m%d-%H%M%S")
    begin = time.perf_counter()
    data = prepare_data(TrainConfig(dataset=args.dataset, seed=args.seed))
    n_train, x_dim = data.x_train.shape
    for labels in args.labels:
        alpha = args.alpha if args.alpha is not None else 0.1 * x_dim * n_train / labels
        start = time.perf_counter()
        run = pyrovae.train(
            model="ssvae",
            dataset=args.dataset,
            labels=labels,
            alpha=alpha,
            epochs=args.epochs,
            patience=0,
            hidden=None if args.hidden is None else tuple(args.hidden),
            latent_dim=args.latent_dim,
            batch_size=args.batch_size,
            seed=args.seed,
            quiet=True,
            out=str(Path(args.out) / f"{stamp}-labels{labels}"),
        )
        total = time.perf_counter() - start
        s = run.summary
        m2_wall = total - s["baseline_seconds"]
        print(
            f"| {labels} | {alpha:.0f} | {s['test_accuracy']:.4f} | {s['baseline_accuracy']:.4f} | "
            f"{s['best_epoch']}/{s['epochs']} | {m2_wall:.0f} | {s['baseline_seconds']:.0f} |",
            flush=True,
        )
    network = f"hidden {s['hidden']}, latent {s['latent_dim']}"
    print(f"{network}; total wall time {time.perf_counter() - begin:.0f} s")


if __name__ == "__main__":
    main()
