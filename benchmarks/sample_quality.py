"""Sample quality on the digits and on Fashion-MNIST: Fréchet distance and precision/recall.

    python benchmarks/sample_quality.py --data-root /usr/share/datasets/fashion-mnist
    python benchmarks/sample_quality.py --datasets digits --digits-epochs 20   # a quick look

Per data set, the default VAE (MLP networks), the convolutional VAE (``--net conv``) and a
default VAE trained for one epoch are trained with ``pyrovae.train`` (seed 0) and scored
with ``pyrovae.diagnose`` (sample quality only: no IWAE, NUTS, amortization gap or PPC). In
the features of the classifier trained on the data set's labelled training rows, each row of
the table compares a set of images with the first ``--quality-rows`` test images: training
images (the floor), each model's prior samples and reconstructions (decoder means), and
uniform noise. Printed as a Markdown table; results go to ``--out``/results.jsonl as they
come, and runs already there are not trained again.
"""

import argparse
import json
import time
from pathlib import Path

import torch

import pyrovae

MODELS = {
    "default VAE": dict(),
    "conv VAE": dict(net="conv"),
    "default VAE, one epoch": dict(epochs=1),
}
HEADER = (
    "| data set | images against the test images | Fréchet distance | precision | recall |\n"
    "| --- | --- | --- | --- | --- |"
)


def run_one(name: str, dataset: str, epochs: int, args, out: Path) -> dict:
    folder = out / f"{dataset}-{name.replace(' ', '_').replace(',', '')}"
    options = {"epochs": epochs, **MODELS[name]}
    start = time.perf_counter()
    pyrovae.train(
        dataset=dataset,
        data_root=args.data_root if dataset != "digits" else None,
        quiet=True,
        seed=0,
        out=str(folder),
        **options,
    )
    trained = time.perf_counter() - start
    start = time.perf_counter()
    result = pyrovae.diagnose(
        folder,
        iwae_samples=0,
        nuts_points=0,
        amortization_points=0,
        ppc=False,
        quality_rows=args.quality_rows,
    )
    return {
        "dataset": dataset,
        "model": name,
        "epochs": options["epochs"],
        "train_seconds": trained,
        "diagnose_seconds": time.perf_counter() - start,
        "classifier_accuracy": result["quality_classifier_test_accuracy"],
        "rows": result["quality_rows"],
        "sample_quality": result["sample_quality"],
    }


def table(results: list[dict]) -> str:
    lines = [HEADER]

    def row(dataset, label, v):
        lines.append(
            f"| {dataset} | {label} | {v['frechet_distance']:.2f} | {v['precision']:.2f} "
            f"| {v['recall']:.2f} |"
        )

    for dataset in dict.fromkeys(r["dataset"] for r in results):
        mine = [r for r in results if r["dataset"] == dataset]
        row(dataset, "training images (floor)", mine[0]["sample_quality"]["test_vs_train"])
        for r in mine:
            label = f"{r['model']} ({r['epochs']} epochs)"
            row(dataset, f"{label}: prior samples", r["sample_quality"]["prior_samples"])
            row(dataset, f"{label}: reconstructions", r["sample_quality"]["reconstructions"])
        row(dataset, "uniform noise", mine[0]["sample_quality"]["noise"])
    return "\n".join(lines)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-root", default="/usr/share/datasets/fashion-mnist")
    parser.add_argument("--datasets", nargs="+", default=["digits", "fashion-mnist"])
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--digits-epochs", type=int, default=200)
    parser.add_argument("--fashion-epochs", type=int, default=2)
    parser.add_argument("--quality-rows", type=int, default=2000)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default="benchmarks/out/sample_quality")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    log = out / "results.jsonl"
    done = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
    for dataset in args.datasets:
        epochs = args.digits_epochs if dataset == "digits" else args.fashion_epochs
        for name in args.models:
            if any(r["dataset"] == dataset and r["model"] == name for r in done):
                continue
            result = run_one(name, dataset, epochs, args, out)
            done.append(result)
            with log.open("a") as f:
                f.write(json.dumps(result) + "\n")
            print(
                f"{dataset} / {name}: trained in {result['train_seconds']:.0f} s, "
                f"diagnosed in {result['diagnose_seconds']:.1f} s",
                flush=True,
            )
    results = [r for r in done if r["dataset"] in args.datasets]
    print(table(results))
    for dataset in args.datasets:
        accuracy = next(r["classifier_accuracy"] for r in results if r["dataset"] == dataset)
        print(f"{dataset}: classifier test accuracy {accuracy:.3f}")


if __name__ == "__main__":
    main()
