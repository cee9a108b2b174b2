"""CTC decoding: vectorised prefix beam search against exhaustive and dict-based references."""
from __future__ import annotations

import itertools
from itertools import groupby

import pytest
import torch

from decoding.beam_search import ctc_prefix_beam_search
from decoding.config import DecodeConfig
from decoding.decoder import Decoder, read_lm
from tests.reference.beam_search import reference_prefix_beam_search

pytestmark = pytest.mark.usefixtures("single_thread")



def _cfg(mode: str, **changes) -> DecodeConfig:
    """The recipe's decoding in `mode`, with `changes`."""
    return DecodeConfig.recipe().updated({"mode": mode, **changes})

def _collapse(path: tuple[int, ...], blank: int) -> tuple[int, ...]:
    """CTC many-to-one map: merge repeats, then drop blanks."""
    return tuple(label for label, _ in groupby(path) if label != blank)


def _exhaustive(log_probs: torch.Tensor, blank: int = 0) -> dict[tuple[int, ...], float]:
    """log P(labelling) for every labelling, summing all alignments (tiny T and C only)."""
    steps, classes = log_probs.shape
    table = log_probs.tolist()
    per_label: dict[tuple[int, ...], list[float]] = {}
    for path in itertools.product(range(classes), repeat=steps):
        score = sum(table[t][c] for t, c in enumerate(path))
        per_label.setdefault(_collapse(path, blank), []).append(score)
    return {label: torch.tensor(scores, dtype=torch.float64).logsumexp(0).item()
            for label, scores in per_label.items()}


def _gloss_dict(num_glosses: int) -> dict[str, list[int]]:
    return {f"G{i}": [i, 1] for i in range(1, num_glosses + 1)}


@pytest.mark.parametrize("blank", [0, 2])
def test_wide_beam_finds_most_probable_labelling(blank: int) -> None:
    gen = torch.Generator().manual_seed(0)
    for _ in range(20):
        steps = int(torch.randint(1, 6, (1,), generator=gen))
        classes = int(torch.randint(2, 5, (1,), generator=gen))
        if blank >= classes:
            continue
        log_probs = (2 * torch.randn(1, steps, classes, generator=gen)).log_softmax(-1)
        exact = _exhaustive(log_probs[0].double(), blank)
        best = max(exact, key=exact.get)
        prefixes = sum((classes - 1) ** n for n in range(steps + 1))  # beam never has to drop one
        result = ctc_prefix_beam_search(log_probs, torch.tensor([steps]), beam_width=prefixes,
                                        top_k=classes, blank_id=blank)
        assert tuple(result.best(0)) == best
        torch.testing.assert_close(result.scores[0, 0].item(), exact[best], atol=1e-4, rtol=0)
        # Every surviving beam carries the exact probability of its labelling.
        for w in range(result.scores.shape[1]):
            if result.scores[0, w] > float("-inf"):
                label = tuple(result.tokens[0, w, :result.lengths[0, w]].tolist())
                torch.testing.assert_close(result.scores[0, w].item(), exact[label], atol=1e-4, rtol=0)


def test_narrow_beam_and_top_k_match_dict_reference_with_ragged_batch() -> None:
    gen = torch.Generator().manual_seed(1)
    for _ in range(10):
        batch, steps, classes = 4, int(torch.randint(1, 16, (1,), generator=gen)), 9
        log_probs = (3 * torch.randn(batch, steps, classes, generator=gen)).log_softmax(-1)
        lengths = torch.randint(0, steps + 1, (batch,), generator=gen)
        result = ctc_prefix_beam_search(log_probs, lengths, beam_width=3, top_k=5)
        for b in range(batch):
            ref, score = reference_prefix_beam_search(log_probs[b, :lengths[b]].tolist(), 3, 5)
            assert result.best(b) == ref
            torch.testing.assert_close(result.scores[b, 0].item(), score, atol=1e-3, rtol=0)


def test_batch_padding_does_not_change_results() -> None:
    gen = torch.Generator().manual_seed(2)
    log_probs = torch.randn(3, 12, 7, generator=gen).log_softmax(-1)
    lengths = torch.tensor([12, 5, 1])
    together = ctc_prefix_beam_search(log_probs, lengths, beam_width=4, top_k=7)
    for b in range(3):
        alone = ctc_prefix_beam_search(log_probs[b:b + 1, :lengths[b]], lengths[b:b + 1], 4, 7)
        assert together.best(b) == alone.best(0)
        torch.testing.assert_close(together.scores[b], alone.scores[0])


def _plain_greedy(logits: torch.Tensor, length: int, blank: int) -> list[int]:
    """Argmax, merge repeats, drop blanks, merge again (the original MaxDecode)."""
    path = logits[:length].argmax(-1).tolist()
    no_blank = [label for label, _ in groupby(path) if label != blank]
    return [label for label, _ in groupby(no_blank)]


@pytest.mark.parametrize("blank", [0, 3])
def test_greedy_matches_plain_reference(blank: int) -> None:
    gen = torch.Generator().manual_seed(3)
    num_glosses = 5
    gloss_dict = {f"G{i}": [i, 1] for i in range(num_glosses + 1) if i != blank}
    decoder = Decoder(_cfg("max"), gloss_dict, num_classes=num_glosses + 1, blank_id=blank)
    logits = torch.randn(5, 20, num_glosses + 1, generator=gen)
    logits[..., blank] += 1.0  # plenty of blanks, so "A _ A" cases occur
    lengths = torch.tensor([20, 13, 7, 1, 0])
    out = decoder.decode(logits, lengths)
    for b in range(5):
        expected = _plain_greedy(logits[b], int(lengths[b]), blank)
        assert out[b] == [(f"G{label}", pos) for pos, label in enumerate(expected)]
    time_major = decoder.decode(logits.transpose(0, 1), lengths, batch_first=False)
    assert time_major == out


def test_greedy_merges_glosses_separated_by_blank() -> None:
    decoder = Decoder(_cfg("max"), _gloss_dict(2))
    path = torch.tensor([1, 0, 1, 1, 2, 0, 0, 1])
    logits = torch.nn.functional.one_hot(path, 3).float()[None]
    assert decoder.decode(logits, torch.tensor([8])) == [[("G1", 0), ("G2", 1), ("G1", 2)]]


def test_beam_decode_merges_repeats_and_accepts_probs() -> None:
    # Frames spell "1 _ 1 2": the best prefix is (1, 1, 2), reported as G1 G2 as the original.
    probs = torch.full((1, 4, 3), 0.02)
    for t, label in enumerate([1, 0, 1, 2]):
        probs[0, t, label] = 0.96
    decoder = Decoder(_cfg("beam", beam_width=5), _gloss_dict(2))
    expected = [[("G1", 0), ("G2", 1)]]
    assert decoder.decode(probs, torch.tensor([4]), probs=True) == expected
    assert decoder.decode(probs.log() + 3.0, torch.tensor([4])) == expected  # logits


def test_beam_decode_agrees_with_reference_on_model_sized_output() -> None:
    gen = torch.Generator().manual_seed(4)
    logits = 4 * torch.randn(2, 30, 60, generator=gen)
    lengths = torch.tensor([30, 17])
    decoder = Decoder(_cfg("beam"), _gloss_dict(59))
    out = decoder.decode(logits, lengths)
    for b in range(2):
        ref, _ = reference_prefix_beam_search(logits[b, :lengths[b]].log_softmax(-1).tolist(), 10, 40)
        merged = [label for label, _ in groupby(ref)]
        assert out[b] == [(f"G{label}", pos) for pos, label in enumerate(merged)]


def test_bad_input_is_reported() -> None:
    decoder = Decoder(_cfg("beam"), _gloss_dict(2))
    with pytest.raises(ValueError, match="classes"):
        decoder.decode(torch.zeros(1, 4, 5), torch.tensor([4]))
    with pytest.raises(ValueError, match="vid_lgt"):
        decoder.decode(torch.zeros(1, 4, 3), torch.tensor([5]))
    with pytest.raises(ValueError, match="mode' must be one of"):
        _cfg("greedy")
    with pytest.raises(ValueError, match="index 3"):
        Decoder(_cfg("max"), _gloss_dict(3), num_classes=3)
    with pytest.raises(KeyError, match="no gloss"):
        Decoder(_cfg("max"), {"A": [1, 1]}, num_classes=3).decode(torch.tensor([[[0.0, 0.0, 9.0]]]), [1])


# ---- shallow fusion with a gloss n-gram model ------------------------------------------------
_LM_CORPUS = [["G1", "G2"], ["G1", "G3"], ["G2", "G1", "G3"], ["G3"], ["G1", "G2", "G2"]] * 2


def _gloss_lm():
    import warnings

    from decoding.build_lm import estimate_kneser_ney

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tiny corpus: lmplz's fallback discounts
        return estimate_kneser_ney(_LM_CORPUS, order=3)


def _fused_exhaustive(log_probs: torch.Tensor, model, words, weight: float, bonus: float,
                      blank: int = 0) -> dict[tuple[int, ...], float]:
    """log P_ctc + weight * ln P_lm(labelling </s>) + bonus * length for every labelling."""
    import math

    out = {}
    for label, ctc in _exhaustive(log_probs, blank).items():
        lm = model.sentence_log10([words[c] for c in label]) * math.log(10.0)
        out[label] = ctc + weight * lm + bonus * len(label)
    return out


def _word_list(classes: int) -> list:
    return [None] + [f"G{i}" for i in range(1, classes)]  # G4 and above are outside the LM


def test_fused_wide_beam_finds_best_labelling_of_exhaustive_search() -> None:
    from decoding.lm import TokenLM

    model = _gloss_lm()
    gen = torch.Generator().manual_seed(5)
    for _ in range(20):
        steps = int(torch.randint(1, 6, (1,), generator=gen))
        classes = int(torch.randint(2, 6, (1,), generator=gen))
        weight, bonus = float(torch.rand(1, generator=gen)) * 2, float(torch.randn(1, generator=gen))
        log_probs = (2 * torch.randn(1, steps, classes, generator=gen)).log_softmax(-1)
        words = _word_list(classes)
        exact = _fused_exhaustive(log_probs[0].double(), model, words, weight, bonus)
        best = max(exact, key=exact.get)
        prefixes = sum((classes - 1) ** n for n in range(steps + 1))
        result = ctc_prefix_beam_search(log_probs, torch.tensor([steps]), beam_width=prefixes,
                                        top_k=classes, lm=TokenLM(model, words), lm_weight=weight,
                                        word_bonus=bonus)
        assert tuple(result.best(0)) == best
        torch.testing.assert_close(result.scores[0, 0].item(), exact[best], atol=1e-4, rtol=0)


def test_fused_and_pruned_narrow_beams_match_exhaustive_as_often_as_plain_beam() -> None:
    from decoding.lm import LN_10, TokenLM

    model = _gloss_lm()
    gen = torch.Generator().manual_seed(6)
    # Pruning thresholds scaled to these 4-class outputs (log-probs mostly above -5) so that it acts.
    pruning = {"token_min_logp": -2.5, "beam_prune_logp": -5.0}
    hits = {"plain": 0, "fused": 0, "plain pruned": 0, "fused pruned": 0}
    trials, steps, classes = 60, 5, 4
    words = _word_list(classes)
    token_lm = TokenLM(model, words)
    pruned_tokens = 0
    for _ in range(trials):
        log_probs = (1.5 * torch.randn(1, steps, classes, generator=gen)).log_softmax(-1)
        pruned_tokens += int((log_probs < pruning["token_min_logp"]).sum())
        plain = _exhaustive(log_probs[0].double())
        for name, lm, weight, bonus in (("plain", None, 0.0, 0.0), ("fused", token_lm, 0.8, 0.5)):
            exact = plain if lm is None else {
                label: score + weight * model.sentence_log10([words[c] for c in label]) * LN_10
                + bonus * len(label) for label, score in plain.items()}
            for suffix, options in (("", {}), (" pruned", pruning)):
                result = ctc_prefix_beam_search(log_probs, torch.tensor([steps]), beam_width=3, top_k=4,
                                                lm=lm, lm_weight=weight, word_bonus=bonus, **options)
                hits[name + suffix] += tuple(result.best(0)) == max(exact, key=exact.get)
    assert pruned_tokens > trials * steps // 2  # the pruning has tokens to skip
    assert 0.5 * trials <= hits["plain"] < trials, hits  # narrow enough to miss sometimes
    for name in ("fused", "plain pruned", "fused pruned"):
        assert hits[name] >= hits["plain"] - 0.05 * trials, hits


@pytest.mark.parametrize("with_lm", [False, True])
def test_pruned_search_matches_dict_reference_with_the_same_pruning(with_lm: bool) -> None:
    from decoding.lm import TokenLM

    model, words = _gloss_lm(), _word_list(7)
    lm_args = {"lm_weight": 0.9, "word_bonus": 0.4} if with_lm else {}
    gen = torch.Generator().manual_seed(9)
    for trial in range(8):
        batch, steps = 4, int(torch.randint(1, 14, (1,), generator=gen))
        log_probs = (3 * torch.randn(batch, steps, 7, generator=gen)).log_softmax(-1)
        lengths = torch.randint(0, steps + 1, (batch,), generator=gen)
        pruning = {"token_min_logp": -1.5 - trial % 3, "beam_prune_logp": -3.0 if trial % 2 else None}
        result = ctc_prefix_beam_search(log_probs, lengths, 3, 5, lm=TokenLM(model, words) if with_lm else None,
                                        **lm_args, **pruning)
        for b in range(batch):
            ref, score = reference_prefix_beam_search(log_probs[b, :lengths[b]].tolist(), 3, 5,
                                                      lm=model if with_lm else None, words=words,
                                                      **lm_args, **pruning)
            assert result.best(b) == ref
            torch.testing.assert_close(result.scores[b, 0].item(), score, atol=1e-3, rtol=0)


def test_pruning_that_prunes_nothing_is_the_exact_search_and_off_is_the_default() -> None:
    gen = torch.Generator().manual_seed(10)
    logits = 3 * torch.randn(6, 15, 9, generator=gen)
    lengths = torch.tensor([15, 0, 9, 15, 1, 4])
    exact = ctc_prefix_beam_search(logits.log_softmax(-1), lengths, 4, 6)
    loose = ctc_prefix_beam_search(logits.log_softmax(-1), lengths, 4, 6, token_min_logp=-1e30,
                                   beam_prune_logp=-1e30)
    for field in ("tokens", "lengths", "scores"):
        assert torch.equal(getattr(exact, field), getattr(loose, field))
    decoder = Decoder(_cfg("beam", beam_width=4), _gloss_dict(8), top_k=6)
    assert not decoder.pruned and decoder.cfg.token_min_logp is None and decoder.cfg.beam_prune_logp is None
    assert decoder.decode(logits, lengths) == [
        [(f"G{label}", pos) for pos, label in enumerate(key for key, _ in groupby(exact.best(b)))]
        for b in range(6)]
    for bad in ({"token_min_logp": 1.0}, {"beam_prune_logp": float("nan")}, {"token_min_logp": "x"}):
        with pytest.raises(ValueError, match="log-probability <= 0"):
            _cfg("beam", **bad)


def test_prefix_hashes_are_only_candidates(monkeypatch) -> None:
    # With every prefix hashing alike, the token comparison alone must decide which beams fold.
    import decoding.beam_search as beam_search

    gen = torch.Generator().manual_seed(11)
    log_probs = (2 * torch.randn(5, 16, 4, generator=gen)).log_softmax(-1)
    lengths = torch.tensor([16, 11, 16, 3, 8])
    hashed = ctc_prefix_beam_search(log_probs, lengths, 5, 4)
    monkeypatch.setattr(beam_search, "_HASH_MOD", 1)
    colliding = ctc_prefix_beam_search(log_probs, lengths, 5, 4)
    for field in ("tokens", "lengths", "scores"):
        assert torch.equal(getattr(hashed, field), getattr(colliding, field))


@pytest.mark.parametrize("weight, bonus", [(1.2, 0.3), (-0.3, -0.5)])  # negative: no LM pruning bound
def test_fused_batched_search_matches_dict_reference_with_ragged_batch(weight: float, bonus: float) -> None:
    from decoding.lm import TokenLM

    model = _gloss_lm()
    words = _word_list(7)
    lm = TokenLM(model, words)
    gen = torch.Generator().manual_seed(7)
    for _ in range(8):
        batch, steps = 4, int(torch.randint(1, 14, (1,), generator=gen))
        log_probs = (3 * torch.randn(batch, steps, 7, generator=gen)).log_softmax(-1)
        lengths = torch.randint(0, steps + 1, (batch,), generator=gen)
        result = ctc_prefix_beam_search(log_probs, lengths, 3, 5, lm=lm, lm_weight=weight,
                                        word_bonus=bonus)
        for b in range(batch):
            ref, score = reference_prefix_beam_search(log_probs[b, :lengths[b]].tolist(), 3, 5, lm=model,
                                                      words=words, lm_weight=weight, word_bonus=bonus)
            assert result.best(b) == ref
            torch.testing.assert_close(result.scores[b, 0].item(), score, atol=1e-3, rtol=0)


def test_without_lm_results_are_the_plain_search() -> None:
    from decoding.lm import TokenLM

    gen = torch.Generator().manual_seed(8)
    log_probs = (3 * torch.randn(5, 20, 7, generator=gen)).log_softmax(-1)
    lengths = torch.tensor([20, 13, 7, 1, 0])
    plain = ctc_prefix_beam_search(log_probs, lengths, 4, 5)
    # A model with weight 0 and bonus 0 adds exact zeros: same beams, same scores, bit for bit.
    neutral = ctc_prefix_beam_search(log_probs, lengths, 4, 5, lm=TokenLM(_gloss_lm(), _word_list(7)))
    for field in ("tokens", "lengths", "scores"):
        assert torch.equal(getattr(plain, field), getattr(neutral, field))
    cfg = _cfg("beam", beam_width=4, lm_weight=0.0, word_bonus=0.0)
    decoder = Decoder(cfg, _gloss_dict(6), top_k=5)
    assert decoder.decode(log_probs, lengths) == Decoder(cfg, _gloss_dict(6), _gloss_lm(),
                                                         top_k=5).decode(log_probs, lengths)
    for b in range(5):
        ref, _ = reference_prefix_beam_search(log_probs[b, :lengths[b]].tolist(), 4, 5)
        assert plain.best(b) == ref


def test_lm_changes_the_decision_it_should(tmp_path) -> None:
    # Frames favour "G1 G2" over "G1 G3" by ln(0.53 / 0.45) = 0.16; the LM favours "G1 G3 </s>"
    # by 0.25 (natural log), so that with weight 1 the fused search must switch.
    probs = torch.full((1, 3, 4), 0.01)
    probs[0, 0, 1] = 0.97
    probs[0, 1, 2], probs[0, 1, 3] = 0.53, 0.45
    probs[0, 2, 0] = 0.97
    probs = probs / probs.sum(-1, keepdim=True)
    from decoding.arpa import write_arpa

    write_arpa(_gloss_lm(), tmp_path / "lm.arpa")
    cfg = DecodeConfig.recipe().updated({"beam_width": 4, "lm_weight": 1.0, "word_bonus": 0.0})
    plain = Decoder(cfg, _gloss_dict(3), read_lm(cfg))
    fused_cfg = cfg.updated({"lm_path": str(tmp_path / "lm.arpa")})
    fused = Decoder(fused_cfg, _gloss_dict(3), read_lm(fused_cfg))
    assert fused.cfg.lm_path == str(tmp_path / "lm.arpa") and fused.lm is not None and plain.lm is None
    model = _gloss_lm()
    assert model.sentence_log10(["G1", "G3"]) - model.sentence_log10(["G1", "G2"]) > 0.1
    assert [g for g, _ in plain.decode(probs, [3], probs=True)[0]] == ["G1", "G2"]
    assert [g for g, _ in fused.decode(probs, [3], probs=True)[0]] == ["G1", "G3"]
    with pytest.raises(ValueError, match="needs decode.mode: beam"):
        Decoder(_cfg("max"), _gloss_dict(3), _gloss_lm())
