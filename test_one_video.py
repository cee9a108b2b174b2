"""Recognise the glosses of one sign video (a video file or a folder of frames), or of a stream.

    python test_one_video.py --model_path work_dir/best.pt --video_path clip.mp4 [--json]
        [--decode-mode beam --beam-width 10 --lm-path gloss-3gram.arpa --lm-weight 0.5 ...]
    python test_one_video.py --model_path work_dir/best.pt --video_path clip.mp4 --stream [--speed 0]
    python test_one_video.py --model_path work_dir/best.pt --camera 0
"""
from __future__ import annotations

import utils.installed  # noqa: F401  (first: without the requirements, one line on how to install)
import argparse
import json
import sys

from inference.cli import add_model_arguments, add_video_arguments, load_model_and_video, load_model_from_args
from inference.recognize import recognise_clip
from utils.errors import UserError, run_cli


def build_parser() -> argparse.ArgumentParser:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_model_arguments(parser)
    add_video_arguments(parser, required=False)
    parser.add_argument("--json", action="store_true",
                        help="print JSON: glosses with per-gloss frame spans and scores")
    live = parser.add_argument_group("live recognition (inference/streaming.py)")
    live.add_argument("--stream", action="store_true",
                      help="play --video_path through the streaming recogniser, printing each gloss "
                           "when it is committed, with its time")
    live.add_argument("--camera", type=int, default=None, metavar="N",
                      help="recognise local camera N live (Ctrl-C stops)")
    live.add_argument("--speed", type=float, default=1.0,
                      help="--stream: play at this multiple of the video's frame rate (frames the "
                           "machine cannot keep up with are dropped and counted); 0 = every frame, "
                           "as fast as possible (default 1)")
    live.add_argument("--context", type=int, default=None,
                      help="output steps of left context of the sliding window (default: the "
                           "streaming default, StreamSettings)")
    live.add_argument("--lookahead", type=int, default=None,
                      help="output steps of look-ahead before a step is committed")
    live.add_argument("--queue", type=int, default=8, help="frames waiting at most (default 8)")
    return parser


def recognise(args: argparse.Namespace) -> dict:
    """Run the model on the video and return the result as a JSON-ready dict."""
    loaded, clip = load_model_and_video(args)
    return recognise_clip(loaded, clip)[0]


def stream(args: argparse.Namespace) -> dict:
    """Play the video (or camera) through the streaming recogniser, printing glosses as committed."""
    from dataclasses import replace

    from inference.live import file_frames, play, play_camera
    from inference.streaming import StreamingRecognizer, StreamSettings

    frames, fps = file_frames(args.video_path, args.fps) if args.camera is None else (None, 25.0)
    loaded = load_model_from_args(args)
    settings = StreamSettings()
    settings = replace(settings, **{k: v for k, v in (("context", args.context),
                                                    ("lookahead", args.lookahead)) if v is not None})
    recogniser = StreamingRecognizer(loaded, settings, fps=fps)
    print(f"listening: look-ahead {recogniser.gloss_lookahead_frames()} frames "
          f"({1000 * recogniser.gloss_lookahead_frames() / fps:.0f} ms at {fps:g} fps) from a "
          f"gloss's last frame to its commit", file=sys.stderr)

    def show_gloss(gloss, latency: float) -> None:
        if not args.json:
            print(f"{gloss.committed_time:8.2f}s  {gloss.gloss}  (frames {gloss.frames[0]}-"
                  f"{gloss.frames[1]}, {gloss.times[0]:.2f}-{gloss.times[1]:.2f} s)", flush=True)

    if args.camera is not None:
        result = play_camera(args.camera, recogniser, queue_size=args.queue, on_gloss=show_gloss)
    else:
        result = play(frames, recogniser, speed=args.speed or None, queue_size=args.queue,
                      on_gloss=show_gloss)
    summary = {"source": args.video_path if args.camera is None else f"camera {args.camera}",
               "sentence": " ".join(result.sentence), "frames": result.arrived,
               "processed": result.processed, "dropped": result.dropped,
               "seconds": round(result.wall_s, 3),
               "lookahead_frames": recogniser.gloss_lookahead_frames(),
               "settings": {"context": settings.context, "lookahead": settings.lookahead,
                            "gate_frames": settings.gate_frames},
               "glosses": [g.as_dict() for g, _ in result.glosses]}
    if args.json:
        print(json.dumps(summary, ensure_ascii=False, indent=2))
    else:
        print(f"output glosses: {summary['sentence'] or '(none)'}")
        print(f"{result.processed} of {result.arrived} frames recognised ({result.dropped} dropped) "
              f"in {result.wall_s:.2f} s", file=sys.stderr)
    return summary


def run(args: argparse.Namespace) -> None:
    """Offline recognition, or the stream."""
    if args.camera is None and args.video_path is None:
        raise UserError("pass --video_path (a video file or frame folder) or --camera N")
    if args.stream or args.camera is not None:
        stream(args)
    else:
        show(recognise(args), args.json)


def main(argv: list[str] | None = None) -> int:
    """Entry point: print the glosses (or the JSON result)."""
    args = build_parser().parse_args(argv)
    return run_cli(lambda: run(args))


def show(result: dict, as_json: bool) -> None:
    """Print the glosses, or the whole result as JSON."""
    if as_json:
        print(json.dumps(result, ensure_ascii=False, indent=2))
    else:
        print(f"output glosses: {result['sentence'] or '(none)'}")


if __name__ == "__main__":
    sys.exit(main())
