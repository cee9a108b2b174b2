"""The length-bucketing batch sampler: coverage, grouping, determinism, resume and DDP shards."""
from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from dataset.bucketing import LengthBucketBatchSampler
from dataset.collate import padding_counts
from utils.distributed import ShardedSampler

# PHOENIX-like: 50-300 frames.
LENGTHS = np.random.default_rng(0).integers(50, 301, size=203).tolist()


def _padded_fraction(batches: list[list[int]], lengths: list[int]) -> float:
    """Padding of a list of batches when each is padded to its longest video."""
    padded = sum(len(b) * max(lengths[i] for i in b) - sum(lengths[i] for i in b) for b in batches)
    return padded / sum(len(b) * max(lengths[i] for i in b) for b in batches)


@pytest.mark.parametrize("batch_size,replicas", [(2, 1), (4, 1), (2, 3)])
def test_every_video_once_per_epoch_and_same_step_count_as_the_plain_sampler(batch_size, replicas):
    samplers = [LengthBucketBatchSampler(LENGTHS, batch_size, replicas, rank, seed=3, pool_batches=5)
                for rank in range(replicas)]
    plain = ShardedSampler(len(LENGTHS), replicas, 0, shuffle=True, seed=3, drop_last=True)
    for epoch in range(3):
        for s in samplers:
            s.set_epoch(epoch)
        shards = [s.shard() for s in samplers]
        assert all(len(b) == batch_size for shard in shards for b in shard)
        assert {len(shard) for shard in shards} == {len(plain) // batch_size} == {len(samplers[0])}
        seen = [i for shard in shards for b in shard for i in b]
        assert len(seen) == len(set(seen))  # disjoint shards, nobody twice
        assert len(seen) == (len(LENGTHS) // (batch_size * replicas)) * batch_size * replicas
    # Without drop_last (evaluation) every video is in exactly one batch of one process.
    full = [LengthBucketBatchSampler(LENGTHS, 4, 3, rank, drop_last=False) for rank in range(3)]
    assert sorted(i for s in full for b in s for i in b) == list(range(len(LENGTHS)))


def test_lengths_are_grouped():
    sampler = LengthBucketBatchSampler(LENGTHS, 4, pool_batches=1000)  # one pool: a global sort
    batches = sorted(sampler.shard(), key=lambda b: min(LENGTHS[i] for i in b))
    for first, second in itertools.pairwise(batches):
        assert max(LENGTHS[i] for i in first) <= min(LENGTHS[i] for i in second)
    local = LengthBucketBatchSampler(LENGTHS, 4, pool_batches=5).shard()
    plain = ShardedSampler(len(LENGTHS), shuffle=True, drop_last=True).shard()
    random_batches = [plain[k:k + 4] for k in range(0, len(plain) - 3, 4)]
    assert _padded_fraction(local, LENGTHS) < 0.5 * _padded_fraction(random_batches, LENGTHS)


def test_order_is_a_function_of_seed_and_epoch():
    def order(seed: int, epoch: int) -> list[list[int]]:
        sampler = LengthBucketBatchSampler(LENGTHS, 2, seed=seed, pool_batches=4)
        sampler.set_epoch(epoch)
        return list(sampler)

    assert order(1, 2) == order(1, 2)
    assert order(1, 2) != order(1, 3) and order(1, 2) != order(2, 2)


def test_mid_epoch_resume_continues_exactly():
    for rank in range(2):
        whole = LengthBucketBatchSampler(LENGTHS, 3, 2, rank, seed=5)
        whole.set_epoch(4)
        resumed = LengthBucketBatchSampler(LENGTHS, 3, 2, rank, seed=5)
        resumed.set_epoch(4)
        resumed.set_start(7)
        assert list(resumed) == list(whole)[7:] and len(resumed) == len(whole) - 7


def test_ddp_step_batches_come_from_one_pool():
    """The processes of one step get batches of similar lengths: nobody waits on a long batch."""
    samplers = [LengthBucketBatchSampler(LENGTHS, 2, 2, rank, pool_batches=1000) for rank in range(2)]
    spread = [abs(max(LENGTHS[i] for i in a) - max(LENGTHS[i] for i in b))
              for a, b in zip(samplers[0].shard(), samplers[1].shard())]
    assert max(spread) <= 10


def test_bad_arguments_are_rejected():
    with pytest.raises(ValueError, match="batch_size"):
        LengthBucketBatchSampler(LENGTHS, 0)
    with pytest.raises(ValueError, match="rank"):
        LengthBucketBatchSampler(LENGTHS, 2, 2, 2)


def test_padding_counts_of_video_and_feature_batches():
    video = torch.zeros(3, 20, 3, 2, 2, dtype=torch.uint8)
    assert padding_counts(video, torch.tensor([20, 12, 8])) == (20, 60)
    features = torch.zeros(2, 5, 9)
    assert padding_counts(features, torch.tensor([9, 4])) == (5, 18)
