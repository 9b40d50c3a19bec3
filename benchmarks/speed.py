"""Epoch time of pyrovae's SVI runner against a plain-PyTorch VAE with the same network.

    python benchmarks/speed.py            # Fashion-MNIST (if installed), several repeats
    python benchmarks/speed.py --quick    # a run of under a minute

(a) the floor: the VAE written directly in PyTorch (same MLPs, same single-sample ELBO
    estimator as Trace_ELBO: log p(x|z) + log p(z) - log q(z|x) at one reparameterized z,
    ``torch.optim.Adam(vae.parameters(), lr=1e-3)`` as a PyTorch user writes it);
(b) pyrovae's Trainer with Trace_ELBO and the default MLP Normal guide;
(c) a tighter floor for reference: (a) with the fused Adam kernel the runner uses, so that
    (b)/(c) is the cost of Pyro's tracing alone.
Epochs of (a), (b), (c) alternate in one process; the median ratios (b)/(a) (the target,
<= 1.15) and (b)/(c) are printed with samples per second and the achieved GFLOP/s (matrix
multiplies of forward and backward).
"""

import argparse
import math
import statistics
import time

import pyro
import torch
import torch.nn.functional as F

from pyrovae.data import load_dataset
from pyrovae.inference import TensorBatches, Trainer, TrainSettings
from pyrovae.models import VAE, MLPNormalGuide, ModelSpec


def load_benchmark_data(quick: bool) -> tuple[str, torch.Tensor]:
    """Binarized training rows: Fashion-MNIST when installed, else digits tiled to 60k."""
    try:
        data = load_dataset("fashion-mnist", download=False)
        name, x = "fashion-mnist", data.x_train
    except Exception:
        data = load_dataset("digits")
        name, x = "digits (tiled)", data.x_train.repeat(-(-60_000 // 1437), 1)[:60_000]
    if quick:
        x = x[:12_000]
    return name, torch.bernoulli(x, generator=torch.Generator().manual_seed(0))


class PlainVAE(torch.nn.Module):
    """The floor: the same encoder/decoder as pyrovae's VAE, loss written out by hand."""

    def __init__(self, model: VAE, guide: MLPNormalGuide):
        super().__init__()
        self.decoder, self.encoder = model.decoder, guide.encoder
        self.k = guide.latent_dim

    def loss(self, x: torch.Tensor) -> torch.Tensor:
        loc, raw_scale = self.encoder(x).split(self.k, dim=-1)
        scale = F.softplus(raw_scale) + 1e-4
        eps = torch.randn_like(loc)
        z = loc + scale * eps
        log_q = (-0.5 * eps**2 - scale.log() - 0.5 * math.log(2 * math.pi)).sum()
        log_p_z = (-0.5 * z**2 - 0.5 * math.log(2 * math.pi)).sum()
        log_p_x = -F.binary_cross_entropy_with_logits(self.decoder(z), x, reduction="sum")
        return -(log_p_x + log_p_z - log_q)


def plain_epoch(vae: PlainVAE, optimizer, batches: TensorBatches, epoch: int) -> float:
    total = 0.0
    for (x,) in batches.epoch(epoch):
        loss = vae.loss(x)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        total += loss.item()
    return total


def matmul_flops_per_epoch(spec: ModelSpec, n: int) -> float:
    """Forward + backward multiply-adds of the linear layers (x2 flops, backward = 2x)."""
    sizes_enc = [spec.x_dim, *spec.hidden, 2 * spec.latent_dim]
    sizes_dec = [spec.latent_dim, *reversed(spec.hidden), spec.x_dim]
    macs = sum(a * b for s in (sizes_enc, sizes_dec) for a, b in zip(s[:-1], s[1:], strict=False))
    return 3 * 2 * macs * n


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="12k rows, 5 repeats (< 1 min)")
    parser.add_argument("--repeats", type=int, default=5, help="alternating epoch pairs")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--hidden", type=int, default=400)
    parser.add_argument("--latent-dim", type=int, default=50)
    parser.add_argument("--elbo", default="trace")
    args = parser.parse_args()
    repeats = 5 if args.quick else args.repeats

    name, x = load_benchmark_data(args.quick)
    spec = ModelSpec(x_dim=x.shape[1], latent_dim=args.latent_dim, hidden=(args.hidden,))
    pyro.set_rng_seed(0)
    model, guide = VAE(spec), MLPNormalGuide(spec)
    plain_model, plain_guide = VAE(spec), MLPNormalGuide(spec)
    plain_model.load_state_dict(model.state_dict())
    plain_guide.load_state_dict(guide.state_dict())
    plain = PlainVAE(plain_model, plain_guide)
    plain_opt = torch.optim.Adam(plain.parameters(), lr=1e-3)
    fused_model, fused_guide = VAE(spec), MLPNormalGuide(spec)
    fused_model.load_state_dict(model.state_dict())
    fused_guide.load_state_dict(guide.state_dict())
    fused = PlainVAE(fused_model, fused_guide)
    fused_opt = torch.optim.Adam(fused.parameters(), lr=1e-3, fused=True)
    batches = TensorBatches(x, args.batch_size, seed=0)
    trainer = Trainer(
        model, guide, batches, TrainSettings(epochs=repeats, elbo=args.elbo, quiet=True)
    )

    floor, runner, fused_floor = [], [], []
    for epoch in range(repeats + 1):  # the first round warms up and is not counted
        start = time.perf_counter()
        plain_epoch(plain, plain_opt, batches, epoch)
        t_plain = time.perf_counter() - start
        start = time.perf_counter()
        trainer.train_epoch()
        trainer.epoch += 1
        t_runner = time.perf_counter() - start
        start = time.perf_counter()
        plain_epoch(fused, fused_opt, batches, epoch)
        t_fused = time.perf_counter() - start
        if epoch > 0:
            floor.append(t_plain)
            runner.append(t_runner)
            fused_floor.append(t_fused)
        print(
            f"epoch {epoch}: plain {t_plain:.2f} s  pyrovae {t_runner:.2f} s  "
            f"plain+fused Adam {t_fused:.2f} s"
        )

    ratio = statistics.median(r / f for r, f in zip(runner, floor, strict=True))
    fused_ratio = statistics.median(r / f for r, f in zip(runner, fused_floor, strict=True))
    t = statistics.median(runner)
    n = x.shape[0]
    print(
        f"data {name} ({n} x {x.shape[1]}), network {spec.x_dim}-{args.hidden}-"
        f"{args.latent_dim}, batch {args.batch_size}, {args.elbo}, "
        f"{torch.get_num_threads()} threads"
    )
    print(f"plain PyTorch epoch: {statistics.median(floor):.3f} s (median of {repeats})")
    print(f"pyrovae epoch:       {t:.3f} s")
    print(f"plain + fused Adam:  {statistics.median(fused_floor):.3f} s")
    print(f"ratio pyrovae/plain: {ratio:.3f}   (target <= 1.15)")
    print(f"ratio pyrovae/plain with fused Adam: {fused_ratio:.3f}   (Pyro's tracing alone)")
    print(f"pyrovae samples/s:   {n / t:,.0f}")
    print(f"pyrovae GFLOP/s:     {matmul_flops_per_epoch(spec, n) / t / 1e9:.1f}")


if __name__ == "__main__":
    main()
