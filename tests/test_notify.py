"""Apprise notifications: the message and the face picture reach a local JSON endpoint (Apprise's ``json://``),
retries, a dead endpoint as a counted fault, bounded close, bad URLs and a missing apprise as one line."""

from __future__ import annotations

import base64
import json
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import cv2
import numpy as np
import pytest

from maskwatch.errors import ConfigError
from maskwatch.outputs.notify import Notifier, load_apprise, mask_url
from maskwatch.runner.faults import fault_counts, reset_faults
from maskwatch.types import Event

pytest.importorskip("apprise", reason="the [notify] extra (apprise) is not installed")

BOX = [60.0, 40.0, 140.0, 140.0]


class _Endpoint:
    """A local HTTP server that records each POSTed JSON body and answers with ``script`` (then 200)."""

    def __init__(self, script: list[int] | None = None, gate: threading.Event | None = None) -> None:
        self.script = list(script or [])
        self.gate = gate  # each request waits for it (a slow service)
        self.bodies: list[dict] = []
        self.calls = 0
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                owner.calls += 1
                if owner.gate is not None:
                    owner.gate.wait(10)
                status = owner.script.pop(0) if owner.script else 200
                if status == 200:
                    owner.bodies.append(json.loads(body))
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"json://127.0.0.1:{self.httpd.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> _Endpoint:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def _frame(seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    image = np.full((240, 320, 3), 90, np.uint8)
    image[40:140, 60:140] = rng.integers(0, 255, (100, 80, 3), np.uint8)  # a detailed face
    return image


def _event(kind: str = "alert", track: int = 4) -> Event:
    return Event(kind, "2026-03-01T12:34:56.000Z", "front door", 120, track, "without_mask", 0.93, BOX)


def _attachment(body: dict) -> np.ndarray:
    (item,) = body["attachments"]
    assert item["mimetype"] == "image/jpeg" and item["filename"].endswith(".jpg")
    image = cv2.imdecode(np.frombuffer(base64.b64decode(item["base64"]), np.uint8), cv2.IMREAD_COLOR)
    assert image is not None
    return image


def test_an_alert_arrives_with_its_text_and_face_picture():
    with _Endpoint() as endpoint:
        notifier = Notifier(load_apprise([endpoint.url]), crop_margin=0.15)
        notifier.send(_event("update"), _frame())  # only alerts are notified
        notifier.send(_event(), _frame())
        notifier.close()
    (body,) = endpoint.bodies
    assert body["title"] == "Unmasked person at front door"
    assert body["message"] == "no mask (93% confident), person 4, at 2026-03-01 12:34:56 UTC"
    face = _attachment(body)
    assert face.shape[:2] == (130, 104)  # the 80x100 box with 15 % margin per side
    assert face[15:115, 12:92].std() > 40  # the face's detail is there
    assert notifier.sent == 1 and notifier.failed == 0


def test_the_face_is_blurred_when_faces_are():
    with _Endpoint() as endpoint:
        notifier = Notifier(load_apprise([endpoint.url]), blur=True)
        notifier.send(_event(), _frame())
        notifier.close()
    face = _attachment(endpoint.bodies[0])
    assert face[25:105, 22:82].astype(np.float32).std() < 25  # noise of std ~74, pixelated and blurred away


def test_a_failed_delivery_is_retried():
    reset_faults()
    with _Endpoint(script=[500]) as endpoint:
        notifier = Notifier(load_apprise([endpoint.url]), retries=2, backoff_s=0.05)
        notifier.send(_event(), _frame())
        notifier.close()
    assert endpoint.calls == 2 and len(endpoint.bodies) == 1
    assert notifier.sent == 1 and fault_counts().get("notify") is None


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_an_unreachable_endpoint_is_a_counted_fault():
    reset_faults()
    notifier = Notifier(load_apprise([f"json://127.0.0.1:{_closed_port()}/hook"]), retries=1, backoff_s=0.05)
    for track in range(3):
        notifier.send(_event(track=track), _frame())
    notifier.close()
    notifier.close()  # idempotent
    assert notifier.sent == 0 and notifier.failed == 3
    assert fault_counts()["notify"] == 3
    reset_faults()


def test_close_gives_up_on_a_service_that_hangs():
    reset_faults()
    gate = threading.Event()
    with _Endpoint(gate=gate) as endpoint:
        notifier = Notifier(load_apprise([endpoint.url]), retries=0, close_timeout_s=0.5)
        for track in range(3):
            notifier.send(_event(track=track), _frame())
        closing = threading.Thread(target=notifier.close, daemon=True)
        closing.start()
        closing.join(20)  # a guard against a hang, not a measurement: close gives up after 0.5 s
        hung = closing.is_alive()
        gate.set()
    assert not hung
    assert notifier.failed == 2  # the two still queued when it gave up (the third was in flight)
    assert fault_counts()["notify"] >= 1
    reset_faults()


def test_the_queue_is_bounded_and_drops_the_oldest():
    reset_faults()
    gate = threading.Event()
    with _Endpoint(gate=gate) as endpoint:
        notifier = Notifier(load_apprise([endpoint.url]), queue_size=2, retries=0)
        notifier.send(_event(track=0), _frame())
        deadline = time.monotonic() + 5
        while endpoint.calls == 0 and time.monotonic() < deadline:  # the first is being delivered, slowly
            time.sleep(0.01)
        for track in range(1, 20):
            notifier.send(_event(track=track), _frame())
        gate.set()
        notifier.close()
    assert notifier.dropped == 17 and fault_counts()["notify"] == 17
    assert [b["message"].split(", ")[1] for b in endpoint.bodies] == ["person 0", "person 18", "person 19"]
    reset_faults()


@pytest.mark.parametrize(
    ("url", "shown", "hidden"),
    [
        ("json://user:s3cret@127.0.0.1:9/x", "json://user:***@127.0.0.1:9/x", "s3cret"),
        ("mailto://me:hunter2@example.com?to=a@b.c", "mailto://me:***@example.com?to=a@b.c", "hunter2"),
        ("tgram://123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw/42", "tgram://123456789:***/42", "AAHdqTcv"),
        ("xyz://host/path?token=abc123&x=1", "xyz://host/path?token=***&x=1", "abc123"),
        ("ntfy://my-shop-door", "ntfy://my-shop-door", None),
    ],
)
def test_urls_are_shown_with_their_secrets_masked(url, shown, hidden):
    assert mask_url(url) == shown
    assert hidden is None or hidden not in mask_url(url)


@pytest.mark.parametrize("url", ["nosuchscheme://user:topsecret@host/x", "not a url", ""])
def test_a_url_apprise_cannot_use_is_one_line_naming_it(url):
    with pytest.raises(ConfigError, match="not one apprise can use") as info:
        load_apprise([url])
    assert "topsecret" not in str(info.value) and "\n" not in str(info.value)


def test_a_missing_apprise_names_the_extra_to_install():
    code = (
        "import sys; sys.modules['apprise'] = None\n"
        "from maskwatch.outputs.notify import load_apprise\n"
        "load_apprise(['json://127.0.0.1/x'])"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0 and "pip install 'maskwatch[notify]'" in proc.stderr


def test_run_refuses_a_bad_notify_url_at_start_in_one_line():
    cmd = [sys.executable, "-m", "maskwatch", "run", "--source", "demo", "--no-progress"]
    proc = subprocess.run([*cmd, "--notify", "bogus://me:pa55word@x"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "notify URL" in lines[0] and "pa55word" not in proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.slow
def test_the_demo_run_notifies_its_alert():
    with _Endpoint() as endpoint:
        cmd = [sys.executable, "-m", "maskwatch", "run", "--source", "demo", "--no-progress", "--blur-faces"]
        proc = subprocess.run([*cmd, "--notify", endpoint.url], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert [b["title"] for b in endpoint.bodies] == ["Unmasked person at demo"]
    assert _attachment(endpoint.bodies[0]).size > 0
