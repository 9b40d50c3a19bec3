"""pyrovae's ssvae against Pyro's own M2 example, epoch for epoch, in one process.

    python benchmarks/ssvae_speed.py                 # Fashion-MNIST, 3000 labels, 6 epochs each
    python benchmarks/ssvae_speed.py --epochs 2      # a quick look
    python benchmarks/ssvae_speed.py --precisions float32   # without the bfloat16 run

The reference is ``examples/vae/ss_vae_M2.py`` of Pyro (pyro-ppl/pyro, Apache-2.0) with its
tutorial settings (``--enum-discrete parallel --aux-loss --aux-loss-multiplier 46 -lr 0.00042
-b1 0.95 -bs 200 -zd 50 -hl 500``), re-typed here because the examples are not installed with
pyro-ppl: the same model, guide and auxiliary program (one-hot ``y``, softplus MLPs over
concatenated inputs, ``TraceEnum_ELBO`` with parallel enumeration and a second ``SVI`` with
``Trace_ELBO`` for the classification loss, ``pyro.optim.Adam``), its batch schedule (every
labelled batch once per epoch, spread among the unlabelled ones) and its evaluation (accuracy
of q(y|x) on the validation and test rows). pyrovae's side is ``--model ssvae --hidden 500
--latent-dim 50 --batch-size 200 --labels 3000`` with its defaults, its epoch being the
training steps plus everything the runner does after them (validation and test ELBO, both
accuracies), once for each ``--precision`` in ``--precisions`` (default: float32 and
bfloat16; evaluation is float32 in both).

They alternate epoch by epoch, on the same labelled split (pyrovae's, class-balanced and
seeded), so that all see the same machine load. Printed: seconds per epoch (training, then
evaluation), the test accuracy after each epoch, the ratios of the median epoch times to
Pyro's, and the wall time each takes to reach the accuracy of the supervised-only baseline (the same
classifier network trained on the labelled rows alone; pyrovae's report computes it).
"""

import argparse
import statistics
import time

import pyro
import pyro.distributions as dist
import torch
from pyro.infer import SVI, Trace_ELBO, TraceEnum_ELBO, config_enumerate
from pyro.optim import Adam
from torch import nn

from pyrovae.folder.config import TrainConfig
from pyrovae.inference import Trainer
from pyrovae.runs.load import build_from_config

HIDDEN, LATENT, BATCH, LABELS, CLASSES = 500, 50, 200, 3000, 10


def softplus_mlp(sizes, output=None):
    layers = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(nn.Softplus())
    if output is not None:
        layers.append(output)
    return nn.Sequential(*layers)


class PyroExampleSSVAE(nn.Module):
    """The M2 model of Pyro's ``ss_vae_M2.py`` (one hidden layer, its activations)."""

    def __init__(self, x_dim: int, aux_loss_multiplier: float = 46.0):
        super().__init__()
        self.aux = aux_loss_multiplier
        self.encoder_y = softplus_mlp([x_dim, HIDDEN, CLASSES], nn.Softmax(dim=-1))
        self.encoder_z = softplus_mlp([x_dim + CLASSES, HIDDEN, 2 * LATENT])
        self.decoder = softplus_mlp([LATENT + CLASSES, HIDDEN, x_dim], nn.Sigmoid())

    @staticmethod
    def _cat(a, b):  # the example's ConcatModule with broadcasting
        shape = torch.broadcast_shapes(a.shape[:-1], b.shape[:-1])
        return torch.cat([a.expand(*shape, -1), b.expand(*shape, -1)], -1)

    def model(self, xs, ys=None):
        pyro.module("ss_vae", self)
        n = xs.shape[0]
        with pyro.plate("data"):
            zs = pyro.sample(
                "z", dist.Normal(xs.new_zeros(n, LATENT), xs.new_ones(n, LATENT)).to_event(1)
            )
            ys = pyro.sample("y", dist.OneHotCategorical(xs.new_ones(n, CLASSES) / CLASSES), obs=ys)
            loc = self.decoder(self._cat(zs, ys))
            pyro.sample("x", dist.Bernoulli(loc, validate_args=False).to_event(1), obs=xs)

    def guide(self, xs, ys=None):
        with pyro.plate("data"):
            if ys is None:
                ys = pyro.sample("y", dist.OneHotCategorical(self.encoder_y(xs)))
            loc, raw = self.encoder_z(self._cat(xs, ys)).split(LATENT, -1)
            pyro.sample("z", dist.Normal(loc, raw.exp()).to_event(1))

    def model_classify(self, xs, ys=None):
        pyro.module("ss_vae", self)
        with pyro.plate("data"):
            if ys is not None:
                with pyro.poutine.scale(scale=self.aux):
                    pyro.sample("y_aux", dist.OneHotCategorical(self.encoder_y(xs)), obs=ys)

    def guide_classify(self, xs, ys=None):
        pass


class PyroExample:
    """Training and evaluation as in ``ss_vae_M2.py``'s ``main``."""

    def __init__(self, x_l, y_l, x_u, x_val, y_val, x_test, y_test, seed: int):
        pyro.set_rng_seed(seed)
        self.net = PyroExampleSSVAE(x_l.shape[1])
        self.x_l, self.y_l = x_l, nn.functional.one_hot(y_l, CLASSES).float()
        self.x_u = x_u
        self.x_val, self.y_val, self.x_test, self.y_test = x_val, y_val, x_test, y_test
        optim = Adam({"lr": 0.00042, "betas": (0.95, 0.999)})
        guide = config_enumerate(self.net.guide, "parallel", expand=True)
        elbo = TraceEnum_ELBO(max_plate_nesting=1, strict_enumeration_warning=False)
        self.losses = [
            SVI(self.net.model, guide, optim, loss=elbo),
            SVI(self.net.model_classify, self.net.guide_classify, optim, loss=Trace_ELBO()),
        ]
        self.seed = seed

    def train_epoch(self, epoch: int) -> None:
        g = torch.Generator().manual_seed(self.seed + epoch)
        sup = self.x_l.shape[0] // BATCH
        unsup = self.x_u.shape[0] // BATCH
        periodic = (sup + unsup) // sup
        perm_l = torch.randperm(self.x_l.shape[0], generator=g)
        perm_u = torch.randperm(self.x_u.shape[0], generator=g)
        i_l = i_u = 0
        for i in range(sup + unsup):
            if i % periodic == 1 and i_l < sup:
                idx = perm_l[i_l * BATCH : (i_l + 1) * BATCH]
                args = (self.x_l[idx], self.y_l[idx])
                i_l += 1
            else:
                idx = perm_u[i_u * BATCH : (i_u + 1) * BATCH]
                args = (self.x_u[idx],)
                i_u += 1
            for loss in self.losses:
                loss.step(*args)

    @torch.no_grad()
    def evaluate(self) -> tuple[float, float]:
        accuracies = []
        for x, y in ((self.x_val, self.y_val), (self.x_test, self.y_test)):
            hits = 0
            for xb, yb in zip(x.split(BATCH), y.split(BATCH), strict=True):
                hits += int((self.net.encoder_y(xb).argmax(-1) == yb).sum())
            accuracies.append(hits / x.shape[0])
        return tuple(accuracies)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--data-root", default="/usr/share/datasets/fashion-mnist")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--precisions", nargs="+", default=["float32", "bfloat16"])
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    trainers = {}
    for precision in args.precisions:
        config = TrainConfig(
            model="ssvae",
            dataset="fashion-mnist",
            data_root=args.data_root,
            hidden=(HIDDEN,),
            latent_dim=LATENT,
            batch_size=BATCH,
            seed=args.seed,
            epochs=args.epochs,
            quiet=True,
            precision=precision,
            options={"labels": LABELS},
        )
        trainers[f"pyrovae {precision}"] = pyrovae_trainer(config)
    trainer = next(iter(trainers.values()))
    model, data, recipe, config = trainer.model, trainer.data, trainer.recipe, trainer.config
    labelled, unlabelled = recipe.label_split(data, config)
    x_val = data.x_val if data.x_val_gray is None else data.x_val_gray
    x_test = data.x_test if data.x_test_gray is None else data.x_test_gray
    reference = PyroExample(
        data.x_train[labelled],
        data.y_train[labelled],
        data.x_train[unlabelled],
        x_val,
        data.y_val,
        x_test,
        data.y_test,
        args.seed,
    )
    baseline = recipe.train_baseline(model, data, config)["baseline_accuracy"]
    print(
        f"Fashion-MNIST, {LABELS} labels, hidden {HIDDEN}, z {LATENT}, batch {BATCH}, torch "
        f"threads {torch.get_num_threads()}; baseline test accuracy {baseline:.4f}"
    )
    names = ["Pyro example", *trainers]
    print("| epoch | " + " | ".join(f"{n} train + eval (s) | test acc." for n in names) + " |")
    print("| --- " * (1 + 2 * len(names)) + "|")
    times = {name: [] for name in names}
    reached = dict.fromkeys(names)
    elapsed = dict.fromkeys(names, 0.0)
    for epoch in range(args.epochs):
        cells = []
        for name in names:
            start = time.perf_counter()
            if name == "Pyro example":
                reference.train_epoch(epoch)
                middle = time.perf_counter()
                _, test_accuracy = reference.evaluate()
            else:
                trainer = trainers[name]
                trainer.train_epoch()
                trainer.epoch += 1
                middle = time.perf_counter()
                trainer.evaluate(trainer.val_x), trainer.evaluate(trainer.test_x)
                test_accuracy = trainer.epoch_metrics()["test_accuracy"]
            train_s, eval_s = middle - start, time.perf_counter() - middle
            times[name].append(train_s + eval_s)
            elapsed[name] += train_s + eval_s
            if reached[name] is None and test_accuracy >= baseline:
                reached[name] = (epoch + 1, elapsed[name])
            cells.append(f"{train_s:.1f} + {eval_s:.1f} | {test_accuracy:.4f}")
        print(f"| {epoch + 1} | " + " | ".join(cells) + " |", flush=True)
    pyro_median = statistics.median(times["Pyro example"])
    for name in names:
        median = statistics.median(times[name])
        hit = reached[name]
        what = "not reached" if hit is None else f"epoch {hit[0]}, {hit[1]:.0f} s"
        print(
            f"{name}: median epoch {median:.2f} s (ratio to Pyro's {median / pyro_median:.3f}); "
            f"baseline accuracy {baseline:.4f} {what}"
        )


def pyrovae_trainer(config):
    """A runner for ``config`` as ``pyrovae.train`` builds it, without a run folder; the
    built parts (``model``, ``data``, ``recipe``, the resolved ``config``) ride along."""
    built = build_from_config(config)
    config, data, recipe = built.config, built.data, built.recipe
    model, guide = built.model, built.guide
    recipe.setup(model, guide, data, config)
    trainer = Trainer(
        model,
        guide,
        recipe.batches(data, config, built.device),
        config.settings(),
        val_x=data.x_val,
        test_x=data.x_test,
        epoch_metrics=lambda: recipe.epoch_metrics(model, guide, data, config),
    )
    trainer.data, trainer.recipe, trainer.config = data, recipe, config
    return trainer


if __name__ == "__main__":
    main()
