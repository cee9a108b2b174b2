"""BaseFeeder: the original family's dataset over preprocessed info dicts (frames, packed cache or features)."""
from __future__ import annotations

import glob
import math
import os
import posixpath
import warnings
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch
import torch.utils.data as data

from dataset.collate import pad_collate
from dataset.feeder_options import FeederOptions
from dataset.hints import FrameSource, FramesError, damaged_frames_hint, missing_frames_hint
from dataset.layout import frames_root
from dataset.registry import DatasetSpec
from dataset.pack_freshness import changed_sources_report, mismatch_report
from dataset.images import read_rgb
from dataset.packed import PackedFrames, PackError
from dataset.transforms import VideoTransform, build_transform
from utils.errors import BadFileError, ConfigError, MissingFileError, UserError
from utils.npy import load_npy_object



# KeyError stays a second base: a gloss missing from the dictionary is a failed lookup.
class UnknownGlossError(UserError, KeyError):
    """Glosses of a split that the gloss dictionary lacks (feeder_args.unknown_glosses: error)."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""  # the message, without KeyError's quotes


def load_info(path: str | Path) -> list[dict]:
    """Per-video entries of a `<split>_info.npy` in index order (works for the original tools' files too)."""
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f"{path} not found; run the dataset's preprocess script (preprocess/) first")
    info = load_npy_object(path)
    if not isinstance(info, dict):
        raise BadFileError(f"{path}: expected a pickled dict, got {type(info).__name__}")
    keys = sorted(k for k in info if isinstance(k, (int, np.integer)))
    if keys != list(range(len(keys))):
        raise BadFileError(f"{path}: video keys are not 0..{len(keys) - 1}")
    return [info[k] for k in keys]


def labels_to_ids(
    entries: Sequence[Mapping[str, Any]], gloss_dict: Mapping[str, Sequence[int]]
) -> tuple[list[list[int]], dict[str, int]]:
    """Gloss indices of every entry's label and the glosses missing from the dictionary (with counts)."""
    ids, unknown = [], {}
    for entry in entries:
        row = []
        for gloss in entry["label"].split():
            if gloss in gloss_dict:
                row.append(int(gloss_dict[gloss][0]))
            else:
                unknown[gloss] = unknown.get(gloss, 0) + 1
        ids.append(row)
    return ids, unknown


def pack_entry_mismatch(index: Mapping, entries: Sequence[Mapping]) -> str:
    """How the first video whose pack entry disagrees with its info entry does ('' if none): its
    frame count, the folder its frames were packed from (packs that record folders), or its place
    (a pack holds a split's videos in the info file's order, so swapped entries are out of it)."""
    folders = index.get("folders") or {}
    root = str(index.get("frames_dir") or "")
    previous = None
    for entry in entries:
        fileid = entry["fileid"]
        start, count = index["videos"][fileid]
        if previous is not None and start < previous[1]:
            return (f"video {fileid!r} starts at frame {start} of the pack, before the video listed "
                    f"before it in the info file, {previous[0]!r} (frame {previous[1]}): entries "
                    f"swapped or pointing at other frames")
        previous = (fileid, start)
        expected = entry.get("num_frames")
        if isinstance(expected, int) and count != expected:
            return f"video {fileid!r} has {count} frames in the pack but {expected} in the info file"
        folder = posixpath.dirname(str(entry.get("folder", "")))
        packed = folders.get(fileid)
        where = posixpath.normpath(posixpath.join(root, packed)) if packed is not None else None
        if where is not None and folder and not where.endswith("/" + folder):
            return (f"video {fileid!r} is packed from the folder {packed!r}, but its info entry "
                    f"names {folder!r}")
    return ""


MIN_INPUT_SIZE = 8  # a smaller crop is no image of a signer (0 or less fails deep in the CNN)


def check_frame_geometry(input_size: object, image_scale: object) -> None:
    """The crop size and image scale a feeder (or an inference tool) is given are usable numbers."""
    if isinstance(input_size, bool) or not isinstance(input_size, int) or input_size < MIN_INPUT_SIZE:
        raise ConfigError(f"feeder_args.input_size must be an integer >= {MIN_INPUT_SIZE} (the crop "
                          f"the model sees), got {input_size!r}")
    if (isinstance(image_scale, bool) or not isinstance(image_scale, (int, float))
            or not math.isfinite(image_scale) or image_scale <= 0):
        raise ConfigError(f"feeder_args.image_scale must be a number > 0, got {image_scale!r}")


class BaseFeeder(data.Dataset):
    """Video/feature dataset of one split; `ds[i] -> (video (T,3,H,W) uint8, label LongTensor, info)`.

    Frames stay uint8 through collation; `dataset.transforms.model_input` normalises a batch to
    [-1, 1] on the device.

    `info` is the entry's `original_info` string (its first '|' field is the file id), as the
    original feeder returned. `dataset` is the dataset's registry entry, `kernel_size` the model's
    temporal layer list used for padding. `options` are the `feeder_args` section
    (FeederOptions.recipe() for the published recipe's).
    """

    def __init__(
        self,
        prefix: str,
        gloss_dict: Mapping[str, Sequence[int]],
        dataset: DatasetSpec,
        options: FeederOptions,
        mode: str = "train",
        transform_mode: bool = True,
        kernel_size: Sequence[str] = ("K5", "P2", "K5", "P2"),
        *,
        info_dir: str | Path | None = None,
        frames_dir: str | Path | None = None,
        packed_dir: str | Path | None = None,
        features_dir: str | Path = "features",
    ) -> None:
        frames = options.frames
        check_frame_geometry(frames.input_size, frames.image_scale)
        # Training batches only: a compiled training forward then sees a few lengths (evaluation
        # runs eager, and its outputs should not depend on the batch's padding).
        self.pad_to_multiple = frames.pad_to_multiple if mode == "train" else 1
        self.dataset = dataset.name  # recorded in packs and messages
        self.prefix = prefix
        self.mode = mode
        self.dict = gloss_dict
        self.data_type = frames.datatype
        self.frame_interval = frames.frame_interval
        self.kernel_sizes = list(kernel_size)
        self.info_dir = Path(info_dir) if info_dir is not None else Path(dataset.output_dir)
        self.frames_dir = (Path(frames_dir) if frames_dir is not None
                           else frames_root(dataset, prefix, frames.frames_res))
        self.features_dir = Path(features_dir)
        self.frame_source = FrameSource(dataset, Path(prefix), frames.frames_res,
                                        self.info_dir / f"{mode}_info.npy",
                                        Path(frames_dir) if frames_dir is not None else None, frames.input_size)
        self.inputs_list = load_info(self.info_dir / f"{mode}_info.npy")
        self.labels, unknown = labels_to_ids(self.inputs_list, gloss_dict)
        self._report_unknown(unknown, options.unknown_glosses)
        self.transform: VideoTransform = build_transform(
            bool(transform_mode), frames.input_size, frames.image_scale, options.augmentation,
            frames.frame_interval)
        packed = frames.packed
        packed_dir = packed_dir if packed_dir is not None else frames.packed_dir
        frames_res = frames.frames_res
        self.packed = packed
        self._pack: PackedFrames | None = None
        if packed:
            packed_dir = Path(packed_dir) if packed_dir is not None else self.info_dir / f"packed-{frames_res}"
            self._pack = PackedFrames.open(packed_dir, mode, dataset=self.dataset)
            missing = [e["fileid"] for e in self.inputs_list if e["fileid"] not in self._pack]
            if missing:
                raise PackError(f"{len(missing)} videos of {mode} are not in the pack {packed_dir} "
                                f"(first: {missing[:3]}): the pack was made for other info files; "
                                "re-run preprocessing with --pack")
            self._check_pack_is_current(packed_dir)

    def frames_origin(self) -> str:
        """Where this split's inputs are read from, for log.txt."""
        if self.data_type == "features":
            return f"frame features under {self.features_dir / self.mode}"
        if self._pack is not None:
            return f"the frame pack {self._pack.data_path}"
        return f"frame files under {self.frames_dir} (no pack: feeder_args.packed is false)"

    def _check_pack_is_current(self, packed_dir: Path) -> None:
        """Refuse a pack whose entries do not match the info file (frame count, folder), that does not
        hold the resized frames beside it (redone since, or others), or whose videos were decoded from
        files that changed since."""
        problem = pack_entry_mismatch(self._pack.index, self.inputs_list)
        if problem:
            raise PackError(f"the pack {packed_dir} of the {self.mode} split: {problem}; it does not "
                            f"belong to these info files ({self.info_dir / f'{self.mode}_info.npy'}): "
                            f"re-run the preprocessing with --pack --repack")
        video_dirs = {e["fileid"]: self.frames_dir / posixpath.dirname(e["folder"]) for e in self.inputs_list}
        problem = (mismatch_report(self._pack.index, video_dirs, packed_dir, self.mode, self.frames_dir)
                   or changed_sources_report(self._pack.index, packed_dir, self.mode))
        if problem:
            raise PackError(problem)

    def _report_unknown(self, unknown: Mapping[str, int], policy: str) -> None:
        """Warn once (or raise) listing glosses of this split that the gloss dict lacks."""
        if not unknown:
            return
        listing = ", ".join(f"{g} (x{n})" for g, n in sorted(unknown.items()))
        message = f"{self.mode} split of {self.dataset}: {len(unknown)} gloss(es) not in the gloss dict"
        if policy == "error":
            raise UnknownGlossError(f"{message}: {listing}; use the gloss_dict.npy written with these info files "
                           f"(dataset_info.dict_path), or feeder_args.unknown_glosses=warn to drop them "
                           f"from the labels")
        warnings.warn(f"{message} are dropped from the labels: {listing}", stacklevel=3)

    def __len__(self) -> int:
        return len(self.inputs_list)

    def video_lengths(self) -> list[int]:
        """Frames of every video as preprocessed (before augmentation), for length bucketing."""
        return [int(entry["num_frames"]) for entry in self.inputs_list]

    # ------------------------------------------------------------------ frame access

    def frame_files(self, index: int) -> list[str]:
        """Sorted frame paths of video `index` in the resized frames folder."""
        folder = self.inputs_list[index]["folder"]
        files = sorted(glob.glob(os.path.join(self.frames_dir, folder)))
        if not files:
            # The original PHOENIX-2014-T tools wrote '<split>/<name>/1/*.png'; the frames are in '<split>/<name>/'.
            directory, pattern = posixpath.split(folder)
            if posixpath.basename(directory) == "1":
                files = sorted(glob.glob(os.path.join(self.frames_dir, posixpath.dirname(directory), pattern)))
        entry = self.inputs_list[index]
        if not files:
            raise FramesError(missing_frames_hint(self.frame_source, entry["fileid"], folder))
        if entry.get("num_frames", len(files)) != len(files):  # e.g. frames of an older, longer video
            raise FramesError(damaged_frames_hint(
                self.frame_source, entry["fileid"], f"video {entry['fileid']!r} has {len(files)} resized frames "
                f"in {os.path.dirname(files[0])} but its info file {self.frame_source.info_path} says "
                f"{entry['num_frames']}: the frames are stale or incomplete"))
        return files

    def _frame_selection(self, num_frames: int) -> np.ndarray:
        """Original frame indices: random-offset frame_interval subsampling, then the temporal plan."""
        offset = int(torch.randint(0, self.frame_interval, (1,)))
        kept = np.arange(offset, num_frames, self.frame_interval)
        if len(kept) == 0:
            kept = np.arange(min(offset, num_frames - 1), num_frames)
        return kept[self.transform.sample_frames(len(kept))]

    def read_video(self, index: int) -> torch.Tensor:
        """Transformed clip of video `index` from per-frame image files (decodes only the frames used)."""
        files = self.frame_files(index)
        selection = self._frame_selection(len(files))
        unique, inverse = np.unique(selection, return_inverse=True)
        fileid = self.inputs_list[index]["fileid"]
        try:
            images = [read_rgb(files[i]) for i in unique]
        except BadFileError as error:
            raise FramesError(damaged_frames_hint(self.frame_source, fileid, str(error))) from None
        odd = next((k for k, image in enumerate(images) if image.shape != images[0].shape), None)
        if odd is not None:
            (h, w), (h0, w0) = images[odd].shape[:2], images[0].shape[:2]
            raise FramesError(f"video {fileid}: frame {files[unique[odd]]} is {w}x{h} pixels, not "
                              f"{w0}x{h0} like {files[unique[0]]}: its frames are of two sizes; "
                              f"resize the video again (preprocessing --process-image --redo {fileid})")
        frames = np.stack(images)
        params = self.transform.sample_spatial(*frames.shape[1:3])
        return self.transform.apply(frames, inverse, params)

    def read_packed(self, index: int) -> torch.Tensor:
        """Transformed clip of video `index` from the memory-mapped pack.

        Same random draws in the same order as `read_video`: a lossless pack gives its tensors
        exactly. Raw packs copy only the crop window; encoded ones decode only the kept frames.
        """
        fileid = self.inputs_list[index]["fileid"]
        selection = self._frame_selection(self._pack.num_frames(fileid))
        frames, clip_index = self._pack.read(fileid, selection)
        params = self.transform.sample_spatial(*self._pack.frame_shape[:2])
        return self.transform.apply(frames, clip_index, params)

    def read_features(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Saved frame features (T, D) and label of video `index`."""
        fileid = self.inputs_list[index]["fileid"]
        path = self.features_dir / self.mode / f"{fileid}_features.npy"
        if not path.is_file():
            raise MissingFileError(f"{path} not found; extract features for the {self.mode} split first")
        saved = load_npy_object(path)
        return (torch.as_tensor(saved["features"], dtype=torch.float32),
                torch.as_tensor(saved["label"], dtype=torch.long))

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor, str]:
        info = self.inputs_list[index]["original_info"]
        if self.data_type == "features":
            features, label = self.read_features(index)
            return features, label, info
        video = self.read_packed(index) if self.packed else self.read_video(index)
        return video, torch.tensor(self.labels[index], dtype=torch.long), info

    def collate_fn(self, batch: Sequence[tuple]) -> tuple:
        """Pad a batch for this feeder's temporal stack (see dataset.collate.pad_collate)."""
        return pad_collate(batch, self.kernel_sizes, self.pad_to_multiple)

