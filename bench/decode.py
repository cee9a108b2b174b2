"""Decoding on a dev-set-sized workload: our batched beam search (one call, as evaluation runs it)
against pyctcdecode, without and with a gloss 3-gram LM (shallow fusion), plus agreement.

Data: sentences of a synthetic gloss grammar (Zipf-distributed glosses, a first-order Markov
chain with a few likely successors per gloss); the LM is a 3-gram (decoding.build_lm, lmplz-style
modified Kneser-Ney) of 5000 training sentences; the logits are peaky CTC outputs of held-out
sentences (mostly blank, each gloss 1-3 steps, Gaussian noise, and for a quarter of the glosses
a confusable competitor of equal expected score, which only the LM can resolve).

References, on the same logits, beam width and LM (alpha, beta):
- pyctcdecode (pinned, benchmark-only; with kenlm for the LM where `pip install kenlm` builds):
  each class is a BPE-style word token ("▁G17"), so every gloss is one LM word; its
  unk_score_offset is set to 0 so that unknown words score as <unk> does in KenLM and ours;
- the tests' per-sample dict-based prefix beam search (tests/reference/beam_search.py),
  whose LM scoring is the ARPA reader's dict lookups, independent of the device tables.
Ours runs in two modes: exact (the default: ctcdecode's top-40 tokens every step) and pruned
(opt-in `token_min_logp`/`beam_prune_logp`, here pyctcdecode's defaults -5/-10, which
pyctcdecode always applies). pyctcdecode is timed on `--reference-subset` sequences and its rate
extrapolated per sentence; the rounds alternate ours exact / ours pruned / pyctcdecode.

    python bench/decode.py [--sequences 540] [--frames 50] [--classes 1296] [--beam-width 10]
                           [--agreement 300] [--lm-weight 0.5] [--word-bonus 1.0] [--threads 1]
                           [--token-min-logp -5] [--beam-prune-logp -10] [--rounds 3]
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from decoding.arpa import read_arpa, write_arpa  # noqa: E402
from decoding.build_lm import estimate_kneser_ney  # noqa: E402
from decoding.config import DecodeConfig, add_decode_arguments, decode_overrides  # noqa: E402
from decoding.decoder import Decoder, read_lm  # noqa: E402
from tests.reference.beam_search import reference_prefix_beam_search  # noqa: E402


def parse_args() -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sequences", type=int, default=540)
    parser.add_argument("--frames", type=int, default=50, help="steps after temporal pooling (max)")
    parser.add_argument("--classes", type=int, default=1296)
    # The decode options as every command line spells them; here the pruning is that of our
    # pruned mode (pyctcdecode's defaults), the LM weights those of the LM rows.
    add_decode_arguments(parser, ["beam-width", "lm-weight", "word-bonus", "token-min-logp",
                                  "beam-prune-logp"])
    parser.set_defaults(**{"decode.beam_width": 10, "decode.lm_weight": 0.5, "decode.word_bonus": 1.0,
                           "decode.token_min_logp": -5.0, "decode.beam_prune_logp": -10.0})
    parser.add_argument("--agreement", type=int, default=300, help="sequences checked for agreement")
    parser.add_argument("--reference-subset", type=int, default=100,
                        help="sequences timed with pyctcdecode (extrapolated per sentence)")
    parser.add_argument("--rounds", type=int, default=3, help="alternating timing rounds")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    vars(args).update(decode_overrides(args))  # args.beam_width, args.lm_weight, ...
    return args


class GlossGrammar:
    """Zipf-distributed glosses 1..V-1 with a few preferred successors each (a Markov chain)."""

    def __init__(self, classes: int, seed: int) -> None:
        self.rng = np.random.default_rng(seed)
        self.vocab = classes - 1
        ranks = np.arange(1, self.vocab + 1)
        self.unigram = (1.0 / ranks) / (1.0 / ranks).sum()
        self.successors = self.rng.choice(self.vocab, size=(self.vocab, 4), p=self.unigram) + 1

    def sentence(self) -> list[int]:
        """One sentence of 4-14 class indices."""
        length = int(self.rng.integers(4, 15))
        words = [int(self.rng.choice(self.vocab, p=self.unigram)) + 1]
        while len(words) < length:
            if self.rng.random() < 0.7:
                words.append(int(self.successors[words[-1] - 1, self.rng.integers(4)]))
            else:
                words.append(int(self.rng.choice(self.vocab, p=self.unigram)) + 1)
        return words


def ctc_logits(grammar: GlossGrammar, count: int, frames: int, classes: int,
               seed: int) -> tuple[torch.Tensor, torch.Tensor, list[list[int]]]:
    """Peaky CTC log-probabilities (N, T, C) of held-out sentences, their lengths and the truths.

    Every step has Gaussian background scores; blank steps a blank score 12 above, gloss steps the
    gloss 12 above (+-1.5) with the blank 8 above; a quarter of the glosses has a competitor gloss
    of equal expected score on its steps (a confusion the acoustic-like model cannot resolve).
    """
    rng = np.random.default_rng(seed)
    logits = rng.normal(0.0, 1.0, size=(count, frames, classes)).astype(np.float32)
    logits[..., 0] += 12.0
    lengths, truths = [], []
    for n in range(count):
        placed: list[int] = []
        t = int(rng.integers(0, 3))
        for word in grammar.sentence():
            steps = int(rng.integers(1, 4))
            if t + steps > frames:
                break
            competitor = int(rng.integers(1, classes)) if rng.random() < 0.25 else None
            for _ in range(steps):
                logits[n, t, 0] -= 4.0
                logits[n, t, word] += 12.0 + rng.normal(0.0, 1.5)
                if competitor is not None:
                    logits[n, t, competitor] += 12.0 + rng.normal(0.0, 1.5)
                t += 1
            placed.append(word)
            t += int(rng.integers(1, 3))  # blanks between glosses
        lengths.append(min(t, frames))
        truths.append(placed)
    log_probs = torch.from_numpy(logits).log_softmax(-1)
    return log_probs, torch.tensor(lengths), truths


def build_pyctcdecode(classes: int, arpa: str | None, alpha: float, beta: float):
    """pyctcdecode decoder whose tokens are whole glosses (BPE word starts), or None if missing."""
    try:
        from pyctcdecode import Alphabet, BeamSearchDecoderCTC, LanguageModel
    except ImportError:
        return None
    labels = [""] + [f"\u2581G{i}" for i in range(1, classes)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        alphabet = Alphabet.build_alphabet(labels)
    language_model = None
    if arpa is not None:
        import kenlm

        unigrams = [f"G{i}" for i in range(1, classes)]
        language_model = LanguageModel(kenlm.Model(arpa), unigrams, alpha=alpha, beta=beta,
                                       unk_score_offset=0.0)
    return BeamSearchDecoderCTC(alphabet, language_model)


def pyctc_best(decoder, log_probs: np.ndarray, beam_width: int) -> list[int]:
    """pyctcdecode's best text as class indices."""
    text = decoder.decode(log_probs, beam_width=beam_width)
    return [int(word[1:]) for word in text.split()]


def merged(labels: list[int]) -> list[int]:
    """Collapse runs of equal labels (what Decoder reports)."""
    return [x for i, x in enumerate(labels) if i == 0 or labels[i - 1] != x]


def main() -> None:
    """Agreement and speed, without and with the LM."""
    args = parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    grammar = GlossGrammar(args.classes, args.seed)
    corpus = [[f"G{c}" for c in grammar.sentence()] for _ in range(5000)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        lm = estimate_kneser_ney(corpus, order=3)
    tmp = tempfile.TemporaryDirectory()
    arpa = str(Path(tmp.name) / "gloss-3gram.arpa")
    write_arpa(lm, arpa)
    lm = read_arpa(arpa)  # the model every search scores with: the file's (rounded) values
    log_probs, lengths, truths = ctc_logits(grammar, args.sequences, args.frames, args.classes,
                                            args.seed + 1)
    words = [None] + [f"G{i}" for i in range(1, args.classes)]
    gloss_dict = {f"G{i}": [i, 1] for i in range(1, args.classes)}
    exact = DecodeConfig.recipe().updated({"mode": "beam", "beam_width": args.beam_width,
                                           "lm_weight": args.lm_weight, "word_bonus": args.word_bonus,
                                           "token_min_logp": None, "beam_prune_logp": None})
    pruning = {"token_min_logp": args.token_min_logp, "beam_prune_logp": args.beam_prune_logp}
    configs = {(name, mode): exact.updated({"lm_path": arpa if name == "LM" else None,
                                            **(pruning if mode == "pruned" else {})})
               for name in ("plain", "LM") for mode in ("exact", "pruned")}
    ours = {key: Decoder(cfg, gloss_dict, read_lm(cfg), num_classes=args.classes)
            for key, cfg in configs.items()}
    top_k = ours["plain", "exact"].top_k
    dev_lp, dev_len = log_probs.to(device), lengths.to(device)
    rows = [log_probs[b, :lengths[b]].numpy() for b in range(args.sequences)]
    try:
        import kenlm  # noqa: F401
        has_kenlm = True
    except ImportError:
        has_kenlm = False
    pyctc = {"plain": build_pyctcdecode(args.classes, None, 0.0, 0.0),
             "LM": (build_pyctcdecode(args.classes, arpa, args.lm_weight, args.word_bonus)
                    if has_kenlm else None)}
    print(f"workload: {args.sequences} sequences x <= {args.frames} steps x {args.classes} classes "
          f"(mean length {lengths.float().mean():.1f}), beam {args.beam_width}; ours: top-{top_k} "
          f"tokens per step (exact), or pruned (token_min_logp {args.token_min_logp}, beam_prune_logp "
          f"{args.beam_prune_logp}), {device}, {torch.get_num_threads()} thread(s); LM: 3-gram of 5000 "
          f"sentences ({len(lm.probs)} n-grams), alpha {args.lm_weight}, beta {args.word_bonus}")
    print(f"pyctcdecode: {'installed' if pyctc['plain'] else 'NOT installed'} (its default pruning: "
          f"token_min_logp -5, beam_prune_logp -10); kenlm: "
          f"{'installed' if has_kenlm else 'NOT installed (LM reference: the dict-based search only)'}")

    # ---- agreement ----------------------------------------------------------------------------
    n = min(args.agreement, args.sequences)
    if n == 0:
        print("agreement: skipped (--agreement 0)")
    else:
        best = {key: [merged(s) for s in _best(dec, dev_lp[:n], dev_len[:n])] for key, dec in ours.items()}
        for name in ("plain", "LM"):
            reference = [merged(reference_prefix_beam_search(
                rows[b].tolist(), args.beam_width, top_k,
                lm=lm if name == "LM" else None, words=words, lm_weight=args.lm_weight,
                word_bonus=args.word_bonus)[0]) for b in range(n)]
            theirs = ([merged(pyctc_best(pyctc[name], rows[b], args.beam_width)) for b in range(n)]
                      if pyctc[name] is not None else None)
            label = "pyctcdecode" + ("+kenlm" if name == "LM" else "")
            for mode in ("exact", "pruned"):
                pairs = [("dict-based reference search (exact)", reference)]
                if mode == "pruned":
                    pairs.append(("ours exact", best[name, "exact"]))
                if theirs is not None:
                    pairs.append((label, theirs))
                for other, hyps in pairs:
                    same = sum(a == b for a, b in zip(best[name, mode], hyps))
                    print(f"agreement {name:5s} ours {mode:6s} vs {other}: {same}/{n} "
                          f"({100.0 * same / n:.1f}%) identical best hypotheses")
        for key, hyps in best.items():
            errors = sum(_edit_distance(h, t) for h, t in zip(hyps, truths[:n]))
            print(f"gloss error rate of ours ({key[0]}, {key[1]}) against the generated sentences: "
                  f"{100.0 * errors / sum(len(t) for t in truths[:n]):.2f}%")

    # ---- speed --------------------------------------------------------------------------------
    subset = min(args.reference_subset, args.sequences)
    for name in ("plain", "LM"):
        rates: dict[str, list[float]] = {"exact": [], "pruned": [], "reference": []}
        for mode in ("exact", "pruned"):
            ours[name, mode].decode(dev_lp[:8], dev_len[:8])  # warm-up (allocator, LM tables)
        for _ in range(args.rounds):  # alternating: ours exact, ours pruned, pyctcdecode
            for mode in ("exact", "pruned"):
                start = time.perf_counter()
                ours[name, mode].decode(dev_lp, dev_len)
                if device.type == "cuda":
                    torch.cuda.synchronize()
                rates[mode].append(args.sequences / (time.perf_counter() - start))
            if pyctc[name] is not None:
                start = time.perf_counter()
                for b in range(subset):
                    pyctc[name].decode(rows[b], beam_width=args.beam_width)
                rates["reference"].append(subset / (time.perf_counter() - start))
        label = "pyctcdecode" + ("+kenlm" if name == "LM" else "")
        line = (f"speed {name:5s} [best of {args.rounds} alternating rounds]: ours exact "
                f"{max(rates['exact']):.1f}, ours pruned {max(rates['pruned']):.1f} sentences/s "
                f"(one call of {args.sequences})")
        if rates["reference"]:
            ref = max(rates["reference"])
            line += (f"; {label} {ref:.1f} sentences/s (timed on {subset}); ratio exact "
                     f"{max(rates['exact']) / ref:.2f}x, pruned {max(rates['pruned']) / ref:.2f}x")
        print(line)
    tmp.cleanup()


def _best(decoder: Decoder, log_probs: torch.Tensor, lengths: torch.Tensor) -> list[list[int]]:
    """Class indices of the decoded sentences."""
    return [[decoder.g2i_dict[g] for g, _ in s] for s in decoder.decode(log_probs, lengths)]


def _edit_distance(a: list[int], b: list[int]) -> int:
    """Levenshtein distance of two label sequences."""
    row = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        prev, row[0] = row[0], i
        for j, y in enumerate(b, 1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (x != y))
    return row[-1]


if __name__ == "__main__":
    main()
