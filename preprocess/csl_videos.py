"""CSL from its download: the original's split files (train.txt, dev.txt) against CSL's .avi videos,
decoded through the table dataset's video path into CSL's frame pack.

    python -m preprocess --dataset CSL --videos PATH [--mapping MAP.csv] [--dataset-root DIR] ...

A split line names its video `video<N>` (its folder on the original authors' machine). The split
files fix what N stands for: the 250 lines of each block N // 250 hold one sentence, and dev is
positions 200-249 of every block, so N counts the 100 sentences' folders in name order and, within
one, its 250 videos (50 signers x 5 repetitions) in name order: video N is the (N % 250)-th video of
the (N // 250)-th sentence folder below --videos, signed by signer N % 250 // 5 + 1 (dev: signers
41-50). A copy laid out otherwise passes --mapping: a CSV with the columns `video` (video<N>) and
`path` (the file, relative to --videos or absolute).
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Mapping, Sequence

from dataset.annotations import csl_split_file
from dataset.registry import DatasetSpec
from dataset.video_files import VIDEO_EXTENSIONS, natural_key
from preprocess.common import PreprocessError
from preprocess.datasets import check_unique_videos, read_csl_split_file
from preprocess.cli import default_path
from preprocess.table import TableVideo, read_rows, resolve_video
from preprocess.table_cli import add_video_options, prepare_videos
from utils.errors import run_cli

PER_SENTENCE, REPETITIONS = 250, 5  # videos of one sentence: 50 signers x 5 repetitions


def sentence_folders(videos: Path) -> list[Path]:
    """The folders below `videos` that hold video files, in name order (one per sentence)."""
    if not videos.is_dir():
        raise PreprocessError(f"CSL video folder not found: {videos} (--videos): the folder of CSL's "
                              f"sentence folders of .avi videos")
    folders = sorted((p for p in videos.iterdir() if p.is_dir()), key=lambda p: natural_key(p.name))
    return [folder for folder in folders if any(f.suffix.lower() in VIDEO_EXTENSIONS for f in folder.iterdir())]


def default_mapping(videos: Path, per_sentence: int = PER_SENTENCE) -> dict[str, Path]:
    """video<N> -> the (N % per_sentence)-th video of the (N // per_sentence)-th sentence folder."""
    mapping = {}
    for sentence, folder in enumerate(sentence_folders(videos)):
        files = sorted((f for f in folder.iterdir() if f.suffix.lower() in VIDEO_EXTENSIONS),
                       key=lambda f: natural_key(f.name))
        if len(files) != per_sentence:
            raise PreprocessError(f"{folder} holds {len(files)} videos, not a sentence's {per_sentence}: the "
                                  f"split files' video<N> cannot be told by position; pass --mapping (a CSV of "
                                  f"video,path) for this copy of CSL")
        for number, path in enumerate(files):
            mapping[f"video{sentence * per_sentence + number}"] = path
    return mapping


def read_mapping(path: Path, videos: Path) -> dict[str, Path]:
    """video<N> -> file from a --mapping CSV (columns video, path)."""
    _header, rows = read_rows(path, required=("video", "path"))
    return {cells["video"]: resolve_video(path, line_no, cells["path"], videos) for line_no, cells in rows}


def signer_of(name: str, per_sentence: int = PER_SENTENCE) -> str:
    """'P07': the signer of video<N> in CSL's order."""
    number = int(name[len("video"):]) if name[len("video"):].isdigit() else -1
    return f"P{number % per_sentence // REPETITIONS + 1:02d}" if number >= 0 else "unknown"


def csl_videos(spec: DatasetSpec, split_dir: Path, mapping: Mapping[str, Path], root: Path,
               by_position: bool) -> list[TableVideo]:
    """The videos of CSL's split files (`spec`: its registry entry) found in `mapping`; the lines
    without one are reported."""
    per_split = {split: read_csl_split_file(csl_split_file(split_dir, split)) for split in spec.splits}
    check_unique_videos(split_dir, per_split)
    videos, missing = [], []
    for split, lines in per_split.items():
        for line in lines:
            path = mapping.get(line.name)
            if path is None:
                missing.append(f"{split}.txt:{line.line_no} {line.name}")
                continue
            videos.append(TableVideo(split_dir / f"{split}.txt", line.line_no, line.name,
                                     os.path.relpath(path, root), Path(path),
                                     tuple(line.glosses.split()), split,
                                     signer_of(line.name) if by_position else "unknown"))
    if missing and not videos:
        raise PreprocessError(f"none of the videos that {split_dir}/train.txt and dev.txt name is among the "
                              f"videos found ({len(mapping)}); check --videos (and --mapping)")
    if missing:
        print(f"warning: {len(missing)} split-file lines name a video not found, left out: "
              f"{'; '.join(missing[:3])}{'; ...' if len(missing) > 3 else ''}", file=sys.stderr)
    return videos


def build_parser(spec: DatasetSpec) -> argparse.ArgumentParser:
    """Options of CSL's preprocessing from its videos (`spec`: its registry entry)."""
    parser = argparse.ArgumentParser(
        prog="python -m preprocess --dataset CSL --videos PATH",
        description="Prepare CSL from its download: the original's train.txt and dev.txt against the folder of "
        "its .avi videos, decoded straight into the JPEG frame pack (info files, gloss dictionary, STMs).")
    parser.add_argument("--videos", required=True, help="the folder of CSL's sentence folders of .avi videos")
    parser.add_argument("--mapping", help="a CSV of video,path (video<N> -> its file) for a copy laid out otherwise")
    parser.add_argument("--dataset-root", help="the folder holding train.txt and dev.txt (default: "
                        f"{spec.default_root} in the repository)")
    add_video_options(parser, spec.output_dir)
    return parser


def run(spec: DatasetSpec, args: argparse.Namespace) -> int:
    """Map the split files' lines to videos, then pack them; returns the exit status."""
    videos_root = Path(args.videos)
    split_dir = default_path(args.dataset_root, spec.default_root)
    mapping = (read_mapping(Path(args.mapping), videos_root) if args.mapping
               else default_mapping(videos_root))
    videos = csl_videos(spec, split_dir, mapping, videos_root, by_position=not args.mapping)
    return prepare_videos(spec, videos, videos_root, args)


def main(spec: DatasetSpec, argv: Sequence[str] | None = None) -> int:
    """Entry point for CSL's entry `spec` (resolved by preprocess/__main__.py): one `error:` line
    instead of a traceback for bad input."""
    args = build_parser(spec).parse_args(argv)
    return run_cli(lambda: run(spec, args))
