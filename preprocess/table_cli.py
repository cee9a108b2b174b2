"""`python -m preprocess --dataset table --table PATH.csv --output-dir DIR`: a dataset defined by one
table, its videos decoded straight into the frame pack; writes the info files, the gloss dictionary
(from train), the ground-truth STMs and the pack."""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Sequence

from dataset.layout import parse_resolution, resolution_tag
from dataset.packed import DEFAULT_JPEG_QUALITY
from dataset.registry import DatasetSpec
from dataset.video_files import frame_rate_arg
from preprocess.cli import _positive_int, _quality, _resolution_arg, default_path, record_dataset
from preprocess.common import PreprocessError, build_gloss_dict, info_entries, save_npy_dict, write_stm
from preprocess.pack import human
from preprocess.table import TableVideo, info_entry, read_video_table, split_infos, unseen_glosses, unseen_report
from preprocess.video_pack import VideoJob, decode_settings, pack_videos
from utils.errors import run_cli


def add_video_options(parser: argparse.ArgumentParser, output_dir: str) -> None:
    """The options of every command that decodes videos into a pack."""
    parser.add_argument("--output-dir", help=f"where everything is written (default: {output_dir} in the "
                        f"repository; the config's dataset_info.dict_path folder)")
    parser.add_argument("--output-res", type=_resolution_arg, default="256x256px",
                        help="frame size WIDTHxHEIGHTpx every video is resized to (Lanczos)")
    parser.add_argument("--fps", type=frame_rate_arg, default=None,
                        help="resample every video file to this many frames a second (the published models "
                        "were trained at 25); default: every decoded frame")
    parser.add_argument("--workers", type=_positive_int, default=os.cpu_count() or 1,
                        help="decoding processes (default: all cores)")
    parser.add_argument("--pack-quality", type=_quality, default=DEFAULT_JPEG_QUALITY,
                        help=f"JPEG quality of the pack (default {DEFAULT_JPEG_QUALITY})")
    parser.add_argument("--skip-bad-videos", action="store_true",
                        help="leave out videos that do not decode (listed at the end) instead of stopping")
    parser.add_argument("--repack", action="store_true", help="decode every video again")


def build_parser(spec: DatasetSpec) -> argparse.ArgumentParser:
    """Options of the table dataset's preprocessing (`spec`: its registry entry)."""
    parser = argparse.ArgumentParser(
        prog="python -m preprocess --dataset table",
        description="Prepare a dataset defined by one table (CSV or TSV, UTF-8, header row; columns video, "
        "glosses, split and optionally signer, id): decode its videos straight into the JPEG frame pack and "
        "write the info files, the gloss dictionary (from train) and the ground-truth STMs.")
    parser.add_argument("--table", required=True, help="the table; video paths are relative to its folder")
    add_video_options(parser, spec.output_dir)
    return parser


def run(spec: DatasetSpec, args: argparse.Namespace) -> int:
    """Read the table, then pack its videos and write the annotation files; returns the exit status."""
    table = Path(args.table)
    videos = read_video_table(table)
    for line in unseen_report(unseen_glosses(videos)):
        print(line, file=sys.stderr)
    return prepare_videos(spec, videos, table.parent, args)


def prepare_videos(spec: DatasetSpec, videos: Sequence[TableVideo], root: Path, args: argparse.Namespace) -> int:
    """Decode `videos` into the pack of dataset `spec`, then write its info files (prefix: `root`,
    where the videos' paths start), gloss dictionary and STMs; returns the exit status."""
    out_dir = default_path(args.output_dir, spec.output_dir)
    res_tag = resolution_tag(args.output_res)
    settings = decode_settings(parse_resolution(res_tag), args.fps, "jpeg", args.pack_quality)
    packed_dir = out_dir / f"packed-{res_tag}"
    entries: dict[str, list[dict]] = {}
    bad: list[str] = []
    for split in spec.splits:
        rows = [video for video in videos if video.split == split]
        jobs = [VideoJob(video.fileid, str(video.path), video.where) for video in rows]
        packed = pack_videos(packed_dir, split, jobs, settings, args.workers, args.skip_bad_videos, spec.name,
                             args.repack)
        state = "up to date" if packed.up_to_date else f"{packed.decoded_now} decoded, {packed.reused} unchanged"
        print(f"pack {split}: {len(packed.frames)} videos ({state}), {sum(packed.frames.values())} frames")
        entries[split] = [info_entry(video, packed.frames[video.fileid], packed.decoded[video.fileid],
                                     packed.fps[video.fileid]) for video in rows if video.fileid in packed.frames]
        bad += [f"{video.where}: video {video.path}: {packed.bad[video.fileid]}"
                for video in rows if video.fileid in packed.bad]
        if not entries[split]:
            raise PreprocessError(f"none of the {len(rows)} videos of the {split} split of {spec.name} decodes"
                                  + (f": {bad[-1]}" if bad else ""))
    infos = split_infos(root, entries, spec.splits)
    # The table's vocabulary is train's; the downloads' scripts count every split, as the original did.
    save_npy_dict(out_dir / "gloss_dict.npy",
                  build_gloss_dict([infos["train"]] if spec.from_table else infos.values()))
    for split in spec.splits:
        save_npy_dict(out_dir / f"{split}_info.npy", infos[split])
        write_stm(out_dir / f"{spec.evaluation_prefix}-{split}.stm", infos[split])
        print(f"{split}: {len(info_entries(infos[split]))} videos, STM from the annotations")
    record_dataset(spec, out_dir)
    size = sum(path.stat().st_size for path in packed_dir.iterdir() if path.is_file())
    print(f"wrote {out_dir} (pack {human(size)} in {packed_dir.name})")
    if bad:
        print(f"left out {len(bad)} video(s) that do not decode (--skip-bad-videos):", file=sys.stderr)
        for line in bad:
            print(f"  {line}", file=sys.stderr)
    return 0


def main(spec: DatasetSpec, argv: Sequence[str] | None = None) -> int:
    """Entry point for dataset `spec` (resolved by preprocess/__main__.py): one `error:` line instead
    of a traceback for bad input."""
    args = build_parser(spec).parse_args(argv)
    return run_cli(lambda: run(spec, args))

