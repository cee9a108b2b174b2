"""The `feeder_args:` config section as small typed objects: how frames are read, how training
clips are augmented. Their defaults are config/baseline.yaml's (the one place); `recipe(**changes)`
gives them with changes, as code and tests need them."""
from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from dataset.transforms import Augmentation
from utils.config import check_kwargs, check_section_keys, default_config
from utils.errors import ConfigError

DATATYPES = ("video", "features")
UNKNOWN_GLOSS_POLICIES = ("warn", "error")


@dataclass(frozen=True)
class FrameOptions:
    """What a split's videos are read from and the clips the network gets."""

    datatype: str          # 'video' (frames) or 'features' (--phase features output)
    frames_res: str        # the resized frames' folder, WIDTHxHEIGHTpx
    packed: bool           # read the split's frame pack instead of one image per frame
    packed_dir: str | None  # the pack's folder (None: <info_dir>/packed-<frames_res>)
    frame_interval: int    # keep every N-th frame
    image_scale: float     # 0-1: a ratio of the frame; > 1: an absolute size
    input_size: int        # crop side the network sees
    pad_to_multiple: int   # training batches padded to a multiple of this length

    def __post_init__(self) -> None:
        if self.datatype not in DATATYPES:
            raise ConfigError(f"feeder_args.datatype {self.datatype!r} is not supported; use 'video' or 'features'")
        if self.frame_interval < 1:
            raise ConfigError(f"feeder_args.frame_interval must be >= 1, got {self.frame_interval}")
        if self.pad_to_multiple < 1:
            raise ConfigError(f"feeder_args.pad_to_multiple must be >= 1, got {self.pad_to_multiple}")


@dataclass(frozen=True)
class FeederOptions:
    """The whole `feeder_args` section: frames, augmentation, and what to do about unknown glosses."""

    frames: FrameOptions
    augmentation: Augmentation
    unknown_glosses: str   # 'warn' (drop them from the labels) or 'error'

    def __post_init__(self) -> None:
        if self.unknown_glosses not in UNKNOWN_GLOSS_POLICIES:
            raise ConfigError(f"feeder_args.unknown_glosses must be one of {UNKNOWN_GLOSS_POLICIES}, "
                              f"got {self.unknown_glosses!r}")

    @classmethod
    def from_mapping(cls, section: Mapping[str, Any]) -> FeederOptions:
        """Parse a complete flat `feeder_args` section (every key once, of the right type)."""
        groups = {"frames": FrameOptions, "augmentation": Augmentation, "": cls}
        names = {f.name: group for group, kind in groups.items() for f in dataclasses.fields(kind)
                 if f.name not in groups}
        check_section_keys(section, list(names), "feeder_args")
        parts: dict[str, dict[str, Any]] = {group: {} for group in groups}
        for key, value in section.items():
            parts[names[key]][key] = value
        for group, kind in groups.items():
            check_kwargs(kind, parts[group], "feeder_args", extra_keys=False)
        return cls(frames=FrameOptions(**parts["frames"]), augmentation=Augmentation(**parts["augmentation"]),
                   **parts[""])

    @classmethod
    def recipe(cls, **changes: Any) -> FeederOptions:
        """The published recipe's feeder settings (config/baseline.yaml) with `changes` (flat keys)."""
        return cls.from_mapping({**default_config()["feeder_args"], **changes})
