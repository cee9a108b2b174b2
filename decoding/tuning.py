"""Tune the LM weight (alpha) and per-gloss bonus (beta) on a split's saved logits (tune_lm.py's command).

Decodes the logits that ``main.py --phase test`` saved (``<work_dir>/eval/dev-logits.pt``) once
per (alpha, beta) of a grid, or of a small random search, scores every result with the
project's scorer (evaluation.wer, as evaluation does) and writes the table of WERs and the best
pair; no forward pass is needed.

    python tune_lm.py --logits work_dir/x/eval/dev-logits.pt --lm-path gloss-3gram.arpa \\
        --stm preprocess/phoenix2014/phoenix2014-groundtruth-dev.stm --out work_dir/x/lm_tuning
"""
from __future__ import annotations

import argparse
import json
import random
import tempfile
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch

from evaluation.ctm import write_ctm
from dataset.registry import NAMES, DatasetSpec
from evaluation.wer import ScoringWarning, score_files, scored_dataset
from decoding.config import DecodeConfig, add_decode_arguments, decode_overrides
from decoding.decoder import Decoder, read_lm
from decoding.split_logits import SplitLogits, load_split_logits
from utils.errors import ConfigError, run_cli
from utils.outputs import check_output_dir

OUTPUTS = ("tuning.tsv", "best.json")  # what --out receives


def parse_floats(text: str) -> list[float]:
    """'0,0.5,1' -> [0.0, 0.5, 1.0]."""
    try:
        return [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None


def candidate_pairs(alphas: Sequence[float], betas: Sequence[float], random_trials: int,
                    seed: int) -> list[tuple[float, float]]:
    """The grid alphas x betas, or `random_trials` pairs drawn uniformly from their ranges."""
    if random_trials <= 0:
        return [(a, b) for a in alphas for b in betas]
    rng = random.Random(seed)
    return [(round(rng.uniform(min(alphas), max(alphas)), 4), round(rng.uniform(min(betas), max(betas)), 4))
            for _ in range(random_trials)]


def decode_wer(split: SplitLogits, decoder: Decoder, stm: Path, spec: DatasetSpec, device: torch.device,
               work: Path, notes: list[str] | None = None) -> dict:
    """Decode the whole split in one call and score it; the scorer's result dict. The scorer's
    warnings go to `notes` (if given), naming the decoding rather than its temporary CTM."""
    sentences = decoder.decode(split.logits.to(device), split.lengths, batch_first=True)
    ctm = work / "hyp.ctm"
    write_ctm(ctm, {fileid: [g for g, _ in sentence] for fileid, sentence in zip(split.ids, sentences)})
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ScoringWarning)
        result = score_files(stm, ctm, spec)
    name = (f"the decoding with lm_weight={decoder.cfg.lm_weight:g} word_bonus={decoder.cfg.word_bonus:g}"
            if decoder.lm is not None else "the decoding without LM")
    for warning in caught:
        text = str(warning.message).replace(str(ctm), name)
        if notes is not None:
            notes.append(text)
        else:
            warnings.warn(text, warning.category, stacklevel=2)
    return result


def tune(split: SplitLogits, cfg: DecodeConfig, pairs: Sequence[tuple[float, float]], stm: Path,
         spec: DatasetSpec, device: torch.device = torch.device("cpu")) -> dict:
    """WER without the LM and with cfg's LM for every (lm_weight, word_bonus) pair; the best pair
    (lowest WER, first on ties). `cfg`: beam width, pruning and lm_path of every decoding; `spec`:
    the dataset whose gloss normalisation the scorer applies."""
    vocabulary, classes = split.gloss_dict(), {"num_classes": len(split.glosses), "blank_id": split.blank_id}
    plain = Decoder(cfg.updated({"lm_path": None}), vocabulary, **classes)
    lm = read_lm(cfg)  # read once; every pair's decoder fuses the same model
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        notes: list[str] = []
        baseline = decode_wer(split, plain, stm, spec, device, work, notes)
        rows = []
        for alpha, beta in pairs:
            pair = cfg.updated({"lm_weight": float(alpha), "word_bonus": float(beta)})
            result = decode_wer(split, Decoder(pair, vocabulary, lm, **classes), stm, spec, device, work,
                                notes)
            rows.append({"lm_weight": alpha, "word_bonus": beta, "wer": result["wer"],
                         "sub": result["sub"], "del": result["del"], "ins": result["ins"]})
    if notes:  # one line, not one per grid point
        more = f" (and {len(notes) - 1} more of the {len(pairs) + 1} decodings alike)" if len(notes) > 1 else ""
        warnings.warn(notes[0] + more, ScoringWarning, stacklevel=2)
    best = min(rows, key=lambda row: row["wer"]) if rows else None
    return {"no_lm_wer": baseline["wer"], "best": best, "table": rows,
            "at_edge": grid_edges(best, pairs) if best else []}


def grid_edges(best: Mapping[str, float], pairs: Sequence[tuple[float, float]]) -> list[str]:
    """Which of the searched ranges' ends the best pair lies on (a wider range may do better)."""
    alphas, betas = [a for a, _ in pairs], [b for _, b in pairs]
    edges = []
    for key, values in (("lm_weight", alphas), ("word_bonus", betas)):
        if len(set(values)) > 1 and best[key] == max(values):
            edges.append(f"highest {key}")
        if len(set(values)) > 1 and best[key] == min(values) and not (key == "lm_weight" and best[key] <= 0):
            edges.append(f"lowest {key}")
    return edges


def write_outputs(out_dir: Path, summary: dict) -> None:
    """tuning.tsv (one row per pair) and best.json (the pair to put in the decode section)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    lines = ["lm_weight\tword_bonus\twer\tsub\tdel\tins"]
    lines += [f"{r['lm_weight']}\t{r['word_bonus']}\t{r['wer']:.2f}\t{r['sub']}\t{r['del']}\t{r['ins']}"
              for r in summary["table"]]
    table, best = OUTPUTS
    (out_dir / table).write_text("\n".join(lines) + "\n", encoding="utf-8")
    (out_dir / best).write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")


def main(argv: Sequence[str] | None = None) -> int:
    """The command line of tune_lm.py; 2 with an `error:` line on bad input."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog=__doc__.split("\n\n", 1)[1])
    parser.add_argument("--logits", required=True, help="<split>-logits.pt from main.py --phase test")
    add_decode_arguments(parser, ["lm-path", "beam-width", "token-min-logp", "beam-prune-logp"])
    parser.add_argument("--stm", required=True, help="ground-truth STM of the same split")
    parser.add_argument("--out", required=True, help="folder for tuning.tsv and best.json")
    parser.add_argument("--force", action="store_true", help="replace tuning.tsv and best.json in --out")
    parser.add_argument("--dataset", choices=NAMES,
                        help="gloss normalisation of the scorer (default: the dataset the --stm file name "
                        "names, <dataset>-groundtruth-<split>.stm)")
    parser.add_argument("--alphas", type=parse_floats, default=parse_floats("0,0.25,0.5,0.75,1,1.5,2"),
                        help="LM weights of the grid (default 0,0.25,0.5,0.75,1,1.5,2)")
    # A gloss costs alpha * 2-4 nats of LM log-prob: the best bonus grows with alpha (measured on
    # the demo: about 2 at alpha 0.25, 4 at alpha 1, 5-6 at alpha 2), hence betas up to 8.
    parser.add_argument("--betas", type=parse_floats, default=parse_floats("-1,0,1,2,3,4,6,8"),
                        help="per-gloss bonuses of the grid (default -1,0,1,2,3,4,6,8; write "
                             "--betas=-1,0 for a leading minus)")
    parser.add_argument("--random", type=int, default=0, metavar="N",
                        help="instead of the grid, N pairs drawn uniformly within the alpha/beta ranges")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu", help="'cpu' or e.g. 'cuda:0'")
    args = parser.parse_args(argv)
    return run_cli(lambda: tune_and_report(args))


def tune_and_report(args: argparse.Namespace) -> None:
    """Tune on the files named on the command line, write the table and print the best pair."""
    given = decode_overrides(args)
    if not given.get("lm_path"):
        raise ConfigError("--lm-path is required: the ARPA gloss language model to tune "
                          "(preprocess/gloss_lm.py builds one)")
    if not args.alphas or not args.betas:
        raise ConfigError("--alphas and --betas need at least one value each")
    # The recipe's decoding (config/baseline.yaml) with this command line's options, beam search.
    cfg = DecodeConfig.recipe().updated({**given, "mode": "beam"})
    spec = scored_dataset(args.dataset, args.stm)  # before any file is read: a missing --dataset is said first
    check_output_dir(args.out, OUTPUTS, {"--logits": args.logits, "--lm-path": given.get("lm_path"),
                                         "--stm": args.stm}, args.force)
    split = load_split_logits(args.logits)
    pairs = candidate_pairs(args.alphas, args.betas, args.random, args.seed)
    summary = tune(split, cfg, pairs, Path(args.stm), spec, torch.device(args.device))
    write_outputs(Path(args.out), summary)
    best = summary["best"]
    print(f"{len(pairs)} pairs on {len(split.ids)} videos: WER without LM {summary['no_lm_wer']:.2f}% (the "
          f"beam search of width {cfg.beam_width}, as with the LM; main.py's WER decodes as its config's "
          f"decode.mode says, greedy in config/demo.yaml), best {best['wer']:.2f}% at "
          f"lm_weight={best['lm_weight']} word_bonus={best['word_bonus']}")
    if summary["at_edge"]:
        print(f"note: the best pair lies on the grid's edge ({', '.join(summary['at_edge'])}); "
              f"widen --alphas/--betas there and tune again")
    print(f"table: {Path(args.out) / 'tuning.tsv'}; use it with --lm-weight {best['lm_weight']} "
          f"--word-bonus {best['word_bonus']} (keys decode.lm_weight, decode.word_bonus)")

