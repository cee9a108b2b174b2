"""Recognise the glosses of one sign video (a video file or a folder of frames).

    python test_one_video.py --model_path work_dir/best.pt --video_path clip.mp4 [--json]
"""
from __future__ import annotations

import argparse
import json
import sys

from inference.cli import add_model_arguments, add_video_arguments, load_model_and_video
from inference.recognize import recognise_clip
from utils.decode import Decode
from utils.errors import run_cli


def build_parser() -> argparse.ArgumentParser:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_model_arguments(parser)
    add_video_arguments(parser)
    parser.add_argument("--json", action="store_true",
                        help="print JSON: glosses with per-gloss frame spans and scores")
    parser.add_argument("--lm_path", default=None,
                        help="ARPA gloss language model fused into the beam search (preprocess/gloss_lm.py)")
    parser.add_argument("--lm_weight", type=float, default=0.5, help="LM weight alpha (default 0.5)")
    parser.add_argument("--word_bonus", type=float, default=0.0, help="per-gloss bonus beta (default 0)")
    parser.add_argument("--token_min_logp", type=float, default=None,
                        help="beam search skips tokens below this log-prob, e.g. -5 (default: exact search)")
    parser.add_argument("--beam_prune_logp", type=float, default=None,
                        help="beam search drops beams this far below the best, e.g. -10 (default: none)")
    return parser


def recognise(args: argparse.Namespace) -> dict:
    """Run the model on the video and return the result as a JSON-ready dict."""
    loaded, clip = load_model_and_video(args)
    decoder = None
    if args.lm_path or args.token_min_logp is not None or args.beam_prune_logp is not None:
        decoder = Decode(loaded.gloss_dict, loaded.num_classes, loaded.search_mode,
                         beam_width=loaded.beam_width, lm=args.lm_path, lm_weight=args.lm_weight,
                         word_bonus=args.word_bonus, token_min_logp=args.token_min_logp,
                         beam_prune_logp=args.beam_prune_logp)
    return recognise_clip(loaded, clip, decoder)[0]


def main(argv: list[str] | None = None) -> int:
    """Entry point: print the glosses (or the JSON result)."""
    args = build_parser().parse_args(argv)
    return run_cli(lambda: show(recognise(args), args.json))


def show(result: dict, as_json: bool) -> None:
    """Print the glosses, or the whole result as JSON."""
    if as_json:
        print(json.dumps(result, ensure_ascii=False, indent=2))
    else:
        print(f"output glosses: {result['sentence'] or '(none)'}")


if __name__ == "__main__":
    sys.exit(main())
