"""A stream played into the streaming recogniser in real time: frame sources (a video file or a
frame folder at its frame rate, a local camera), a bounded queue that drops the oldest frames when
the machine falls behind (counted, never an ever-growing backlog), and the loop between them."""
from __future__ import annotations

import signal
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator

import numpy as np

from inference.streaming import CommittedGloss, StreamingRecognizer
from inference.video import (VideoReadError, check_fps_source, check_source, decode_video, list_frame_files,
                             read_image_rgb)
from utils.errors import UserError

FOLDER_FPS = 25.0  # a frame folder has no rate of its own: PHOENIX's


@dataclass(frozen=True)
class TimedFrame:
    """One RGB frame and its time in the stream, seconds."""

    image: np.ndarray
    time: float


class FrameQueue:
    """A bounded FIFO of frames between a source and the recogniser: when full, the oldest frame is
    dropped (and counted) so that what is recognised stays recent. Safe across threads."""

    def __init__(self, size: int) -> None:
        if size < 1:
            raise ValueError(f"queue size must be >= 1, got {size}")
        self.frames: deque[TimedFrame] = deque()
        self.size, self.dropped, self.longest = size, 0, 0
        self.closed = False
        self._ready = threading.Condition()

    def put(self, frame: TimedFrame) -> None:
        """Add a frame, dropping the oldest one when full."""
        with self._ready:
            if len(self.frames) == self.size:
                self.frames.popleft()
                self.dropped += 1
            self.frames.append(frame)
            self.longest = max(self.longest, len(self.frames))
            self._ready.notify()

    def close(self) -> None:
        """No more frames will come."""
        with self._ready:
            self.closed = True
            self._ready.notify()

    def get(self, timeout: float | None = None) -> TimedFrame | None:
        """The oldest frame; None when empty (after waiting up to `timeout` s, or for good once closed)."""
        with self._ready:
            if not self.frames and not self.closed and timeout:
                self._ready.wait(timeout)
            return self.frames.popleft() if self.frames else None

    def __len__(self) -> int:
        return len(self.frames)


@dataclass
class LiveResult:
    """What a played stream gave: the glosses as committed, each with its latency (seconds from the
    arrival of the gloss's last frame to its commit), and the frame counts."""

    glosses: list[tuple[CommittedGloss, float]] = field(default_factory=list)
    arrived: int = 0
    processed: int = 0
    dropped: int = 0
    longest_queue: int = 0
    wall_s: float = 0.0

    @property
    def sentence(self) -> list[str]:
        """The committed glosses in order."""
        return [g.gloss for g, _ in self.glosses]


def play(frames: Iterable[TimedFrame], recogniser: StreamingRecognizer, *, speed: float | None = 1.0,
         queue_size: int = 8, on_gloss: Callable[[CommittedGloss, float], None] | None = None,
         clock: Callable[[], float] = time.monotonic,
         sleep: Callable[[float], None] = time.sleep) -> LiveResult:
    """Play timed frames into the recogniser, then flush it.

    `speed` 1.0 plays at the stream's rate (2.0 twice as fast): a frame arrives at its time /
    speed, waits in a queue of `queue_size` frames and is dropped, oldest first, when the queue is
    full. `speed` None recognises every frame as fast as the machine goes. `clock` and `sleep` are
    the time the loop runs on (a simulated clock in tests).
    """
    queue = FrameQueue(queue_size)
    result = LiveResult()
    arrivals: list[float] = []  # arrival (clock) time of each frame the recogniser took
    start = clock()

    def commit(glosses: list[CommittedGloss]) -> None:
        now = clock()
        for gloss in glosses:
            latency = now - arrivals[gloss.frames[1]]
            result.glosses.append((gloss, latency))
            if on_gloss is not None:
                on_gloss(gloss, latency)

    def process(frame: TimedFrame, arrival: float) -> None:
        arrivals.append(arrival)
        commit(recogniser.push(frame.image, frame.time))
        result.processed += 1

    source = iter(frames)
    pending = next(source, None)
    while pending is not None or len(queue):
        if speed is None:
            result.arrived += 1
            process(pending, clock())
            pending = next(source, None)
            continue
        now = clock()
        while pending is not None and start + pending.time / speed <= now:  # everything due arrives
            queue.put(pending)
            result.arrived += 1
            pending = next(source, None)
        frame = queue.get()
        if frame is not None:
            process(frame, start + frame.time / speed)
        elif pending is not None:
            sleep(start + pending.time / speed - now)
    commit(recogniser.flush())
    result.dropped, result.longest_queue = queue.dropped, queue.longest
    result.wall_s = clock() - start
    return result


def play_camera(index: int, recogniser: StreamingRecognizer, *, queue_size: int = 8,
                on_gloss: Callable[[CommittedGloss, float], None] | None = None,
                stop: threading.Event | None = None) -> LiveResult:
    """Recognise a local camera until `stop` is set, Ctrl-C or the camera ends, then flush: a
    reader thread queues its frames, the recogniser takes the oldest, drops counted."""
    import cv2

    capture = cv2.VideoCapture(index)
    if not capture.isOpened():
        raise UserError(f"cannot open camera {index}: check that it exists (e.g. /dev/video{index}) "
                        f"and that no other program holds it")
    queue, stop = FrameQueue(queue_size), stop or threading.Event()
    start = time.monotonic()
    arrived = [0]

    def read() -> None:
        while not stop.is_set():
            ok, bgr = capture.read()
            if not ok:
                break
            arrived[0] += 1
            queue.put(TimedFrame(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), time.monotonic() - start))
        queue.close()

    def frames() -> Iterator[TimedFrame]:
        while (frame := queue.get(timeout=0.5)) is not None or not (queue.closed or stop.is_set()):
            if frame is not None:
                yield frame

    reader = threading.Thread(target=read, daemon=True)
    in_main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGINT, lambda *_: stop.set()) if in_main else None  # Ctrl-C: flush
    reader.start()
    try:
        result = play(frames(), recogniser, speed=None, on_gloss=on_gloss)
    finally:
        stop.set()
        if in_main:
            signal.signal(signal.SIGINT, previous)
        reader.join(timeout=2.0)
        capture.release()
    result.arrived, result.dropped, result.longest_queue = arrived[0], queue.dropped, queue.longest
    return result


def file_frames(path: str | Path, fps: float | None = None) -> tuple[Iterator[TimedFrame], float]:
    """A video file's (or a frame folder's) frames, decoded lazily with their times, and its rate;
    upright (a phone's rotation applied) and resampled to `fps` when given, as offline reading."""
    path = check_source(path)
    check_fps_source(path, fps)
    if path.is_dir():
        files = list_frame_files(path)
        return (TimedFrame(read_image_rgb(f), i / FOLDER_FPS) for i, f in enumerate(files)), FOLDER_FPS
    rate = fps or stream_rate(path)

    def frames() -> Iterator[TimedFrame]:
        try:
            for i, image in enumerate(decode_video(path, fps)):
                yield TimedFrame(image, i / rate)
        except VideoReadError as error:
            raise VideoReadError(f"cannot decode video {path}: {error}") from None

    return frames(), rate


def stream_rate(path: Path) -> float:
    """A video file's average frame rate (FOLDER_FPS when its header has none)."""
    import av

    try:
        with av.open(str(path)) as container:
            return float(container.streams.video[0].average_rate or FOLDER_FPS)
    except Exception as exc:  # PyAV raises many types for unreadable files
        raise VideoReadError(f"cannot open video {path}: {exc}") from exc
