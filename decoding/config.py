"""The `decode:` config section as one typed, validated object.

Its defaults are the published recipe's (config/baseline.yaml); main.py reads the section of the
run's config, the tools the one a checkpoint was trained with, and every command line spells its
options alike (utils.config.add_decode_arguments).
"""
from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from utils.config import DECODE_MODES, closest_key, default_config
from utils.errors import ConfigError


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
        if self.mode not in DECODE_MODES:
            raise ConfigError(f"key 'decode.mode' must be one of {DECODE_MODES}, got {self.mode!r}")
        for key in ("beam_width", "chunk_size"):
            value = getattr(self, key)
            if not _is_int(value) or value < 1:
                raise ConfigError(f"key 'decode.{key}' must be an integer >= 1, got {value!r}")
        if self.lm_path is not None and not isinstance(self.lm_path, str):
            raise ConfigError(f"key 'decode.lm_path' must be a path or null, got {self.lm_path!r}")
        if self.lm_path and self.mode != "beam":
            raise ConfigError("key 'decode.lm_path' needs decode.mode: beam (greedy decoding cannot "
                              "use a language model): add --decode-mode beam")
        for key in ("lm_weight", "word_bonus"):
            if not _is_number(getattr(self, key)):
                raise ConfigError(f"key 'decode.{key}' must be a number, got {getattr(self, key)!r}")
        for key in ("token_min_logp", "beam_prune_logp"):
            value = getattr(self, key)
            if value is not None and not (_is_number(value) and value <= 0.0):
                raise ConfigError(f"key 'decode.{key}' must be a log-probability <= 0 (pyctcdecode's "
                                  f"defaults: token_min_logp -5, beam_prune_logp -10) or null, got {value!r}")
        if not isinstance(self.save_logits, bool):
            raise ConfigError(f"key 'decode.save_logits' must be true or false, got {self.save_logits!r}")

    @classmethod
    def from_mapping(cls, section: Mapping[str, Any]) -> DecodeConfig:
        """Parse a complete `decode:` section (every key present, no other)."""
        names = [f.name for f in dataclasses.fields(cls)]
        for key in section:
            if key not in names:
                raise ConfigError(f"unknown key 'decode.{key}'{closest_key(str(key), names)}")
        missing = [name for name in names if name not in section]
        if missing:
            raise ConfigError(f"the decode section lacks {', '.join(f'decode.{m}' for m in missing)}")
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


def _is_int(value: Any) -> bool:
    """An int that is not a bool."""
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    """A finite or infinite real number that is not a bool or NaN."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and not math.isnan(value)
