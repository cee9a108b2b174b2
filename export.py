"""Export a checkpoint as a model that runs without this repository (ONNX + its vocabulary).

    python export.py --model_path work_dir/demo/best_model.pt --format onnx --out model.onnx

Writes model.onnx (frames (B, T, 3, H, W) in [-1, 1] and lengths (B,) in; CTC log-probabilities
(B, T', C) and output lengths out; batch and time dynamic) and model.vocab.json beside it (class
index -> gloss, input size, decoding). `test_one_video.py --model_path model.onnx` runs it with
onnxruntime.
"""
from __future__ import annotations

import argparse
import sys

from inference.cli import add_model_arguments, load_model_from_args


def build_parser() -> argparse.ArgumentParser:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_model_arguments(parser)
    parser.add_argument("--format", default="onnx", choices=["onnx"], help="export format")
    parser.add_argument("--out", required=True, help="output file, e.g. model.onnx")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point: export and print what was written."""
    args = build_parser().parse_args(argv)
    try:
        if args.model_path.lower().endswith(".onnx"):
            raise ValueError(f"{args.model_path} is already exported; pass the .pt checkpoint")
        args.device = "cpu"  # the graph is traced on the CPU; onnxruntime picks its own device
        from inference.onnx_model import export_onnx, vocab_path

        out = export_onnx(load_model_from_args(args), args.out)
    except (FileNotFoundError, ValueError, RuntimeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {out} and {vocab_path(out)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
