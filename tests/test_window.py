"""The --show window, for real, under Xvfb: its size, the frames it shows, and ``q`` closing it.

Each window runs in a child process: a GUI toolkit that cannot reach its display may end the process it runs in."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from tests.helpers import ROOT


@pytest.fixture
def xvfb_display(monkeypatch):
    """A virtual X screen of 1280x720 (Debian's xvfb) on a free display number, answering when yielded; skipped
    where Xvfb or xdpyinfo is not installed, or the server does not come up."""
    if shutil.which("Xvfb") is None or shutil.which("xdpyinfo") is None:
        pytest.skip("Xvfb or xdpyinfo not installed (apt-get install xvfb x11-utils)")
    taken = {p.name for p in Path("/tmp").glob(".X*-lock")} | {p.name for p in Path("/tmp/.X11-unix").glob("X*")}
    number = next(n for n in range(90 + os.getpid() % 300, 1000) if f".X{n}-lock" not in taken and f"X{n}" not in taken)
    display = f":{number}"
    proc = subprocess.Popen(["Xvfb", display, "-screen", "0", "1280x720x24", "-nolisten", "tcp"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    deadline = time.monotonic() + 30  # wait until the server takes clients
    while subprocess.run(["xdpyinfo", "-display", display], capture_output=True).returncode != 0:
        if time.monotonic() > deadline or proc.poll() is not None:
            proc.kill()
            proc.wait(5)
            pytest.skip(f"Xvfb did not come up on {display}")
        time.sleep(0.1)
    monkeypatch.setenv("DISPLAY", display)
    yield (1280, 720)
    proc.terminate()
    proc.wait(5)


_WINDOW_PROBE = """
import json, sys
import cv2, numpy as np
from maskwatch.outputs.sinks import WindowSink
from maskwatch.types import FaceDetections, Frame, FrameResult
w, h = int(sys.argv[1]), int(sys.argv[2])
image = np.full((h, w, 3), 90, np.uint8)
result = FrameResult(frame=Frame(image=image, index=0, timestamp_s=0.0), faces=FaceDetections.empty())
sink = WindowSink("maskwatch test", max_size=None)
try:
    sink.write(result, image)
    for _ in range(20):
        cv2.waitKey(10)
    print(json.dumps(list(cv2.getWindowImageRect("maskwatch test"))))
finally:
    sink.close()
"""


@pytest.mark.parametrize(("w", "h"), [(960, 506), (1920, 1080)])
def test_window_opens_at_the_video_size_fitted_to_the_screen(xvfb_display, w, h):
    done = subprocess.run([sys.executable, "-c", _WINDOW_PROBE, str(w), str(h)], capture_output=True, text=True,
                          timeout=60, cwd=ROOT)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    _, _, win_w, win_h = json.loads(done.stdout.strip().splitlines()[-1])
    screen_w, screen_h = xvfb_display
    scale = min(1.0, int(0.9 * screen_w) / w, int(0.9 * screen_h) / h)  # at most 90 % of the screen
    assert abs(win_w - round(w * scale)) <= 2 and abs(win_h - round(h * scale)) <= 2, (win_w, win_h)


def _clip(path, seconds: float = 20.0, fps: int = 10, size: tuple[int, int] = (640, 480)) -> None:
    """A magenta clip with a moving grey bar: easy to find on the screen, no faces."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, size)
    for i in range(int(seconds * fps)):
        image = np.full((size[1], size[0], 3), (255, 0, 255), np.uint8)
        image[200:280, (i * 7) % size[0] :][:, :20] = 128
        writer.write(image)
    writer.release()


def test_show_displays_the_frames_and_q_closes_it(xvfb_display, tmp_path):
    from tests.x11 import X11

    clip = tmp_path / "magenta.mp4"
    _clip(clip)
    events = tmp_path / "events.jsonl"
    cmd = [sys.executable, "-m", "maskwatch", "run", "--source", str(clip), "--show", "--realtime", "--no-progress",
           "--events", str(events)]  # fmt: skip
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    x11 = X11(os.environ["DISPLAY"])
    try:
        shown, deadline = None, time.monotonic() + 60
        while time.monotonic() < deadline and proc.poll() is None:
            screen = x11.screenshot()
            magenta = (screen[..., 0] > 200) & (screen[..., 1] < 60) & (screen[..., 2] > 200)
            if magenta.sum() > 0.6 * 640 * 480:
                shown = magenta
                break
            time.sleep(0.2)
        assert shown is not None, "no frame of the clip appeared on the screen"
        ys, xs = np.nonzero(shown)
        # the frame is shown at its own size (it fits the 1280x720 screen), not squeezed
        assert abs((xs.max() - xs.min() + 1) - 640) <= 4 and abs((ys.max() - ys.min() + 1) - 480) <= 40
        pressed = time.monotonic()
        x11.press("q", at=(int(xs.mean()), int(ys.mean())))
        _, err = proc.communicate(timeout=20)
        assert proc.returncode == 0, err[-2000:]
        assert time.monotonic() - pressed < 10  # q stopped it: the clip plays for 20 s
    finally:
        x11.close()
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


def test_show_on_a_display_nobody_serves_is_one_clear_error(tmp_path):
    from tests.helpers import maskwatch

    clip = tmp_path / "clip.mp4"
    _clip(clip, seconds=1.0)
    env = {**os.environ, "DISPLAY": ":987"}
    env.pop("WAYLAND_DISPLAY", None)
    done = maskwatch("run", "--source", str(clip), "--show", "--engine", "onnx", "--no-progress", env=env)
    assert done.returncode != 0
    assert "cannot open the display ':987'" in done.stderr and "Traceback" not in done.stderr, done.stderr
