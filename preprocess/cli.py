"""Command line shared by the dataset_preprocess scripts (one per dataset of the registry)."""
from __future__ import annotations

import utils.installed  # noqa: F401  (first: without the requirements, one line on how to install)
import argparse
import difflib
import os
import posixpath
import sys
from pathlib import Path
from typing import Collection, Sequence

from dataset.layout import frames_root, parse_resolution, resolution_tag
from dataset.packed import DEFAULT_FORMAT, DEFAULT_JPEG_QUALITY, FORMATS
from preprocess.common import (
    InfoDict,
    PreprocessError,
    ResizeJob,
    ResizeResult,
    RunSummary,
    build_gloss_dict,
    info_entries,
    resolve_scoring_normaliser,
    run_resize,
    save_npy_dict,
    write_stm,
)
from dataset.provenance import RECORD, write_record
from dataset.registry import DATASETS, DatasetSpec, dataset_spec
from preprocess.datasets import drop_empty_videos, empty_videos, load_raw_dataset
from preprocess.pack import pack_splits
from utils.config import default_config
from utils.errors import run_cli

# Default paths are relative to the repository root, not the working directory, so the original
# README's `cd preprocess; python dataset_preprocess.py -p -m` reads and writes the same folders.
REPO_ROOT = Path(__file__).resolve().parent.parent


def default_path(value: str | None, default: str) -> Path:
    """`value` as given (relative to the working directory), else `default` below the repository root."""
    return Path(value) if value is not None else REPO_ROOT / default


def _resolution_arg(value: str) -> str:
    """argparse type of --output-res: a valid WIDTHxHEIGHTpx string, normalised."""
    try:
        return resolution_tag(value)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _quality(value: str) -> int:
    """argparse type of --pack-quality."""
    if not value.isdigit() or not 1 <= int(value) <= 100:
        raise argparse.ArgumentTypeError(f"expected a JPEG quality from 1 to 100, got {value!r}")
    return int(value)


def _positive_int(value: str) -> int:
    """argparse type of --workers."""
    if not value.isdigit() or int(value) < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value!r}")
    return int(value)


def build_parser(spec: DatasetSpec) -> argparse.ArgumentParser:
    """Argument parser of one dataset's preprocessing."""
    parser = argparse.ArgumentParser(
        description=f"Prepare {spec.name} for training: info dicts, gloss dict, ground-truth STMs, "
        "resized frames and an optional packed frame cache."
    )
    parser.add_argument("--dataset-root",
                        help=f"the unpacked download (the folder holding {spec.root_marker}); default: "
                        f"{spec.default_root} in the repository (the config's dataset_info.dataset_root)")
    parser.add_argument("--output-dir",
                        help="where the info/gloss dict/STM files (and the pack) are written; default: "
                        f"{spec.output_dir} in the repository (the config's dataset_info.dict_path folder)")
    frames_res = default_config()["feeder_args"]["frames_res"]  # what training reads by default
    parser.add_argument("--output-res", type=_resolution_arg, default=frames_res,
                        help=f"resized frame size WIDTHxHEIGHTpx (default {frames_res}, the config's "
                        f"feeder_args.frames_res)")
    parser.add_argument("--process-image", "-p", action="store_true", help="resize the frames (resumable)")
    parser.add_argument("--multiprocessing", "-m", action="store_true", help="resize in several processes")
    parser.add_argument("--workers", type=_positive_int, default=os.cpu_count() or 1,
                        help="processes used with --multiprocessing (default: all cores)")
    parser.add_argument("--redo", nargs="+", default=[], metavar="VIDEO_ID",
                        help="with --process-image: resize these videos again even if they look up to date")
    parser.add_argument("--verify", action="store_true",
                        help="with --process-image: compare content hashes of every source and resized frame "
                        "(default: sizes and modification times, hashing only files whose time moved)")
    parser.add_argument("--pack", action="store_true",
                        help="also write the frame pack of every split (memory-mapped fast path); "
                        "prints its estimated size first and refuses one that does not fit on the disk")
    parser.add_argument("--pack-format", choices=FORMATS, default=DEFAULT_FORMAT,
                        help="jpeg: compressed, about 1/18 of raw on camera frames; png: lossless, about 2/5; "
                        f"raw: uncompressed RGB (196 KB a 256x256 frame) (default {DEFAULT_FORMAT})")
    parser.add_argument("--pack-quality", type=_quality, default=DEFAULT_JPEG_QUALITY,
                        help=f"JPEG quality of --pack-format jpeg (default {DEFAULT_JPEG_QUALITY})")
    parser.add_argument("--force", action="store_true",
                        help="replace gloss_dict.npy, info files or STMs in --output-dir that no "
                             "preprocessing recorded there (dataset.json)")
    parser.add_argument("--repack", action="store_true",
                        help="rewrite the pack even where it is up to date (e.g. after a corrupt entry was reported)")
    parser.add_argument("--drop-empty", action="store_true",
                        help="leave out videos whose frame folder is empty instead of stopping")
    parser.add_argument("--stm-from-annotations", action="store_true",
                        help="write STMs from the annotations even where the download ships official ones")
    parser.add_argument("--stm-normalise", action=argparse.BooleanOptionalAction, default=None,
                        help="apply the scorer's gloss normalisation to STMs written from annotations "
                        f"(default: {', '.join(f'{s.name}={s.stm_normalised}' for s in DATASETS.values())})")
    return parser


def resize_jobs(spec: DatasetSpec, root: Path, info: InfoDict, res_tag: str,
                redo: Collection[str] = ()) -> list[ResizeJob]:
    """One resize job per video of `info` (dataset `spec`): raw frame folder -> same relative folder
    at `res_tag`."""
    dst_root = frames_root(spec, root, res_tag)
    jobs = []
    for key, entry in enumerate(info_entries(info)):
        directory, pattern = posixpath.split(entry["folder"])
        jobs.append(ResizeJob(key, str(Path(info["prefix"]) / directory), pattern, str(dst_root / directory),
                              entry["fileid"], entry["fileid"] in redo))
    return jobs


def check_redo_ids(infos: dict[str, InfoDict], redo: Sequence[str]) -> None:
    """Raise naming every --redo id that is no video of the dataset (with the closest ids)."""
    known = {entry["fileid"] for info in infos.values() for entry in info_entries(info)}
    unknown = [name for name in redo if name not in known]
    if unknown:
        close = {name: difflib.get_close_matches(name, known, n=1) for name in unknown}
        listing = ", ".join(f"{name!r}" + (f" (did you mean {close[name][0]!r}?)" if close[name] else "")
                            for name in unknown)
        raise PreprocessError(f"--redo names no video of this dataset: {listing}")


def apply_resize_results(info: InfoDict, results: Sequence[ResizeResult]) -> bool:
    """Set num_frames of videos that lost unreadable frames to what was written; True if changed."""
    changed = False
    for entry, result in zip(info_entries(info), results):
        if result.unreadable and entry["num_frames"] != result.written:
            entry["num_frames"] = result.written
            changed = True
    return changed


def check_no_empty_split(spec: DatasetSpec, root: Path, listed: dict[str, InfoDict],
                         kept: dict[str, InfoDict]) -> None:
    """Refuse a split without videos, saying why: its annotations list none, or none has frames."""
    for split in spec.splits:
        if info_entries(kept[split]):
            continue
        count = len(info_entries(listed[split]))
        reason = (f"none of its {count} videos has frames (--drop-empty left it empty)" if count else
                  f"the annotations in {root / spec.root_marker} list no video for it")
        raise PreprocessError(f"the {split} split of {spec.name} is empty: {reason}; training and evaluation read "
                              f"every split, so check that the download is complete and --dataset-root points at it")


def record_dataset(spec: DatasetSpec, out_dir: Path) -> None:
    """Name the dataset of the info files and gloss dict just written (dataset.provenance: a sidecar,
    so that the original tools still read the files)."""
    write_record(out_dir, spec.name, output_names(spec))


def output_names(spec: DatasetSpec) -> list[str]:
    """The files preprocessing writes in its output folder (besides the pack's folder)."""
    return ["gloss_dict.npy", *(f"{split}_info.npy" for split in spec.splits),
            *(f"{spec.evaluation_prefix}-{split}.stm" for split in spec.splits)]


def check_output_dir(out_dir: Path, root: Path, names: Sequence[str], force: bool) -> None:
    """--output-dir is a folder other than the dataset root, and the files preprocessing writes
    there are new or in a folder an earlier preprocessing recorded (dataset.json), unless `force`."""
    if out_dir.exists() and not out_dir.is_dir():
        raise PreprocessError(f"--output-dir {out_dir} is a file, not a folder; name a folder for the "
                              f"info files, the gloss dictionary and the STMs")
    if out_dir.resolve() == root.resolve():
        raise PreprocessError(f"--output-dir {out_dir} is the dataset root (--dataset-root): outputs never "
                              f"go among the download's files; name a folder of their own")
    foreign = [name for name in names if (out_dir / name).exists()]
    if foreign and not (out_dir / RECORD).is_file() and not force:
        raise PreprocessError(f"--output-dir {out_dir} holds {', '.join(foreign[:3])}"
                              f"{' ...' if len(foreign) > 3 else ''}, which no preprocessing recorded "
                              f"there ({RECORD}); pass --force to replace them, or another --output-dir")


def run(spec: DatasetSpec, args: argparse.Namespace) -> int:
    """Do the whole preprocessing for parsed `args`; returns the process exit status."""
    root = default_path(args.dataset_root, spec.default_root)
    out_dir = default_path(args.output_dir, spec.output_dir)
    size = parse_resolution(args.output_res)
    res_tag = resolution_tag(args.output_res)
    check_output_dir(out_dir, root, output_names(spec), args.force)
    raw = load_raw_dataset(spec, root)
    infos = dict(raw.infos)
    check_redo_ids(infos, args.redo)

    empty = empty_videos(infos)
    if empty and not args.drop_empty:
        listing = "\n  ".join(empty[:20]) + ("\n  ..." if len(empty) > 20 else "")
        raise PreprocessError(
            f"{len(empty)} video folder(s) have no frames:\n  {listing}\n"
            "Check the download is complete, or pass --drop-empty to leave these videos out."
        )
    if empty:
        print(f"warning: leaving out {len(empty)} video(s) without frames: {', '.join(empty[:5])}", file=sys.stderr)
        infos = {split: drop_empty_videos(info) for split, info in infos.items()}

    check_no_empty_split(spec, root, raw.infos, infos)

    # Annotation outputs first: they are cheap and must exist even if resizing is interrupted.
    wants_normalised = spec.stm_normalised if args.stm_normalise is None else args.stm_normalise
    normalise = resolve_scoring_normaliser(spec) if wants_normalised else None
    save_npy_dict(out_dir / "gloss_dict.npy", build_gloss_dict(infos[s] for s in spec.splits))
    for split in spec.splits:
        save_npy_dict(out_dir / f"{split}_info.npy", infos[split])
        official = None if args.stm_from_annotations else raw.official_stm.get(split)
        source = write_stm(out_dir / f"{spec.evaluation_prefix}-{split}.stm", infos[split], normalise, official)
        print(f"{split}: {len(info_entries(infos[split]))} videos, STM from {source}")
    record_dataset(spec, out_dir)

    if args.process_image:
        workers = args.workers if args.multiprocessing else 1
        summary = RunSummary()
        for split in spec.splits:
            jobs = resize_jobs(spec, root, infos[split], res_tag, set(args.redo))
            results = run_resize(jobs, size, workers=workers, desc=f"resize {split} to {res_tag}",
                                 verify=args.verify)
            summary.add(results)
            if apply_resize_results(infos[split], results):
                save_npy_dict(out_dir / f"{split}_info.npy", infos[split])
                record_dataset(spec, out_dir)
        for line in summary.lines():
            print(line)
        packed_dir = out_dir / f"packed-{res_tag}"
        changed = summary.videos - summary.up_to_date
        if changed and not args.pack and packed_dir.is_dir():
            print(f"warning: {changed} video(s) were resized now, so the pack {packed_dir} holds older frames; "
                  "rerun with --pack to rewrite it before training with feeder_args.packed", file=sys.stderr)
    if args.pack:
        pack_splits(spec, root, infos, res_tag, out_dir, args.pack_format, args.pack_quality, args.repack)
    return 0


def main(dataset: str, argv: Sequence[str] | None = None) -> int:
    """Preprocess the dataset named `dataset` with the options `argv`; returns the exit status."""
    return preprocess(dataset_spec(dataset, key="--dataset"), argv)


def preprocess(spec: DatasetSpec, argv: Sequence[str] | None = None) -> int:
    """Preprocess the dataset of registry entry `spec` (resolved once, by the entry point) with the
    options `argv`: clear one-paragraph errors instead of tracebacks for bad input."""
    parser = build_parser(spec)
    args = parser.parse_args(argv)
    if (args.redo or args.verify) and not args.process_image:
        parser.error("--redo and --verify act on resizing: add --process-image")
    return run_cli(lambda: run(spec, args))
