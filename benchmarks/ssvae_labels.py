"""M2 and M1+M2 (semi-supervised VAEs) against the supervised-only baseline, by label count.

    python benchmarks/ssvae_labels.py                            # Fashion-MNIST, 20 epochs
    python benchmarks/ssvae_labels.py --dataset digits --epochs 100
    python benchmarks/ssvae_labels.py --epochs 3 --labels 100    # a quick look
    python benchmarks/ssvae_labels.py --m2-only --seeds 1 2      # M2 against its baseline

Every run uses the ssvae's defaults (alpha included); only the label count, the epochs and
``patience 0`` are given. For each label count N the script trains

- M2: ``--model ssvae --labels N`` on the pixels;
- M1+M2: ``--model ssvae --labels N --features M1`` on the posterior means of M1, a default
  ``--model vae`` run on the same data set trained once for ``--m1-epochs`` epochs (Kingma et
  al., 2014, stack the two the same way: M1's features computed once, then M2 on them);

and reads from each summary.json the test accuracy of q(y|x) at the epoch the run keeps (the
best validation accuracy, the baseline's own rule; also, from the history, at the last
epoch) and the baseline's: the same classifier network trained on the N labelled rows alone
(pixels for M2, M1's features for M1+M2). It prints one Markdown row per N with the seconds
per training epoch and per evaluation, and the wall time (training and evaluation) until
M2's test accuracy first reached the baseline's (never: "-").

With several ``--seeds`` (each seed draws its own labelled rows, initial weights and batches,
for M2 and its baseline alike) it prints a row per seed and label count, then the mean and
the sample standard deviation over the seeds of M2's accuracy minus its baseline's.
``--m2-only`` leaves out M1 and M1+M2. ``--net conv`` trains M1 and M2 on the pixels (and
so the baseline, M2's classifier) with the convolutional networks; M1+M2 keeps the MLPs.
"""

import argparse
import time
from pathlib import Path

import torch

import pyrovae


def seconds_per_epoch(run) -> tuple[float, float]:
    """Mean seconds of a training epoch and of its evaluation, from the run's history."""
    history = run.history
    train = sum(r["seconds"] for r in history) / len(history)
    evaluation = sum(r.get("eval_seconds", 0.0) for r in history) / len(history)
    return train, evaluation


def seconds_to_baseline(run) -> str:
    """Wall seconds (training and evaluation) until the first epoch whose test accuracy
    reached the baseline's, as text; "-" when none did."""
    elapsed = 0.0
    for row in run.history:
        elapsed += row["seconds"] + row.get("eval_seconds", 0.0)
        if row["test_accuracy"] >= run.summary["baseline_accuracy"]:
            return f"{elapsed:.0f} (epoch {row['epoch']})"
    return "-"


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", default="fashion-mnist")
    parser.add_argument("--data-root", default="/usr/share/datasets/fashion-mnist")
    parser.add_argument("--labels", type=int, nargs="+", default=[100, 1000, 3000])
    parser.add_argument("--epochs", type=int, default=20, help="M2 epochs per label count")
    parser.add_argument("--m1-epochs", type=int, default=20, help="epochs of the M1 VAE")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--m2-only", action="store_true", help="leave out M1 and M1+M2")
    parser.add_argument(
        "--net", default="mlp", choices=("mlp", "conv"), help="networks of M1 and of M2 on pixels"
    )
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: all)")
    parser.add_argument("--out", default="runs/benchmark-ssvae", help="folder for the runs")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    data_root = args.data_root if args.dataset in ("mnist", "fashion-mnist") else None
    out = Path(args.out) / time.strftime("%Y%m%d-%H%M%S")
    margins = {labels: [] for labels in args.labels}
    for seed in args.seeds:
        common = dict(dataset=args.dataset, data_root=data_root, seed=seed, quiet=True)
        for labels, margin in compare(args, common, out / f"seed{seed}").items():
            margins[labels].append(margin)
    if len(args.seeds) > 1:
        print(f"\nM2 minus baseline over seeds {' '.join(map(str, args.seeds))}:")
        print("| labels | mean | standard deviation | per seed |")
        print("| --- | --- | --- | --- |")
        for labels, values in margins.items():
            spread = torch.tensor(values, dtype=torch.float64)
            each = " ".join(f"{v:+.4f}" for v in values)
            print(f"| {labels} | {spread.mean():+.4f} | {spread.std():.4f} | {each} |")


def compare(args, common: dict, out: Path) -> dict[int, float]:
    """Train and print the rows of one seed; returns M2's accuracy minus its baseline's
    for each label count."""
    seed = common["seed"]
    m1_out = None
    if not args.m2_only:
        start = time.perf_counter()
        m1_out = str(out / "m1")
        m1 = pyrovae.train(
            model="vae", epochs=args.m1_epochs, patience=0, net=args.net, out=m1_out, **common
        )
        m1_seconds = time.perf_counter() - start
    print(
        f"{args.dataset}: M2{'' if args.m2_only else ' and M1+M2'} for {args.epochs} epochs "
        f"each with the ssvae defaults (patience 0, --net {args.net}, seed {seed}, torch "
        f"threads {torch.get_num_threads()})"
        + (
            ""
            if args.m2_only
            else f"; M1: the default VAE, {args.m1_epochs} epochs, test ELBO "
            f"{m1.summary['test_elbo']:.2f}, {m1_seconds:.0f} s"
        )
    )
    print(
        "| labels | M2 | M2, last epoch | baseline (pixels) | M1+M2 | baseline (M1 features) "
        "| M2 alpha | M2 s/epoch (train + eval) | M2 s to baseline | M1+M2 s/epoch |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    margins = {}
    for labels in args.labels:
        # M1's features are not images: M1+M2 keeps the MLPs.
        variants = [("m2", {"net": args.net})]
        variants += [] if args.m2_only else [("m1m2", {"features": m1_out})]
        runs = {
            name: pyrovae.train(
                model="ssvae",
                labels=labels,
                epochs=args.epochs,
                patience=0,
                out=str(out / f"{name}-labels{labels}"),
                **extra,
                **common,
            )
            for name, extra in variants
        }
        m2 = runs["m2"].summary
        margins[labels] = m2["test_accuracy"] - m2["baseline_accuracy"]
        m2_train, m2_eval = seconds_per_epoch(runs["m2"])
        stacked = ("-", "-", "-")
        if "m1m2" in runs:
            m1m2 = runs["m1m2"].summary
            stack_train, stack_eval = seconds_per_epoch(runs["m1m2"])
            stacked = (
                f"{m1m2['test_accuracy']:.4f}",
                f"{m1m2['baseline_accuracy']:.4f}",
                f"{stack_train:.1f} + {stack_eval:.1f}",
            )
        print(
            f"| {labels} | {m2['test_accuracy']:.4f} "
            f"| {runs['m2'].history[-1]['test_accuracy']:.4f} | {m2['baseline_accuracy']:.4f} "
            f"| {stacked[0]} | {stacked[1]} "
            f"| {m2['alpha']:.0f} | {m2_train:.1f} + {m2_eval:.1f} "
            f"| {seconds_to_baseline(runs['m2'])} | {stacked[2]} |",
            flush=True,
        )
    return margins


if __name__ == "__main__":
    main()
