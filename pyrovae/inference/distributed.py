"""Data-parallel training over the processes that ``torchrun`` starts.

Each of the N ranks holds the whole model and guide; every global minibatch of B rows is
split into N shards (``tensor_split``), each rank computes the ELBO of its shard, and
PyTorch's ``DistributedDataParallel`` averages the gradients. The runner's loss is a sum
over the minibatch (nats), so each rank scales its loss by N before the backward pass:
the averaged gradient is then exactly the gradient of the whole minibatch's loss, and a
run on N processes takes the same steps as one process with the same ``--batch-size``
(up to the random draws of z, which each rank makes for its own rows).
"""

import os
from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.distributed as dist

from pyrovae.errors import PyrovaeError
from pyrovae.inference.checkpoint import save_checkpoint
from pyrovae.inference.elbos import is_jit
from pyrovae.inference.evaluate import evaluate_elbo
from pyrovae.inference.runner import Trainer

TORCHRUN_VARIABLES = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")


@dataclass
class Distributed:
    """This process's place in the process group.

    :param rank: this process's index in ``0 .. world_size - 1``; rank 0 writes the run folder.
    :param world_size: number of processes N.
    :param device: the device this rank trains on (``cuda:LOCAL_RANK`` on GPUs).
    """

    rank: int
    world_size: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def shard(self, x: torch.Tensor | None) -> torch.Tensor | None:
        """This rank's rows of ``x: (B, ...)``: the ``rank``-th of N near-equal slices."""
        if x is None:
            return None
        return x.tensor_split(self.world_size)[self.rank]

    def sum(self, value: float | torch.Tensor) -> float:
        """The sum of ``value`` over all ranks (a float on every rank)."""
        t = torch.as_tensor(value, dtype=torch.float64, device=self._comm_device).reshape(1)
        dist.all_reduce(t)
        return float(t)

    def average_gradients(self, params: list[torch.Tensor]) -> None:
        """Average the gradients of ``params`` that DDP does not manage (``pyro.param``)."""
        for p in params:
            if p.grad is not None:
                dist.all_reduce(p.grad)
                p.grad.div_(self.world_size)

    def broadcast(self, obj):
        """Rank 0's ``obj`` on every rank (any picklable object)."""
        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def gather(self, obj) -> list | None:
        """Every rank's ``obj`` as a list on rank 0 (None elsewhere)."""
        out = [None] * self.world_size if self.is_main else None
        dist.gather_object(obj, out, dst=0)
        return out

    def barrier(self) -> None:
        dist.barrier()

    @property
    def _comm_device(self) -> torch.device:
        return self.device if dist.get_backend() == "nccl" else torch.device("cpu")


def init_distributed(device: str) -> Distributed:
    """Join the process group that ``torchrun`` set up (``gloo`` on CPU, ``nccl`` on GPU).

    :param device: ``cpu``, ``cuda`` or ``auto``; with CUDA each rank takes the GPU
        ``LOCAL_RANK``.
    """
    missing = [v for v in TORCHRUN_VARIABLES if v not in os.environ]
    if missing:
        raise PyrovaeError(
            "--distributed needs the process group that torchrun sets up "
            f"({', '.join(missing)} not set); start it as "
            "torchrun --nproc_per_node=N scripts/train_svi.py ... --distributed"
        )
    local_rank = int(os.environ["LOCAL_RANK"])
    use_cuda = device.startswith("cuda") or (device == "auto" and torch.cuda.is_available())
    if use_cuda:
        if not torch.cuda.is_available():
            raise PyrovaeError(
                "--device cuda was asked for but torch sees no GPU; use --device cpu"
            )
        torch_device = torch.device("cuda", local_rank)
        torch.cuda.set_device(torch_device)
        backend = "nccl"
    else:
        torch_device, backend = torch.device("cpu"), "gloo"
    if not dist.is_initialized():
        dist.init_process_group(backend)
    return Distributed(dist.get_rank(), dist.get_world_size(), torch_device)


def shutdown_distributed() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


class ShardedBatches:
    """Each global minibatch of ``batches``, cut down to this rank's shard.

    Every rank draws the same epoch permutation (``batches`` is seeded by epoch), so the
    shards of one step partition the global minibatch.
    """

    def __init__(self, batches, group: Distributed):
        if getattr(batches, "batch_size", group.world_size) < group.world_size:
            raise PyrovaeError(
                f"--batch-size {batches.batch_size} is smaller than the {group.world_size} "
                "processes; each process needs at least one row of every batch"
            )
        self.batches, self.group = batches, group

    @property
    def num_examples(self) -> int:
        return self.batches.num_examples

    def __len__(self) -> int:
        return len(self.batches)

    def epoch(self, epoch: int) -> Iterator[tuple]:
        for args in self.batches.epoch(epoch):
            if args[0].shape[0] < self.group.world_size:
                continue  # a last batch with fewer rows than processes: skipped on every rank
            yield tuple(self.group.shard(a) for a in args)


class DistributedTrainer(Trainer):
    """The runner on one rank of a ``torchrun`` process group.

    Training batches and evaluation rows are sharded over the ranks, DDP averages the
    gradients of the modules (``pyro.param`` sites outside modules are averaged by hand),
    the ranks' losses and ELBOs are summed, and only rank 0 writes checkpoints and calls
    ``on_epoch``. The checkpoint carries every rank's random state.

    :param group: this process's :class:`Distributed` place; other arguments as
        :class:`~pyrovae.inference.runner.Trainer`.
    """

    def __init__(self, model, guide, batches, settings, *, group: Distributed, **kwargs):
        if is_jit(settings.elbo):
            raise PyrovaeError(
                "--distributed works with the eager ELBOs (trace, meanfield, tracegraph, enum); "
                f"drop the jit- prefix of --elbo {settings.elbo}"
            )
        self.group = group
        self.is_main = group.is_main
        super().__init__(model, guide, ShardedBatches(batches, group), settings, **kwargs)
        if not any(p.requires_grad for p in self.objective.parameters()):
            raise PyrovaeError(
                "--distributed needs a model or guide that is an nn.Module with parameters"
            )
        managed = {id(p) for p in self.objective.parameters()}
        self._unmanaged = [p for p in self.parameters if id(p) not in managed]
        self.objective = torch.nn.parallel.DistributedDataParallel(
            self.objective,
            device_ids=[group.device.index] if group.device.type == "cuda" else None,
        )

    def backward(self, loss: torch.Tensor) -> None:
        # DDP averages gradients over ranks; the loss is a sum over rows, so scaling each
        # rank's loss by N makes the average the gradient of the global minibatch's loss.
        (loss * self.group.world_size).backward()
        self.group.average_gradients(self._unmanaged)

    def _sum_over_processes(self, value) -> float:
        return self.group.sum(value)

    def evaluate(self, x: torch.Tensor | None) -> float:
        # Each rank scores its shard; the sum over ranks is the same number on every rank,
        # so every rank takes the same early-stopping decisions.
        if x is None:
            return float("nan")
        shard = self.group.shard(x)
        mean = evaluate_elbo(
            self.eval_elbo, self.model, self.guide, shard, self.settings.eval_batch_size
        )
        return self.group.sum(mean * shard.shape[0] if shard.shape[0] else 0.0) / x.shape[0]

    def _rng_state(self) -> dict:
        own = super()._rng_state()
        return {**own, "ranks": self.group.gather(own)}

    def _set_rng_state(self, rng: dict) -> None:
        # Each rank continues its own random stream when the number of ranks is unchanged;
        # otherwise every rank starts from rank 0's, and ranks r > 0 reseed.
        ranks = rng.get("ranks") or []
        same_ranks = len(ranks) == self.group.world_size
        super()._set_rng_state(ranks[self.group.rank] if same_ranks else rng)
        if not same_ranks and self.group.rank > 0:
            torch.manual_seed(int(torch.randint(2**62, ())) + self.group.rank)

    def _save(self) -> None:
        """Rank 0 writes the checkpoint; every rank takes part in collecting it."""
        if self.checkpoint_path is None:
            return
        state = self.state()
        if self.is_main:
            save_checkpoint(state, self.checkpoint_path)
        self.group.barrier()  # no rank runs ahead of a checkpoint being written
