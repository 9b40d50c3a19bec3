"""How good a teacher M2's generative model is: its own class posterior against q(y|x).

    python benchmarks/ssvae_teacher.py                     # Fashion-MNIST, 100 and 3000 labels
    python benchmarks/ssvae_teacher.py --dataset digits --epochs 50
    python benchmarks/ssvae_teacher.py --epochs 20 --latent-dims 2 10 32   # the size of z
    python benchmarks/ssvae_teacher.py --runs runs/benchmark-ssvae/*/seed0/m2-labels3000

For an unlabelled row the M2 objective pulls q(y|x) towards the model's own posterior over
classes, p(y|x) proportional to p(y) p(x|y). Where that posterior classifies worse than
q(y|x) already does from the labels, the unlabelled rows cannot raise q(y|x)'s accuracy.
For each label count the script trains ``--model ssvae`` with its defaults for ``--epochs``
epochs and scores, on the fixed binarization of the test rows:

- the accuracy of q(y|x) (argmax of the classifier);
- the accuracy of the generative model's posterior, argmax_y of an importance-sampled
  estimate of log p(x, y) = logsumexp_s [log p(x, y, z_s) - log q(z_s | x, y)] - log S,
  with S = ``--samples`` draws z_s from q(z | x, y) (the importance weights of ``diagnose``,
  with y observed);
- how often the two agree;

and, from the run's summary, q(y|x)'s test accuracy at the kept epoch (gray levels, as
``benchmarks/ssvae_labels.py`` reports it) and its labels-only baseline's. ``--latent-dims``
repeats every label count for each size of z (default: the ssvae's own). ``--runs`` scores
finished ssvae run folders instead of training new ones (any network, e.g. ``--net conv``).
"""

import argparse
import itertools
import time
from pathlib import Path

import pyro.poutine as poutine
import torch

import pyrovae
from pyrovae.errors import PyrovaeError
from pyrovae.inference.diagnostics.importance import importance_weights
from pyrovae.inference.diagnostics.structure import inspect_pair


def log_joint(model, guide, x: torch.Tensor, y: torch.Tensor, samples: int, structure):
    """Importance-sampled estimate of log p(x, y) per row, ``(n,)`` nats: the IWAE bound of
    the model with ``y`` observed and ``samples`` draws of z from q(z | x, y), without the
    auxiliary site ``"y_aux"`` (alpha log q(y|x), not a density of the model)."""
    generative = poutine.block(model, hide=["y_aux"])
    return importance_weights(generative, guide, x, samples, structure, row_args=(y,)).iwae()


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", default="fashion-mnist")
    parser.add_argument("--data-root", default="/usr/share/datasets/fashion-mnist")
    parser.add_argument("--labels", type=int, nargs="+", default=[100, 3000])
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--samples", type=int, default=8, help="draws of z per row and class")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--latent-dims", type=int, nargs="+", default=[None], help="sizes of z")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--out", default="runs/benchmark-ssvae-teacher")
    parser.add_argument(
        "--runs", nargs="+", default=None, help="score these ssvae run folders; train none"
    )
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    data_root = args.data_root if args.dataset in ("mnist", "fashion-mnist") else None
    out = Path(args.out) / time.strftime("%Y%m%d-%H%M%S")
    if args.runs:
        print(
            f"finished ssvae runs; test rows (fixed binarization), {args.samples} draws of z "
            "per row and class"
        )
    else:
        print(
            f"{args.dataset}: ssvae defaults{'' if args.latent_dims == [None] else ' but z'}, "
            f"{args.epochs} epochs, seed {args.seed}; test rows "
            f"(fixed binarization), {args.samples} draws of z per row and class"
        )
    print(
        "| labels | z | q(y\\|x) accuracy | generative p(y\\|x) accuracy | agreement "
        "| M2 (kept epoch, gray levels) | baseline |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- |")
    if args.runs:
        for folder in args.runs:
            print_row(load_ssvae_run(folder), args.samples)
        return
    for labels, latent_dim in itertools.product(args.labels, args.latent_dims):
        run = pyrovae.train(
            model="ssvae",
            dataset=args.dataset,
            data_root=data_root,
            labels=labels,
            latent_dim=latent_dim,
            epochs=args.epochs,
            patience=0,
            seed=args.seed,
            quiet=True,
            out=str(out / f"seed{args.seed}-labels{labels}-z{latent_dim or 'default'}"),
        )
        print_row(run, args.samples)


def load_ssvae_run(folder: str):
    """The run in ``folder``; a missing, broken or non-ssvae folder ends in one line."""
    try:
        run = pyrovae.load_run(folder)
    except PyrovaeError as error:
        raise SystemExit(f"--runs {folder}: {error}") from None
    if run.summary.get("model") != "ssvae":
        raise SystemExit(f"--runs {folder} is a {run.summary.get('model')} run; give ssvae runs")
    return run


def print_row(run, samples: int) -> None:
    """Score one trained ssvae run on its test rows and print its Markdown row."""
    x, y = run.data.x_test, run.data.y_test
    ssvae = getattr(run.model, "__self__", run.model)  # the module of a bound method
    with torch.no_grad():
        predicted = ssvae.classifier(x).argmax(-1)
    structure = inspect_pair(run.model, run.guide, x)
    scores = torch.stack(
        [
            log_joint(run.model, run.guide, x, torch.full_like(y, k), samples, structure)
            for k in range(ssvae.num_classes)
        ]
    )
    generative = scores.argmax(0)
    print(
        f"| {run.summary['labels']} | {ssvae.latent_dim} | {(predicted == y).double().mean():.4f} "
        f"| {(generative == y).double().mean():.4f} "
        f"| {(generative == predicted).double().mean():.4f} "
        f"| {run.summary['test_accuracy']:.4f} | {run.summary['baseline_accuracy']:.4f} |",
        flush=True,
    )


if __name__ == "__main__":
    main()
