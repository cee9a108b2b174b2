"""Statistics of the original repository's Python scorer (python_wer_evaluation.py), as an option.

It differs from sclite on purpose and is kept for comparison with numbers reported that way:
repeated hypothesis glosses are merged before alignment, words are compared case-sensitively,
and the alignment is its own edit distance (sub 4, ins 3, del 3) with its own tie-breaking.
WAR / WDR compare two hypothesis sets (the BiLSTM output as primary, the temporal-stack output
as auxiliary) on a common alignment: WAR counts words only the primary gets right, WDR words
only the auxiliary gets right, both relative to the reference length.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from itertools import groupby

_SUB, _INS, _DEL = 4, 3, 3
_GAP = "*"


def _align_padded(ref: Sequence[str], hyp: Sequence[str],
                  pad_pairs: bool = False) -> tuple[list[str], list[str]]:
    """Both sequences padded with '*'-runs at gaps, as the original's get_wer_delsubins."""
    n_ref, n_hyp = len(ref) + 1, len(hyp) + 1
    cost = [[0] * n_hyp for _ in range(n_ref)]
    back = [[0] * n_hyp for _ in range(n_ref)]  # 0 match, 1 sub, 2 deletion, 3 insertion
    for j in range(n_hyp):
        cost[0][j], back[0][j] = j * _INS, 2
    for i in range(n_ref):
        cost[i][0], back[i][0] = i * _DEL, 3
    for i in range(1, n_ref):
        for j in range(1, n_hyp):
            if ref[i - 1] == hyp[j - 1]:
                cost[i][j], back[i][j] = cost[i - 1][j - 1], 0
                continue
            options = [cost[i - 1][j - 1] + _SUB, cost[i - 1][j] + _DEL, cost[i][j - 1] + _INS]
            cost[i][j] = min(options)
            back[i][j] = options.index(cost[i][j]) + 1
    # The original's back-trace stops at the first row or column and emits the rest as leading
    # deletions then insertions; its margin codes are swapped, which that early stop hides.
    i, j = n_ref - 1, n_hyp - 1
    steps: list[tuple[str, int, int]] = []
    while i > 0 and j > 0:
        code = back[i][j]
        if code in (0, 1):
            i, j = i - 1, j - 1
            steps.append(("C" if code == 0 else "S", i, j))
        elif code == 2:
            i -= 1
            steps.append(("D", i, j))
        else:
            j -= 1
            steps.append(("I", i, j))
    aligned_ref = [ref[k] for k in range(i)] + [_GAP * len(hyp[k]) for k in range(j)]
    aligned_hyp = [_GAP * len(ref[k]) for k in range(i)] + [hyp[k] for k in range(j)]
    for op, a, b in reversed(steps):
        if op in ("C", "S"):
            width = max(len(ref[a]), len(hyp[b])) if pad_pairs else 0
            aligned_ref.append(ref[a].ljust(width))
            aligned_hyp.append(hyp[b].ljust(width))
        elif op == "I":
            aligned_ref.append(_GAP * len(hyp[b]))
            aligned_hyp.append(hyp[b])
        else:
            aligned_ref.append(ref[a])
            aligned_hyp.append(_GAP * len(ref[a]))
    return aligned_ref, aligned_hyp


def _merge(hyp: Sequence[str]) -> list[str]:
    """Merge consecutive repeated glosses."""
    return [word for word, _ in groupby(hyp)]


def sentence_statistics(ref: Sequence[str], primary: Sequence[str],
                        auxiliary: Sequence[str] | None = None) -> dict[str, int]:
    """Error counts of one sentence: cnt (reference words), wer_lstm, wer_conv, war, wdr."""
    primary = _merge(primary)
    if auxiliary is None:
        gt, pred = _align_padded(ref, primary)
        aux = None
    else:
        auxiliary = _merge(auxiliary)
        gt_aux = _align_padded(ref, auxiliary)[0]
        gt_pri = _align_padded(ref, primary)[0]
        gt = _align_padded(gt_aux, gt_pri)[0]
        aux = _align_padded(gt, auxiliary, pad_pairs=True)[1]
        pred = _align_padded(gt, primary, pad_pairs=True)[1]
    stats = {"cnt": 0, "wer_lstm": 0, "wer_conv": 0, "war": 0, "wdr": 0}
    for k, word in enumerate(gt):
        stats["cnt"] += _GAP not in word
        stats["wer_lstm"] += word != pred[k]
        if aux is not None:
            stats["wer_conv"] += word != aux[k]
            stats["wdr"] += aux[k] == word and pred[k] != word
            stats["war"] += aux[k] != word and pred[k] == word
    return stats


def original_statistics(references: Mapping[str, Sequence[str]], primary: Mapping[str, Sequence[str]],
                        auxiliary: Mapping[str, Sequence[str]] | None = None) -> dict[str, float]:
    """Corpus WER of the primary (and auxiliary) hypotheses, WAR and WDR, in percent."""
    totals = {"cnt": 0, "wer_lstm": 0, "wer_conv": 0, "war": 0, "wdr": 0}
    for fileid, ref in references.items():
        other = None if auxiliary is None else auxiliary.get(fileid, [])
        for key, value in sentence_statistics(ref, primary.get(fileid, []), other).items():
            totals[key] += value
    cnt = max(totals["cnt"], 1)
    result = {"wer": 100.0 * totals["wer_lstm"] / cnt, "words": totals["cnt"]}
    if auxiliary is not None:
        result.update(wer_auxiliary=100.0 * totals["wer_conv"] / cnt, war=100.0 * totals["war"] / cnt,
                      wdr=100.0 * totals["wdr"] / cnt)
    return result
