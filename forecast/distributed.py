"""Data-parallel training with `torch.distributed`: the few pieces the one training loop
calls when it runs under `torchrun` (or any launcher that sets up a process group).

Every function here is a no-op (or the plain single-process behaviour) unless a process
group with more than one rank is initialised, so single-process code never makes a
distributed call. Under a process group of W ranks:

- every rank builds the same network from the same seed, and `wrap` puts it in
  `DistributedDataParallel`, which averages the gradients after each backward pass;
- `train_batches` draws the same seeded permutation of the windows on every rank and cuts
  each global batch of B windows into W contiguous shares, one per rank; each share's
  mean loss is weighted by `share * W / global batch`, so DDP's average of the ranks'
  gradients is the gradient of the global batch's mean loss: one distributed step is one
  single-process step on batch B, also for a last batch smaller than B;
- `reduced_loss` scores a contiguous share of the validation windows on each rank and sums
  the (loss sum, count) pairs over the ranks, so every rank sees the same validation loss
  and early stopping, the learning-rate schedule and the best-weights choice agree;
- `is_main` tells who writes: checkpoints, histories and logs come from rank 0 only.

Randomness: the shuffling generator is synchronised from rank 0 after each epoch, so the
permutations stay identical even when ranks draw different numbers of teacher-forcing
coins; rank 0 draws its coins and dropout masks as a single process would, the other
ranks from their own seeds. With dropout 0 and teacher forcing 0 a run on W ranks with
batch B equals a single-process run with batch B up to summation order.
"""

from __future__ import annotations

import datetime
import logging
import os
from collections.abc import Callable, Iterator

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from forecast.data.windows import Batch, WindowDataset, permutation

__all__ = [
    "DEFAULT_TIMEOUT_S",
    "init_from_env",
    "is_distributed",
    "is_main",
    "launched",
    "rank",
    "rank_shares",
    "reduced_loss",
    "shard_bounds",
    "shutdown",
    "sum_over_ranks",
    "train_batches",
    "world_size",
    "wrap",
]

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT_S = 600.0
"""Seconds a collective waits for the other ranks before failing (`init_from_env`): a
rank that died or hangs stops the job with an error after at most this long."""


def is_distributed() -> bool:
    """Whether this process is one of several ranks of an initialised process group."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    """This process's rank (0 when not distributed)."""
    return dist.get_rank() if is_distributed() else 0


def world_size() -> int:
    """Number of ranks (1 when not distributed)."""
    return dist.get_world_size() if is_distributed() else 1


def is_main() -> bool:
    """Whether this process writes files and logs: rank 0, or a single process."""
    return rank() == 0


def launched() -> bool:
    """Whether a launcher such as `torchrun` started this process as one of several ranks
    (the `WORLD_SIZE` environment variable is above 1)."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def init_from_env(timeout_s: float = DEFAULT_TIMEOUT_S) -> bool:
    """Join the process group described by torchrun's environment variables (`RANK`,
    `WORLD_SIZE`, `MASTER_ADDR`, `MASTER_PORT`, `LOCAL_RANK`): NCCL when CUDA is
    available (each rank on GPU `LOCAL_RANK`), gloo otherwise. Returns False, doing
    nothing, when not launched as several ranks or already initialised.

    Args:
        timeout_s: how long a collective waits for the other ranks before raising.
    """
    if not launched() or dist.is_initialized():
        return False
    backend = "nccl" if torch.cuda.is_available() and dist.is_nccl_available() else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group(backend, timeout=datetime.timedelta(seconds=timeout_s))
    log.info("rank %d of %d (%s)", dist.get_rank(), dist.get_world_size(), backend)
    return True


def shutdown() -> None:
    """Leave the process group, if this process is in one."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def _comm_device() -> torch.device:
    """Where tensors must live for the backend's collectives (NCCL: this rank's GPU)."""
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def shard_bounds(n: int, world: int, r: int) -> tuple[int, int]:
    """Rank `r`'s contiguous share [lo, hi) of `n` items over `world` ranks: sizes differ
    by at most one, the first `n % world` ranks take the larger ones.

    Args:
        n: items to share.
        world: number of ranks.
        r: the rank.

    >>> [shard_bounds(5, 2, r) for r in range(2)]
    [(0, 3), (3, 5)]
    """
    base, extra = divmod(n, world)
    lo = r * base + min(r, extra)
    return lo, lo + base + (1 if r < extra else 0)


def rank_shares(
    order: np.ndarray, batch_size: int, world: int, r: int
) -> Iterator[tuple[np.ndarray, int]]:
    """Rank `r`'s positions of each global batch of `batch_size` consecutive windows of
    `order`, with the global batch's size. Over the ranks every window of `order` comes
    exactly once; a share may be empty (a last global batch smaller than `world`).

    Args:
        order: the epoch's permutation of the window positions, the same on every rank.
        batch_size: windows per global batch (all ranks together).
        world: number of ranks.
        r: this rank.

    >>> [s.tolist() for s, _ in rank_shares(np.arange(5), 4, 2, 1)]
    [[2, 3], []]
    """
    for lo in range(0, len(order), batch_size):
        batch = order[lo : lo + batch_size]
        a, b = shard_bounds(len(batch), world, r)
        yield batch[a:b], len(batch)


def train_batches(
    ds: WindowDataset, batch_size: int, generator: torch.Generator
) -> Iterator[tuple[Batch, float, int]]:
    """Training batches of one epoch as (batch, loss weight, windows counted).

    A single process gets `ds.iter_batches(batch_size, shuffle=True, ...)` with weight 1.
    Under a process group every rank draws the same permutation (the one a single process
    draws from the same generator state) and takes its share (`rank_shares`) of every
    global batch of `batch_size` windows, weighted by `share * world / global batch`:
    DDP's average of the weighted per-rank mean losses' gradients is then the gradient
    of the global batch's mean loss. A rank whose share is empty still runs the forward
    and backward pass (DDP needs every rank in every gradient reduction), on one window
    with weight 0 and 0 windows counted. After the epoch the generator takes rank 0's
    state on every rank.

    Args:
        ds: the training windows.
        batch_size: windows per global batch.
        generator: shuffles (and, inside the network, teacher-forcing coins).
    """
    if not is_distributed():
        for batch in ds.iter_batches(batch_size, shuffle=True, generator=generator):
            yield batch, 1.0, len(batch["origin"])
        return
    world, r = world_size(), rank()
    order = permutation(len(ds), generator).numpy()  # the order iter_batches draws
    if r > 0:  # own teacher-forcing coins; rank 0 draws them as a single process would
        generator.manual_seed((int(order[0]) * len(ds) + int(order[-1])) * world + r)
    for share, total in rank_shares(order, batch_size, world, r):
        if len(share):
            yield ds.batch(share), len(share) * world / total, len(share)
        else:
            yield ds.batch(np.zeros(1, dtype=np.int64)), 0.0, 0
    state = generator.get_state().to(_comm_device())
    dist.broadcast(state, src=0)
    generator.set_state(state.cpu())


def sum_over_ranks(*values: float) -> tuple[float, ...]:
    """The sums of `values` over every rank (the values themselves when not distributed).

    Args:
        values: this rank's numbers.
    """
    if not is_distributed():
        return tuple(values)
    t = torch.tensor(values, dtype=torch.float64, device=_comm_device())
    dist.all_reduce(t)
    return tuple(t.tolist())


def reduced_loss(loss: Callable[[WindowDataset], float], ds: WindowDataset) -> float:
    """The mean `loss` over every window of `ds`: `loss(ds)` in a single process; under a
    process group each rank scores its contiguous share and the (sum, count) pairs are
    summed over the ranks, so every rank gets the same number.

    Args:
        loss: the mean loss over a dataset's windows.
        ds: the windows.
    """
    if not is_distributed():
        return loss(ds)
    lo, hi = shard_bounds(len(ds), world_size(), rank())
    part = ds.subset(np.arange(lo, hi))
    total, count = sum_over_ranks(loss(part) * len(part) if len(part) else 0.0, len(part))
    return total / max(count, 1.0)


def wrap(network: nn.Module, seed: int) -> nn.Module:
    """The module to train through: `network` itself in a single process; under a
    process group `DistributedDataParallel(network)` (which broadcasts rank 0's weights
    and averages the gradients), and the other ranks' global RNG (dropout) reseeded
    from `seed` and the rank.

    Args:
        network: the freshly initialised network, on its device.
        seed: the training seed.
    """
    if not is_distributed():
        return network
    if rank() > 0:
        torch.manual_seed(seed * world_size() + rank())
    device = next(network.parameters()).device
    ids = [device.index] if device.type == "cuda" else None
    # Training phases leave parameters unused (e.g. the read decoder's LSTMs in the
    # lag-prior phase): DDP must not wait for their gradients.
    return nn.parallel.DistributedDataParallel(network, device_ids=ids, find_unused_parameters=True)
