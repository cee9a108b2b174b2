"""Per-video resize manifest: what a finished video was made from and what it wrote, so reruns redo stale work.

The manifest is the `.complete.json` written last (atomically) into a resized video folder. It
records every source frame (name, size, mtime, content hash), every output frame (same fields) and
the resize settings. A rerun trusts a video only while all of that still holds; sizes and mtimes are
compared first (a stat per file), and a file whose mtime moved is hashed before it is called changed,
so copying a dataset without preserving times costs a read, not a resize.
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

import cv2
import numpy as np

from dataset.layout import MANIFEST, read_manifest

MANIFEST_VERSION = 2
JPEG_QUALITY = 95
INTERPOLATION = "INTER_LANCZOS4"

# Why a video is (re)done; a video with none of these is up to date.
NEW = "not resized yet"
REQUESTED = "named with --redo"
SETTINGS_CHANGED = "resize settings changed"
SOURCES_CHANGED = "source frames changed"
OUTPUT_DAMAGED = "resized frames missing or damaged"
LEGACY_UNVERIFIED = "made by an older version and not verifiable"
REASONS = (NEW, REQUESTED, SETTINGS_CHANGED, SOURCES_CHANGED, OUTPUT_DAMAGED, LEGACY_UNVERIFIED)

FileRecord = list  # [size in bytes, mtime_ns, blake2b hex digest]; a list so that it is JSON as written


def resize_settings(size: tuple[int, int]) -> dict:
    """Everything besides the sources that determines the output bytes of a video."""
    return {"size": [int(size[0]), int(size[1])], "interpolation": INTERPOLATION, "jpeg_quality": JPEG_QUALITY}


def digest(data: bytes) -> str:
    """Content hash of a frame file (fast, 128 bits)."""
    return hashlib.blake2b(data, digest_size=16).hexdigest()


def file_record(path: str | Path, data: bytes | None = None) -> FileRecord:
    """[size, mtime_ns, digest] of a file; pass `data` when its bytes are already in memory."""
    stat = os.stat(path)
    if data is None:
        data = Path(path).read_bytes()
    return [stat.st_size, stat.st_mtime_ns, digest(data)]


def build_manifest(settings: Mapping, sources: Mapping[str, FileRecord], outputs: Mapping[str, FileRecord],
                   unreadable: list[str]) -> dict:
    """A manifest; `frames` and `unreadable` keep the first version's keys that other readers use."""
    return {"version": MANIFEST_VERSION, "frames": len(outputs), "unreadable": list(unreadable),
            "size": list(settings["size"]), "settings": dict(settings),
            "sources": dict(sources), "outputs": dict(outputs)}


@dataclass(frozen=True)
class Verdict:
    """Outcome of checking a finished video: `reason` to redo it (None: up to date)."""

    reason: str | None
    detail: str = ""
    manifest: dict | None = None  # refreshed manifest to write back (mtimes moved, content equal)
    adopted: bool = False  # a first-version folder verified and given a full manifest


def compare_files(directory: Path, recorded: Mapping[str, FileRecord], verify: bool) -> tuple[str, dict]:
    """Check files against their records: (first mismatch, {}) or ('', records with current mtimes)."""
    refreshed = {}
    for name, (size, mtime_ns, expected) in recorded.items():
        path = directory / name
        try:
            stat = os.stat(path)
        except OSError:
            return f"{path} is missing", {}
        if stat.st_size != size:
            return f"{path} changed size ({size} -> {stat.st_size} bytes)", {}
        if verify or stat.st_mtime_ns != mtime_ns:
            if digest(path.read_bytes()) != expected:
                return f"{path} changed content", {}
        refreshed[name] = [size, stat.st_mtime_ns, expected]
    return "", refreshed


def check_video(src_dir: Path, source_names: list[str], dst_dir: Path, output_names: list[str],
                settings: Mapping, verify: bool = False) -> Verdict:
    """Whether the finished output of one video still matches its sources, settings and written frames.

    `output_names` are the frame files now in `dst_dir` (same glob as the sources); files there that
    the manifest does not list would be read by the feeder, so they make the video stale too.
    """
    record = read_manifest(dst_dir)
    if record is None and not output_names:
        return Verdict(NEW)
    if record is None or record.get("version") != MANIFEST_VERSION:
        return check_legacy(record, src_dir, source_names, dst_dir, output_names, settings)
    if record.get("settings") != dict(settings):
        return Verdict(SETTINGS_CHANGED, f"{record.get('settings')} -> {dict(settings)}")
    if sorted(record["sources"]) != sorted(source_names):
        added = sorted(set(source_names) - set(record["sources"]))
        removed = sorted(set(record["sources"]) - set(source_names))
        return Verdict(SOURCES_CHANGED, f"{len(added)} frame(s) added, {len(removed)} removed in {src_dir}")
    problem, sources = compare_files(src_dir, record["sources"], verify)
    if problem:
        return Verdict(SOURCES_CHANGED, problem)
    extra = sorted(set(output_names) - set(record["outputs"]))
    if extra:
        return Verdict(OUTPUT_DAMAGED, f"{len(extra)} frame(s) in {dst_dir} not written for these sources")
    problem, outputs = compare_files(dst_dir, record["outputs"], verify)
    if problem:
        return Verdict(OUTPUT_DAMAGED, problem)
    if sources == record["sources"] and outputs == record["outputs"]:
        return Verdict(None)
    return Verdict(None, manifest=build_manifest(settings, sources, outputs, record["unreadable"]))


def check_legacy(record: Mapping | None, src_dir: Path, source_names: list[str], dst_dir: Path,
                 output_names: list[str], settings: Mapping) -> Verdict:
    """Adopt frames without a manifest if they provably fit their sources, so they need no resizing.

    Such frames come from this project's first version (a marker with the frame count only), from
    the original tools (no marker) or from a run interrupted before the manifest. The folder must
    hold exactly the readable sources' names, every frame must decode at the requested size, and no
    source may be newer than the marker (or the oldest frame, without one): a replaced download is.
    Adopting writes a full manifest; anything else redoes the video.
    """
    record = record if record is not None else {}
    unreadable = [os.path.basename(p) for p in record.get("unreadable", [])]
    expected = sorted(set(source_names) - set(unreadable))
    if not record and sorted(output_names) != expected:
        return Verdict(NEW, f"{dst_dir}: {len(output_names)} of {len(expected)} frames (an interrupted run)")
    if (record and list(record.get("size", [])) != list(settings["size"])) or sorted(output_names) != expected:
        return Verdict(LEGACY_UNVERIFIED, f"{dst_dir}: frame names or size differ from the sources")
    written = [MANIFEST] if record else expected
    written_mtime = min(os.stat(Path(dst_dir) / name).st_mtime_ns for name in written)
    sources = {}
    for name in source_names:
        path = Path(src_dir) / name
        if os.stat(path).st_mtime_ns > written_mtime:
            return Verdict(LEGACY_UNVERIFIED, f"{path} is newer than the resized frames")
        sources[name] = file_record(path)
    outputs = {}
    width, height = settings["size"]
    for name in expected:
        data = (Path(dst_dir) / name).read_bytes()
        image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
        if image is None or image.shape[:2] != (height, width):
            return Verdict(LEGACY_UNVERIFIED, f"{Path(dst_dir) / name} does not decode at {width}x{height}")
        outputs[name] = file_record(Path(dst_dir) / name, data)
    adopted = build_manifest(settings, sources, outputs, list(record.get("unreadable", [])))
    return Verdict(None, manifest=adopted, adopted=True)

