"""A local web page that recognises sign videos, plus a JSON endpoint for the same.

    python app.py --model_path work_dir/demo/best_model.pt [--host 127.0.0.1 --port 7860]

Open http://127.0.0.1:7860; `curl -F video=@clip.mp4 http://127.0.0.1:7860/api/recognize` returns
the JSON of `test_one_video.py --json`. The server listens on localhost unless --host says otherwise.
"""
from __future__ import annotations

import utils.installed  # noqa: F401  (first: without the requirements, one line on how to install)
import argparse
import ipaddress
import math
import os
import shutil
import signal
import sys
import tempfile
from pathlib import Path
from typing import Callable

from dataset.video_files import frame_rate_arg
from inference.cli import add_model_arguments, load_model_from_args
from utils.errors import run_cli


def build_parser() -> argparse.ArgumentParser:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_model_arguments(parser)
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to listen on (default localhost only; 0.0.0.0 exposes the "
                             "page to the network)")
    parser.add_argument("--port", type=int, default=7860)
    parser.add_argument("--max_upload_mb", type=positive(float), default=100.0, help="largest upload accepted, in MiB")
    parser.add_argument("--max_video_frames", type=positive(int), default=3000,
                        help="longest video accepted, in frames (3000 = 2 min at 25 fps)")
    parser.add_argument("--max_frames_num", type=positive(int), default=360,
                        help="frames sampled uniformly for the network at most")
    parser.add_argument("--fps", type=frame_rate_arg, default=None,
                        help="resample uploaded video files to this many frames a second before "
                             "recognising, as test_one_video.py --fps (default: as filmed)")
    parser.add_argument("--record_live", type=Path, default=None, metavar="DIR",
                        help="save every frame the Live tab receives as DIR/session<N>/frame<K>.png "
                             "(replay it with test_one_video.py --stream --speed 0)")
    return parser


def positive(kind: type) -> Callable[[str], float]:
    """argparse type: a finite number > 0 of `kind` (int or float)."""
    def parse(text: str) -> float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if not (math.isfinite(value) and value > 0):
            raise argparse.ArgumentTypeError(f"{text!r}: expected a finite number > 0")
        return value
    parse.__name__ = kind.__name__  # argparse names the type in its messages
    return parse


def network_warning(host: str) -> str | None:
    """The warning for a --host other than a loopback address (None for localhost)."""
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host name: it may resolve to any interface
        loopback = False
    if loopback:
        return None
    return (f"warning: --host {host}: the page is reachable from the network and has no "
            f"authentication; anyone who reaches this port can upload videos to this machine")


def main(argv: list[str] | None = None) -> int:
    """Load the model (errors end here, before any server starts), then serve until Ctrl+C."""
    args = build_parser().parse_args(argv)
    warning = network_warning(args.host)
    if warning:
        print(warning, file=sys.stderr, flush=True)
    return run_cli(lambda: serve(args))


def serve(args: argparse.Namespace) -> int:
    """Load the model, then serve the page until Ctrl+C or SIGTERM."""
    loaded = load_model_from_args(args)
    work_dir = Path(tempfile.mkdtemp(prefix="stfnet-app-"))
    saved = (tempfile.tempdir, os.environ.get("GRADIO_TEMP_DIR"))
    # Gradio reads its upload folder at import: every uploaded or generated file lands here,
    # and so do the endpoint's multipart spool files (tempfile.tempdir).
    os.environ["GRADIO_TEMP_DIR"] = str(work_dir)
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    tempfile.tempdir = str(work_dir)
    try:
        import uvicorn

        from inference.web import Limits, Recogniser, build_app

        limits = Limits(args.max_upload_mb, args.max_video_frames, args.max_frames_num, args.fps)
        app = build_app(Recogniser(loaded, limits, work_dir, args.record_live))
        print(f"serving http://{args.host}:{args.port} (model {args.model_path}; uploads in "
              f"{work_dir}, removed on exit)", flush=True)
        # uvicorn re-raises SIGTERM after its graceful shutdown: as SystemExit, the finally runs.
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
        uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
        return 0
    finally:
        tempfile.tempdir = saved[0]
        if saved[1] is None:
            os.environ.pop("GRADIO_TEMP_DIR", None)
        else:
            os.environ["GRADIO_TEMP_DIR"] = saved[1]
        shutil.rmtree(work_dir, ignore_errors=True)

if __name__ == "__main__":
    sys.exit(main())
