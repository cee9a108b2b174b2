"""Recognise the glosses of one sign video (a video file or a folder of frames).

    python test_one_video.py --model_path work_dir/best.pt --video_path clip.mp4 [--json]
"""
from __future__ import annotations

import argparse
import json
import sys

import torch

from utils.decode import Decode
from utils.inference import add_model_arguments, align_sentence, describe, load_model_and_video


def build_parser() -> argparse.ArgumentParser:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_model_arguments(parser)
    parser.add_argument("--json", action="store_true",
                        help="print JSON: glosses with per-gloss frame spans and scores")
    return parser


def recognise(args: argparse.Namespace) -> dict:
    """Run the model on the video and return the result as a JSON-ready dict."""
    loaded, clip, prepared, device = load_model_and_video(args)
    with torch.inference_mode():
        ret = loaded.model(prepared.video.to(device), prepared.length.to(device))
    logits = ret["sequence_logits"][:, 0]  # (T', C)
    steps = int(ret["feat_len"][0])
    decoder = Decode(loaded.gloss_dict, loaded.num_classes, loaded.search_mode,
                     beam_width=loaded.beam_width)
    sentence = decoder.decode(logits[None, :steps], [steps], batch_first=True)[0]
    glosses = [gloss for gloss, _ in sentence]
    rec = align_sentence(logits[:steps], glosses, loaded.gloss_dict)
    return {
        "video": clip.source, "reader": clip.backend, "total_frames": clip.total_frames,
        "num_frames": prepared.num_frames, "output_steps": steps, "temporal_stride": prepared.stride,
        "search_mode": loaded.search_mode, "beam_width": loaded.beam_width,
        "sentence": " ".join(glosses), "glosses": describe(rec, prepared, clip.source_indices),
    }


def main(argv: list[str] | None = None) -> int:
    """Entry point: print the glosses (or the JSON result)."""
    args = build_parser().parse_args(argv)
    try:
        result = recognise(args)
    except (FileNotFoundError, ValueError, RuntimeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(result, ensure_ascii=False, indent=2))
    else:
        print(f"output glosses: {result['sentence'] or '(none)'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
