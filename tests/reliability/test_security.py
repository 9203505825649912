"""Security: the HTTP view's binding, token and routes, and stream credentials kept out of every output.

A credentialed MJPEG camera is served in-process; ``maskwatch run`` watches it with events, detections and the
HTTP view on, loses it (the camera stops) and reconnects; then every log line, event, report and page is
searched for the password.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import cv2
import numpy as np
import pytest

from maskwatch.errors import ConfigError
from maskwatch.serve.web import WebView

ROOT = Path(__file__).resolve().parents[2]
PASSWORD = "hunter2-s3cret"
TOKEN = "tok-1234567890"
DEMO = ROOT.parent / "shared" / "data" / "videos" / "nomask.mp4"


def _frames() -> list[bytes]:
    """JPEG frames: a real face clip when ../shared is there (so alerts happen), else synthetic ones."""
    images = []
    cap = cv2.VideoCapture(str(DEMO)) if DEMO.exists() else None
    while cap is not None and len(images) < 100:
        ok, frame = cap.read()
        if not ok:
            break
        images.append(cv2.resize(frame, (640, 360)))
    if not images:
        for i in range(50):
            img = np.full((240, 320, 3), 40, np.uint8)
            cv2.rectangle(img, (20 + 2 * i, 60), (120 + 2 * i, 180), (200, 200, 200), -1)
            images.append(img)
    return [cv2.imencode(".jpg", img)[1].tobytes() for img in images]


class Camera:
    """An HTTP MJPEG camera on 127.0.0.1 that can be unplugged."""

    def __init__(self, frames: list[bytes], fps: float = 25.0) -> None:
        self.frames, self.fps = frames, fps
        self.unplugged = threading.Event()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802
                self.send_response(200)
                self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
                self.end_headers()
                i = 0
                try:
                    while not outer.unplugged.is_set():
                        jpg = outer.frames[i % len(outer.frames)]
                        self.wfile.write(b"--frame\r\nContent-Type: image/jpeg\r\n")
                        self.wfile.write(f"Content-Length: {len(jpg)}\r\n\r\n".encode() + jpg + b"\r\n")
                        i += 1
                        time.sleep(1 / outer.fps)
                except OSError:
                    return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def unplug(self) -> None:
        self.unplugged.set()
        self.server.shutdown()
        self.server.server_close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str, headers: dict | None = None) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers or {}), timeout=5) as resp:
            return resp.status, resp.read() if not url.endswith(".mjpg") else b""
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def test_credentials_never_leave_and_the_view_is_locked(tmp_path, record):
    camera = Camera(_frames())
    port = _free_port()
    url = f"http://admin:{PASSWORD}@127.0.0.1:{camera.port}/stream.mjpg"
    events, dets = tmp_path / "events.jsonl", tmp_path / "dets.jsonl"
    config = tmp_path / "c.yaml"
    config.write_text("capture:\n  read_timeout_s: 1.0\n  max_backoff_s: 1.0\nalerts:\n  min_duration_s: 0.2\n")
    proc = subprocess.Popen(
        [sys.executable, "-m", "maskwatch", "run", "--source", url, "--events", str(events)]
        + ["--detections", str(dets), "--http", f"127.0.0.1:{port}", "--http-token", TOKEN, "--config", str(config)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    base = f"http://127.0.0.1:{port}"
    auth = {"Authorization": f"Bearer {TOKEN}"}
    pages: dict[str, tuple[int, bytes]] = {}
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            try:
                if (
                    _get(f"{base}/status", auth)[0] == 200
                    and json.loads(_get(f"{base}/status", auth)[1])["frames"] > 30
                ):
                    break
            except OSError:
                pass
            time.sleep(0.5)
        for route in ("/", "/status", "/events", "/metrics", "/snapshot.jpg"):
            pages[route] = _get(base + route, auth)
        pages["no token"] = _get(f"{base}/status")
        pages["wrong token"] = _get(f"{base}/metrics", {"Authorization": "Bearer nope"})
        pages["query token"] = _get(f"{base}/snapshot.jpg?token={TOKEN}")  # for players that send no header
        pages["query token on JSON"] = _get(f"{base}/status?token={TOKEN}")
        for bad in ("/../../etc/passwd", "/%2e%2e/%2e%2e/etc/passwd", "/static/../weights/detector.pt", "//etc/passwd"):
            pages[bad] = _get(base + bad, auth)
        camera.unplug()  # the camera disappears: maskwatch logs the outage and retries (scrubbed)
        time.sleep(4)
        pages["status in outage"] = _get(f"{base}/status", auth)
    finally:
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=60)
    outputs = {"stderr": stderr, "stdout": stdout}
    for path in sorted(tmp_path.iterdir()):
        if path.is_file() and path.suffix in (".jsonl", ".json", ".md"):
            outputs[path.name] = path.read_text()
    outputs.update({f"page {k}": v[1].decode(errors="replace") for k, v in pages.items()})
    leaks = [name for name, text in outputs.items() if PASSWORD in text]
    status_codes = {k: v[0] for k, v in pages.items()}
    n_events = len(events.read_text().splitlines()) if events.exists() else 0
    lost = [line for line in stderr.splitlines() if "lost " in line]
    outage = lost[0].split("WARNING")[-1].strip() if lost else "-"
    record(
        "security",
        "stream credentials in logs, events, report, pages",
        "password never appears (user:pass@ scrubbed to ***@)",
        f"searched {len(outputs)} outputs (log, {n_events} events, detections, report, 9 HTTP answers): "
        f"{'leaks in ' + ', '.join(leaks) if leaks else 'no leak'}; outage line: {outage}",
        not leaks and bool(lost),
    )
    record(
        "security",
        "token required",
        "401 without or with a wrong token; 200 with Bearer header; ?token= only on the snapshot and stream",
        f"no token {status_codes['no token']}, wrong {status_codes['wrong token']}, header "
        f"{status_codes['/status']}, query on snapshot {status_codes['query token']}, "
        f"query on /status {status_codes['query token on JSON']}",
        status_codes["no token"] == 401
        and status_codes["wrong token"] == 401
        and status_codes["query token"] == 200
        and status_codes["query token on JSON"] == 401,
    )
    traversal = {k: v for k, v in status_codes.items() if "etc" in k or "weights" in k}
    record(
        "security",
        "path traversal",
        "404: the server has fixed routes and reads no files",
        ", ".join(f"{k} → {v}" for k, v in traversal.items()),
        all(v in (400, 404) for v in traversal.values()),
    )
    assert not leaks, leaks
    assert lost, stderr[-2000:]
    assert status_codes["no token"] == 401 and status_codes["wrong token"] == 401
    assert status_codes["query token on JSON"] == 401
    assert status_codes["/status"] == 200 and status_codes["query token"] == 200 and status_codes["/metrics"] == 200
    assert all(v in (400, 404) for v in traversal.values()), traversal
    assert status_codes["status in outage"] == 200  # the view keeps serving while the camera is gone
    assert "Traceback" not in stderr


def test_http_binds_loopback_by_default_and_refuses_open_without_token(record):
    view = WebView(port=0).start()
    try:
        host = view.server_host if hasattr(view, "server_host") else view.host
        bound = view.url
    finally:
        view.close()
    with pytest.raises(ConfigError, match="token"):
        WebView("0.0.0.0", 0)
    ok = bound.startswith("http://127.0.0.1:") and host == "127.0.0.1"
    record(
        "security",
        "default bind",
        "127.0.0.1; any other address needs a token",
        f"bound {bound}; 0.0.0.0 without token refused",
        ok,
    )
    assert ok
