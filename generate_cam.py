"""Grad-CAM heat maps for the glosses the model recognises in one video.

    python generate_cam.py --model_path work_dir/best.pt --video_path clip.mp4 --out cam/ [--gloss all]

The method is described in inference/explain.py.
"""
from __future__ import annotations

import utils.installed  # noqa: F401  (first: without the requirements, one line on how to install)
import argparse
import sys
from pathlib import Path

from inference.cli import add_model_arguments, add_video_arguments, load_model_and_video
from inference.explain import (DEFAULT_LAYER, blend, gloss_cams, gloss_sheet, input_frames_rgb,
                               gloss_map_names, write_gloss_maps)
from inference.recognize import prepare_input
from utils.errors import run_cli
from utils.outputs import check_output_dir


def build_parser() -> argparse.ArgumentParser:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_model_arguments(parser)
    add_video_arguments(parser)
    parser.add_argument("--layer", default=DEFAULT_LAYER, help="backbone layer to explain")
    parser.add_argument("--gloss", default="all",
                        help="position of the gloss in the decoded sentence (0-based), or 'all'")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--force", action="store_true",
                        help="replace the maps of an earlier run in --out")
    parser.add_argument("--alpha", type=float, default=0.45, help="heat map opacity")
    parser.add_argument("--per_frame_norm", action="store_true",
                        help="scale each frame's map to its own maximum (default: one scale "
                             "for the whole video, so frames keep their relative strength)")
    parser.add_argument("--sheet_frames", type=int, default=32,
                        help="frames shown on the contact sheet at most")
    parser.add_argument("--sheet_columns", type=int, default=8)
    parser.add_argument("--tile_size", type=int, default=112, help="contact sheet tile size in pixels")
    return parser


def generate(args: argparse.Namespace) -> list[dict]:
    """Compute and write the maps of the chosen glosses; returns what was written."""
    inputs = {"--model_path": args.model_path, "--video_path": args.video_path}
    check_output_dir(args.out, [], inputs, args.force)  # before the model runs: --out is no input
    loaded, clip = load_model_and_video(args)
    prepared = prepare_input(clip.frames, loaded.kernel_sizes, loaded.input_size, loaded.image_scale)
    rec, maps = gloss_cams(loaded, prepared, args.layer, args.gloss)
    names = [name for position in maps for name in gloss_map_names(position, rec.glosses[position])]
    check_output_dir(args.out, names, inputs, args.force)
    frames = input_frames_rgb(prepared)
    written = []
    for position, raw in maps.items():
        blended = blend(frames, raw, args.alpha, args.per_frame_norm)
        sheet = gloss_sheet(rec, position, blended, prepared, args.layer, args.sheet_frames,
                            args.sheet_columns, args.tile_size)
        folder, sheet_path = write_gloss_maps(Path(args.out), position, rec.glosses[position],
                                              blended, sheet)
        written.append({"position": position, "gloss": rec.glosses[position],
                        "frames_dir": str(folder), "sheet": str(sheet_path)})
    return written


def main(argv: list[str] | None = None) -> int:
    """Entry point: write the heat maps and print where they are."""
    args = build_parser().parse_args(argv)
    return run_cli(lambda: report(generate(args)))


def report(written: list[dict]) -> None:
    """Print where the maps of each gloss are."""
    for item in written:
        print(f"gloss #{item['position']} {item['gloss']}: frames in {item['frames_dir']}/, "
              f"contact sheet {item['sheet']}")


if __name__ == "__main__":
    sys.exit(main())
