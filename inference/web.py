"""The recognition web page (Gradio) and its HTTP endpoint, over the inference package.

Uploads (a video, a zip of frames, a webcam recording) are checked before decoding: type, size,
length. Every problem becomes one message on the page (or a 4xx JSON answer from the endpoint),
never a traceback. All files live under one temporary directory that the server removes on exit.
"""
from __future__ import annotations

import html
import os
import tempfile
import threading
import time
import unicodedata
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from inference.align import Recognition
from inference.explain import blend, gloss_cams, gloss_sheet, input_frames_rgb
from inference.loaded_model import LoadedModel
from inference.recognize import ClipTooShortError, PreparedInput, recognise_clip
from inference.streaming import CommittedGloss, StreamingRecognizer
from inference.video import (IMAGE_EXTENSIONS, VIDEO_EXTENSIONS, VideoClip, browser_playable,
                             count_video_frames, load_frames, transcode_for_browser, video_frame_size)
from utils.errors import UserError

ENDPOINT = "/api/recognize"
MAX_OVERLAYS = 24  # frames of the chosen gloss shown with their heat map
MAX_FRAME_PIXELS = 4096 * 4096  # a 4K camera's frame fits; a 15000x15000 image (900 MB decoded) does not
LIVE_EVERY_S = 0.04  # the live tab's webcam sends a frame every 40 ms: the 25 fps the models learnt


class InputError(UserError):
    """An upload the page refuses, with the message the user sees."""


@dataclass(frozen=True)
class Limits:
    """What an upload may be."""

    max_upload_mb: float = 100.0
    max_video_frames: int = 3000  # two minutes at 25 fps
    max_frames_num: int = 360  # frames sampled for the network, as test_one_video.py
    fps: float | None = None  # video uploads resampled to this rate first (app.py --fps); None: as filmed

    @property
    def max_upload_bytes(self) -> int:
        """The upload limit in bytes."""
        return int(self.max_upload_mb * 1024 * 1024)


@dataclass
class Outcome:
    """One recognised upload: the JSON result and what Grad-CAM needs later."""

    result: dict
    rec: Recognition
    prepared: PreparedInput
    seconds: float


def extract_frames_zip(path: Path, dest: Path, limits: Limits) -> Path:
    """Unpack the images of a zip of frames into `dest` (names only: no paths from the archive)."""
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise InputError(f"{path.name} is not a readable zip file ({exc})") from None
    with archive:
        members = [m for m in archive.infolist()
                   if not m.is_dir() and Path(m.filename).suffix.lower() in IMAGE_EXTENSIONS
                   and not Path(m.filename).name.startswith(".")]
        if not members:
            raise InputError(f"{path.name} holds no frame images ({', '.join(IMAGE_EXTENSIONS)})")
        if len(members) > limits.max_video_frames:
            raise InputError(f"{path.name} holds {len(members)} frames; the limit is "
                             f"{limits.max_video_frames} (--max_video_frames)")
        unpacked = sum(m.file_size for m in members)
        if unpacked > 4 * limits.max_upload_bytes:  # a zip bomb must not fill the disk
            raise InputError(f"{path.name} unpacks to {unpacked / 2**20:.0f} MiB, more than 4x the "
                             f"upload limit ({limits.max_upload_mb:g} MiB)")
        names = [Path(m.filename).name for m in members]
        if len(set(names)) != len(names):
            raise InputError(f"{path.name} has frames of the same name in different folders; "
                             f"zip the frames of one video only")
        dest.mkdir(parents=True, exist_ok=True)
        for member, name in zip(members, names):
            try:
                data = archive.read(member)
            except (zipfile.BadZipFile, zlib.error, EOFError, OSError, NotImplementedError,
                    RuntimeError) as exc:  # a forged size or CRC, an unknown method, encryption
                raise InputError(f"{path.name}: {member.filename} cannot be unpacked ({exc}); "
                                 f"zip the frames again") from None
            (dest / name).write_bytes(data)
            check_frame_header(dest / name, f"{path.name}: {member.filename}")
    return dest


def check_frame_header(image: Path, label: str) -> None:
    """Refuse an image over MAX_FRAME_PIXELS, or one whose header cannot be read, before decoding."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(image) as opened:  # reads the header only
            width, height = opened.size
    except Image.DecompressionBombError as exc:  # PIL's own ceiling, far above ours
        raise InputError(f"{label} is too large an image ({exc})") from None
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise InputError(f"{label} is not a readable image ({exc})") from None
    if width * height > MAX_FRAME_PIXELS:
        raise InputError(f"{label} is {width}x{height} pixels; frames of at most "
                         f"{MAX_FRAME_PIXELS / 1e6:.0f} megapixels are accepted: resize them")


def read_upload(path: str | os.PathLike, limits: Limits, scratch: Path,
                frame_size: tuple[int, int]) -> VideoClip:
    """A checked upload as frames: a video file or a zip of frames, within the limits."""
    path = Path(path)
    if not path.is_file():
        raise InputError("no file arrived; upload a video or a zip of frames")
    size = path.stat().st_size
    if size == 0:
        raise InputError(f"{path.name} is empty (0 bytes)")
    if size > limits.max_upload_bytes:
        raise InputError(f"{path.name} is {size / 2**20:.1f} MiB; the limit is "
                         f"{limits.max_upload_mb:g} MiB (--max_upload_mb)")
    suffix = path.suffix.lower()
    if suffix == ".zip":
        source = extract_frames_zip(path, scratch / "frames", limits)
    elif suffix in VIDEO_EXTENSIONS:
        total = count_video_frames(path)
        if total == 0:
            raise InputError(f"{path.name} is not a video this server can decode (damaged, or not "
                             f"a video at all); re-encode it as H.264 .mp4")
        if total > limits.max_video_frames:
            raise InputError(f"{path.name} has {total} frames; the limit is {limits.max_video_frames}"
                             f" (--max_video_frames): cut the video to the signing")
        width, height = video_frame_size(path)
        if width * height > MAX_FRAME_PIXELS:
            raise InputError(f"{path.name} is {width}x{height} pixels; videos of at most "
                             f"{MAX_FRAME_PIXELS / 1e6:.0f} megapixels a frame are accepted: scale it down")
        source = path
    else:
        raise InputError(f"{path.name}: unsupported file type {suffix or '(none)'}; upload a video "
                         f"({' '.join(VIDEO_EXTENSIONS)}) or a .zip of frame images")
    try:
        # A zip of frames has no timestamps to resample by: it is read as its frames are.
        return load_frames(source, max_frames=limits.max_frames_num, size=frame_size,
                           fps=limits.fps if source.is_file() else None)
    except UserError as exc:  # an unreadable video or frame folder
        raise InputError(str(exc).replace(str(source), path.name)) from None


class Recogniser:
    """The loaded model behind the page and the endpoint; one request runs it at a time."""

    def __init__(self, loaded: LoadedModel, limits: Limits, work_dir: Path,
                 record_live: Path | None = None) -> None:
        self.loaded = loaded
        self.limits = limits
        self.work_dir = work_dir
        self.record_live = record_live  # where the live tab saves the frames it receives
        self._lock = threading.Lock()
        self._sessions = 0

    def recognise(self, path: str | os.PathLike, name: str | None = None) -> Outcome:
        """Check, read and recognise an uploaded file; InputError for anything wrong with it."""
        start = time.perf_counter()
        with tempfile.TemporaryDirectory(dir=self.work_dir) as scratch, self._lock:
            clip = read_upload(path, self.limits, Path(scratch), self.loaded.frame_size)
            try:
                result, rec, prepared = recognise_clip(self.loaded, clip)
            except ClipTooShortError as exc:
                raise InputError(str(exc)) from None
        result["video"] = name or Path(path).name
        return Outcome(result, rec, prepared, time.perf_counter() - start)

    def preview(self, path: str | os.PathLike) -> Path | None:
        """A video file the browser plays for the uploaded video: itself, or a re-encoded copy
        when its codec is not one browsers play (mp4v .mp4, XVID .avi); None for a zip of frames
        or a file that is no video (recognising it says why)."""
        path = Path(path)
        if path.suffix.lower() not in VIDEO_EXTENSIONS:
            return None
        if browser_playable(path):
            return path
        out = Path(tempfile.mkdtemp(dir=self.work_dir)) / (path.stem + ".preview.mp4")
        try:
            return transcode_for_browser(path, out)
        except Exception:  # PyAV raises many unrelated types for files it cannot decode
            return None

    def explain(self, outcome: Outcome, position: int) -> tuple[list[np.ndarray], np.ndarray]:
        """Heat-map overlays of the frames aligned to gloss `position`, and its contact sheet."""
        if self.loaded.model is None:
            raise InputError("Grad-CAM needs the PyTorch checkpoint; this server runs an ONNX file")
        with self._lock:
            _, maps = gloss_cams(self.loaded, outcome.prepared, gloss_spec=str(position))
        blended = blend(input_frames_rgb(outcome.prepared), maps[position])
        first, last = outcome.result["glosses"][position]["frames"]
        shown = blended[first:last + 1][:MAX_OVERLAYS]
        return shown, gloss_sheet(outcome.rec, position, blended, outcome.prepared)


    def live_session(self) -> LiveSession:
        """A new live stream's state: its own streaming recogniser (and recording folder)."""
        folder = None
        while self.record_live is not None:  # a folder of its own: Reset deletes frames in it
            with self._lock:
                self._sessions += 1
                folder = self.record_live / f"session{self._sessions}"
            try:
                folder.mkdir(parents=True)
                break
            except FileExistsError:  # an earlier app run's recording (or the user's): kept
                continue
        return LiveSession(StreamingRecognizer(self.loaded, fps=1 / LIVE_EVERY_S), record=folder)


@dataclass
class LiveSession:
    """One browser's live stream: its recogniser and the glosses committed so far."""

    recogniser: StreamingRecognizer
    record: Path | None = None  # each frame received is saved here as frame<N>.png
    glosses: list[CommittedGloss] = field(default_factory=list)
    frames: int = 0  # frames received since the last reset
    stopped: bool = False  # flushed: frames are ignored until a reset
    started: float = field(default_factory=time.monotonic)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def push(self, frame: np.ndarray) -> None:
        """Recognise one webcam frame (RGB), unless stopped."""
        with self.lock:
            if self.stopped:
                return
            if self.record is not None:
                write_rgb(self.record / f"frame{self.frames}.png", frame)
            self.frames += 1
            self.glosses += self.recogniser.push(frame, time.monotonic() - self.started)

    def stop(self) -> None:
        """End the stream: the last glosses are flushed."""
        with self.lock:
            if not self.stopped:
                self.glosses += self.recogniser.flush()
                self.stopped = True

    def reset(self) -> None:
        """Forget the stream and its glosses; listen again."""
        with self.lock:
            self.recogniser.reset()
            self.glosses, self.frames, self.stopped = [], 0, False
            self.started = time.monotonic()
            if self.record is not None:
                for old in self.record.glob("frame*.png"):
                    old.unlink()

    def status(self) -> str:
        """The live tab's status line."""
        if self.stopped:
            return (f"**stopped**: {self.frames} frames recognised, {len(self.glosses)} glosses; "
                    f"press Reset to listen again")
        delay = self.recogniser.gloss_lookahead_frames()
        return (f"**listening**: {self.frames} frames; a gloss appears {delay} frames "
                f"({delay * LIVE_EVERY_S:.1f} s) after its last frame")

    def sentence(self) -> str:
        """The committed glosses, in order."""
        return " ".join(g.gloss for g in self.glosses)


def write_rgb(path: Path, frame: np.ndarray) -> None:
    """Save an RGB frame losslessly (PNG)."""
    import cv2

    if not cv2.imwrite(str(path), cv2.cvtColor(np.ascontiguousarray(frame), cv2.COLOR_RGB2BGR)):
        raise OSError(f"cannot write {path}")


LIVE_IDLE = "**not listening**: start the camera, then its record button"


def live_frame(recogniser: Recogniser, session: LiveSession | None,
               frame: np.ndarray | None) -> tuple[LiveSession | None, str, str]:
    """The live tab's webcam handler: one frame in; the session, status line and glosses out."""
    if frame is None:
        return session, session.status() if session else LIVE_IDLE, session.sentence() if session else ""
    if session is None:
        session = recogniser.live_session()
    session.push(frame)
    return session, session.status(), session.sentence()


def live_stop(session: LiveSession | None) -> tuple[LiveSession | None, str, str]:
    """The Stop button: flush the last glosses."""
    if session is None:
        return None, LIVE_IDLE, ""
    session.stop()
    return session, session.status(), session.sentence()


def live_reset(session: LiveSession | None) -> tuple[LiveSession | None, str, str]:
    """The Reset button: forget the stream and listen again."""
    if session is None:
        return None, LIVE_IDLE, ""
    session.reset()
    return session, session.status(), session.sentence()


def gallery_label(first: int, last: int, shown: int) -> str:
    """The overlay gallery's caption: which frames of the gloss it shows."""
    count = last - first + 1
    which = f"all {count}" if shown == count else f"the first {shown} of {count}"
    return f"Frames {first}-{last} of the gloss ({which}) with its Grad-CAM heat map"


TIMELINE_PX = 540  # width the label lanes are planned for (the page's right column)
LANE_PX = 16  # height of one lane of labels


def label_px(text: str) -> float:
    """Estimated width in px of a timeline label (12 px font; wide CJK characters count double)."""
    return sum(12 if unicodedata.east_asian_width(c) in "WF" else 7 for c in text) + 10


def label_lanes(extents: list[tuple[float, float]]) -> list[int]:
    """A lane per label (percent extents, in order) so that no two labels of a lane overlap."""
    ends: list[float] = []  # right end of the last label of each lane
    lanes = []
    for start, end in extents:
        lane = next((k for k, e in enumerate(ends) if e <= start), len(ends))
        ends[lane:lane + 1] = [end]
        lanes.append(lane)
    return lanes


def timeline_html(result: dict) -> str:
    """Each gloss as a bar over its frame span, with its label (gloss, frames, score) below.

    Labels sit outside the bars, never cut: anchored at the bar's start in the left half of the
    timeline and at its end in the right half (so none leaves the box), in as many lanes as
    labels of neighbouring short glosses need not to overlap; the bar's tooltip repeats them.
    """
    total = max(1, int(result["num_frames"]))
    bars, labels, extents = [], [], []
    for g in result["glosses"]:
        first, last = g["frames"]
        left, width = 100.0 * first / total, 100.0 * (last - first + 1) / total
        label = html.escape(g["gloss"])
        detail = f"{first}-{last} · {g['score']:.2f}"
        bars.append(
            f'<div class="gloss-span" data-gloss="{label}" data-first="{first}" data-last="{last}" '
            f'data-score="{g["score"]:.4f}" style="left:{left:.2f}%;width:{width:.2f}%" '
            f'title="{label}: frames {first}-{last}, score {g["score"]:.3f}"></div>')
        size = 100.0 * label_px(f"{g['gloss']} {detail}") / TIMELINE_PX
        at_start = left + width / 2 <= 50
        extents.append((left, left + size) if at_start else (left + width - size, left + width))
        anchor = f"left:{left:.2f}%" if at_start else f"right:{100 - left - width:.2f}%"
        labels.append((anchor, f"<b>{label}</b> <span>{detail}</span>"))
    lanes = label_lanes(extents)
    placed = [f'<div class="gloss-label" style="{anchor};top:{36 + LANE_PX * lane}px">{text}</div>'
              for (anchor, text), lane in zip(labels, lanes)]
    height = 40 + LANE_PX * (max(lanes, default=0) + 1)
    axis = f'<div class="axis"><span>0</span><span>frame {total - 1}</span></div>'
    return (f'<div id="timeline-bars" style="height:{height}px">{"".join(bars)}{"".join(placed)}'
            f'</div>{axis}')


CSS = """
#timeline-bars {position: relative; background: #f3f4f6; border-radius: 6px;}
.gloss-span {position: absolute; top: 6px; height: 26px; background: #2563eb; border-radius: 4px;
  box-sizing: border-box; border: 1px solid #f3f4f6;}
.gloss-label {position: absolute; white-space: nowrap; font-size: 12px; line-height: 14px;
  padding: 0 3px;}
.gloss-label b {color: #1e3a8a !important;}
.gloss-label span {color: #4b5563 !important; font-size: 11px;}
.axis {display: flex; justify-content: space-between; font-size: 11px; color: #6b7280;}
"""


def gloss_choices(result: dict) -> list[tuple[str, int]]:
    """Dropdown entries: '#k GLOSS (frames a-b)' -> k."""
    return [(f"#{g['position']} {g['gloss']} (frames {g['frames'][0]}-{g['frames'][1]})",
             g["position"]) for g in result["glosses"]]


def build_page(recogniser: Recogniser, title: str):
    """The Gradio Blocks of the page."""
    import gradio as gr

    def recognise(upload: str | None, webcam: str | None):
        path = upload or webcam
        empty = ("", "", gr.update(choices=[], value=None), None, [], None)
        if not path:
            return ("**error:** upload a video or a zip of frames, or record one", *empty)
        try:
            outcome = recogniser.recognise(path)
        except InputError as exc:
            return (f"**error:** {html.escape(str(exc))}", *empty)
        result = outcome.result
        status = (f"{len(result['glosses'])} glosses from {result['num_frames']} frames "
                  f"in {outcome.seconds:.2f} s")
        choices = gloss_choices(result)
        return (status, result["sentence"] or "(no gloss recognised)", timeline_html(result),
                gr.update(choices=choices, value=choices[0][1] if choices else None), result,
                [], outcome)

    def explain(position: int | None, outcome: Outcome | None):
        if outcome is None or position is None:
            return [], None
        try:
            frames, sheet = recogniser.explain(outcome, int(position))
        except InputError as exc:
            gr.Warning(str(exc))
            return [], None
        first, last = outcome.result["glosses"][int(position)]["frames"]
        return gr.update(value=[(f, f"frame {first + i}") for i, f in enumerate(frames)],
                         label=gallery_label(first, last, len(frames))), sheet

    with gr.Blocks(title=title, delete_cache=(600, 600)) as page:
        gr.Markdown(f"# {html.escape(title)}\nUpload a sign video or a zip of its frames, or record "
                    f"one with the webcam; the model recognises its glosses, aligns each to its "
                    f"frames and shows where it looked (Grad-CAM). JSON from `POST {ENDPOINT}`. The Live "
                    f"tab recognises the webcam as you sign.")
        with gr.Tab("Video", elem_id="tab-video"):
            state = gr.State(None)
            with gr.Row():
                with gr.Column():
                    # A file input, not a video player: the browser plays what preview() gives it
                    # (an mp4v .mp4 or an XVID .avi re-encoded), never an upload it cannot decode.
                    upload = gr.File(file_types=[*VIDEO_EXTENSIONS, ".zip"], label="Video or zip of frames",
                                     elem_id="video-input", height=120)
                    preview = gr.Video(label="Preview", interactive=False, height=260, elem_id="preview")
                    webcam = gr.Video(sources=["webcam"], label="or record one", height=260,
                                      elem_id="webcam-input")
                    button = gr.Button("Recognise", variant="primary", elem_id="recognise")
                with gr.Column():
                    status = gr.Markdown("", elem_id="status")
                    glosses = gr.Textbox(label="Glosses", interactive=False, elem_id="glosses")
                    timeline = gr.HTML("", label="Timeline", elem_id="timeline")
                    chosen = gr.Dropdown(choices=[], label="Gloss to explain", elem_id="gloss-choice")
            with gr.Row():
                gallery = gr.Gallery(label="Frames of the gloss with its Grad-CAM heat map",
                                     columns=8, rows=1, height=190, object_fit="contain",
                                     elem_id="overlays")  # whole frames: the hands are the sign
            sheet = gr.Image(label="Contact sheet (frames aligned to the gloss framed)", show_label=False,
                             elem_id="sheet", interactive=False)
            result_json = gr.JSON(label="JSON (as test_one_video.py --json)", elem_id="result-json")
            # One progress indicator per event, on the status line / the gallery: Gradio's default
            # puts a timer on every output, and on the small ones it overlaps their neighbours.
            upload.change(lambda path: recogniser.preview(path) if path else None, upload, preview,
                          show_progress_on=[preview])
            button.click(recognise, [upload, webcam],
                         [status, glosses, timeline, chosen, result_json, gallery, state],
                         show_progress_on=[status])
            chosen.change(explain, [chosen, state], [gallery, sheet], show_progress_on=[gallery])
        with gr.Tab("Live", elem_id="tab-live"):
            live_tab(recogniser)
    return page


def live_tab(recogniser: Recogniser) -> None:
    """The Live tab: the webcam streams into this browser session's recogniser; the glosses
    appear under it as they are committed."""
    import gradio as gr

    session = gr.State(None)
    camera = gr.Image(sources=["webcam"], streaming=True, type="numpy", label="Camera", height=360,
                      webcam_options=gr.WebcamOptions(mirror=False), elem_id="live-camera")
    status = gr.Markdown(LIVE_IDLE, elem_id="live-status")
    glosses = gr.Textbox(label="Glosses, as they are committed", interactive=False,
                         elem_id="live-glosses")
    with gr.Row():
        stop = gr.Button("Stop (recognise the last glosses)", elem_id="live-stop")
        reset = gr.Button("Reset", elem_id="live-reset")
    outputs = [session, status, glosses]
    # One frame at a time, in order (the event's default concurrency of 1): a stream is a sequence.
    camera.stream(lambda s, f: live_frame(recogniser, s, f), [session, camera], outputs,
                  stream_every=LIVE_EVERY_S, time_limit=None, show_progress="hidden")
    stop.click(live_stop, [session], outputs, show_progress="hidden")
    reset.click(live_reset, [session], outputs, show_progress="hidden")


def build_app(recogniser: Recogniser, title: str = "STFNet sign language recognition"):
    """FastAPI app: the JSON endpoint, and the page mounted at /."""
    import gradio as gr

    app = FastAPI(title=title)

    @app.post(ENDPOINT)
    async def recognise_endpoint(request: Request) -> JSONResponse:
        length = request.headers.get("content-length")
        if length is None:
            return JSONResponse({"error": "send the video as multipart/form-data with a "
                                          "Content-Length (e.g. curl -F video=@clip.mp4)"}, 411)
        if int(length) > recogniser.limits.max_upload_bytes + 65536:
            return JSONResponse({"error": f"upload of {int(length) / 2**20:.1f} MiB is over the "
                                          f"limit of {recogniser.limits.max_upload_mb:g} MiB (--max_upload_mb)"}, 413)
        form = await request.form(max_files=1, max_fields=4)
        upload = form.get("video")
        if upload is None or isinstance(upload, str):
            return JSONResponse({"error": "no file in form field 'video' "
                                          "(curl -F video=@clip.mp4 ...)"}, 400)
        name = Path(upload.filename or "upload").name
        if name in ("", ".", ".."):  # not a file name: the upload would be written onto its folder
            name = "upload"
        with tempfile.TemporaryDirectory(dir=recogniser.work_dir) as tmp:
            path = Path(tmp) / name
            path.write_bytes(await upload.read())
            await upload.close()
            try:
                outcome = await run_in_threadpool(recogniser.recognise, path, name)
            except InputError as exc:
                return JSONResponse({"error": str(exc)}, 400)
        return JSONResponse(outcome.result)

    theme = gr.themes.Default(font=["ui-sans-serif", "system-ui", "sans-serif"],
                              font_mono=["ui-monospace", "monospace"])  # no web-font download
    return gr.mount_gradio_app(app, build_page(recogniser, title), path="/", ssr_mode=False,
                               max_file_size=recogniser.limits.max_upload_bytes, theme=theme,
                               css=CSS)
