"""Export a checkpoint as a model that runs without this repository (ONNX + its vocabulary).

    python export.py --model_path work_dir/demo/best_model.pt --out model.onnx

Writes model.onnx and model.vocab.json beside it (class index -> gloss, frame size, decoding).
The graph takes one decoded video as it comes, (T, H, W, 3) uint8 RGB frames at the vocabulary's
`frames_res`, does the test transform and padding itself, and returns CTC log-probabilities
(1, T', C), their length and the greedy class ids (1, T'): the README's runner needs only
onnxruntime and numpy. `--input float` writes the graph of prepared batches instead ((B, T, 3,
H, W) in [-1, 1] and lengths in). `--quantize int8 --calibration <train split>` writes int8
convolutions for CPUs (bench/onnx_runtime.py measures them). `test_one_video.py --model_path
model.onnx` and app.py run any of them.
"""
from __future__ import annotations

import utils.installed  # noqa: F401  (first: without the requirements, one line on how to install)
import argparse
import sys

from inference.cli import add_model_arguments, load_model_from_args
from utils.errors import ConfigError, run_cli
from utils.outputs import check_output_dir, check_output_file


def build_parser() -> argparse.ArgumentParser:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_model_arguments(parser)
    parser.add_argument("--format", default="onnx", choices=["onnx"], help="export format")
    parser.add_argument("--out", required=True, help="output file, e.g. model.onnx")
    parser.add_argument("--force", action="store_true",
                        help="replace an existing --out (and its .vocab.json; with --input stream, "
                             "the pieces in the folder --out)")
    parser.add_argument("--input", default="frames", choices=["frames", "float", "stream"],
                        help="frames: uint8 video in, preparation in the graph (default); "
                             "float: prepared (B, T, 3, H, W) batches in [-1, 1] and lengths; "
                             "stream: a folder --out of the live recogniser's pieces "
                             "(inference/onnx_stream.py; test_one_video.py --stream runs it)")
    parser.add_argument("--quantize", default=None, choices=["int8"],
                        help="int8: static int8 convolutions and linear layers for CPUs, "
                             "calibrated on --calibration videos")
    parser.add_argument("--calibration", default=None, metavar="DIR",
                        help="training split for int8 calibration: folder of frame folders or "
                             "video files, e.g. <dataset>/features/fullFrame-256x256px/train")
    parser.add_argument("--calibration_videos", type=int, default=8,
                        help="videos of --calibration used (spread evenly; default 8)")
    return parser


def export(args: argparse.Namespace) -> None:
    """Export the checkpoint and print what was written."""
    if args.model_path.lower().endswith(".onnx"):
        raise ConfigError(f"{args.model_path} is already exported; pass the .pt checkpoint")
    if args.quantize and not args.calibration:
        from inference.onnx_model import calibration_hint

        raise ConfigError(f"--quantize int8 needs --calibration DIR: a few training videos set the int8 "
                          f"ranges; pass {calibration_hint()}")
    args.device = "cpu"  # the graph is traced on the CPU; onnxruntime picks its own device
    from inference.onnx_model import calibration_videos, export_onnx, vocab_path

    inputs = {"--model_path": args.model_path, "--config": args.config, "--dict_path": args.dict_path,
              "--calibration": args.calibration}
    if args.input == "stream":  # a folder of pieces: the metadata and the fixed pieces' names
        from inference.onnx_stream import META

        check_output_dir(args.out, [META, "stem.onnx", "cached.onnx", "head.onnx"], inputs, args.force)
    else:
        for out in (args.out, vocab_path(args.out)):
            check_output_file(out, inputs, args.force)
    loaded = load_model_from_args(args)
    if args.input == "stream":
        if args.quantize:
            raise ConfigError("--quantize int8 is for the whole-video graph; drop it with --input stream")
        from inference.onnx_stream import META, export_stream

        out = export_stream(loaded, args.out)
        print(f"wrote the streaming pieces and {META} into {out}")
        return
    calibration = calibration_videos(args.calibration, loaded.frame_size,
                                     args.calibration_videos) if args.quantize else []
    out = export_onnx(loaded, args.out, inputs=args.input, calibration=calibration)
    print(f"wrote {out} and {vocab_path(out)}")


def main(argv: list[str] | None = None) -> int:
    """Entry point; a user error is one `error:` line and exit status 2."""
    args = build_parser().parse_args(argv)
    return run_cli(lambda: export(args))


if __name__ == "__main__":
    sys.exit(main())
