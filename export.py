"""Export a checkpoint as a model that runs without this repository (ONNX + its vocabulary).

    python export.py --model_path work_dir/demo/best_model.pt --out model.onnx

Writes model.onnx and model.vocab.json beside it (class index -> gloss, frame size, decoding).
The graph takes one decoded video as it comes, (T, H, W, 3) uint8 RGB frames at the vocabulary's
`frames_res`, does the test transform and padding itself, and returns CTC log-probabilities
(1, T', C), their length and the greedy class ids (1, T'): the README's runner needs only
onnxruntime and numpy. `--input float` writes the graph of prepared batches instead ((B, T, 3,
H, W) in [-1, 1] and lengths in). `test_one_video.py --model_path model.onnx` runs either.
"""
from __future__ import annotations

import argparse
import sys

from inference.cli import add_model_arguments, load_model_from_args
from utils.errors import ConfigError, run_cli


def build_parser() -> argparse.ArgumentParser:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_model_arguments(parser)
    parser.add_argument("--format", default="onnx", choices=["onnx"], help="export format")
    parser.add_argument("--out", required=True, help="output file, e.g. model.onnx")
    parser.add_argument("--input", default="frames", choices=["frames", "float"],
                        help="frames: uint8 video in, preparation in the graph (default); "
                             "float: prepared (B, T, 3, H, W) batches in [-1, 1] and lengths")
    return parser


def export(args: argparse.Namespace) -> None:
    """Export the checkpoint and print what was written."""
    if args.model_path.lower().endswith(".onnx"):
        raise ConfigError(f"{args.model_path} is already exported; pass the .pt checkpoint")
    args.device = "cpu"  # the graph is traced on the CPU; onnxruntime picks its own device
    from inference.onnx_model import export_onnx, vocab_path

    out = export_onnx(load_model_from_args(args), args.out, inputs=args.input)
    print(f"wrote {out} and {vocab_path(out)}")


def main(argv: list[str] | None = None) -> int:
    """Entry point; a user error is one `error:` line and exit status 2."""
    args = build_parser().parse_args(argv)
    return run_cli(lambda: export(args))


if __name__ == "__main__":
    sys.exit(main())
