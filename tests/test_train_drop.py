"""A video CTC cannot align is dropped alone: its batch-mates still train."""
from __future__ import annotations

import pytest
import torch

from dataset.collate import pad_collate
from dataset.transforms import model_input
from modules.tconv import output_lengths
from modules.criterions import ctc_min_steps, unalignable
from seq_scripts import drop_unalignable
from tests.test_model import tiny_model
from tests.test_train_step import train
from training.state import TrainState

pytestmark = pytest.mark.usefixtures("single_thread")


def clip(frames: int, seed: int) -> torch.Tensor:
    """A uint8 clip (T, 3, 32, 32), as the feeder returns."""
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (frames, 3, 32, 32), generator=generator, dtype=torch.uint8)


def collate(items: list[tuple], kernel_sizes: list[str]) -> tuple:
    """A feeder batch of (frames, glosses, name) items."""
    return pad_collate([(clip(frames, len(name)), torch.tensor(glosses), f"{name}|signer")
                        for frames, glosses, name in items], kernel_sizes)


def test_ctc_needs_a_step_per_gloss_and_a_blank_between_repeats():
    assert ctc_min_steps(torch.tensor([1, 2, 3, 4, 4, 4]), torch.tensor([3, 3])) == [3, 5]


def test_unalignable_video_is_dropped_alone_and_its_batch_mate_trains():
    model = tiny_model().train()
    sizes = model.kernel_sizes
    good, short = (40, [1, 2, 3], "good"), (8, [1, 2, 3, 4, 5], "short")
    batch = collate([good, short], sizes)
    video, video_len, label, label_len, _ = batch
    # 8 frames leave 2 steps after K5 P2 K5 P2 for 5 glosses; the formula is the model's own.
    assert unalignable(video_len, label, label_len, sizes) == [(1, 2, 5)]
    with torch.no_grad():
        feat_len = model(model_input(video), video_len)["feat_len"]
    assert feat_len.tolist() == output_lengths(video_len, sizes).tolist() == [10, 2]
    messages: list[str] = []
    state = TrainState()
    kept = drop_unalignable(batch, sizes, state, messages.append)
    alone = collate([good], sizes)  # exactly the batch the good video makes on its own
    for a, b in zip(kept[:4], alone[:4]):
        assert torch.equal(a, b)
    assert kept[4] == alone[4] == ["good|signer"]
    assert state.dropped_videos == ["short"] and "dropped video short" in messages[0]
    assert "5 glosses" in messages[0] and "batch-mates train" in messages[0]
    _, state = train(model, [batch])
    assert state.global_step == 1 and state.skipped_batches == 0 and state.dropped_videos == ["short"]


def test_batch_of_only_unalignable_videos_is_skipped_as_a_whole():
    model = tiny_model().train()
    batch = collate([(8, [1, 2, 3, 4, 5], "a"), (8, [2, 3, 4, 5, 6], "b")], model.kernel_sizes)
    _, state = train(model, [batch])
    assert state.global_step == 0 and state.skipped_batches == 1
    assert sorted(state.skipped_videos) == ["a", "b"] and state.dropped_videos == []
