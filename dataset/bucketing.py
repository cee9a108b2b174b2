"""Length bucketing: batches of videos of similar length, so less of each batch is padding.

As ESPnet and fairseq batch speech: each epoch, a seeded permutation is cut into pools of
`pool_batches` optimizer steps; a pool is sorted by length and cut into batches; the steps are
then shuffled. Videos of one batch (and the batches the processes of one DDP step see) are thus
close in length, while which videos meet and the batch order still change every epoch.
"""
from __future__ import annotations

from typing import Iterator, Sequence

import torch


class LengthBucketBatchSampler(torch.utils.data.Sampler[list[int]]):
    """Batches of indices for one process; a function of (seed, epoch) only; resumable mid-epoch.

    `drop_last=True` (training) uses `len // (batch_size * num_replicas)` steps, the same count as
    the plain sharded sampler with `drop_last`: every process runs the same number of steps and the
    videos left out (fewer than one step's worth) change with the epoch's permutation. Shards are
    disjoint: step k gives process r the r-th batch of that step.
    """

    def __init__(self, lengths: Sequence[int], batch_size: int, num_replicas: int = 1, rank: int = 0,
                 seed: int = 0, pool_batches: int = 50, drop_last: bool = True) -> None:
        if batch_size < 1 or pool_batches < 1:
            raise ValueError(f"batch_size ({batch_size}) and pool_batches ({pool_batches}) must be >= 1")
        if not 0 <= rank < num_replicas:
            raise ValueError(f"rank {rank} outside num_replicas {num_replicas}")
        self.lengths = [int(n) for n in lengths]
        self.batch_size = int(batch_size)
        self.num_replicas = int(num_replicas)
        self.rank = int(rank)
        self.seed = int(seed)
        self.pool_batches = int(pool_batches)
        self.drop_last = drop_last
        self.epoch = 0
        self.start = 0

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch (pools, batches and their order are a function of seed + epoch only)."""
        self.epoch = int(epoch)

    def set_start(self, start_batch: int) -> None:
        """Skip the first `start_batch` batches of this process's shard (mid-epoch resume)."""
        self.start = int(start_batch)

    def steps(self) -> list[list[list[int]]]:
        """The epoch's steps, each a list of up to `num_replicas` batches (one per process)."""
        size, per_step = len(self.lengths), self.batch_size * self.num_replicas
        g = torch.Generator().manual_seed(self.seed + self.epoch)
        order = torch.randperm(size, generator=g).tolist()
        if self.drop_last:
            order = order[: (size // per_step) * per_step]
        pool = self.pool_batches * per_step
        batches: list[list[int]] = []
        for begin in range(0, len(order), pool):
            # Ties broken by index so that the order never depends on the sort's stability.
            chunk = sorted(order[begin:begin + pool], key=lambda i: (self.lengths[i], i))
            batches += [chunk[k:k + self.batch_size] for k in range(0, len(chunk), self.batch_size)]
        steps = [batches[k:k + self.num_replicas] for k in range(0, len(batches), self.num_replicas)]
        return [steps[i] for i in torch.randperm(len(steps), generator=g).tolist()]

    def shard(self) -> list[list[int]]:
        """This process's batches for the current epoch (ignoring `start`)."""
        return [step[self.rank] for step in self.steps() if self.rank < len(step)]

    def __iter__(self) -> Iterator[list[int]]:
        return iter(self.shard()[self.start:])

    def __len__(self) -> int:
        per_step = self.batch_size * self.num_replicas
        if self.drop_last:
            n = len(self.lengths) // per_step
        else:
            n = len(self.shard())
        return max(n - self.start, 0)

