"""Time of the IWAE bound (K importance samples per row) against plain PyTorch.

    python benchmarks/iwae_speed.py                  # Fashion-MNIST test set, K = 1000
    python benchmarks/iwae_speed.py --quick          # 1000 rows, under a minute
    python benchmarks/iwae_speed.py --run RUN_DIR    # a trained run's pair and test rows

(a) pyrovae: ``importance_weights`` traces the guide under a vectorized particle plate and
    scores the draws under the model, per row, for any Pyro pair;
(b) the floor: the same VAE written directly in PyTorch: the encoder once per row, K
    reparameterized draws, the decoder on the K x N draws, the Bernoulli and Normal log
    densities, ``log w = log p(x|z) + log p(z) - log q(z|x)``; the same chunks of rows and
    particles as (a), under ``torch.no_grad()``.
Blocks of rows alternate between (a) and (b) in one process; the ratio of total times
(a)/(b) and the median ratio per block are printed (target <= 1.5), with rows x samples
per second, the achieved GFLOP/s of the decoder's matrix multiplies (the bulk of the work)
and the two IWAE estimates.
"""

import argparse
import math
import statistics
import time

import pyro
import torch
import torch.nn.functional as F

from pyrovae.data import binarize, load_dataset
from pyrovae.inference.diagnostics.importance import (
    DEFAULT_MAX_ELEMENTS,
    chunk_sizes,
    importance_weights,
)
from pyrovae.inference.diagnostics.memory import retain_freed_memory
from pyrovae.inference.diagnostics.structure import inspect_pair
from pyrovae.models import VAE, MLPNormalGuide, ModelSpec

LOG_2PI = math.log(2 * math.pi)


def load_pair(args):
    """``(model, guide, x_test, description)``: a trained run's, or a fresh 784-400-50 VAE."""
    if args.run:
        import pyrovae

        run = pyrovae.load_run(args.run)
        return run.model, run.guide, run.data.x_test, f"run {args.run}"
    data = load_dataset("fashion-mnist", download=False)
    x = binarize(data.x_test, torch.Generator().manual_seed(20141220))
    spec = ModelSpec(x_dim=x.shape[1], latent_dim=args.latent_dim, hidden=(args.hidden,))
    pyro.set_rng_seed(0)
    return VAE(spec), MLPNormalGuide(spec), x, "fresh VAE, Fashion-MNIST test rows"


@torch.no_grad()
def plain_log_weights(model: VAE, guide: MLPNormalGuide, x: torch.Tensor, k: int, particles: int):
    """``(N, K)`` log-weights of the MLP VAE written out in PyTorch."""
    loc, scale = guide.encode(x)  # (N, k) each: once per row
    parts = []
    for done in range(0, k, particles):
        eps = torch.randn(min(particles, k - done), *loc.shape)
        z = loc + scale * eps
        log_q = (-0.5 * eps**2 - scale.log() - 0.5 * LOG_2PI).sum(-1)
        log_p_z = (-0.5 * z**2 - 0.5 * LOG_2PI).sum(-1)
        logits = model.decoder(z)
        log_p_x = -F.binary_cross_entropy_with_logits(
            logits, x.expand_as(logits), reduction="none"
        ).sum(-1)
        parts.append(log_p_x + log_p_z - log_q)
    return torch.cat(parts).T


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", help="a run folder (default: a fresh 784-400-50 VAE)")
    parser.add_argument("--samples", type=int, default=1000, help="K importance samples per row")
    parser.add_argument("--rows", type=int, default=None, help="test rows (default: all)")
    parser.add_argument("--quick", action="store_true", help="1000 rows")
    parser.add_argument("--hidden", type=int, default=400)
    parser.add_argument("--latent-dim", type=int, default=50)
    args = parser.parse_args()
    retain_freed_memory()  # as pyrovae.diagnose does, for both (a) and (b)
    model, guide, x, what = load_pair(args)
    rows = 1000 if args.quick else args.rows
    if rows:
        x = x[:rows]
    n, width, k = x.shape[0], x.shape[1], args.samples
    structure = inspect_pair(model, guide, x)
    rows_per_pass, particles = chunk_sizes(n, k, width, DEFAULT_MAX_ELEMENTS)
    block = max(rows_per_pass, 500 // rows_per_pass * rows_per_pass)
    ours_times, plain_times = [], []
    ours, plain = [], []
    warm = x[:rows_per_pass]
    importance_weights(model, guide, warm, min(k, particles), structure)
    plain_log_weights(model, guide, warm, min(k, particles), particles)
    for start in range(0, n, block):
        batch = x[start : start + block]
        t = time.perf_counter()
        # Validation off: ``importance_weights`` checks the arguments of its first pass only,
        # which a whole-test-set call does once, not once per block as here.
        with pyro.validation_enabled(False):
            ours.append(importance_weights(model, guide, batch, k, structure).iwae())
        ours_times.append(time.perf_counter() - t)
        t = time.perf_counter()
        lw = torch.cat(
            [
                plain_log_weights(model, guide, batch[i : i + rows_per_pass], k, particles)
                for i in range(0, batch.shape[0], rows_per_pass)
            ]
        )
        plain.append(lw.double().logsumexp(-1) - math.log(k))
        plain_times.append(time.perf_counter() - t)
    ours_s, plain_s = sum(ours_times), sum(plain_times)
    ratios = [a / b for a, b in zip(ours_times, plain_times, strict=True)]
    ours_iwae, plain_iwae = torch.cat(ours), torch.cat(plain)
    decoder = [
        guide.latent_dim,
        *[m.out_features for m in model.decoder if hasattr(m, "out_features")],
    ]
    macs = sum(a * b for a, b in zip(decoder[:-1], decoder[1:], strict=False))
    print(
        f"{what}: {n} rows x K = {k} samples, network {width}-"
        f"{'-'.join(str(h) for h in decoder[1:-1])}-{guide.latent_dim}, "
        f"{torch.get_num_threads()} threads, {rows_per_pass} rows x {particles} samples a pass"
    )
    print(f"pyrovae importance_weights: {ours_s:.1f} s   ({n * k / ours_s:,.0f} rows x samples/s)")
    print(
        f"plain PyTorch:              {plain_s:.1f} s   ({n * k / plain_s:,.0f} rows x samples/s)"
    )
    print(
        f"ratio pyrovae/plain:        {ours_s / plain_s:.3f} of the totals, "
        f"{statistics.median(ratios):.3f} median of {len(ratios)} alternating blocks "
        "(target <= 1.5)"
    )
    print(f"decoder GFLOP/s (pyrovae):  {2 * macs * n * k / ours_s / 1e9:.1f}")
    difference = ours_iwae - plain_iwae
    print(
        f"IWAE estimate: pyrovae {float(ours_iwae.mean()):.3f}, "
        f"plain {float(plain_iwae.mean()):.3f} nats/example; difference "
        f"{float(difference.mean()):+.4f} +- {float(difference.std() / math.sqrt(n)):.4f}"
    )


if __name__ == "__main__":
    main()
