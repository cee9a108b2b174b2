"""The `decode:` config section as one typed, validated object, and its command-line options.

Its defaults are the published recipe's (config/baseline.yaml); main.py reads the section of the
run's config, the tools the one a checkpoint was trained with, and every command line spells its
options alike (add_decode_arguments). The checks live here and nowhere else: a Decoder takes a
DecodeConfig, and tuning derives new configs (`updated`) instead of editing a decoder. Keys of
earlier versions (`decode_mode`, `model_args.search_mode`, ...) are moved once, by
utils.config.MOVED_KEYS for configs and checkpoints and by `from_onnx_metadata` for exported files.
"""
from __future__ import annotations

import argparse
import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from utils.config import check_section_keys, default_config
from utils.errors import ConfigError

MODES = ("beam", "max")  # CTC prefix beam search, greedy best path


@dataclass(frozen=True)
class DecodeConfig:
    """How network outputs become gloss sentences (the keys of the `decode:` section)."""

    mode: str                       # 'beam' (CTC prefix beam search) or 'max' (greedy best path)
    beam_width: int                 # prefixes kept per frame
    lm_path: str | None             # ARPA gloss LM fused into the beam search (None: no LM)
    lm_weight: float                # alpha: weight of ln P_lm
    word_bonus: float               # beta: added per gloss
    token_min_logp: float | None    # skip a frame's tokens below this log-prob (None: exact search)
    beam_prune_logp: float | None   # drop beams this far below the best one (None: exact search)
    chunk_size: int                 # evaluation decodes this many videos per call
    save_logits: bool               # --phase test saves <split>-logits.pt for LM tuning

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ConfigError(f"key 'decode.mode' must be one of {MODES}, got {self.mode!r}")
        for key in ("beam_width", "chunk_size"):
            value = getattr(self, key)
            if not _is_int(value) or value < 1:
                raise ConfigError(f"key 'decode.{key}' must be an integer >= 1, got {value!r}")
        if self.lm_path is not None and not isinstance(self.lm_path, str):
            raise ConfigError(f"key 'decode.lm_path' must be a path or null, got {self.lm_path!r}")
        if self.lm_path:
            check_lm_mode(self.mode, "key 'decode.lm_path'")
        for key in ("lm_weight", "word_bonus"):
            if not _is_number(getattr(self, key)):
                raise ConfigError(f"key 'decode.{key}' must be a number, got {getattr(self, key)!r}")
        check_pruning(self.token_min_logp, self.beam_prune_logp)
        if not isinstance(self.save_logits, bool):
            raise ConfigError(f"key 'decode.save_logits' must be true or false, got {self.save_logits!r}")

    @classmethod
    def from_mapping(cls, section: Mapping[str, Any]) -> DecodeConfig:
        """Parse a complete `decode:` section (every key present, no other)."""
        check_section_keys(section, [f.name for f in dataclasses.fields(cls)], "decode")
        floats = {"lm_weight", "word_bonus", "token_min_logp", "beam_prune_logp"}
        return cls(**{key: float(value) if key in floats and _is_number(value) else value
                      for key, value in section.items()})

    @classmethod
    def recipe(cls) -> DecodeConfig:
        """The published recipe's decoding (config/baseline.yaml)."""
        return cls.from_mapping(default_config()["decode"])

    def updated(self, changes: Mapping[str, Any]) -> DecodeConfig:
        """A copy with `changes` (decode keys, e.g. the command line's) applied and validated."""
        return DecodeConfig.from_mapping({**dataclasses.asdict(self), **changes})

    def onnx_metadata(self) -> dict[str, Any]:
        """What an exported graph's metadata file keeps of it: the mode and the beam width."""
        return {"mode": self.mode, "beam_width": self.beam_width}

    @classmethod
    def from_onnx_metadata(cls, meta: Mapping[str, Any]) -> DecodeConfig:
        """The recipe with an exported file's mode and beam width (stfnet-onnx-1 spelt the mode
        `search_mode`, beside `beam_width`, at the top level: mapped here, once)."""
        saved = meta["decode"] if "decode" in meta else {"mode": meta["search_mode"],
                                                         "beam_width": meta["beam_width"]}
        return cls.recipe().updated({"mode": saved["mode"], "beam_width": int(saved["beam_width"])})


def check_lm_mode(mode: str, what: str) -> None:
    """A language model needs the beam search: refuse it with greedy decoding."""
    if mode != "beam":
        raise ConfigError(f"{what} needs decode.mode: beam (greedy decoding cannot use a language "
                          f"model): add --decode-mode beam")


def check_pruning(token_min_logp: float | None, beam_prune_logp: float | None) -> None:
    """Reject pruning thresholds that are not log-probabilities <= 0 (None: no pruning)."""
    for key, value in (("token_min_logp", token_min_logp), ("beam_prune_logp", beam_prune_logp)):
        if value is not None and not (_is_number(value) and value <= 0.0):
            raise ConfigError(f"key 'decode.{key}' must be a log-probability <= 0 (pyctcdecode's "
                              f"defaults: token_min_logp -5, beam_prune_logp -10) or null, got {value!r}")


def _is_int(value: Any) -> bool:
    """An int that is not a bool."""
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    """A finite or infinite real number that is not a bool or NaN."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and not math.isnan(value)


# The decode section's command-line options, spelt alike by main.py and every tool:
# option -> (key in `decode:`, argparse settings). Each option's value lands in `decode.<key>`
# of the parsed namespace (utils.config.cli_overrides nests such names).
OPTIONS: dict[str, tuple[str, dict[str, Any]]] = {
    "decode-mode": ("mode", {"choices": MODES, "help": "CTC decoding: beam (prefix beam "
                             "search) or max (greedy best path) (decode.mode)"}),
    "beam-width": ("beam_width", {"type": int,
                                  "help": "prefixes kept by the beam search (decode.beam_width)"}),
    "lm-path": ("lm_path", {"help": "ARPA gloss language model fused into the beam search "
                            "(decode.lm_path; preprocess/gloss_lm.py builds one)"}),
    "lm-weight": ("lm_weight", {"type": float, "help": "LM weight alpha (decode.lm_weight)"}),
    "word-bonus": ("word_bonus", {"type": float, "help": "per-gloss bonus beta (decode.word_bonus)"}),
    "token-min-logp": ("token_min_logp", {"type": float, "help": "beam search skips tokens below "
                       "this log-prob, e.g. -5 (decode.token_min_logp; default: none, the exact search)"}),
    "beam-prune-logp": ("beam_prune_logp", {"type": float, "help": "beam search drops beams this far "
                        "below the best, e.g. -10 (decode.beam_prune_logp; default: none)"}),
}


def add_decode_arguments(parser: argparse.ArgumentParser, names: Sequence[str] = tuple(OPTIONS)) -> None:
    """Add the decode options `names` (default all; each also with underscores), default None."""
    for name in names:
        key, settings = OPTIONS[name]
        parser.add_argument(f"--{name}", f"--{name.replace('-', '_')}", dest=f"decode.{key}",
                            default=None, **settings)


def decode_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The `decode:` keys given by add_decode_arguments's options on the command line."""
    given = vars(args)
    return {key: given[f"decode.{key}"] for key, _ in OPTIONS.values()
            if given.get(f"decode.{key}") is not None}
