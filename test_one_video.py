"""Recognise the glosses of one sign video (a video file or a folder of frames).

    python test_one_video.py --model_path work_dir/best.pt --video_path clip.mp4 [--json]
        [--decode-mode beam --beam-width 10 --lm-path gloss-3gram.arpa --lm-weight 0.5 ...]
"""
from __future__ import annotations

import argparse
import json
import sys

from inference.cli import add_model_arguments, add_video_arguments, load_model_and_video
from inference.recognize import recognise_clip
from utils.errors import run_cli


def build_parser() -> argparse.ArgumentParser:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_model_arguments(parser)
    add_video_arguments(parser)
    parser.add_argument("--json", action="store_true",
                        help="print JSON: glosses with per-gloss frame spans and scores")
    return parser


def recognise(args: argparse.Namespace) -> dict:
    """Run the model on the video and return the result as a JSON-ready dict."""
    loaded, clip = load_model_and_video(args)
    return recognise_clip(loaded, clip)[0]


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
