"""Decoding speed on a dev-set-sized workload: batched PyTorch beam search vs a per-sample Python one.

Both searches use the same pruning (top-k tokens per frame, as ctcdecode's cutoff_top_n) and the
same beam width, and must return the same best prefixes. The Python reference is timed on a
subset (``--reference-subset``) and reported per sentence, so the ratio compares like with like.

    python bench/decode.py [--sequences 540] [--frames 50] [--classes 1296] [--device cpu]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from utils.beam_search import ctc_prefix_beam_search, reference_prefix_beam_search  # noqa: E402
from utils.decode import Decode  # noqa: E402


def parse_args() -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sequences", type=int, default=540)
    parser.add_argument("--frames", type=int, default=50, help="frames after temporal pooling")
    parser.add_argument("--classes", type=int, default=1296)
    parser.add_argument("--beam-width", type=int, default=10)
    parser.add_argument("--top-k", type=int, default=40)
    parser.add_argument("--batch-size", type=int, default=540, help="sequences per batched call")
    parser.add_argument("--reference-subset", type=int, default=30,
                        help="sequences timed with the slow Python search (extrapolated per sentence)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args()


def synthetic_logits(sequences: int, frames: int, classes: int,
                     seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Peaky CTC-like logits (mostly blank, a few confident glosses) and lengths around `frames`."""
    gen = torch.Generator().manual_seed(seed)
    logits = 2.0 * torch.randn(sequences, frames, classes, generator=gen)
    logits[..., 0] += 6.0 * (torch.rand(sequences, frames, generator=gen) < 0.6)
    labels = torch.randint(1, classes, (sequences, frames), generator=gen)
    logits.scatter_add_(2, labels[..., None], torch.full((sequences, frames, 1), 5.0))
    lengths = torch.randint(int(frames * 0.7), frames + 1, (sequences,), generator=gen)
    lengths[0] = frames
    return logits, lengths


def main() -> None:
    """Time both searches and print sentences per second and their ratio."""
    args = parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    logits, lengths = synthetic_logits(args.sequences, args.frames, args.classes, args.seed)
    device = torch.device(args.device)
    gloss_dict = {f"G{i}": [i, 1] for i in range(1, args.classes)}
    decoder = Decode(gloss_dict, args.classes, "beam", beam_width=args.beam_width, top_k=args.top_k)
    dev_logits, dev_lengths = logits.to(device), lengths.to(device)

    decoder.decode(dev_logits[:8], dev_lengths[:8])  # warm-up (allocator, kernels)
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for begin in range(0, args.sequences, args.batch_size):
        chunk = slice(begin, begin + args.batch_size)
        decoder.decode(dev_logits[chunk], dev_lengths[chunk])
    if device.type == "cuda":
        torch.cuda.synchronize()
    fast_s = time.perf_counter() - start

    subset = min(args.reference_subset, args.sequences)
    log_probs = logits[:subset].log_softmax(-1)
    rows = [log_probs[b, :lengths[b]].tolist() for b in range(subset)]  # conversion not timed
    start = time.perf_counter()
    reference = [reference_prefix_beam_search(row, args.beam_width, args.top_k)[0] for row in rows]
    slow_s = time.perf_counter() - start

    batched = ctc_prefix_beam_search(log_probs.to(device), lengths[:subset].to(device),
                                     args.beam_width, args.top_k)
    agree = sum(batched.best(b) == reference[b] for b in range(subset))

    fast_rate = args.sequences / fast_s
    slow_rate = subset / slow_s
    print(f"workload: {args.sequences} sequences x <= {args.frames} frames x {args.classes} classes, "
          f"beam {args.beam_width}, top-k {args.top_k} per frame (both searches)")
    print(f"batched PyTorch beam search ({device}, batch {args.batch_size}, "
          f"{torch.get_num_threads()} CPU threads): "
          f"{fast_s:.3f} s, {fast_rate:.1f} sentences/s")
    print(f"per-sample Python prefix beam search (CPU, timed on {subset} sequences, extrapolated "
          f"per sentence): {slow_s:.3f} s, {slow_rate:.1f} sentences/s "
          f"(~{args.sequences / slow_rate:.1f} s for all {args.sequences})")
    print(f"same best prefix on {agree}/{subset} reference sequences")
    print(f"speed-up ratio (batched / python): {fast_rate / slow_rate:.1f}x")


if __name__ == "__main__":
    main()
