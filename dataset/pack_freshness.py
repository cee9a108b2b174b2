"""Whether a split's pack still holds the frames preprocessing last resized (one stat per video).

`--pack` records, for every video, the manifest of its resized frames (size, modification time,
and a digest of the frames it lists). A later `--process-image` that redoes a video rewrites that
manifest; training with `feeder_args.packed: true` then finds the pack stale and says so, rather
than training on the older frames. The pack also records the folder it was made from: frames that
differ in another folder (another copy of the dataset, another video set) or that are no newer than
the pack's are reported as the pack being built from other frames, not as resized again. Videos whose
resized frames are not on this machine (a pack copied alone) are not checked: the pack is all there is.
A pack of videos decoded straight into it (the table dataset) records each video's source files
instead; one that changed since is reported the same way.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Iterable, Mapping

from dataset.layout import MANIFEST, read_manifest
from dataset.provenance import file_digest

RESIZED_AGAIN = "resized again after packing"
OTHER_FRAMES = "built from other frames"

FramesRecord = list  # [manifest size, manifest mtime_ns, digest of the listed frames' names and contents]


def frames_digest(manifest: Mapping) -> str:
    """Digest of the resized frames a manifest lists: names and content hashes, not times."""
    outputs = manifest.get("outputs") or {}
    listed = sorted((str(name), str(record[-1])) for name, record in outputs.items())
    return hashlib.blake2b(json.dumps(listed).encode(), digest_size=16).hexdigest()


def frames_record(video_dir: str | Path) -> FramesRecord | None:
    """The record of a resized video folder's manifest, or None when it has none (not finished)."""
    manifest = read_manifest(video_dir)
    if manifest is None:
        return None
    try:
        stat = (Path(video_dir) / MANIFEST).stat()
    except OSError:  # removed since it was read: the video is being redone
        return None
    return [stat.st_size, stat.st_mtime_ns, frames_digest(manifest)]


def frames_folder(video_dirs: Iterable[str | Path]) -> str | None:
    """The folder holding all of a split's resized video folders (resolved), None for no videos."""
    dirs = [os.path.abspath(d) for d in video_dirs]
    return str(Path(os.path.commonpath(dirs)).resolve()) if dirs else None


def stale_videos(recorded: Mapping[str, FramesRecord], video_dirs: Mapping[str, Path],
                 packed_from: str | None = None) -> dict[str, str]:
    """Videos whose resized frames differ from those packed (in `video_dirs` order), each with why:
    RESIZED_AGAIN when these folders were rewritten after packing, else OTHER_FRAMES.

    `packed_from` is the folder the pack was made from (frames_folder); None (packs before it was
    recorded) takes these folders to be that one.
    """
    same_folder = packed_from is None or frames_folder(video_dirs.values()) == packed_from
    stale = {}
    for fileid, video_dir in video_dirs.items():
        old = recorded.get(fileid)
        if not old:
            continue
        try:
            stat = (Path(video_dir) / MANIFEST).stat()
        except OSError:
            continue
        if [stat.st_size, stat.st_mtime_ns] == list(old[:2]):
            continue  # unchanged since packing: no need to read it
        new = frames_record(video_dir)
        if new is None or new[2] != old[2]:
            # A rewritten manifest is newer than the one packed; older or other folders' frames were
            # never the pack's.
            stale[fileid] = RESIZED_AGAIN if same_folder and stat.st_mtime_ns > old[1] else OTHER_FRAMES
    return stale


def mismatch_report(index: Mapping, video_dirs: Mapping[str, Path], packed_dir: Path, split: str,
                    frames_dir: Path) -> str | None:
    """Why a split's pack does not hold the resized frames in `video_dirs`, or None when it does."""
    stale = stale_videos(index.get("frames_from") or {}, video_dirs, index.get("frames_dir"))
    if not stale:
        return None
    other = [fileid for fileid, why in stale.items() if why == OTHER_FRAMES]
    if not other:
        return (f"the pack {packed_dir} of the {split} split holds older frames of {len(stale)} videos than "
                f"{frames_dir} (first: {list(stale)[:3]}): they were {RESIZED_AGAIN}; re-run the preprocessing "
                f"with --pack (it rewrites only the stale splits)")
    source = index.get("frames_dir")
    where = f", packed from {source}" if source and source != frames_folder(video_dirs.values()) else ""
    return (f"the pack {packed_dir} of the {split} split was {OTHER_FRAMES} than those in {frames_dir} for "
            f"{len(other)} videos (first: {other[:3]}{where}): it belongs to another copy of the dataset or "
            f"another video set; point feeder_args.packed_dir at the pack of these frames, or re-run the "
            f"preprocessing with --pack to rebuild it from them")


def source_changed(path: str | Path, record: Mapping[str, list]) -> str | None:
    """What changed in a packed video's source files since it was decoded (size, or content where the
    time moved), else None; a source no longer on this machine is not checked (the pack is all there is)."""
    if not path or not Path(path).exists():
        return None
    folder = Path(path) if Path(path).is_dir() else Path(path).parent
    for name, (size, mtime_ns, digest) in record.items():
        try:
            stat = os.stat(folder / name)
        except OSError:
            return f"{folder / name} is gone"
        if stat.st_size != size or (stat.st_mtime_ns != mtime_ns and file_digest(folder / name) != digest):
            return f"{folder / name} changed"
    return None


def changed_sources_report(index: Mapping, packed_dir: Path, split: str) -> str | None:
    """Why a split's video pack (the table dataset's) no longer holds its videos, or None when it does."""
    changed = {fileid: why for fileid, entry in (index.get("table_sources") or {}).items()
               if isinstance(entry, dict) and (why := source_changed(entry.get("path", ""), entry.get("source") or {}))}
    if not changed:
        return None
    first = next(iter(changed.items()))
    return (f"the pack {packed_dir} of the {split} split was decoded from older versions of {len(changed)} videos "
            f"(first: {first[0]!r}: {first[1]}); re-run the preprocessing (python -m preprocess --dataset ...): it "
            f"decodes only the changed videos")
