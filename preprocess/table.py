"""The table dataset's annotations: one CSV/TSV row a video (`video`, `glosses`, `split`, optional
`signer` and `id`), checked row by row, turned into the original tools' info dicts."""
from __future__ import annotations

import csv
import difflib
import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Mapping, Sequence

from dataset.annotations import TABLE_OPTIONAL, TABLE_REQUIRED
from dataset.registry import SPLITS
from dataset.video_files import IMAGE_EXTENSIONS, VIDEO_EXTENSIONS
from preprocess.common import InfoDict, PreprocessError, make_info_dict

REQUIRED, OPTIONAL = TABLE_REQUIRED, TABLE_OPTIONAL
UNKNOWN_SIGNER = "unknown"


@dataclass(frozen=True)
class TableVideo:
    """One row of the table, resolved: its id, the video's path and what is signed in it."""

    listed_in: Path  # the table (or split file) that lists it
    line_no: int  # the row's line in that file (a table's header is line 1)
    fileid: str
    video: str  # the cell as written (relative to the table's folder, or absolute)
    path: Path  # the video file or frame folder
    glosses: tuple[str, ...]
    split: str
    signer: str

    @property
    def where(self) -> str:
        """'<table>:<line>' for messages."""
        return f"{self.listed_in}:{self.line_no}"


def delimiter(path: Path, header: str | Sequence[str]) -> str:
    """Tab for .tsv files (or a header holding tabs), else comma."""
    header = header if isinstance(header, str) else "".join(header)
    return "\t" if path.suffix.lower() == ".tsv" or "\t" in header else ","


def token(text: str) -> str:
    """`text` as one STM/CTM field: runs of white space and '|' (the info files' separator) become '_'."""
    return re.sub(r"[\s|]+", "_", text.strip())


def default_id(video: str) -> str:
    """A row's id when the table gives none: its video path without the extension, as one token."""
    path = PurePosixPath(video.replace("\\", "/"))
    return token(str(path.with_suffix("") if path.suffix.lower() in VIDEO_EXTENSIONS else path).lstrip("/"))


def read_rows(path: Path, required: Sequence[str] = REQUIRED) -> tuple[list[str], list[tuple[int, dict[str, str]]]]:
    """The header and the (line, cells) of every non-empty row of a UTF-8 CSV/TSV table with the
    `required` columns."""
    if not path.is_file():
        raise PreprocessError(f"table not found: {path} (--table): a CSV or TSV file with the columns "
                              f"{', '.join(REQUIRED)} (and optionally {', '.join(OPTIONAL)})")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as error:
        raise PreprocessError(f"{path}: not UTF-8 text ({error.reason} at byte {error.start}); save the "
                              f"table as UTF-8 CSV") from None
    lines = text.splitlines()
    if not lines or not lines[0].strip():
        raise PreprocessError(f"{path}:1: no header row; the first line must name the columns "
                              f"{', '.join(required)}")
    reader = csv.reader(lines, delimiter=delimiter(path, lines[0]))
    header = [name.strip().lower() for name in next(reader)]
    missing = [name for name in required if name not in header]
    if missing:
        raise PreprocessError(f"{path}:1: the header lacks the column(s) {', '.join(missing)} (it has "
                              f"{', '.join(header)}); the table needs {', '.join(required)}"
                              + (f", optionally {', '.join(OPTIONAL)}" if tuple(required) == REQUIRED else ""))
    repeated = sorted({name for name in header if header.count(name) > 1 and name in (*required, *OPTIONAL)})
    if repeated:
        raise PreprocessError(f"{path}:1: the column(s) {', '.join(repeated)} appear twice in the header")
    rows = []
    for cells in reader:
        line_no = reader.line_num
        if not any(cell.strip() for cell in cells):
            continue
        if len(cells) > len(header):
            raise PreprocessError(f"{path}:{line_no}: {len(cells)} cells but the header names {len(header)} "
                                  f"columns (a {'tab' if reader.dialect.delimiter == chr(9) else 'comma'} "
                                  f"inside a cell needs quotes)")
        rows.append((line_no, {name: (cells[i].strip() if i < len(cells) else "") for i, name in enumerate(header)}))
    return header, rows


def resolve_video(table: Path, line_no: int, cell: str, base: Path | None = None) -> Path:
    """The video file or frame folder a `video` cell names (relative to `base`, default the table's folder)."""
    base = table.parent if base is None else base
    if not cell:
        raise PreprocessError(f"{table}:{line_no}: the video cell is empty")
    path = Path(cell)
    if not path.is_absolute():
        path = base / path
    if path.is_dir():
        if not any(p.suffix.lower() in IMAGE_EXTENSIONS for p in path.iterdir() if p.is_file()):
            raise PreprocessError(f"{table}:{line_no}: the video folder {path} holds no frame images "
                                  f"({', '.join(IMAGE_EXTENSIONS)})")
        return path
    if not path.is_file():
        raise PreprocessError(f"{table}:{line_no}: video {cell!r} not found (looked for {path}); paths are "
                              f"relative to {base} or absolute")
    if path.suffix.lower() not in VIDEO_EXTENSIONS:
        raise PreprocessError(f"{table}:{line_no}: {path} is not a video file ({', '.join(VIDEO_EXTENSIONS)}) "
                              f"nor a folder of frame images")
    return path


def parse_row(table: Path, line_no: int, cells: Mapping[str, str]) -> TableVideo:
    """One checked row: a known split, glosses, an existing video."""
    split = cells["split"].lower()
    if split not in SPLITS:
        close = difflib.get_close_matches(split, SPLITS, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise PreprocessError(f"{table}:{line_no}: unknown split {cells['split']!r}{hint}; the split column "
                              f"holds {', '.join(SPLITS)} (preprocess.split assigns them by signer)")
    glosses = tuple(cells["glosses"].split())
    if not glosses:
        raise PreprocessError(f"{table}:{line_no}: the glosses cell is empty; write the video's glosses "
                              f"separated by spaces, or remove the row")
    path = resolve_video(table, line_no, cells["video"])
    fileid = token(cells.get("id", "")) or default_id(cells["video"])
    signer = token(cells.get("signer", "")) or UNKNOWN_SIGNER
    return TableVideo(table, line_no, fileid, cells["video"], path, glosses, split, signer)


def read_video_table(table: Path) -> list[TableVideo]:
    """Every row of the table, checked: columns, splits, glosses, videos, unique ids."""
    _header, rows = read_rows(table)
    videos = [parse_row(table, line_no, cells) for line_no, cells in rows]
    seen: dict[str, TableVideo] = {}
    for video in videos:
        if video.fileid in seen:
            first = seen[video.fileid]
            raise PreprocessError(f"{table}:{video.line_no}: id {video.fileid!r} is also the id of line "
                                  f"{first.line_no}; every row needs its own id (the id column, or distinct "
                                  f"video paths when there is none)")
        seen[video.fileid] = video
    for split in SPLITS:
        if not any(video.split == split for video in videos):
            raise PreprocessError(f"{table}: no row of the {split} split; training reads train, evaluates "
                                  f"dev and tests on test, so each needs videos (preprocess.split assigns "
                                  f"splits by signer)")
    return videos


def info_entry(video: TableVideo, frames: int, decoded: int, fps: float | None) -> dict:
    """The info-file entry of one packed video (the original keys, plus what decoding found)."""
    label = " ".join(video.glosses)
    return {"fileid": video.fileid, "folder": video.video, "signer": video.signer, "label": label,
            "num_frames": frames, "original_info": f"{video.fileid}|{label}",
            "decoded_frames": decoded, "source_fps": fps, "table_line": video.line_no}


def split_infos(root: Path, entries: Mapping[str, Sequence[dict]], splits: Sequence[str] = SPLITS
                ) -> dict[str, InfoDict]:
    """Info dicts of every split; the prefix is `root` (the table's folder, where the video paths start)."""
    return {split: make_info_dict(str(root.resolve()), entries.get(split, [])) for split in splits}


def unseen_glosses(videos: Sequence[TableVideo]) -> dict[str, dict[str, int]]:
    """Per dev/test split, the glosses that never occur in train, with their counts."""
    train = {gloss for video in videos if video.split == "train" for gloss in video.glosses}
    unseen: dict[str, dict[str, int]] = {}
    for video in videos:
        if video.split != "train":
            for gloss in video.glosses:
                if gloss not in train:
                    counts = unseen.setdefault(video.split, {})
                    counts[gloss] = counts.get(gloss, 0) + 1
    return unseen


def unseen_report(unseen: Mapping[str, Mapping[str, int]]) -> list[str]:
    """Lines naming the dev/test glosses the vocabulary (from train) lacks: the model cannot emit them."""
    lines = []
    for split, counts in unseen.items():
        ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
        listing = ", ".join(f"{gloss} (x{count})" for gloss, count in ranked)
        lines.append(f"warning: {len(counts)} gloss(es) of {split} never occur in train ({sum(counts.values())} "
                     f"occurrences), so the model cannot recognise them and they count as errors: {listing}")
    return lines
