"""Streamed against offline recognition, WER side by side, for each window setting.

Every test video is recognised offline (the model's own decoding, and the greedy best path the
stream commits) and streamed frame by frame (inference.streaming, every frame, no pacing), alone
and in long streams of `--concat` consecutive test videos played as one (the offline reference of
a long stream is the model run on the whole concatenation). For each (context, look-ahead) setting
it prints the WER of the streamed output against the references and against the offline output,
and the gloss look-ahead in frames and ms; then the default rule: the smallest look-ahead whose
WER is at most `--budget` points above offline on both the single videos and the long streams.

    python bench/streaming_accuracy.py --model_path work_dir/demo/best_model.pt \
        --videos demo_data/phoenix2014/features/fullFrame-56x56px/test \
        --stm demo_data/preprocess/phoenix2014-groundtruth-test.stm
"""
from __future__ import annotations

import argparse
import itertools
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from decoding.config import DecodeConfig  # noqa: E402
from decoding.decoder import Decoder  # noqa: E402
from evaluation.align import Counts, align, count  # noqa: E402
from evaluation.stm import read_stm  # noqa: E402
from inference.loading import load_model  # noqa: E402
from inference.recognize import clip_log_probs, decode_sentence  # noqa: E402
from inference.streaming import StreamingRecognizer, StreamSettings  # noqa: E402
from inference.video import find_videos, load_frames  # noqa: E402


def parse_args() -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model_path", required=True, help="checkpoint (.pt) of main.py")
    parser.add_argument("--videos", required=True, help="the test split: frame folders or video files")
    parser.add_argument("--stm", required=True, help="the split's ground-truth STM")
    parser.add_argument("--context", type=int, nargs="+", default=[8, 16, 32], help="output steps")
    parser.add_argument("--lookahead", type=int, nargs="+", default=[0, 1, 2, 4, 8], help="output steps")
    parser.add_argument("--gate_frames", type=int, nargs="+", default=[64, 16, 0],
                        help="channel-gate pools (0 = every frame so far): the first one for the "
                             "whole grid, the others at the default context and look-ahead")
    parser.add_argument("--concat", type=int, default=5, help="test videos per long stream")
    parser.add_argument("--budget", type=float, default=1.0, help="WER points over offline allowed")
    parser.add_argument("--fps", type=float, default=25.0, help="frame rate for the ms figures")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--limit", type=int, default=0, help="first N videos only (0 = all)")
    return parser.parse_args()


def video_id(path: Path) -> str:
    """The STM file id of a split's video: PHOENIX's frames sit in <id>/1/."""
    return path.parent.name if path.name == "1" else path.stem if path.is_file() else path.name


def wer(pairs: list[tuple[list[str], list[str]]]) -> Counts:
    """Summed counts of (reference, hypothesis) pairs."""
    return sum((count(align(ref, hyp)) for ref, hyp in pairs), Counts())


def offline(loaded, frames: np.ndarray, greedy: Decoder) -> tuple[list[str], list[str]]:
    """(the model's own decoding, the greedy best path) of one clip."""
    log_probs, lengths = clip_log_probs(loaded, frames)
    sequence = log_probs[0, :int(lengths[0])]
    best = [g for g, _ in greedy.decode(sequence[None], [len(sequence)], batch_first=True)[0]]
    return decode_sentence(loaded, sequence), best


def streamed(recogniser: StreamingRecognizer, frames: np.ndarray) -> tuple[list[str], int]:
    """The committed glosses of a stream and how many came before its end."""
    live = [g.gloss for frame in frames for g in recogniser.push(frame)]
    return live + [g.gloss for g in recogniser.flush()], len(live)


def main() -> None:
    """Offline once, then each setting streamed; the table and the rule's choice."""
    args = parse_args()
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    loaded = load_model(args.model_path, "cpu")
    greedy = Decoder(DecodeConfig.recipe().updated({"mode": "max"}), loaded.gloss_dict, num_classes=loaded.num_classes)
    refs = {seg.fileid: list(seg.words) for seg in read_stm(args.stm)}
    videos = find_videos(args.videos)[:args.limit or None]
    clips = [(refs[video_id(v)], load_frames(v, max_frames=10 ** 6, size=loaded.frame_size).frames)
             for v in videos]
    groups = [clips[i:i + args.concat] for i in range(0, len(clips), args.concat)]
    long = [([w for ref, _ in g for w in ref], np.concatenate([f for _, f in g])) for g in groups]
    sets = {"videos": clips, "long": long}
    print(f"{len(clips)} test videos ({sum(len(f) for _, f in clips)} frames), {len(long)} long streams "
          f"of {args.concat} videos; threads {args.threads}")
    base = {name: [offline(loaded, frames, greedy) for _, frames in items] for name, items in sets.items()}
    off_wer = {}
    for name, items in sets.items():
        own = wer([(ref, out[0]) for (ref, _), out in zip(items, base[name])]).wer
        best = wer([(ref, out[1]) for (ref, _), out in zip(items, base[name])]).wer
        off_wer[name] = best
        print(f"offline {name}: WER {own:.2f} % ({loaded.decode.mode} decoding), {best:.2f} % (best path)")
    print("| gate frames | context | look-ahead (steps) | gloss look-ahead (frames / ms) | WER videos "
          "| vs offline | WER long | vs offline | glosses before the end (long) | s |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    rows = []
    grid = [StreamSettings(c, la, args.gate_frames[0] or None)
            for c, la in itertools.product(args.context, args.lookahead)]
    grid += [StreamSettings(gate_frames=g or None) for g in args.gate_frames[1:]]
    for settings in grid:
        gate, context, lookahead = settings.gate_frames, settings.context, settings.lookahead
        recogniser = StreamingRecognizer(loaded, settings, fps=args.fps)
        t0 = time.perf_counter()
        result = {}
        for name, items in sets.items():
            outs = [streamed(recogniser, frames) for _, frames in items]
            result[name] = (wer([(ref, out) for (ref, _), (out, _) in zip(items, outs)]).wer,
                            wer([(off[1], out) for off, (out, _) in zip(base[name], outs)]).wer,
                            sum(early for _, early in outs), sum(len(out) for out, _ in outs))
        frames = recogniser.gloss_lookahead_frames()
        rows.append((settings, frames, result))
        (wv, ov, _, _), (wl, ol, early, total) = result["videos"], result["long"]
        print(f"| {gate or 'all'} | {context} | {lookahead} | {frames} / {1000 * frames / args.fps:.0f} "
              f"| {wv:.2f} | {ov:.2f} | {wl:.2f} | {ol:.2f} | {early} of {total} "
              f"| {time.perf_counter() - t0:.0f} |", flush=True)
    within = [r for r in rows if all(r[2][n][0] <= off_wer[n] + args.budget for n in sets)]
    if within:
        settings, frames, result = min(within, key=lambda r: (r[1], r[2]["long"][0], -r[0].context))
        print(f"default by the rule (least look-ahead within {args.budget} WER points of offline best "
              f"path on both): context {settings.context}, look-ahead {settings.lookahead}, gate "
              f"{settings.gate_frames or 'all'}: {frames} frames = {1000 * frames / args.fps:.0f} ms")
    else:
        print(f"no setting is within {args.budget} WER points of offline")
    print(f"total {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
