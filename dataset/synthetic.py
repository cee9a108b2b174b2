"""Deterministic synthetic signing dataset written in the on-disk format of PHOENIX-2014, -T, CSL-Daily or CSL.

A drawn signer (body, head, two arms and hands) signs sentences from a small weather grammar.
Every gloss is a distinct pattern of the dominant hand (colour, position, shape, motion) and of
the other hand's height, held for a signer-dependent number of frames with a transition frame
between glosses. Signers differ in colours, sizes, speed and jitter; dev and test are signed by
signers never seen in train. The same seed always writes the same bytes.

    python -m dataset.synthetic --format phoenix2014 --out DIR --size tiny --seed 0 [--replace]

`--format table` writes the videos as real encoded files (H.264 or MPEG-4 .mp4, MJPEG .avi, VP9
.webm: `--video-codec`) plus the table.csv that lists them (the table dataset).
"""
from __future__ import annotations

import utils.installed  # noqa: F401  (first: without the requirements, one line on how to install)
import argparse
import datetime as dt
import math
import os
import sys
from dataclasses import dataclass
from multiprocessing import Pool
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np

from dataset.annotations import (CSL_DAILY_MAP_HEADER, CSL_DAILY_SPLIT_HEADER, PHOENIX_HEADERS, TABLE_OPTIONAL,
                                 TABLE_REQUIRED, csl_daily_map,
                                 csl_daily_split_file, csl_split_file, phoenix_corpus)
from dataset.generated import prepare_output, write_owner_record
from dataset.layout import parse_resolution, raw_frames_root
from dataset.registry import DatasetSpec, dataset_spec
from dataset.video_files import CODECS, available_codecs, write_video as write_video_file
from utils.errors import run_cli

# Grammar categories: German glosses (PHOENIX) and Chinese words / digits (CSL-Daily, CSL), aligned.
CATEGORIES: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "time": (("HEUTE", "MORGEN", "NACHT", "ABEND"), ("今天", "明天", "晚上", "下午")),
    "place": (("NORD", "SUED", "WEST", "OST", "REGION", "BERG"), ("北", "南", "西", "东", "地区", "山")),
    "weather": (("REGEN", "SONNE", "WOLKE", "SCHNEE", "WIND", "GEWITTER", "NEBEL", "FROST"),
                ("雨", "太阳", "云", "雪", "风", "雷", "雾", "冷")),
    "modifier": (("STARK", "SCHWACH", "VIEL", "BISSCHEN"), ("大", "小", "多", "少")),
    "number": (("EINS", "ZWEI", "DREI", "VIER", "FUENF"), ("1", "2", "3", "4", "5")),
    "unit": (("GRAD",), ("度",)),
    "connect": (("UND", "ABER", "DANN"), ("和", "但是", "然后")),
}
# The registry's datasets whose download layout (frame names, annotation files) this generator writes.
FORMATS = ("phoenix2014", "phoenix2014-T", "CSL-Daily", "CSL")
# Datasets of encoded video files listed in a table (the registry's from_table entries).
VIDEO_FORMATS = ("table",)
TABLE_NAME = "table.csv"
VIDEO_FPS = 25
# Where the original CSL split files say their videos are: the original authors' machine.
CSL_FOREIGN_ROOT = "/disk1/dataset/CSL_Continuous"
LANGUAGE_COLUMN = {"de": 0, "zh": 1}  # which word of each CATEGORIES pair a dataset's language uses
MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August", "September",
          "October", "November", "December")
TRAIN_SIGNERS = (1, 2, 3, 4, 5, 6)
DEV_SIGNERS = (7, 8)
TEST_SIGNERS = (8, 9)
# Dominant-hand cues of a gloss: colour (8 hues, the cue that survives low resolution best) x
# position-and-shape (4 places, all on the signer's dominant side so that a horizontal flip never
# lands one gloss on another's place) cover the 31 glosses uniquely; motion and the other hand's
# height add redundant cues.
HAND_COLOURS = ((40, 40, 230), (40, 200, 40), (230, 90, 30), (30, 220, 230),  # BGR: red, green, blue, yellow
                (220, 40, 220), (230, 230, 40), (20, 140, 255), (250, 250, 250))  # magenta, cyan, orange, white
HAND_POSITIONS = ((0.17, 0.34), (0.38, 0.4), (0.17, 0.62), (0.38, 0.68))
HAND_SHAPES = ("circle", "square", "triangle", "diamond")
OTHER_HAND_HEIGHTS = (0.82, 0.62, 0.4)
MOTIONS = ("static", "horizontal", "vertical", "circle")


@dataclass(frozen=True)
class SizeSpec:
    """Number of videos per split, glosses per sentence and frames per gloss of one dataset size."""

    videos: dict[str, int]
    glosses: tuple[int, int]
    frames_per_gloss: tuple[int, int]
    gloss_counts: tuple[tuple[int, int], ...] = ()  # (glosses, sentences): draw lengths from it, not uniformly


# Glosses per sentence of PHOENIX-2014's dev and test ground truth together (1,169 sentences; counted
# in phoenix2014-groundtruth-{dev,test}.stm of the release, whose ground truth the project holds
# for reference; mean 10.3): (glosses, sentences).
PHOENIX_GLOSS_COUNTS = ((3, 2), (4, 14), (5, 38), (6, 63), (7, 86), (8, 146), (9, 172), (10, 156),
                        (11, 116), (12, 111), (13, 75), (14, 70), (15, 49), (16, 31), (17, 14),
                        (18, 10), (19, 5), (20, 4), (21, 6), (23, 1))


# The model pools time by 4, so small/demo hold a gloss for 8-12 frames: 2-3 output steps per
# gloss leave CTC room to align (at ~5 frames a gloss many sentences are barely alignable).
SIZES = {
    "tiny": SizeSpec({"train": 4, "dev": 2, "test": 2}, (2, 4), (2, 3)),
    "small": SizeSpec({"train": 40, "dev": 10, "test": 10}, (2, 10), (8, 12)),
    "demo": SizeSpec({"train": 200, "dev": 30, "test": 30}, (2, 6), (8, 12)),
    # Video lengths spread like PHOENIX's (about 50 to 300 frames), for data-loading benchmarks.
    "long": SizeSpec({"train": 60, "dev": 6, "test": 6}, (5, 26), (8, 12)),
    # PHOENIX-2014's real video counts (published); glosses per sentence drawn from its dev/test
    # histogram (above), each held 11-18 frames scaled by the signer's speed (assumed, chosen so that
    # the means come out near the published 141 / 139 / 142 frames a video of train / dev / test,
    # 799,006 / 75,186 / 89,472 frames, Koller et al., CVIU 2015; the slower test signers give ~158).
    "phoenix": SizeSpec({"train": 5672, "dev": 540, "test": 629}, (3, 23), (11, 18), PHOENIX_GLOSS_COUNTS),
}
STYLES = ("clean", "camera")


@dataclass(frozen=True)
class Signer:
    """Appearance and signing style of one synthetic signer."""

    sid: int
    skin: tuple[int, int, int]
    shirt: tuple[int, int, int]
    bg_top: tuple[int, int, int]
    bg_bottom: tuple[int, int, int]
    head_scale: float
    body_scale: float
    hand_scale: float
    speed: float
    jitter: float


@dataclass(frozen=True)
class VideoSpec:
    """Everything needed to render and name one video."""

    split: str
    index: int
    signer: Signer
    glosses: tuple[str, ...]
    gloss_ids: tuple[int, ...]
    seed: tuple[int, ...]


def vocabulary(spec: DatasetSpec) -> tuple[str, ...]:
    """All glosses of dataset `spec`'s language, in the fixed order that defines their visual pattern."""
    column = LANGUAGE_COLUMN[spec.gloss_language]
    return tuple(g for words in CATEGORIES.values() for g in words[column])


def _colour(rng: np.random.Generator, low: int, high: int) -> tuple[int, int, int]:
    """A random BGR colour with channels in [low, high)."""
    return tuple(int(c) for c in rng.integers(low, high, size=3))


def make_signer(seed: int, sid: int) -> Signer:
    """Signer `sid`'s appearance, fixed by (seed, sid)."""
    rng = np.random.default_rng([seed, 7919, sid])
    tone = rng.uniform(0.55, 1.0)
    return Signer(
        sid=sid,
        skin=(int(120 * tone), int(160 * tone), int(215 * tone)),
        shirt=_colour(rng, 20, 110),
        bg_top=_colour(rng, 120, 250),
        bg_bottom=_colour(rng, 60, 200),
        head_scale=float(rng.uniform(0.85, 1.15)),
        body_scale=float(rng.uniform(0.85, 1.15)),
        hand_scale=float(rng.uniform(0.9, 1.1)),
        speed=float(rng.uniform(0.8, 1.25)),
        jitter=float(rng.uniform(0.0, 1.0)),
    )


def sample_sentence(rng: np.random.Generator, length_range: tuple[int, int], spec: DatasetSpec) -> list[str]:
    """A sentence of the weather grammar in `spec`'s language: [time] clause (connect clause)*, cut to
    a sampled length."""
    column = LANGUAGE_COLUMN[spec.gloss_language]
    words = {name: pair[column] for name, pair in CATEGORIES.items()}

    def pick(category: str) -> str:
        return words[category][int(rng.integers(len(words[category])))]

    target = int(rng.integers(length_range[0], length_range[1] + 1))
    tokens = [pick("time")] if rng.random() < 0.6 else []
    while len(tokens) < target:
        if tokens and tokens[-1] not in words["connect"] and rng.random() < 0.5:
            tokens.append(pick("connect"))
        if rng.random() < 0.25:
            tokens += [pick("number"), pick("unit")]
        else:
            if rng.random() < 0.6:
                tokens.append(pick("place"))
            if rng.random() < 0.4:
                tokens.append(pick("modifier"))
            tokens.append(pick("weather"))
    tokens = tokens[:target]
    if tokens[-1] in words["connect"]:  # a sentence does not end on a conjunction
        tokens[-1] = pick("weather")
    return tokens


def split_count(count: int, fraction: float) -> int:
    """Videos of a split of `count` kept by `fraction` (at least one)."""
    return max(1, round(count * fraction))


def plan_videos(spec: DatasetSpec, size: str, seed: int, fraction: float = 1.0) -> list[VideoSpec]:
    """The sentences and signers of every video of dataset `spec`'s splits (cheap; rendering happens later).

    `fraction` keeps the first part of each split (the same videos as the whole plan's)."""
    sizes = SIZES[size]
    counts, weights = zip(*sizes.gloss_counts) if sizes.gloss_counts else ((), ())
    vocab = vocabulary(spec)
    lookup = {g: i for i, g in enumerate(vocab)}
    signer_ids = {"train": TRAIN_SIGNERS, "dev": DEV_SIGNERS, "test": TEST_SIGNERS}
    videos = []
    for split_no, split in enumerate(("train", "dev", "test")):
        if split not in spec.splits:
            continue
        rng = np.random.default_rng([seed, split_no])
        for index in range(split_count(sizes.videos[split], fraction)):
            if counts:
                target = int(rng.choice(counts, p=np.array(weights) / sum(weights)))
                glosses = sample_sentence(rng, (target, target), spec)
            else:
                glosses = sample_sentence(rng, sizes.glosses, spec)
            sid = signer_ids[split][index % len(signer_ids[split])]
            videos.append(VideoSpec(split, index, make_signer(seed, sid), tuple(glosses),
                                    tuple(lookup[g] for g in glosses), (seed, split_no, index)))
    return videos


# ----------------------------------------------------------------------------- rendering


def _background(signer: Signer, rng: np.random.Generator, width: int, height: int) -> np.ndarray:
    """Vertical gradient in the signer's colours plus a few faint random panels (varies per video)."""
    ramp = np.linspace(0.0, 1.0, height, dtype=np.float32)[:, None, None]
    top, bottom = np.array(signer.bg_top, np.float32), np.array(signer.bg_bottom, np.float32)
    image = np.broadcast_to(top * (1 - ramp) + bottom * ramp, (height, width, 3)).astype(np.uint8)
    image = np.ascontiguousarray(image)
    for _ in range(3):
        x0, y0 = int(rng.integers(0, width)), int(rng.integers(0, height))
        x1, y1 = x0 + int(rng.integers(width // 8, width // 2)), y0 + int(rng.integers(height // 8, height // 2))
        panel = image.copy()
        cv2.rectangle(panel, (x0, y0), (x1, y1), _colour(rng, 0, 256), -1)
        image = cv2.addWeighted(panel, 0.25, image, 0.75, 0)
    return image


def _draw_hand(image: np.ndarray, centre: tuple[float, float], radius: float, shape: str,
               colour: tuple[int, int, int]) -> None:
    """Draw a filled hand of `shape` with a dark outline."""
    x, y, r = centre[0], centre[1], radius
    outline = tuple(max(0, c - 90) for c in colour)
    if shape == "circle":
        cv2.circle(image, (round(x), round(y)), round(r), colour, -1, cv2.LINE_AA)
        cv2.circle(image, (round(x), round(y)), round(r), outline, 2, cv2.LINE_AA)
        return
    if shape == "square":
        points = [(x - r, y - r), (x + r, y - r), (x + r, y + r), (x - r, y + r)]
    elif shape == "triangle":
        points = [(x, y - 1.2 * r), (x + 1.15 * r, y + 0.9 * r), (x - 1.15 * r, y + 0.9 * r)]
    else:  # diamond
        points = [(x, y - 1.3 * r), (x + r, y), (x, y + 1.3 * r), (x - r, y)]
    poly = np.round(np.array(points)).astype(np.int32)
    cv2.fillPoly(image, [poly], colour, cv2.LINE_AA)
    cv2.polylines(image, [poly], True, outline, 2, cv2.LINE_AA)


def _motion_offset(motion: str, phase: float, amplitude: float) -> tuple[float, float]:
    """Hand displacement at `phase` in [0, 1) of a gloss for a motion pattern."""
    angle = 2 * math.pi * phase
    if motion == "horizontal":
        return amplitude * math.sin(angle), 0.0
    if motion == "vertical":
        return 0.0, amplitude * math.sin(angle)
    if motion == "circle":
        return amplitude * (math.cos(angle) - 1.0), amplitude * math.sin(angle)
    return 0.0, 0.0


def gloss_pose(gloss_id: int, phase: float) -> tuple[tuple[float, float], str, tuple[int, int, int], float]:
    """(dominant hand position, shape, colour, other hand height) of a gloss, in relative units."""
    colour = HAND_COLOURS[gloss_id % len(HAND_COLOURS)]
    place = (gloss_id // len(HAND_COLOURS)) % len(HAND_POSITIONS)
    x, y = HAND_POSITIONS[place]
    dx, dy = _motion_offset(MOTIONS[gloss_id % len(MOTIONS)], phase, 0.04)
    return (x + dx, y + dy), HAND_SHAPES[place], colour, OTHER_HAND_HEIGHTS[gloss_id % 3]


REST_POSE = ((0.3, 0.9), "circle", None, 0.88)


def frame_poses(video: VideoSpec, frames_per_gloss: tuple[int, int], rng: np.random.Generator) -> list[tuple]:
    """Per-frame hand poses: rest, each gloss for a signer-speed-dependent duration, rest.

    The first frame of each gloss is a transition halfway from the previous pose (movement epenthesis).
    """
    poses = [REST_POSE]
    for gloss_id in video.gloss_ids:
        low, high = frames_per_gloss
        duration = int(round(rng.integers(low, high + 1) / video.signer.speed))
        duration = max(low, min(high + 1, duration))
        for t in range(duration):
            poses.append(gloss_pose(gloss_id, t / duration))
        prev = poses[-duration - 1]
        (px, py), (cx, cy) = prev[0], poses[-duration][0]
        first = poses[-duration]
        if duration > 2:
            poses[-duration] = (((px + cx) / 2, (py + cy) / 2), first[1], first[2], (prev[3] + first[3]) / 2)
    poses.append(REST_POSE)
    return poses


def render_video(video: VideoSpec, width: int, height: int, frames_per_gloss: tuple[int, int]) -> list[np.ndarray]:
    """Render all BGR frames of one video."""
    rng = np.random.default_rng(list(video.seed))
    signer = video.signer
    unit = min(width, height)
    background = _background(signer, rng, width, height)
    shift = rng.normal(0.0, 0.015, size=2) * (width, height)
    head = (0.5 * width + shift[0], 0.27 * height + shift[1])
    shoulder_y = 0.47 * height + shift[1]
    half_body = 0.22 * unit * signer.body_scale
    shoulders = ((head[0] - half_body, shoulder_y), (head[0] + half_body, shoulder_y))
    hand_r = 0.09 * unit * signer.hand_scale
    frames = []
    for pose in frame_poses(video, frames_per_gloss, rng):
        image = background.copy()
        (hx, hy), shape, colour, other_h = pose
        jitter = rng.normal(0.0, signer.jitter * 0.006 * unit, size=4)
        dominant = (hx * width + shift[0] + jitter[0], hy * height + shift[1] + jitter[1])
        other = (0.8 * width + shift[0] + jitter[2], other_h * height + shift[1] + jitter[3])
        torso = np.array([[shoulders[0][0], shoulder_y], [shoulders[1][0], shoulder_y],
                          [head[0] + 1.2 * half_body, height], [head[0] - 1.2 * half_body, height]])
        cv2.fillPoly(image, [np.round(torso).astype(np.int32)], signer.shirt, cv2.LINE_AA)
        cv2.circle(image, (round(head[0]), round(head[1])), round(0.11 * unit * signer.head_scale),
                   signer.skin, -1, cv2.LINE_AA)
        arm = max(3, round(0.045 * unit))
        for start, end in ((shoulders[0], dominant), (shoulders[1], other)):
            cv2.line(image, (round(start[0]), round(start[1])), (round(end[0]), round(end[1])),
                     signer.shirt, arm, cv2.LINE_AA)
        _draw_hand(image, other, hand_r * 0.8, "circle", signer.skin)
        _draw_hand(image, dominant, hand_r, shape, colour if colour is not None else signer.skin)
        frames.append(image)
    return frames


def _smooth_noise(rng: np.random.Generator, width: int, height: int, cell: int) -> np.ndarray:
    """(H, W, 1) float noise in [-1, 1] varying over about `cell` pixels (bicubic upsampling)."""
    small = rng.uniform(-1.0, 1.0, size=(max(2, height // cell + 2), max(2, width // cell + 2))).astype(np.float32)
    return cv2.resize(small, (width, height), interpolation=cv2.INTER_CUBIC)[:, :, None]


@dataclass(frozen=True)
class Camera:
    """What a camera and a compressed download add to a rendered frame (camera-like style)."""

    texture: np.ndarray      # (H, W, 3) float additive background texture (static per video)
    light: np.ndarray        # (H, W, 1) float multiplicative lighting (gradient and vignette)
    blur_sigma: float
    noise_sigma: float
    jpeg_quality: int


def make_camera(rng: np.random.Generator, width: int, height: int) -> Camera:
    """A random camera for one video: textured wall, uneven light, optics blur, sensor noise, codec."""
    texture = sum(amp * _smooth_noise(rng, width, height, cell)
                  for amp, cell in ((14.0, 48), (9.0, 12), (6.0, 3), (4.0, 1)))
    texture = texture * rng.uniform(0.85, 1.15, size=3).astype(np.float32)  # slightly tinted
    gy, gx = np.mgrid[0:height, 0:width].astype(np.float32)
    direction = rng.normal(size=2)
    direction /= np.linalg.norm(direction) + 1e-9
    ramp = ((gx / width - 0.5) * direction[0] + (gy / height - 0.5) * direction[1])[:, :, None]
    radius = (((gx - width / 2) / width) ** 2 + ((gy - height / 2) / height) ** 2)[:, :, None]
    light = (1.0 + rng.uniform(0.15, 0.35) * ramp) * (1.0 - rng.uniform(0.2, 0.45) * radius)
    return Camera(texture.astype(np.float32), light.astype(np.float32), float(rng.uniform(0.6, 1.0)),
                  float(rng.uniform(2.5, 4.0)), int(rng.integers(80, 91)))


def film(image: np.ndarray, camera: Camera, rng: np.random.Generator, textured: np.ndarray) -> np.ndarray:
    """A rendered BGR frame as a camera and a compressed download deliver it.

    `textured` marks the static scene (wall, torso): the texture does not travel with the moving hands.
    """
    frame = image.astype(np.float32) + camera.texture * textured
    frame = cv2.GaussianBlur(frame * camera.light, (0, 0), camera.blur_sigma)
    frame += rng.normal(0.0, camera.noise_sigma, size=frame.shape).astype(np.float32)
    frame = np.clip(frame + 0.5, 0, 255).astype(np.uint8)
    ok, encoded = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, camera.jpeg_quality])
    if not ok:
        raise RuntimeError("OpenCV could not JPEG-encode a synthetic frame")
    return cv2.imdecode(encoded, cv2.IMREAD_COLOR)


def render_camera_video(video: VideoSpec, width: int, height: int,
                        frames_per_gloss: tuple[int, int]) -> list[np.ndarray]:
    """The frames of `render_video` (same scene) filmed by a random camera of the video."""
    clean = render_video(video, width, height, frames_per_gloss)
    rng = np.random.default_rng([*video.seed, 1])  # its own stream: the scene stays that of 'clean'
    camera = make_camera(rng, width, height)
    # The background is what no frame ever changes: the signer moves, the wall does not.
    still = np.all(np.stack([f == clean[0] for f in clean]), axis=(0, 3))[:, :, None].astype(np.float32)
    return [film(frame, camera, rng, still) for frame in clean]


# ----------------------------------------------------------------------------- naming and writing


SPLIT_OFFSET = {"train": 0, "dev": 100000, "test": 200000}  # keeps names unique across splits


def phoenix_name(video: VideoSpec, spec: DatasetSpec) -> tuple[str, str]:
    """(video id, frame-name stem) in PHOENIX style, e.g. '01April_2010_Thursday_heute_default-0'.

    Three videos share a broadcast date; the date moves on by a day per three videos and by
    about three years per split, so names never collide.
    """
    number = SPLIT_OFFSET[video.split] // 100 + video.index
    day = dt.date(2010, 1, 1) + dt.timedelta(days=number // 3)
    show = ("heute", "tagesschau")[number % 2]
    stem = f"{day.day:02d}{MONTHS[day.month - 1]}_{day.year}_{day.strftime('%A')}_{show}"
    if spec.name == "phoenix2014":
        return f"{stem}_default-{number % 3}", f"{stem}.avi_pid0_fn"
    return f"{stem}-{number % 3}", "images"


def csl_name(video: VideoSpec) -> str:
    """CSL-Daily style name S<sentence>_P<signer>_T00."""
    sentence = SPLIT_OFFSET[video.split] + video.index
    return f"S{sentence:06d}_P{video.signer.sid:04d}_T00"


def csl_continuous_name(video: VideoSpec) -> str:
    """CSL style folder name video<N> (train from video0, dev from video1000)."""
    return f"video{SPLIT_OFFSET[video.split] // 100 + video.index}"


def frame_paths(spec: DatasetSpec, root: Path, video: VideoSpec, count: int) -> list[Path]:
    """Paths of the `count` raw frames of a video of dataset `spec`, named as the real download names them."""
    frames = raw_frames_root(spec, root)
    if spec.name == "CSL-Daily":
        folder = frames / csl_name(video)
        return [folder / f"{i:06d}.jpg" for i in range(count)]
    if spec.name == "CSL":
        folder = frames / csl_continuous_name(video)
        return [folder / f"{i:06d}.jpg" for i in range(count)]
    vid, stem = phoenix_name(video, spec)
    if spec.name == "phoenix2014":
        folder = frames / video.split / vid / "1"
        return [folder / f"{stem}{i:06d}-0.png" for i in range(count)]
    folder = frames / video.split / vid
    return [folder / f"{stem}{i + 1:04d}.png" for i in range(count)]


def video_file(video: VideoSpec, codec: str) -> str:
    """A table dataset's video file, relative to its root: videos/<split>_<index><suffix>."""
    return f"videos/{video.split}_{video.index:04d}{CODECS[codec][1]}"


def codec_of(video: VideoSpec, codec: str) -> str:
    """The codec of one video: `codec`, or for 'mixed' each available codec in turn."""
    if codec != "mixed":
        return codec
    names = [name for name in available_codecs() if name != "h264-lossless"]
    return names[(video.index + len(video.split)) % len(names)]


def write_video(args: tuple[DatasetSpec, str, VideoSpec, tuple[int, int], str, tuple[int, int] | None, str]) -> int:
    """Render and write one video's frames (at the format's raw frame size unless a (width, height) is
    given), or for a table dataset its encoded video file; returns the frame count (Pool worker)."""
    spec, root, video, frames_per_gloss, style, frame_size, codec = args
    width, height = frame_size or spec.raw_frame_size
    render = render_camera_video if style == "camera" else render_video
    frames = render(video, width, height, frames_per_gloss)
    if spec.name in VIDEO_FORMATS:
        path = Path(root) / video_file(video, codec_of(video, codec))
        path.parent.mkdir(parents=True, exist_ok=True)
        write_video_file(path, np.stack([cv2.cvtColor(f, cv2.COLOR_BGR2RGB) for f in frames]), VIDEO_FPS,
                         codec=codec_of(video, codec))
        return len(frames)
    paths = frame_paths(spec, Path(root), video, len(frames))
    paths[0].parent.mkdir(parents=True, exist_ok=True)
    jpeg = spec.frame_suffix == ".jpg"
    params = [cv2.IMWRITE_JPEG_QUALITY, 92] if jpeg else [cv2.IMWRITE_PNG_COMPRESSION, 1]
    for path, image in zip(paths, frames):
        if not cv2.imwrite(str(path), image, params):
            raise OSError(f"could not write {path}")
    return len(frames)


def _write_lines(path: Path, lines: Sequence[str]) -> None:
    """Write an annotation file (UTF-8, '\\n' line ends)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{line}\n" for line in lines), encoding="utf-8")


def write_csl_split_files(spec: DatasetSpec, root: Path, videos: Sequence[VideoSpec]) -> list[Path]:
    """CSL's split files (`spec`: its registry entry) as the original ships them: `<folder on the
    authors' machine>|<glosses>` lines, CRLF line ends, no final line end."""
    written = []
    for split in spec.splits:
        lines = [f"{CSL_FOREIGN_ROOT}/{csl_continuous_name(video)}|{' '.join(video.glosses)}"
                 for video in videos if video.split == split]
        written.append(csl_split_file(root, split))
        written[-1].parent.mkdir(parents=True, exist_ok=True)
        written[-1].write_bytes("\r\n".join(lines).encode("utf-8"))
    return written


def write_table(root: Path, videos: Sequence[VideoSpec], codec: str) -> list[Path]:
    """The table dataset's table.csv: video, glosses, split, signer."""
    lines = [",".join((*TABLE_REQUIRED, TABLE_OPTIONAL[0]))] + [
        f"{video_file(video, codec_of(video, codec))},{' '.join(video.glosses)},{video.split},"
        f"Signer{video.signer.sid:02d}" for video in videos]
    _write_lines(root / TABLE_NAME, lines)
    return [root / TABLE_NAME]


def write_annotations(spec: DatasetSpec, root: Path, videos: Sequence[VideoSpec], lengths: Sequence[int],
                      codec: str = "h264") -> list[Path]:
    """Write dataset `spec`'s annotation files for all videos; returns their paths."""
    if spec.name in VIDEO_FORMATS:
        return write_table(root, videos, codec)
    if spec.name == "CSL":
        return write_csl_split_files(spec, root, videos)
    if spec.name == "CSL-Daily":
        mapping = ["|".join(CSL_DAILY_MAP_HEADER)]
        split_lines = ["|".join(CSL_DAILY_SPLIT_HEADER)]
        for number, (video, length) in enumerate(zip(videos, lengths)):
            name = csl_name(video)
            chars = " ".join(ch for g in video.glosses for ch in g)
            mapping.append(f"{number}|{name}|{length}|{' '.join(video.glosses)}|{chars}|"
                           f"{' '.join(video.glosses)}|{' '.join('n' for _ in video.glosses)}")
            split_lines.append(f"{name}|{video.split}")
        written = [csl_daily_map(root), csl_daily_split_file(root)]
        _write_lines(written[0], mapping)
        _write_lines(written[1], split_lines)
        return written
    written = []
    for split in ("train", "dev", "test"):
        rows = []
        for video in (v for v in videos if v.split == split):
            vid, _stem = phoenix_name(video, spec)
            signer = f"Signer{video.signer.sid:02d}"
            label = " ".join(video.glosses)
            if spec.name == "phoenix2014":
                rows.append(f"{vid}|{vid}/1/*.png|{signer}|{label}")
            else:
                rows.append(f"{vid}|{vid}/1/*.png|-1|-1|{signer}|{label}|{label.lower()}")
        written.append(phoenix_corpus(root, spec.name, split))
        _write_lines(written[-1], ["|".join(PHOENIX_HEADERS[spec.name])] + rows)
    return written


def generate(fmt: str, out: str | Path, size: str = "tiny", seed: int = 0, workers: int = 1,
             replace: bool = False, style: str = "clean", frame_size: tuple[int, int] | None = None,
             fraction: float = 1.0, video_codec: str = "h264") -> dict:
    """Write a complete raw synthetic dataset into a new or empty `out` (or, with `replace`, over our own
    earlier output there: see dataset.generated); returns counts {videos, frames, glosses}.

    `frame_size` (width, height) renders smaller (or larger) frames than the format's raw size (for
    full-scale rehearsals on a small disk); `fraction` keeps that part of each split's videos.

    style 'clean': drawn signer on flat colours (the demo: learns fast, compresses far better than
    video); 'camera': the same scenes with a textured background, uneven lighting, blur, sensor
    noise and JPEG artefacts, so that frame sizes and decode costs are those of camera video.

    `video_codec` (table format only): one of dataset.video_files.CODECS, or 'mixed' for each
    available codec in turn.
    """
    if style not in STYLES:
        raise ValueError(f"unknown style {style!r}; expected one of {', '.join(STYLES)}")
    if fmt not in FORMATS + VIDEO_FORMATS:
        raise ValueError(f"unknown format {fmt!r}; expected one of {', '.join(FORMATS + VIDEO_FORMATS)}")
    spec = dataset_spec(fmt)  # resolved once, here, and handed down
    if video_codec != "mixed" and video_codec not in available_codecs():
        raise ValueError(f"video codec {video_codec!r} is not available here; expected mixed or one of "
                         f"{', '.join(available_codecs())}")
    if size not in SIZES:
        raise ValueError(f"unknown size {size!r}; expected one of {', '.join(SIZES)}")
    root = Path(out)
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    videos = plan_videos(spec, size, seed, fraction)
    prepare_output(root, replace)
    params = {"format": fmt, "size": size, "seed": seed, "style": style}
    if frame_size is not None or fraction != 1.0:  # recorded only when used: older records stay as they were
        params.update(frame_size=list(frame_size or spec.raw_frame_size), fraction=fraction)
    if spec.name in VIDEO_FORMATS:
        params["video_codec"] = video_codec
        video_dirs, files = [], [video_file(video, codec_of(video, video_codec)) for video in videos]
    else:
        video_dirs, files = [str(frame_paths(spec, root, video, 1)[0].parent.relative_to(root)) for video in videos], []
    write_owner_record(root, params, video_dirs, files)  # first: an interrupted run is still ours to replace
    jobs = [(spec, str(root), video, SIZES[size].frames_per_gloss, style, frame_size, video_codec) for video in videos]
    if workers > 1:
        with Pool(workers) as pool:
            lengths = pool.map(write_video, jobs, chunksize=4)
    else:
        lengths = [write_video(job) for job in jobs]
    annotations = write_annotations(spec, root, videos, lengths, video_codec)
    write_owner_record(root, params, video_dirs, files + [str(path.relative_to(root)) for path in annotations])
    return {"videos": len(videos), "frames": int(sum(lengths)),
            "glosses": len({g for v in videos for g in v.glosses})}


def _frame_size(value: str) -> tuple[int, int]:
    """argparse type of --frame-size: WIDTHxHEIGHT (an optional 'px' suffix is allowed)."""
    try:
        return parse_resolution(value)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def main(argv: Sequence[str] | None = None) -> int:
    """CLI: write a synthetic dataset in one of the real formats."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--format", choices=FORMATS + VIDEO_FORMATS, required=True)
    parser.add_argument("--out", required=True, help="dataset root to create (like the unpacked download)")
    parser.add_argument("--size", choices=tuple(SIZES), default="tiny")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--style", choices=STYLES, default="clean",
                        help="clean: flat drawn frames (demo); camera: camera-like frames (benchmarks)")
    parser.add_argument("--frame-size", type=_frame_size, default=None, metavar="WIDTHxHEIGHT",
                        help="render frames of this size instead of the format's raw size (e.g. 52x65: "
                        "a quarter of PHOENIX's 210x260 in each dimension)")
    parser.add_argument("--fraction", type=float, default=1.0,
                        help="write this part of each split's videos (at least one), e.g. 0.01")
    parser.add_argument("--video-codec", choices=("mixed", *CODECS), default="h264",
                        help="--format table: the videos' codec (mixed: each available codec in turn)")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--replace", action="store_true",
                        help="--out may hold an earlier output of this generator: remove only its files first")
    args = parser.parse_args(argv)
    return run_cli(lambda: generate_and_report(args))


def generate_and_report(args: argparse.Namespace) -> None:
    """Generate the dataset asked for on the command line and print its counts."""
    counts = generate(args.format, args.out, args.size, args.seed, args.workers, args.replace,
                      args.style, args.frame_size, args.fraction, args.video_codec)
    print(f"wrote {counts['videos']} videos, {counts['frames']} frames, "
          f"{counts['glosses']} distinct glosses to {args.out}")


if __name__ == "__main__":
    sys.exit(main())
