"""Word error rate of a CTM hypothesis against an STM reference, as the official PHOENIX evaluation.

Pipeline: PHOENIX gloss normalisation of the hypothesis (evaluation.normalise), one ``[EMPTY]``
word for every reference sentence left without hypothesis, words in (file id, start time)
order, then alignment and counts exactly as NIST sclite ``-f 0`` (evaluation.align), or the
real sclite binary with ``tool='sclite'``. Without --dataset, the dataset (whose normalisation
applies) is the one the reference's file name names, <dataset>-groundtruth-<split>.stm.

    python -m evaluation.wer REF.stm HYP.ctm [--dataset NAME] [--json] [--tool python|sclite]
                             [--report-dir DIR] [--original-stats] [--auxiliary HYP2.ctm]
"""
from __future__ import annotations

import utils.installed  # noqa: F401  (first: without the requirements, one line on how to install)
import argparse
import json
import os
import sys
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from dataset.registry import NAMES, DatasetSpec, dataset_of_stm, dataset_spec
from evaluation.align import AlignedPair, Counts, align, count
from evaluation.ctm import CtmWord, read_ctm
from evaluation.normalise import normalise_glosses
from evaluation.original import original_statistics
from evaluation.report import confusion_text, pra_listing, summary_table, top_confusions
from evaluation.sclite import run_sclite
from evaluation.stm import StmSegment, read_stm
from evaluation.textio import ScoringInputError
from utils.errors import run_cli

EMPTY = "[EMPTY]"
TOOLS = ("python", "sclite")


def load_reference(stm_path: str | os.PathLike) -> list[StmSegment]:
    """Reference sentences sorted by file id (the order sclite needs for hypotheses too)."""
    segments = read_stm(stm_path)
    if not segments:
        raise ScoringInputError(f"{stm_path}: no reference sentences")
    return sorted(segments, key=lambda seg: seg.fileid)


def hypotheses_by_file(words: Sequence[CtmWord], segments: Sequence[StmSegment], spec: DatasetSpec,
                       ctm_path: str | os.PathLike, stm_path: str | os.PathLike) -> dict[str, list[str]]:
    """Normalised hypothesis words of every reference sentence, `[EMPTY]` where none is left."""
    channels = {seg.fileid: seg.channel for seg in segments}
    grouped: dict[str, list[CtmWord]] = {fileid: [] for fileid in channels}
    for word in words:
        if word.fileid not in channels:
            raise ScoringInputError(f"{ctm_path}:{word.line}: file id {word.fileid!r} is not in the "
                                    f"reference {stm_path}; score against the matching split's STM")
        if word.channel != channels[word.fileid]:
            raise ScoringInputError(f"{ctm_path}:{word.line}: channel {word.channel!r} differs from the "
                                    f"reference channel {channels[word.fileid]!r}; sclite would drop it")
        grouped[word.fileid].append(word)
    hypotheses = {}
    for fileid, file_words in grouped.items():
        ordered = sorted(file_words, key=lambda w: w.start)  # stable: ties keep line order
        hypotheses[fileid] = normalise_glosses([w.word for w in ordered], spec) or [EMPTY]
    return hypotheses


class ScoringWarning(UserWarning):
    """Scoring went as sclite would, but the result is likely not what the user meant."""


def hypothesis_warnings(hypotheses: Mapping[str, Sequence[str]], segments: Sequence[StmSegment],
                        ctm_path: str | os.PathLike, stm_path: str | os.PathLike) -> list[str]:
    """Messages for a CTM with no hypothesis words, or with none that the references contain."""
    words = [word for hyp in hypotheses.values() for word in hyp if word != EMPTY]
    if not words:
        return [f"{ctm_path} holds no hypotheses for the {len(segments)} reference sentences of "
                f"{stm_path}: every reference word counts as an error (as sclite scores an empty hypothesis: one "
                f"substitution and the rest deletions per sentence)"]
    vocabulary = {word for seg in segments for word in seg.words}
    if not any(word in vocabulary for word in words):
        return [f"none of the {len(words)} hypothesis words of {ctm_path} occurs in the references "
                f"of {stm_path}: all are errors (scored as sclite does); are they glosses of another "
                f"dataset or vocabulary?"]
    return []


def _totals(per_sentence: Mapping[str, Counts],
            speakers: Mapping[str, str]) -> tuple[Counts, dict[str, Counts]]:
    """Corpus and per-speaker sums."""
    total, per_speaker = Counts(), {}
    for fileid, counts in per_sentence.items():
        total = total + counts
        speaker = speakers[fileid]
        per_speaker[speaker] = per_speaker.get(speaker, Counts()) + counts
    return total, per_speaker


def _result(total: Counts, per_speaker: Mapping[str, Counts]) -> dict[str, Any]:
    """The score_files dictionary for one set of counts."""
    result = total.as_dict()
    result["per_speaker"] = {name: counts.as_dict() for name, counts in sorted(per_speaker.items())}
    return result


def score_files(stm_path: str | os.PathLike, ctm_path: str | os.PathLike, spec: DatasetSpec,
                tool: str = "python", report_dir: str | os.PathLike | None = None, *,
                original_stats: bool = False, auxiliary_ctm: str | os.PathLike | None = None,
                sclite_path: str | os.PathLike | None = None) -> dict[str, Any]:
    """Score a CTM against an STM of dataset `spec` (its gloss normalisation applies): wer (percent),
    words, correct, sub, del, ins, per_speaker.

    tool='sclite' reports the real sclite's counts (and the built-in ones under 'python');
    original_stats adds the original Python tool's numbers under 'original' (WAR/WDR against
    `auxiliary_ctm` when given); report_dir receives pra-like listing, summary and confusions.
    """
    if tool not in TOOLS:
        raise ValueError(f"tool must be one of {TOOLS}, got {tool!r}")
    segments = load_reference(stm_path)
    speakers = {seg.fileid: seg.speaker for seg in segments}
    hypotheses = hypotheses_by_file(read_ctm(ctm_path), segments, spec, ctm_path, stm_path)
    for message in hypothesis_warnings(hypotheses, segments, ctm_path, stm_path):
        warnings.warn(message, ScoringWarning, stacklevel=2)
    alignments: dict[str, list[AlignedPair]] = {
        seg.fileid: align(seg.words, hypotheses[seg.fileid]) for seg in segments}
    python_counts = {fileid: count(pairs) for fileid, pairs in alignments.items()}
    result = _result(*_totals(python_counts, speakers))
    result["tool"] = "python"
    if tool == "sclite":
        sclite_dir = Path(report_dir) / "sclite" if report_dir is not None else None
        sclite_counts = run_sclite(segments, hypotheses, sclite_path, sclite_dir)
        python_result = result
        result = _result(*_totals(sclite_counts, speakers))
        result["tool"] = "sclite"
        result["python"] = {k: v for k, v in python_result.items() if k != "tool"}
        result["disagreements"] = sorted(f for f, c in sclite_counts.items() if c != python_counts[f])
    if original_stats or auxiliary_ctm is not None:
        references = {seg.fileid: list(seg.words) for seg in segments}
        auxiliary = None
        if auxiliary_ctm is not None:
            auxiliary = hypotheses_by_file(read_ctm(auxiliary_ctm), segments, spec, auxiliary_ctm,
                                           stm_path)
        result["original"] = original_statistics(references, hypotheses, auxiliary)
    if report_dir is not None:
        write_reports(Path(report_dir), alignments, speakers, result)
    return result


def write_reports(report_dir: Path, alignments: Mapping[str, Sequence[AlignedPair]],
                  speakers: Mapping[str, str], result: Mapping[str, Any]) -> None:
    """alignment.pra, summary.txt, confusions.txt and scores.json under `report_dir`."""
    report_dir.mkdir(parents=True, exist_ok=True)
    (report_dir / "alignment.pra").write_text(pra_listing(alignments, speakers), encoding="utf-8")
    total, per_speaker = _totals({f: count(p) for f, p in alignments.items()}, speakers)
    summary = summary_table(total, per_speaker, "built-in sclite-compatible scorer")
    (report_dir / "summary.txt").write_text(summary, encoding="utf-8")
    confusions = top_confusions(alignments)
    (report_dir / "confusions.txt").write_text(confusion_text(confusions), encoding="utf-8")
    payload = dict(result, confusions=confusions)
    (report_dir / "scores.json").write_text(json.dumps(payload, indent=2, ensure_ascii=False) + "\n",
                                            encoding="utf-8")


def scored_dataset(name: str | None, stm_path: str | os.PathLike) -> DatasetSpec:
    """The registry entry of --dataset `name`, else of the dataset the reference STM's file name names."""
    return dataset_spec(name, key="--dataset") if name is not None else dataset_of_stm(stm_path)


def format_summary(result: Mapping[str, Any]) -> str:
    """A few lines for the console."""
    lines = [f"[{result['tool']}] WER {result['wer']:.2f}% (words {result['words']}, correct "
             f"{result['correct']}, sub {result['sub']}, del {result['del']}, ins {result['ins']})"]
    if "python" in result:
        py = result["python"]
        differ = len(result["disagreements"])
        agree = f"{differ} sentences differ" if differ else "identical"
        lines.append(f"[python] WER {py['wer']:.2f}% (sclite vs built-in: {agree})")
    for name, counts in result["per_speaker"].items():
        lines.append(f"  {name}: WER {counts['wer']:.2f}% ({counts['words']} words)")
    if "original" in result:
        orig = result["original"]
        text = f"[original python tool] WER {orig['wer']:.2f}% (repeated glosses merged)"
        if "war" in orig:
            text += (f", auxiliary WER {orig['wer_auxiliary']:.2f}%, WAR {orig['war']:.2f}%, "
                     f"WDR {orig['wdr']:.2f}%")
        lines.append(text)
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(prog="python -m evaluation.wer", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("reference",
                        help="reference STM (the preprocessing's <dataset>-groundtruth-<split>.stm)")
    parser.add_argument("hypothesis", help="hypothesis CTM")
    parser.add_argument("--dataset", choices=NAMES,
                        help="whose gloss normalisation applies (default: the one the reference's file name "
                        "names, <dataset>-groundtruth-<split>.stm)")
    parser.add_argument("--tool", default="python", choices=TOOLS,
                        help="built-in sclite-compatible scorer or the real sclite binary")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.add_argument("--report-dir",
                        help="write alignment.pra, summary.txt, confusions.txt, scores.json there")
    parser.add_argument("--original-stats", action="store_true",
                        help="also the original Python tool's WER (repeated glosses merged)")
    parser.add_argument("--auxiliary", help="second CTM (temporal-stack output) for WAR/WDR")
    parser.add_argument("--sclite", help="path of the sclite binary (default: software/sclite, PATH, "
                                         "/usr/lib/sctk/bin/sclite)")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point; returns the exit status."""
    args = parse_args(argv)
    return run_cli(lambda: score_and_print(args))


def score_and_print(args: argparse.Namespace) -> None:
    """Score the files named on the command line and print the summary (or JSON)."""
    with warnings.catch_warnings():  # one `warning: ...` line on stderr, not Python's format
        warnings.simplefilter("always", ScoringWarning)
        warnings.showwarning = lambda message, *_args, **_kw: print(f"warning: {message}",
                                                                      file=sys.stderr)
        result = score_files(args.reference, args.hypothesis, scored_dataset(args.dataset, args.reference),
                             args.tool, args.report_dir,
                             original_stats=args.original_stats, auxiliary_ctm=args.auxiliary,
                             sclite_path=args.sclite)
    print(json.dumps(result, indent=2, ensure_ascii=False) if args.json else format_summary(result))


if __name__ == "__main__":
    sys.exit(main())
