"""Whether a split's pack still holds the frames preprocessing last resized (one stat per video).

`--pack` records, for every video, the manifest of its resized frames (size, modification time,
and a digest of the frames it lists). A later `--process-image` that redoes a video rewrites that
manifest; training with `feeder_args.packed: true` then finds the pack stale and says so, rather
than training on the older frames. Videos whose resized frames are not on this machine (a pack
copied alone) are not checked: the pack is all there is.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Mapping

from dataset.layout import MANIFEST, read_manifest

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


def stale_videos(recorded: Mapping[str, FramesRecord], video_dirs: Mapping[str, Path]) -> list[str]:
    """Videos whose resized frames changed since the pack recorded them (in `video_dirs` order)."""
    stale = []
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
            stale.append(fileid)
    return stale
