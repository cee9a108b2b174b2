"""Word alignment and error counts exactly as NIST sclite computes them (ctm against stm, ``-f 0``).

sclite fills a weighted edit-distance table (net_dp.c): correct 0, substitution 4, insertion 3,
deletion 3. Each cell prefers the diagonal (correct or substitution) when it is no worse than
both alternatives, then a deletion when strictly cheaper than an insertion, else an insertion;
the back-trace follows those choices from the last cell. Words are compared after folding ASCII
letters to lower case (sclite's tolower ignores other letters, e.g. umlauts and Chinese).
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

CORRECT, SUBSTITUTION, DELETION, INSERTION = "C", "S", "D", "I"
SUB_COST, INS_COST, DEL_COST = 4, 3, 3

_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


@dataclass(frozen=True)
class AlignedPair:
    """One alignment step: op in C/S/D/I; ref or hyp is None for insertions / deletions."""

    op: str
    ref: str | None
    hyp: str | None


@dataclass(frozen=True)
class Counts:
    """Word counts of one or more aligned sentences."""

    words: int = 0
    correct: int = 0
    sub: int = 0
    dele: int = 0
    ins: int = 0
    sentences: int = 0

    def __add__(self, other: "Counts") -> "Counts":
        return Counts(self.words + other.words, self.correct + other.correct, self.sub + other.sub,
                      self.dele + other.dele, self.ins + other.ins, self.sentences + other.sentences)

    @property
    def errors(self) -> int:
        """Substitutions + deletions + insertions."""
        return self.sub + self.dele + self.ins

    @property
    def wer(self) -> float:
        """Word error rate in percent (sclite's Err); 0 for an empty reference without insertions."""
        if self.words == 0:
            return 0.0 if self.errors == 0 else float("inf")
        return 100.0 * self.errors / self.words

    def as_dict(self) -> dict[str, float | int]:
        """The keys score_files reports."""
        return {"wer": self.wer, "words": self.words, "correct": self.correct, "sub": self.sub,
                "del": self.dele, "ins": self.ins, "sentences": self.sentences}


def fold_case(word: str) -> str:
    """Lower-case ASCII letters only, as sclite does."""
    return word.translate(_ASCII_LOWER)


def align(ref: Sequence[str], hyp: Sequence[str]) -> list[AlignedPair]:
    """sclite's minimum-cost alignment of a reference and a hypothesis word sequence."""
    ref_key = [fold_case(w) for w in ref]
    hyp_key = [fold_case(w) for w in hyp]
    n_ref, n_hyp = len(ref), len(hyp)
    # cost[a][b]: best cost aligning ref[:a] with hyp[:b]; move[a][b]: the step that reached it.
    cost = [[0] * (n_hyp + 1) for _ in range(n_ref + 1)]
    move = [[""] * (n_hyp + 1) for _ in range(n_ref + 1)]
    for b in range(1, n_hyp + 1):
        cost[0][b], move[0][b] = cost[0][b - 1] + INS_COST, INSERTION
    for a in range(1, n_ref + 1):
        cost[a][0], move[a][0] = cost[a - 1][0] + DEL_COST, DELETION
        row, prev = cost[a], cost[a - 1]
        for b in range(1, n_hyp + 1):
            diag = prev[b - 1] + (0 if ref_key[a - 1] == hyp_key[b - 1] else SUB_COST)
            dele = prev[b] + DEL_COST
            ins = row[b - 1] + INS_COST
            if diag <= dele and diag <= ins:
                row[b], move[a][b] = diag, SUBSTITUTION
            elif dele < ins:
                row[b], move[a][b] = dele, DELETION
            else:
                row[b], move[a][b] = ins, INSERTION
    return _backtrace(ref, hyp, ref_key, hyp_key, move)


def _backtrace(ref: Sequence[str], hyp: Sequence[str], ref_key: list[str], hyp_key: list[str],
               move: list[list[str]]) -> list[AlignedPair]:
    """Follow the recorded moves from the last cell back to the origin."""
    a, b = len(ref), len(hyp)
    steps: list[AlignedPair] = []
    while a > 0 or b > 0:
        step = move[a][b]
        if step == SUBSTITUTION:
            op = CORRECT if ref_key[a - 1] == hyp_key[b - 1] else SUBSTITUTION
            steps.append(AlignedPair(op, ref[a - 1], hyp[b - 1]))
            a, b = a - 1, b - 1
        elif step == DELETION:
            steps.append(AlignedPair(DELETION, ref[a - 1], None))
            a -= 1
        else:
            steps.append(AlignedPair(INSERTION, None, hyp[b - 1]))
            b -= 1
    steps.reverse()
    return steps


def count(alignment: Iterable[AlignedPair]) -> Counts:
    """Counts of one aligned sentence."""
    ops = [pair.op for pair in alignment]
    return Counts(words=sum(op != INSERTION for op in ops), correct=ops.count(CORRECT),
                  sub=ops.count(SUBSTITUTION), dele=ops.count(DELETION), ins=ops.count(INSERTION),
                  sentences=1)
