"""Running the real NIST sclite binary (Debian package ``sctk``) and reading its counts back."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

from evaluation.align import Counts, fold_case
from evaluation.stm import StmSegment, stm_line
from utils.errors import MissingFileError

DEBIAN_SCLITE = Path("/usr/lib/sctk/bin/sclite")
_REPO_ROOT = Path(__file__).resolve().parents[1]
_PRA_SCORES = re.compile(r"^File: (\S+)\n(?:.*\n)*?Scores: \(#C #S #D #I\) (\d+) (\d+) (\d+) (\d+)$",
                         re.MULTILINE)


class ScliteNotFoundError(MissingFileError):
    """No sclite binary could be found."""


def sclite_candidates() -> list[Path]:
    """Where sclite is looked for, in order."""
    found = shutil.which("sclite")
    return [Path.cwd() / "software" / "sclite", _REPO_ROOT / "software" / "sclite",
            *([Path(found)] if found else []), DEBIAN_SCLITE]


def find_sclite(explicit: str | os.PathLike | None = None) -> Path:
    """The sclite binary to run: `explicit`, else software/sclite, `sclite` on PATH, the Debian one."""
    candidates = [Path(explicit)] if explicit is not None else sclite_candidates()
    for candidate in candidates:
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    raise ScliteNotFoundError(
        "sclite not found (looked at " + ", ".join(str(c) for c in candidates) + "). Install it with "
        "'apt-get install sctk' (binary /usr/lib/sctk/bin/sclite) or link it as software/sclite "
        "(see software/README.md), or score with the built-in scorer (tool='python').")


def write_sclite_inputs(segments: Sequence[StmSegment], hypotheses: Mapping[str, Sequence[str]],
                        stm_path: Path, ctm_path: Path) -> None:
    """Reference and hypothesis in the same (reference) order, as sclite requires."""
    with open(stm_path, "w", encoding="utf-8") as stm, open(ctm_path, "w", encoding="utf-8") as ctm:
        for seg in segments:
            stm.write(stm_line(seg.fileid, seg.speaker, seg.words, seg.channel))
            for index, word in enumerate(hypotheses[seg.fileid]):
                ctm.write(f"{seg.fileid} {seg.channel} {index / 100:.2f} 0.01 {word}\n")


def run_sclite(segments: Sequence[StmSegment], hypotheses: Mapping[str, Sequence[str]],
               sclite: str | os.PathLike | None = None,
               output_dir: str | os.PathLike | None = None) -> dict[str, Counts]:
    """Per-sentence counts from sclite (``-f 0``, ctm against stm, pra/sgml/sum/rsum reports)."""
    binary = find_sclite(sclite)
    folded = {}
    for seg in segments:
        key = fold_case(seg.fileid)
        if key in folded:
            raise ValueError(f"file ids {folded[key]!r} and {seg.fileid!r} differ only in case; "
                             "sclite lower-cases ids and cannot tell them apart")
        folded[key] = seg.fileid
    with tempfile.TemporaryDirectory(prefix="sclite-") as tmp:
        work = Path(tmp)
        out = Path(output_dir) if output_dir is not None else work
        out.mkdir(parents=True, exist_ok=True)
        write_sclite_inputs(segments, hypotheses, work / "ref.stm", work / "hyp.ctm")
        command = [str(binary), "-h", str(work / "hyp.ctm"), "ctm", "-r", str(work / "ref.stm"), "stm",
                   "-f", "0", "-o", "sgml", "sum", "rsum", "pra", "-O", str(out)]
        proc = subprocess.run(command, capture_output=True, text=True, errors="replace")
        pra = out / "hyp.ctm.pra"
        if proc.returncode != 0 or not pra.is_file():
            raise RuntimeError(f"sclite failed (exit {proc.returncode}): {' '.join(command)}\n"
                               f"{proc.stdout[-2000:]}{proc.stderr[-2000:]}")
        text = pra.read_text(encoding="utf-8", errors="replace")
    counts = {}
    for match in _PRA_SCORES.finditer(text):
        c, s, d, i = map(int, match.groups()[1:])
        fileid = folded.get(match.group(1))
        if fileid is None:
            raise RuntimeError(f"sclite reported an unknown file id {match.group(1)!r}")
        counts[fileid] = Counts(words=c + s + d, correct=c, sub=s, dele=d, ins=i, sentences=1)
    missing = [seg.fileid for seg in segments if seg.fileid not in counts]
    if missing:
        raise RuntimeError(f"sclite output lacks {len(missing)} sentences, e.g. {missing[:3]}")
    return counts
