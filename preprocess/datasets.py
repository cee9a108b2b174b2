"""Readers turning each dataset's raw annotations into the original tools' per-split info dicts.

Every dataset of the registry (dataset/registry.py) has its reader in PARSERS below."""
from __future__ import annotations

import functools
import posixpath
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Collection, Mapping, Sequence

from dataset.annotations import (
    CSL_DAILY_MAP_HEADER,
    CSL_DAILY_SPLIT_HEADER,
    PHOENIX2014_HEADER,
    PHOENIX2014T_HEADER,
    csl_daily_map,
    csl_daily_split_file,
    csl_split_file,
    phoenix_corpus,
)
from dataset.layout import raw_frames_root
from dataset.registry import SPLITS, DatasetSpec
from preprocess.common import (
    InfoDict,
    PreprocessError,
    TableRow,
    drop_rows,
    list_frames,
    make_info_dict,
    read_table,
)

# Row 2390 (0-based data row, i.e. pandas' index) of the PHOENIX-2014 train csv is a broken video.
PHOENIX2014_BROKEN_TRAIN_ROWS = (2390,)


@dataclass(frozen=True)
class RawDataset:
    """Everything preprocessing needs to know about one downloaded dataset."""

    name: str
    root: Path
    infos: dict[str, InfoDict]  # split -> info dict (original layout)
    official_stm: dict[str, Path]  # split -> the download's own ground-truth STM (may not exist)


def _frame_count(prefix: str, folder: str) -> int:
    """Number of frames matched by the info `folder` glob below `prefix`."""
    directory, pattern = posixpath.split(folder)
    return len(list_frames(Path(prefix) / directory, pattern))


def _phoenix_entry(split: str, prefix: str, row: TableRow) -> dict:
    """Info entry for one PHOENIX-2014 csv row."""
    fileid, folder, signer, label = row.fields
    folder = f"{split}/{folder}"
    return {
        "fileid": fileid,
        "folder": folder,
        "signer": signer,
        "label": label,
        "num_frames": _frame_count(prefix, folder),
        "original_info": "|".join(row.fields),
    }


def phoenix2014_info(spec: DatasetSpec, root: Path, split: str,
                     broken_rows: tuple[int, ...] | None = None) -> InfoDict:
    """Info dict of one PHOENIX-2014 split (`spec`: its registry entry); train drops the known broken row(s)."""
    rows = read_table(phoenix_corpus(root, spec.name, split), PHOENIX2014_HEADER)
    if broken_rows is None:
        broken_rows = PHOENIX2014_BROKEN_TRAIN_ROWS if split == "train" else ()
    rows = drop_rows(rows, broken_rows)
    prefix = str(raw_frames_root(spec, root))
    return make_info_dict(prefix, [_phoenix_entry(split, prefix, row) for row in rows])


def _phoenix_t_folder(prefix: str, split: str, name: str, video: str) -> str:
    """The frames glob of a PHOENIX-2014-T video.

    The csv's `video` column says `<name>/1/*.png` but the release stores frames directly in
    `<split>/<name>/`; use whichever exists so num_frames and resizing see the real frames.
    """
    as_listed = f"{split}/{video}"
    if _frame_count(prefix, as_listed) > 0:
        return as_listed
    return f"{split}/{name}/*.png"


def phoenix2014t_info(spec: DatasetSpec, root: Path, split: str) -> InfoDict:
    """Info dict of one PHOENIX-2014-T split (`spec`: its registry entry)."""
    rows = read_table(phoenix_corpus(root, spec.name, split), PHOENIX2014T_HEADER)
    prefix = str(raw_frames_root(spec, root))
    entries = []
    for row in rows:
        name, video, _start, _end, speaker, orth, _translation = row.fields
        folder = _phoenix_t_folder(prefix, split, name, video)
        entries.append(
            {
                "fileid": name,
                "folder": folder,
                "signer": speaker,
                "label": orth,
                "num_frames": _frame_count(prefix, folder),
                "original_info": "|".join(row.fields),
            }
        )
    return make_info_dict(prefix, entries)


def csl_daily_splits(split_file: Path) -> dict[str, str]:
    """Video name -> split from CSL-Daily's split file, rejecting unknown split names."""
    assignment = {}
    for row in read_table(split_file, CSL_DAILY_SPLIT_HEADER):
        name, split = (field.strip() for field in row.fields)
        if split not in SPLITS:
            raise PreprocessError(
                f"{split_file}:{row.line_no}: split {split!r} is not one of {', '.join(SPLITS)}"
            )
        assignment[name] = split
    return assignment


def csl_daily_infos(spec: DatasetSpec, root: Path) -> dict[str, InfoDict]:
    """Info dicts of all CSL-Daily splits (`spec`: its registry entry; video_map order; videos
    missing from the split file go to train)."""
    rows = read_table(csl_daily_map(root), CSL_DAILY_MAP_HEADER)
    assignment = csl_daily_splits(csl_daily_split_file(root))
    prefix = str(raw_frames_root(spec, root))
    per_split: dict[str, list[dict]] = {split: [] for split in SPLITS}
    for row in rows:
        _index, name, _length, gloss, *_rest = (field.strip() for field in row.fields)
        folder = f"{name}/*.jpg"
        per_split[assignment.get(name, "train")].append(
            {
                "fileid": name,
                "folder": folder,
                "signer": "unknown",
                "label": gloss,
                "num_frames": _frame_count(prefix, folder),
                # from 'name' on, as the original (inference scripts split it by '|')
                "original_info": "|".join(field.strip() for field in row.fields[1:]),
            }
        )
    return {split: make_info_dict(prefix, per_split[split]) for split in SPLITS}


@dataclass(frozen=True)
class SplitLine:
    """One line of a CSL split file: `<video folder on the original authors' machine>|<glosses>`."""

    line_no: int
    path: str
    glosses: str

    @property
    def name(self) -> str:
        """The video's folder name, its last path component ('video250'): unique across the dataset."""
        return re.split(r"[\\/]", self.path.rstrip("/\\"))[-1]


def read_csl_split_file(path: Path) -> list[SplitLine]:
    """The lines of one of the original's CSL split files (CRLF or LF ends, with or without a final one)."""
    if not path.is_file():
        raise PreprocessError(
            f"CSL split file not found: {path}. The original project ships train.txt and dev.txt (its "
            f"preprocess/CSL/ folder); put them in the dataset root, beside the video folders")
    lines = []
    with path.open("r", encoding="utf-8-sig") as handle:
        for line_no, line in enumerate(handle.read().splitlines(), start=1):
            if not line.strip():
                continue
            fields = line.split("|")
            if len(fields) != 2 or not fields[0].strip():
                raise PreprocessError(f"{path}:{line_no}: expected '<video folder>|<glosses>', got {line!r}")
            lines.append(SplitLine(line_no, fields[0].strip(), fields[1].strip()))
    return lines


def csl_missing_folders(split_file: Path, lines: Sequence[SplitLine], frames: Path, present: Collection[str],
                        examples: int = 3) -> str | None:
    """A report of the lines whose video folder is not among `present` in `frames` (count and examples)."""
    missing = [line for line in lines if line.name not in present]
    if not missing:
        return None
    shown = "; ".join(f"line {line.line_no}: {line.path} -> {frames / line.name}" for line in missing[:examples])
    return (f"{split_file.name}: {len(missing)} of {len(lines)} lines name a video folder that is not in {frames} "
            f"({shown}{'; ...' if len(missing) > examples else ''})")


def check_unique_videos(root: Path, per_split: Mapping[str, Sequence[SplitLine]]) -> None:
    """Every line of the split files names its own video folder."""
    seen: dict[str, str] = {}
    for split, lines in per_split.items():
        for line in lines:
            if line.name in seen:
                raise PreprocessError(f"{csl_split_file(root, split)}:{line.line_no}: video folder {line.name!r} is "
                                      f"also named at {seen[line.name]}; every line must name its own video")
            seen[line.name] = f"{split}.txt:{line.line_no}"


def csl_infos(spec: DatasetSpec, root: Path) -> dict[str, InfoDict]:
    """Info dicts of CSL's train and dev splits (`spec`: its registry entry) from the original's
    split files in the root.

    Each line names a video folder by its path on the original authors' machine; the video is the
    folder of that name (the path's last component) in the root. Lines whose folder is missing are
    reported (count and examples) and become videos without frames, which the preprocessing
    refuses, or leaves out with --drop-empty; a root holding none of them is refused outright.
    """
    prefix = raw_frames_root(spec, root)
    per_split = {split: read_csl_split_file(csl_split_file(root, split)) for split in spec.splits}
    check_unique_videos(root, per_split)
    present = {line.name for lines in per_split.values() for line in lines if (prefix / line.name).is_dir()}
    reports = [report for split, lines in per_split.items()
               if (report := csl_missing_folders(csl_split_file(root, split), lines, prefix, present)) is not None]
    if reports and not present:
        raise PreprocessError(f"CSL dataset root {root} holds none of the videos its split files name: "
                              f"{'; '.join(reports)}. Each line's video is looked up by its folder name; pass "
                              f"--dataset-root pointing at the folder that holds the video folders")
    for report in reports:
        print(f"warning: {report}", file=sys.stderr)
    return {split: csl_info(lines, prefix) for split, lines in per_split.items()}


def csl_info(lines: Sequence[SplitLine], prefix: Path) -> InfoDict:
    """The info dict of CSL split-file lines whose video folders lie in `prefix` (the raw frames)."""
    entries = [{"fileid": line.name, "folder": f"{line.name}/*.jpg", "signer": "unknown", "label": line.glosses,
                "num_frames": _frame_count(str(prefix), f"{line.name}/*.jpg"),
                # the file id first, as the feeders read it ('|' fields), instead of the foreign path
                "original_info": f"{line.name}|{line.glosses}"}
               for line in lines]
    return make_info_dict(str(prefix), entries)


def _phoenix_infos(reader: Callable[[DatasetSpec, Path, str], InfoDict], spec: DatasetSpec,
                   root: Path) -> dict[str, InfoDict]:
    """Info dicts of the three splits of a PHOENIX release."""
    return {split: reader(spec, root, split) for split in SPLITS}


def nearby_roots(root: Path, marker: str) -> list[Path]:
    """Folders just above or below `root` that hold `marker`: where a root one level off points."""
    candidates = [root.parent] if root.parent != root else []
    if root.is_dir():
        candidates += sorted(p for p in root.iterdir() if p.is_dir())
    return [c for c in candidates if (c / marker).exists()]


def check_root(spec: DatasetSpec, root: Path) -> None:
    """Raise naming the missing annotation folder and, when one is found nearby, the root to pass."""
    marker = spec.root_marker
    if (root / marker).exists():
        return
    found = nearby_roots(root, marker)
    fix = (f"{found[0]} holds it: pass --dataset-root {found[0]}" if found else
           f"pass --dataset-root pointing at the unpacked download (the folder holding {marker})")
    state = "not found" if root.is_dir() else "not found (the folder does not exist)"
    raise PreprocessError(f"{spec.name} dataset root {root}: {root / marker} {state}; {fix}")


# Dataset name -> the reader of its download: (its registry entry, root) -> {split: info dict}.
PARSERS: dict[str, Callable[[DatasetSpec, Path], dict[str, InfoDict]]] = {
    "phoenix2014": functools.partial(_phoenix_infos, phoenix2014_info),
    "phoenix2014-T": functools.partial(_phoenix_infos, phoenix2014t_info),
    "CSL-Daily": csl_daily_infos,
    "CSL": csl_infos,
}


def load_raw_dataset(spec: DatasetSpec, root: Path) -> RawDataset:
    """Read and validate the annotations of dataset `spec` unpacked at `root`."""
    root = Path(root)
    check_root(spec, root)
    infos = PARSERS[spec.name](spec, root)
    official = ({split: root / spec.official_stm.format(split=split) for split in spec.splits}
                if spec.official_stm else {})
    return RawDataset(name=spec.name, root=root, infos=infos, official_stm=official)


def empty_videos(infos: dict[str, InfoDict]) -> list[str]:
    """'<split>: <prefix>/<folder>' of every video whose folder holds no frames."""
    found = []
    for split, info in infos.items():
        for key, entry in info.items():
            if isinstance(key, int) and entry["num_frames"] == 0:
                found.append(f"{split}: {info['prefix']}/{entry['folder']}")
    return found


def drop_empty_videos(info: InfoDict) -> InfoDict:
    """A copy of `info` without frame-less videos, re-indexed from 0."""
    entries = [v for k, v in info.items() if isinstance(k, int) and v["num_frames"] > 0]
    return make_info_dict(info["prefix"], entries)
