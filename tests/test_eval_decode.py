"""Evaluation that decodes a whole split in large calls, saved split logits, LM-weight tuning."""
from __future__ import annotations

import json
import pickle
import warnings

import pytest
import torch

from decoding.arpa import write_arpa
from decoding.build_lm import estimate_kneser_ney
from decoding.config import DecodeConfig
from decoding.decoder import Decoder, SplitDecoder, read_lm
from decoding.split_logits import class_glosses, load_split_logits, save_split_logits
from decoding.tuning import candidate_pairs, grid_edges, main as tune_main
from seq_scripts import seq_eval
from tests.malicious_pickle import TouchesMarker
from tests.test_model import NUM_CLASSES, tiny_model, video
from utils.distributed import DistEnv

pytestmark = pytest.mark.usefixtures("single_thread")

GLOSSES = {f"G{i}": [i, 1] for i in range(1, NUM_CLASSES)}


class ListLoader(list):
    """Batches of (video, video_len, label, label_len, info), as seq_eval reads a DataLoader."""

    sampler = None


def _batches() -> ListLoader:
    gen = torch.Generator().manual_seed(0)
    batches = ListLoader()
    for b, (size, time) in enumerate([(2, 24), (3, 22), (1, 26), (2, 20)]):
        lengths = torch.randint(time - 2, time + 1, (size,), generator=gen)
        lengths[0] = time
        label = torch.randint(1, NUM_CLASSES, (2 * size,), generator=gen)
        info = [f"vid{b}_{i}|extra" for i in range(size)]
        batches.append((video(size, time), lengths, label, torch.full((size,), 2), info))
    return batches


@torch.no_grad()
def _per_batch_hypotheses(model: torch.nn.Module, decoder: Decoder) -> dict:
    """Each batch through the model and decoded on its own (the original's evaluation)."""
    own: dict = {"lstm": {}, "conv": {}}
    for frames, lengths, _, _, info in _batches():
        out = model(frames, lengths)
        for name, key in (("lstm", "sequence_logits"), ("conv", "conv_logits")):
            sentences = decoder.decode(out[key], out["feat_len"], batch_first=False)
            for item, sentence in zip(info, sentences):
                own[name][item.split("|")[0]] = [gloss for gloss, _ in sentence]
    return own


@pytest.mark.parametrize("mode, chunks", [("beam", (1, 3, 1024)), ("max", (3,))])
def test_chunked_decoding_gives_the_per_batch_hypotheses(mode: str, chunks) -> None:
    model = tiny_model().eval()
    decoder = Decoder(DecodeConfig.recipe().updated({"mode": mode, "beam_width": 4}), GLOSSES,
                      num_classes=NUM_CLASSES)
    own = _per_batch_hypotheses(model, decoder)
    for chunk in chunks:
        logits: dict = {}
        chunked = seq_eval(_batches(), model, torch.device("cpu"), None, DistEnv(),
                           progress_bar=False, decoder=decoder, chunk_size=chunk, logits_out=logits)
        assert chunked == own
        assert logits["ids"] == list(own["lstm"]) and len(logits["logits"]) == 8
        assert logits["logits"][0].shape[1] == NUM_CLASSES


def test_split_decoder_rejects_bad_chunks_and_keeps_order() -> None:
    decoder = Decoder(DecodeConfig.recipe().updated({"mode": "max"}), GLOSSES, num_classes=NUM_CLASSES)
    with pytest.raises(ValueError, match="chunk_size"):
        SplitDecoder(decoder, 0)
    split = SplitDecoder(decoder, 2)
    logits = torch.randn(6, 3, NUM_CLASSES)  # (T, B, C)
    split.add(logits, [6, 2, 4])
    split.add(logits[:, :1], [5])
    assert split.finish() == {"sequence": decoder.decode(logits, [6, 2, 4], batch_first=False)
                              + decoder.decode(logits[:, :1], [5], batch_first=False)}


@pytest.mark.parametrize("chunk", [1, 2, 100])
def test_split_decoder_outputs_share_calls_and_keep_their_own_order(chunk) -> None:
    decoder = Decoder(DecodeConfig.recipe().updated({"beam_width": 3}), GLOSSES, num_classes=NUM_CLASSES)
    gen = torch.Generator().manual_seed(0)
    batches = [(torch.randn(7, 2, NUM_CLASSES, generator=gen) * 3, [7, 4]),
               (torch.randn(5, 3, NUM_CLASSES, generator=gen) * 3, [5, 5, 1])]
    split = SplitDecoder(decoder, chunk, keep_logits=True, outputs=("lstm", "conv"))
    with pytest.raises(ValueError, match="unknown output 'seq'"):
        split.add(*batches[0], output="seq")
    for logits, lengths in batches:
        split.add(logits, lengths, output="lstm")
        split.add(logits.flip(2), lengths, output="conv")
    got = split.finish()
    assert got["lstm"] == [s for logits, lengths in batches
                           for s in decoder.decode(logits, lengths, batch_first=False)]
    assert got["conv"] == [s for logits, lengths in batches
                           for s in decoder.decode(logits.flip(2), lengths, batch_first=False)]
    assert [k.shape[0] for k in split.kept] == [7, 4, 5, 5, 1]  # the first output's logits only


def _saved_split(tmp_path):
    gen = torch.Generator().manual_seed(1)
    logits = [torch.randn(t, NUM_CLASSES, generator=gen) * 3 for t in (7, 3, 5)]
    glosses = class_glosses(GLOSSES, NUM_CLASSES)
    save_split_logits(tmp_path / "dev-logits.pt", ["a", "b", "c"], logits, glosses)
    return logits, glosses


def test_split_logits_round_trip(tmp_path) -> None:
    logits, glosses = _saved_split(tmp_path)
    split = load_split_logits(tmp_path / "dev-logits.pt")
    assert split.ids == ["a", "b", "c"] and split.lengths.tolist() == [7, 3, 5]
    assert split.glosses == glosses and split.glosses[0] == "" and split.gloss_dict() == \
        {g: [i, 0] for g, (i, _) in GLOSSES.items()}
    for i, x in enumerate(logits):
        assert torch.equal(split.logits[i, :x.shape[0]], x)
    with pytest.raises(FileNotFoundError, match="--phase test"):
        load_split_logits(tmp_path / "missing.pt")


@pytest.mark.parametrize("damage", ["pickle", "truncated"])
def test_a_pickled_or_truncated_logits_file_is_one_error_line(tmp_path, capsys, damage) -> None:
    _saved_split(tmp_path)
    path = tmp_path / "dev-logits.pt"
    marker = tmp_path / "code_ran"
    if damage == "pickle":
        with open(path, "wb") as handle:
            pickle.dump({"ids": TouchesMarker(marker)}, handle)
    else:
        path.write_bytes(path.read_bytes()[:200])
    (tmp_path / "lm.arpa").write_text("")
    assert tune_main(["--logits", str(path), "--lm-path", str(tmp_path / "lm.arpa"), "--stm", str(path),
                      "--out", str(tmp_path / "tune"), "--dataset", "phoenix2014"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "is not a split-logits file of main.py --phase test" in err[0], err
    assert not marker.exists()


def test_tuning_command_writes_table_and_best_pair(tmp_path, capsys) -> None:
    logits, glosses = _saved_split(tmp_path)
    stm = tmp_path / "dev.stm"
    stm.write_text("".join(f"{v} 1 S 0.0 1.79769e+308 G1 G2 G3\n" for v in "abc"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        write_arpa(estimate_kneser_ney([["G1", "G2", "G3"]] * 3 + [["G2", "G4"]], 3), tmp_path / "lm.arpa")
    args = ["--logits", str(tmp_path / "dev-logits.pt"), "--lm-path", str(tmp_path / "lm.arpa"),
            "--stm", str(stm), "--out", str(tmp_path / "tune"), "--beam-width", "4", "--dataset", "phoenix2014"]
    assert tune_main(args + ["--alphas", "0,1", "--betas", "0,2"]) == 0
    out = capsys.readouterr().out
    assert "4 pairs on 3 videos" in out and "best" in out
    rows = (tmp_path / "tune" / "tuning.tsv").read_text().splitlines()
    assert rows[0].split("\t") == ["lm_weight", "word_bonus", "wer", "sub", "del", "ins"]
    assert [tuple(r.split("\t")[:2]) for r in rows[1:]] == [("0.0", "0.0"), ("0.0", "2.0"),
                                                           ("1.0", "0.0"), ("1.0", "2.0")]
    summary = json.loads((tmp_path / "tune" / "best.json").read_text())
    assert summary["best"]["wer"] == min(r["wer"] for r in summary["table"])
    # Weight 0 and bonus 0 is the plain search: its WER is the no-LM WER.
    assert summary["table"][0]["wer"] == summary["no_lm_wer"]
    before = {name: (tmp_path / "tune" / name).read_bytes() for name in ("tuning.tsv", "best.json")}
    assert tune_main(args + ["--random", "3", "--alphas", "0,2", "--betas=-1,1"]) == 2
    assert "tuning.tsv exists; pass --force to replace it" in capsys.readouterr().err
    assert {name: (tmp_path / "tune" / name).read_bytes() for name in before} == before
    (tmp_path / "note.txt").write_text("mine")
    for out, said in ((args[1], "is the input --logits"), (str(tmp_path / "note.txt"), "is a file, not a folder")):
        assert tune_main(args[:7] + [out] + args[8:]) == 2
        assert said in capsys.readouterr().err
    args.append("--force")
    assert tune_main(args + ["--random", "3", "--alphas", "0,2", "--betas=-1,1"]) == 0
    assert len(json.loads((tmp_path / "tune" / "best.json").read_text())["table"]) == 3
    assert tune_main(args + ["--alphas", "1", "--betas", "2", "--token-min-logp", "-5",
                             "--beam-prune-logp", "-10"]) == 0  # pruned decoding, same table
    assert len(json.loads((tmp_path / "tune" / "best.json").read_text())["table"]) == 1
    assert tune_main(args[:2] + ["--lm-path", str(tmp_path / "nope.arpa")] + args[4:]) == 2
    assert "lm_path" in capsys.readouterr().err
    assert tune_main(args[:2] + args[4:]) == 2
    assert "--lm-path is required" in capsys.readouterr().err


def test_tuning_takes_the_dataset_from_the_stm_name_or_asks_for_it(tmp_path, capsys) -> None:
    _saved_split(tmp_path)
    lines = "".join(f"{v} 1 S 0.0 1.79769e+308 G1 G2\n" for v in "abc")
    (tmp_path / "dev.stm").write_text(lines)
    (tmp_path / "phoenix2014-groundtruth-dev.stm").write_text(lines)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        write_arpa(estimate_kneser_ney([["G1", "G2"], ["G2", "G3"]], 2), tmp_path / "lm.arpa")
    args = ["--logits", str(tmp_path / "dev-logits.pt"), "--lm-path", str(tmp_path / "lm.arpa"), "--beam-width", "2",
            "--alphas", "0,1", "--betas", "0"]
    assert tune_main(args + ["--stm", str(tmp_path / "dev.stm"), "--out", str(tmp_path / "a")]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: {tmp_path / 'dev.stm'}: its file name does not tell the "
                                               f"dataset") and "pass --dataset (one of phoenix2014," in err[0]
    assert not (tmp_path / "a").exists()  # refused before anything was written
    named = tmp_path / "phoenix2014-groundtruth-dev.stm"
    assert tune_main(args + ["--stm", str(named), "--out", str(tmp_path / "b")]) == 0
    assert tune_main(args + ["--stm", str(tmp_path / "dev.stm"), "--out", str(tmp_path / "c"),
                             "--dataset", "phoenix2014"]) == 0
    assert (tmp_path / "b" / "tuning.tsv").read_text() == (tmp_path / "c" / "tuning.tsv").read_text()


def test_decoder_takes_every_key_of_the_decode_section(tmp_path) -> None:
    recipe = DecodeConfig.recipe()
    decoder = Decoder(recipe, GLOSSES, read_lm(recipe), num_classes=NUM_CLASSES)
    assert not decoder.pruned and decoder.lm is None  # the recipe: the exact search, no LM
    assert (decoder.cfg.mode, decoder.cfg.beam_width) == ("beam", 10)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        write_arpa(estimate_kneser_ney([["G1", "G2"], ["G2", "G3"]], 2), tmp_path / "lm.arpa")
    cfg = recipe.updated({"beam_width": 3, "lm_path": str(tmp_path / "lm.arpa"), "lm_weight": 0.7,
                          "word_bonus": 1.5, "token_min_logp": -5, "beam_prune_logp": -10})
    decoder = Decoder(cfg, GLOSSES, read_lm(cfg), num_classes=NUM_CLASSES)
    assert (decoder.cfg.beam_width, decoder.cfg.lm_weight, decoder.cfg.word_bonus) == (3, 0.7, 1.5)
    assert (decoder.cfg.token_min_logp, decoder.cfg.beam_prune_logp, decoder.pruned) == (-5.0, -10.0, True)
    assert decoder.lm is not None and decoder.cfg.lm_path == str(tmp_path / "lm.arpa")
    with pytest.raises(ValueError, match="decode.lm_path"):
        read_lm(cfg.updated({"lm_path": str(tmp_path / "none.arpa")}))


def test_best_pair_on_the_grid_edge_is_reported() -> None:
    pairs = candidate_pairs([0.0, 0.5, 1.0], [-1.0, 0.0, 2.0], 0, seed=0)
    assert grid_edges({"lm_weight": 0.5, "word_bonus": 0.0}, pairs) == []
    assert grid_edges({"lm_weight": 1.0, "word_bonus": 2.0}, pairs) == ["highest lm_weight",
                                                                         "highest word_bonus"]
    # alpha 0 is the natural floor (no LM), not an edge to widen; the lowest beta is.
    assert grid_edges({"lm_weight": 0.0, "word_bonus": -1.0}, pairs) == ["lowest word_bonus"]


def test_random_search_stays_in_the_ranges() -> None:
    pairs = candidate_pairs([0.0, 2.0], [-1.0, 1.0], 20, seed=3)
    assert len(pairs) == 20 and all(0 <= a <= 2 and -1 <= b <= 1 for a, b in pairs)
    assert candidate_pairs([0.0, 1.0], [0.5], 0, 0) == [(0.0, 0.5), (1.0, 0.5)]
