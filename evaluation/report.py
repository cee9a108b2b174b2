"""Human-readable scoring reports: sclite-like pra listing, summary table, top confusions."""
from __future__ import annotations

import unicodedata
from collections import Counter
from collections.abc import Mapping, Sequence

from evaluation.align import CORRECT, DELETION, INSERTION, AlignedPair, Counts, count


def pra_listing(alignments: Mapping[str, Sequence[AlignedPair]], speakers: Mapping[str, str]) -> str:
    """Per-sentence alignment like sclite's pra: scores, REF/HYP/Eval rows in aligned columns."""
    blocks = []
    for fileid, pairs in alignments.items():
        counts = count(pairs)
        refs, hyps, evals = [], [], []
        for pair in pairs:
            ref = pair.ref if pair.ref is not None else "*"
            hyp = pair.hyp if pair.hyp is not None else "*"
            width = max(_width(ref), _width(hyp))
            refs.append(_pad(ref, width))
            hyps.append(_pad(hyp, width))
            evals.append(_pad("" if pair.op == CORRECT else pair.op, width))
        blocks.append(
            f"File: {fileid}\nSpeaker: {speakers[fileid]}\n"
            f"Scores: (#C #S #D #I) {counts.correct} {counts.sub} {counts.dele} {counts.ins}\n"
            + "".join(f"{name:<6}{' '.join(row)}".rstrip() + "\n"
                      for name, row in (("REF:", refs), ("HYP:", hyps), ("Eval:", evals))))
    return "\n".join(blocks)


def _width(text: str) -> int:
    """Terminal columns of `text`: wide (e.g. Chinese) characters take two."""
    return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in text)


def _pad(text: str, width: int) -> str:
    """Left-justify to `width` terminal columns."""
    return text + " " * (width - _width(text))


def summary_table(total: Counts, per_speaker: Mapping[str, Counts], title: str) -> str:
    """sclite-like summary: sentences, words, Corr/Sub/Del/Ins/Err percentages per speaker."""
    header = f"{'SPKR':<12} {'#Snt':>5} {'#Wrd':>6} " + " ".join(
        f"{name:>6}" for name in ("Corr", "Sub", "Del", "Ins", "Err"))
    rows = [title, header, "-" * len(header)]
    for name, counts in [*sorted(per_speaker.items()), ("Sum/Avg", total)]:
        if name == "Sum/Avg":
            rows.append("-" * len(header))
        words = max(counts.words, 1)
        pct = [100.0 * v / words for v in (counts.correct, counts.sub, counts.dele, counts.ins)]
        rows.append(f"{name:<12} {counts.sentences:>5} {counts.words:>6} "
                    + " ".join(f"{v:>6.1f}" for v in pct) + f" {counts.wer:>6.1f}")
    return "\n".join(rows) + "\n"


def top_confusions(alignments: Mapping[str, Sequence[AlignedPair]], limit: int = 30) -> dict[str, list]:
    """Most frequent substitutions (ref -> hyp), deletions and insertions."""
    subs: Counter[tuple[str, str]] = Counter()
    dels: Counter[str] = Counter()
    ins: Counter[str] = Counter()
    for pairs in alignments.values():
        for pair in pairs:
            if pair.op == DELETION:
                dels[pair.ref] += 1
            elif pair.op == INSERTION:
                ins[pair.hyp] += 1
            elif pair.op != CORRECT:
                subs[(pair.ref, pair.hyp)] += 1
    return {"substitutions": [[r, h, n] for (r, h), n in subs.most_common(limit)],
            "deletions": [[w, n] for w, n in dels.most_common(limit)],
            "insertions": [[w, n] for w, n in ins.most_common(limit)]}


def confusion_text(confusions: Mapping[str, list]) -> str:
    """Plain-text rendering of top_confusions."""
    lines = ["SUBSTITUTIONS (count: REF ==> HYP)"]
    lines += [f"{n:6d}: {r} ==> {h}" for r, h, n in confusions["substitutions"]]
    lines += ["", "DELETIONS (count: REF)"] + [f"{n:6d}: {w}" for w, n in confusions["deletions"]]
    lines += ["", "INSERTIONS (count: HYP)"] + [f"{n:6d}: {w}" for w, n in confusions["insertions"]]
    return "\n".join(lines) + "\n"
