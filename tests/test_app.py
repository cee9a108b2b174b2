"""app.py: upload checks, the JSON endpoint and the page in a real headless Chromium.

The server runs the tiny trained model of tests/infer_support.py with its vocabulary relabelled
to the aligned CSL-Daily words (the synthetic generator draws German gloss i and Chinese word i
with the same sign), so Chinese glosses go through the page, the endpoint and the Grad-CAM sheet.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import zipfile
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest

import app
from dataset.registry import dataset_spec
from dataset.synthetic import vocabulary
from inference.fonts import draw_text, find_cjk_font
from inference.loading import load_model
from inference.video import browser_playable, load_frames, write_video
from inference.web import (InputError, Limits, Recogniser, gallery_label, live_frame, live_reset,
                           live_stop, read_upload, timeline_html)
from utils.checkpoint import load_checkpoint, save_checkpoint

REPO_ROOT = Path(__file__).resolve().parents[1]
SCREENSHOT_ENV = "STFNET_SCREENSHOT"  # where the browser test also saves its screenshot
GERMAN_TO_CHINESE = dict(zip(vocabulary(dataset_spec("phoenix2014")), vocabulary(dataset_spec("CSL-Daily"))))


@pytest.fixture(scope="module")
def cjk(infer_assets, tmp_path_factory) -> dict:
    """The tiny checkpoint with Chinese glosses, its expected sentence, and bad uploads."""
    root = tmp_path_factory.mktemp("app")
    ckpt = load_checkpoint(infer_assets["ours"])
    ckpt["gloss_dict"] = {GERMAN_TO_CHINESE[g]: v for g, v in ckpt["gloss_dict"].items()}
    save_checkpoint(root / "cjk.pt", ckpt)
    junk = root / "junk.mp4"
    junk.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    frames = load_frames(infer_assets["lossless"], size=None).frames
    for name, fourcc in (("opencv-mp4v.mp4", "mp4v"), ("xvid.avi", "XVID")):  # what scripts write
        writer = cv2.VideoWriter(str(root / name), cv2.VideoWriter_fourcc(*fourcc), 25,
                                 (frames.shape[2], frames.shape[1]))
        for frame in frames:
            writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
        writer.release()
    network = load_frames(infer_assets["folder"]).frames  # RGB, as decoded for the network
    looped = root / "looped.mp4"  # the video 3 times: longer than the look-ahead, glosses come live
    write_video(looped, np.concatenate([network] * 3), lossless=True)
    return {"ckpt": root / "cjk.pt", "video": infer_assets["lossless"], "junk": junk, "root": root,
            "mp4v": root / "opencv-mp4v.mp4", "xvid": root / "xvid.avi", "looped": looped,
            "sentence": [GERMAN_TO_CHINESE[g] for g in infer_assets["sentence"]]}


def _cli_stream(ckpt: Path, source: Path, capsys) -> list[dict]:
    """The glosses of `test_one_video.py --stream --speed 0 --json` (every frame recognised)."""
    import test_one_video

    assert test_one_video.main(["--model_path", str(ckpt), "--video_path", str(source), "--device",
                                "cpu", "--stream", "--speed", "0", "--json"]) == 0
    return [{k: g[k] for k in ("gloss", "frames", "steps")}
            for g in json.loads(capsys.readouterr().out)["glosses"]]


# ------------------------------------------------------------------ upload checks (no server)

def test_read_upload_refuses_bad_input(cjk, tmp_path):
    limits = Limits(max_upload_mb=1, max_video_frames=100)

    def refused(path: Path, limits: Limits = limits) -> str:
        with pytest.raises(InputError) as info:
            read_upload(path, limits, tmp_path, (256, 256))
        return str(info.value)

    text = tmp_path / "notes.txt"
    text.write_text("not a video")
    assert "unsupported file type .txt" in refused(text)
    empty = tmp_path / "empty.mp4"
    empty.touch()
    assert "is empty" in refused(empty)
    assert "not a video this server can decode" in refused(cjk["junk"])
    assert "the limit is 10 (--max_video_frames)" in refused(cjk["video"], Limits(1, 10))
    big = tmp_path / "big.mp4"
    big.write_bytes(b"\0" * (1024 * 1024 + 1))
    assert "MiB; the limit is 1 MiB" in refused(big)  # one unit
    no_frames = tmp_path / "none.zip"
    with zipfile.ZipFile(no_frames, "w") as z:
        z.writestr("readme.txt", "no images")
    assert "holds no frame images" in refused(no_frames)
    not_zip = tmp_path / "junk.zip"
    not_zip.write_bytes(cjk["junk"].read_bytes())
    assert "not a readable zip" in refused(not_zip)


def test_zip_of_frames_reads_like_the_folder(infer_assets, tmp_path):
    archive = tmp_path / "frames.zip"
    with zipfile.ZipFile(archive, "w") as z:  # nested folder, and a path that tries to escape
        for i, frame in enumerate(sorted(infer_assets["folder"].iterdir())):
            z.write(frame, f"clip/../../{frame.name}" if i == 0 else f"clip/{frame.name}")
    clip = read_upload(archive, Limits(), tmp_path, (256, 256))
    assert clip.frames.shape[0] == infer_assets["num_frames"]
    assert sorted(p.name for p in (tmp_path / "frames").iterdir()) == sorted(
        p.name for p in infer_assets["folder"].iterdir())  # unpacked by name only, nowhere else
    assert not (tmp_path.parent / sorted(infer_assets["folder"].iterdir())[0].name).exists()


def png_header(width: int, height: int) -> bytes:
    """A PNG whose header states width x height, with a few bytes of (invalid) pixel data."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return len(data).to_bytes(4, "big") + kind + data + zlib.crc32(kind + data).to_bytes(4, "big")
    ihdr = width.to_bytes(4, "big") + height.to_bytes(4, "big") + bytes([8, 2, 0, 0, 0])
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + \
        chunk(b"IEND", b"")


def forged_zip(tmp_path: Path, infer_assets) -> Path:
    """A zip of frames whose first member's stored CRC (and size) were forged."""
    archive = tmp_path / "forged.zip"
    with zipfile.ZipFile(archive, "w") as z:
        for frame in sorted(infer_assets["folder"].iterdir())[:3]:
            z.write(frame, frame.name)
    data = bytearray(archive.read_bytes())
    header = data.index(b"PK\x03\x04")
    data[header + 14:header + 18] = b"\xde\xad\xbe\xef"  # the local header's CRC-32
    central = data.index(b"PK\x01\x02")
    data[central + 16:central + 20] = b"\xde\xad\xbe\xef"  # and the central directory's
    archive.write_bytes(bytes(data))
    return archive


def test_unreadable_or_oversized_uploads_are_refused_before_decoding(infer_assets, tmp_path):
    def refused(archive: Path) -> str:
        with pytest.raises(InputError) as info:
            read_upload(archive, Limits(), tmp_path / archive.stem, (256, 256))
        return str(info.value)

    assert "cannot be unpacked" in refused(forged_zip(tmp_path, infer_assets))
    for side, said in ((5000, "is 5000x5000 pixels; frames of at most 17 megapixels"),
                       (15000, "too large an image")):
        archive = tmp_path / f"big{side}.zip"
        with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as z:
            for i in range(6):
                z.writestr(f"frame{i}.png", png_header(side, side))
        assert said in refused(archive)


@pytest.mark.parametrize("value", ["nan", "0", "-1", "inf"])
def test_upload_limits_must_be_finite_and_positive(value, capsys):
    with pytest.raises(SystemExit) as stop:
        app.build_parser().parse_args(["--model_path", "x.pt", "--max_upload_mb", value])
    assert stop.value.code == 2 and "expected a finite number > 0" in capsys.readouterr().err


def test_a_non_loopback_host_is_warned_about_in_one_line(tmp_path, capsys):
    assert app.network_warning("127.0.0.1") is None and app.network_warning("localhost") is None
    assert app.network_warning("::1") is None
    assert app.main(["--model_path", str(tmp_path / "missing.pt"), "--host", "0.0.0.0"]) == 2
    warning, error = capsys.readouterr().err.strip().splitlines()
    assert warning.startswith("warning: --host 0.0.0.0: the page is reachable from the network") and \
        "no authentication" in warning and error.startswith("error: ")


def test_model_file_that_is_not_a_checkpoint(tmp_path, capsys):
    bad = tmp_path / "model.pt"
    bad.write_text("not a checkpoint")
    before = tempfile.gettempdir()
    assert app.main(["--model_path", str(bad), "--device", "cpu"]) == 2
    assert capsys.readouterr().err.startswith(f"error: cannot read checkpoint {bad}")
    assert tempfile.gettempdir() == before  # nothing of the server leaks into this process


def test_timeline_lists_each_gloss_span():
    result = {"num_frames": 20, "glosses": [
        {"gloss": "你好", "frames": [0, 9], "score": 0.5}, {"gloss": "A<B", "frames": [10, 19], "score": 1.0}]}
    page = timeline_html(result)
    assert re.findall(r'data-gloss="([^"]*)" data-first="(\d+)" data-last="(\d+)"', page) == [
        ("你好", "0", "9"), ("A&lt;B", "10", "19")]
    assert "left:50.00%;width:50.00%" in page


def test_gallery_says_which_frames_it_shows():
    assert gallery_label(0, 7, 8) == "Frames 0-7 of the gloss (all 8) with its Grad-CAM heat map"
    assert "(the first 24 of 30)" in gallery_label(10, 39, 24)


def test_cjk_text_is_drawn_with_real_glyphs(monkeypatch):
    if find_cjk_font() is None:
        pytest.skip("no CJK font installed (Debian: fonts-wqy-microhei; .ci/run installs it)")
    images = []
    for word in ("今天", "明天"):
        image = np.zeros((40, 80, 3), np.uint8)
        draw_text(image, word, (2, 2), 24, (255, 255, 255))
        images.append(image)
    assert images[0].any() and not np.array_equal(*images)  # missing glyphs draw identical boxes
    from inference import fonts

    monkeypatch.setattr(fonts, "CJK_FONTS", ())
    monkeypatch.setenv(fonts.FONT_ENV, "/nonexistent.ttc")
    fonts.load_font.cache_clear()
    try:
        with pytest.warns(UserWarning, match="fonts-wqy-microhei"):
            fonts.load_font(13)
    finally:
        fonts.load_font.cache_clear()


# ------------------------------------------------------------------ the live tab (no server)

@pytest.mark.usefixtures("single_thread")
def test_live_tab_handlers_give_the_streamed_cli_glosses(cjk, tmp_path, capsys):
    from inference.live import file_frames

    earlier = tmp_path / "live" / "session1" / "frame0.png"  # an earlier app run's recording
    earlier.parent.mkdir(parents=True)
    earlier.write_bytes(b"not ours")
    recogniser = Recogniser(load_model(cjk["ckpt"], "cpu"), Limits(), tmp_path, tmp_path / "live")
    frames = [f.image for f in file_frames(cjk["looped"])[0]]
    session, status, _ = live_frame(recogniser, None, None)
    assert session is None and "not listening" in status
    shown = []  # the glosses text after each frame
    for frame in frames:
        session, status, text = live_frame(recogniser, session, frame)
        shown.append(text)
    assert status.startswith("**listening**: 75 frames")
    before_stop = session.sentence()
    session, status, text = live_stop(session)
    assert status.startswith("**stopped**: 75 frames")
    expected = _cli_stream(cjk["ckpt"], cjk["looped"], capsys)
    assert [{"gloss": g.gloss, "frames": list(g.frames), "steps": list(g.steps)}
            for g in session.glosses] == expected
    assert text == " ".join(g["gloss"] for g in expected)
    assert before_stop and text.startswith(before_stop) and text != before_stop  # live, then flushed
    assert sorted(set(shown), key=shown.index)[1:] == [  # the text only grows, gloss by gloss
        " ".join(g["gloss"] for g in expected[:k]) for k in range(1, len(before_stop.split()) + 1)]
    assert live_frame(recogniser, session, frames[0])[0].frames == 75  # stopped: frames ignored
    assert session.record.name == "session2"  # never an existing folder
    recorded = sorted(session.record.iterdir())
    assert len(recorded) == 75
    session, status, text = live_reset(session)
    assert (text, session.frames, session.stopped) == ("", 0, False) and "listening" in status
    assert not list(session.record.iterdir())
    assert earlier.read_bytes() == b"not ours"  # Reset deleted only this session's frames
    assert live_frame(recogniser, None, frames[0])[0].record.name == "session3"  # one per browser


# ------------------------------------------------------------------ the running server

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(cjk):
    """app.py on localhost with the Chinese-gloss checkpoint; stopped (and checked) afterwards."""
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "app.py", "--model_path", str(cjk["ckpt"]), "--device", "cpu", "--port",
         str(port), "--max_video_frames", "200", "--max_upload_mb", "5", "--record_live",
         str(cjk["root"] / "live")],
        cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"})
    line = ""
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and "serving" not in line:
        line = proc.stdout.readline()
        if not line and proc.poll() is not None:
            pytest.fail(f"app.py exited with {proc.returncode}")
    work_dir = Path(re.search(r"uploads in (\S+),", line).group(1))
    url = f"http://127.0.0.1:{port}"
    import httpx

    for _ in range(100):  # the socket opens just after the line is printed
        try:
            httpx.get(url, timeout=2)
            break
        except httpx.TransportError:
            time.sleep(0.1)
    yield {"url": url, "work_dir": work_dir}
    proc.terminate()
    assert proc.wait(timeout=30) == 0
    assert not work_dir.exists(), "the upload folder must be removed on exit"


def test_endpoint_returns_the_json_of_test_one_video(server, cjk, capsys, infer_assets, tmp_path):
    import httpx

    import test_one_video

    with open(cjk["video"], "rb") as handle:
        answer = httpx.post(server["url"] + "/api/recognize", files={"video": ("clip.mp4", handle)},
                            timeout=120)
    assert answer.status_code == 200, answer.text
    assert test_one_video.main(["--model_path", str(cjk["ckpt"]), "--video_path", str(cjk["video"]),
                                "--device", "cpu", "--json"]) == 0
    expected = json.loads(capsys.readouterr().out)
    assert expected["decode"]["lm_path"] is None  # the page decodes without a language model, as here
    assert answer.json() == {**expected, "video": "clip.mp4"}
    assert answer.json()["sentence"].split() == cjk["sentence"]
    with open(cjk["junk"], "rb") as handle:
        answer = httpx.post(server["url"] + "/api/recognize", files={"video": ("junk.mp4", handle)})
    assert answer.status_code == 400 and "not a video" in answer.json()["error"]
    answer = httpx.post(server["url"] + "/api/recognize", files={"video": ("big.mp4", b"\0" * 6 * 2**20)})
    assert answer.status_code == 413 and "6.0 MiB is over the limit of 5 MiB" in answer.json()["error"]
    for name, data in (("forged.zip", forged_zip(tmp_path, infer_assets).read_bytes()), ("..", b"\0" * 99)):
        answer = httpx.post(server["url"] + "/api/recognize", files={"video": (name, data)})
        assert answer.status_code == 400, answer.text
    assert not [p for p in server["work_dir"].iterdir() if p.is_dir() and p.name.startswith("tmp")]


def _chromium() -> tuple[str, str]:
    """Paths of a Chromium and its driver, or skip with the reason."""
    pytest.importorskip("selenium", reason="selenium is in requirements.txt")
    browser = next((shutil.which(b) for b in ("chromium", "chromium-browser", "google-chrome")
                    if shutil.which(b)), None)
    driver = shutil.which("chromedriver")
    if browser is None or driver is None:
        pytest.skip("no headless Chromium here: install Debian's chromium and chromium-driver "
                    "(.ci/run does as root)")
    return browser, driver


def _headless_chromium(*flags: str):
    """A selenium driver of a headless Chromium with these extra command-line flags (or skip)."""
    browser, driver_path = _chromium()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,1700",
                 *flags):
        options.add_argument(flag)
    return webdriver.Chrome(service=Service(driver_path), options=options)


LABELS_JS = """
const box = document.querySelector('#timeline-bars').getBoundingClientRect();
return [...document.querySelectorAll('#timeline .gloss-label')].map(e => {
  const r = e.getBoundingClientRect();
  return [e.querySelector('b').innerText, r.left, r.top, r.right, r.bottom,
          e.scrollWidth <= e.clientWidth, box.left, box.top, box.right, box.bottom];});
"""


def _timeline_labels(driver) -> list[list]:
    """The timeline's labels as rendered, each checked to be whole: inside the timeline box, not
    clipped, overlapping no other label."""
    labels = driver.execute_script(LABELS_JS)
    for text, left, top, right, bottom, whole, *box in labels:
        assert whole and box[0] <= left and right <= box[2] and box[1] <= top and bottom <= box[3], text
    for a in labels:
        for b in labels:
            if a is not b:
                assert a[3] <= b[1] or b[3] <= a[1] or a[4] <= b[2] or b[4] <= a[2], (a[0], b[0])
    return labels


def test_page_in_a_real_browser(server, cjk, tmp_path):
    _chromium()  # skip before writing anything where there is no browser
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    driver = _headless_chromium()
    wait = WebDriverWait(driver, 120)
    file_input = "#video-input input[type=file]"

    def upload(path: Path, preview: bool = True) -> None:
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, file_input))
        driver.find_element(By.CSS_SELECTOR, file_input).send_keys(str(path))
        wait.until(lambda d: path.stem in d.find_element(By.CSS_SELECTOR, "#video-input").text)
        if preview:
            wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#preview video"))
        driver.find_element(By.CSS_SELECTOR, "#recognise").click()

    try:
        driver.get(server["url"])
        upload(cjk["video"])
        glosses = wait.until(lambda d: d.find_element(By.CSS_SELECTOR, "#glosses textarea")
                             .get_attribute("value"))
        assert glosses.split() == cjk["sentence"]
        spans = [(e.get_attribute("data-gloss"), int(e.get_attribute("data-first")),
                  int(e.get_attribute("data-last")))
                 for e in driver.find_elements(By.CSS_SELECTOR, "#timeline .gloss-span")]
        assert [s[0] for s in spans] == cjk["sentence"]
        assert spans[0][1] == 0 and all(a[2] < b[1] for a, b in zip(spans, spans[1:]))
        assert "glosses from 25 frames" in driver.find_element(By.CSS_SELECTOR, "#status").text
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#sheet img"))  # Grad-CAM, gloss 0
        overlays = driver.find_elements(By.CSS_SELECTOR, "#overlays img")
        assert len(overlays) == spans[0][2] - spans[0][1] + 1
        assert gallery_label(spans[0][1], spans[0][2], len(overlays)) in \
            driver.find_element(By.CSS_SELECTOR, "#overlays").text
        assert [label[0] for label in _timeline_labels(driver)] == cjk["sentence"]
        shot = Path(os.environ.get(SCREENSHOT_ENV) or tmp_path / "page.png")
        driver.save_screenshot(str(shot))
        assert shot.stat().st_size > 10_000
        # A long video with glosses of two frames, drawn with the page's own CSS
        short = {"num_frames": 150, "glosses": [
            {"gloss": g, "frames": f, "score": 0.5} for g, f in
            [("NACHT", [0, 40]), ("GRAUPEL", [41, 42]), ("FUENFZEHN", [43, 44]), ("明天", [45, 46]),
             ("GEWITTER", [47, 147]), ("FU", [148, 149])]]}
        driver.execute_script("document.querySelector('#timeline-bars').parentElement.innerHTML"
                              " = arguments[0]", timeline_html(short))
        assert [label[0] for label in _timeline_labels(driver)] == [g["gloss"] for g in short["glosses"]]
        driver.find_element(By.CSS_SELECTOR, "#timeline").screenshot(
            str(shot.with_name(shot.stem + "-short-glosses.png")))

        driver.find_element(By.CSS_SELECTOR, "#video-input button[aria-label='Clear']").click()
        upload(cjk["junk"], preview=False)  # a bad upload: a message on the page, the old result cleared
        status = wait.until(lambda d: "error" in d.find_element(By.CSS_SELECTOR, "#status").text
                            and d.find_element(By.CSS_SELECTOR, "#status").text)
        assert "junk.mp4 is not a video this server can decode" in status
        assert driver.find_element(By.CSS_SELECTOR, "#glosses textarea").get_attribute("value") == ""
        assert "Traceback" not in driver.page_source
    finally:
        driver.quit()


def test_preview_is_the_upload_or_a_browser_playable_copy(cjk, tmp_path):
    recogniser = Recogniser(None, Limits(), tmp_path)
    for name in ("video", "mp4v", "xvid"):  # lossless RGB H.264, OpenCV's mp4v, XVID: none plays
        assert not browser_playable(cjk[name])
        preview = recogniser.preview(cjk[name])
        assert preview.suffix == ".mp4" and preview.parent.parent == tmp_path and browser_playable(preview)
        assert len(load_frames(preview, max_frames=10**6).frames) == 25  # every frame, none dropped
    assert recogniser.preview(preview) == preview  # already playable: shown as it is
    assert recogniser.preview(cjk["junk"]) is None  # recognising it says why


PLAYING_JS = """
const v = document.querySelector('#preview video');
if (!v) return null;
if (!v.dataset.started) { v.dataset.started = 1; v.muted = true; v.loop = true; v.play().catch(() => {}); }
return [v.readyState, v.videoWidth, v.currentTime, v.error ? v.error.code : 0];
"""


def test_page_previews_mp4v_and_xvid_uploads_without_an_error(server, cjk):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    driver = _headless_chromium("--autoplay-policy=no-user-gesture-required")
    wait = WebDriverWait(driver, 120)
    try:
        for name in ("mp4v", "xvid"):
            driver.get(server["url"])
            wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#video-input input[type=file]"))
            driver.find_element(By.CSS_SELECTOR, "#video-input input[type=file]").send_keys(str(cjk[name]))
            # The preview plays: frames decoded (readyState >= 2) and its clock advancing.
            state = wait.until(lambda d: (s := d.execute_script(PLAYING_JS)) and s[0] >= 2 and s[2] > 0 and s)
            assert state[1] > 0 and state[3] == 0, (name, state)
            driver.find_element(By.CSS_SELECTOR, "#recognise").click()
            status = wait.until(lambda d: "glosses from" in d.find_element(By.CSS_SELECTOR, "#status").text
                                and d.find_element(By.CSS_SELECTOR, "#status").text)
            assert "25 frames" in status, (name, status)
            assert driver.find_element(By.CSS_SELECTOR, "#glosses textarea").get_attribute("value")
            assert "not playable" not in driver.page_source and "error" not in status.lower()
            assert not driver.find_elements(By.CSS_SELECTOR, ".toast-body, [data-testid='toast-body']"), name
    finally:
        driver.quit()


def _write_y4m(path: Path, frames: np.ndarray, fps: int = 25) -> None:
    """RGB frames as a YUV4MPEG2 (4:2:0) file: what Chromium's fake camera plays, in a loop."""
    height, width = frames.shape[1:3]
    with open(path, "wb") as out:
        out.write(f"YUV4MPEG2 W{width} H{height} F{fps}:1 Ip A1:1 C420jpeg\n".encode())
        for frame in frames:
            out.write(b"FRAME\n" + cv2.cvtColor(frame, cv2.COLOR_RGB2YUV_I420).tobytes())


@pytest.mark.usefixtures("single_thread")
def test_live_tab_in_a_real_browser_with_a_fake_camera(server, cjk, tmp_path, capsys):
    _chromium()  # skip before writing anything where there is no browser
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    camera = tmp_path / "camera.y4m"
    _write_y4m(camera, load_frames(cjk["looped"]).frames)
    driver = _headless_chromium("--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
                                f"--use-file-for-fake-video-capture={camera}")
    wait = WebDriverWait(driver, 120)
    try:
        driver.get(server["url"])
        wait.until(lambda d: d.find_elements(By.XPATH, "//button[@role='tab' and contains(., 'Live')]"))
        driver.find_element(By.XPATH, "//button[@role='tab' and contains(., 'Live')]").click()
        driver.find_element(By.XPATH, "//*[@id='live-camera']//button[contains(., 'Access Webcam')]").click()
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#live-camera button.capture-button"))
        assert "not listening" in driver.find_element(By.ID, "live-status").text
        driver.find_element(By.CSS_SELECTOR, "#live-camera button.capture-button").click()  # stream

        def status() -> str:
            return driver.find_element(By.ID, "live-status").text

        def shown() -> str:
            return driver.find_element(By.CSS_SELECTOR, "#live-glosses textarea").get_attribute("value")

        wait.until(lambda d: status().startswith("listening"))
        live = wait.until(lambda d: shown())  # committed while the camera still streams
        driver.find_element(By.ID, "live-stop").click()
        wait.until(lambda d: status().startswith("stopped"))
        final = shown()
        received = int(re.search(r"stopped: (\d+) frames", status()).group(1))
        assert final.startswith(live) and "Traceback" not in driver.page_source
    finally:
        driver.quit()
    # What the page showed is what the streamed CLI prints for the frames the page received.
    sessions = list((cjk["root"] / "live").iterdir())
    assert len(sessions) == 1 and len(list(sessions[0].iterdir())) == received
    expected = _cli_stream(cjk["ckpt"], sessions[0], capsys)
    assert final.split() == [g["gloss"] for g in expected]


def test_fps_resamples_video_uploads_and_leaves_frame_zips_as_they_are(infer_assets, tmp_path):
    frames = load_frames(infer_assets["folder"], size=None).frames
    fast = tmp_path / "filmed at 50 fps.mp4"
    write_video(fast, np.repeat(frames, 2, axis=0), fps=50)  # each frame twice
    at_25 = Limits(fps=25)
    assert np.array_equal(read_upload(fast, at_25, tmp_path, (256, 256)).frames,
                          read_upload(infer_assets["lossless"], Limits(), tmp_path, (256, 256)).frames)
    assert len(read_upload(fast, Limits(), tmp_path, (256, 256)).frames) == 2 * len(frames)
    archive = tmp_path / "frames.zip"
    with zipfile.ZipFile(archive, "w") as z:
        for frame in sorted(infer_assets["folder"].iterdir()):
            z.write(frame, frame.name)
    assert len(read_upload(archive, at_25, tmp_path / "zip", (256, 256)).frames) == len(frames)
