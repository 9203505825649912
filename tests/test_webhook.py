import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from loguru import logger

from maskwatch.outputs.webhook import Webhook, WebhookStats


class _Server:
    """A local HTTP server answering POSTs with ``script`` (status or (status, Retry-After)), then 200."""

    def __init__(self, script: list | None = None, delay_s: float = 0.0) -> None:
        self.script = list(script or [])
        self.delay_s = delay_s
        self.bodies: list[dict] = []
        self.headers: list[dict] = []
        self.calls = 0
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                owner.calls += 1
                if owner.delay_s:
                    time.sleep(owner.delay_s)
                status = owner.script.pop(0) if owner.script else 200
                retry_after = None
                if isinstance(status, tuple):
                    status, retry_after = status
                if status == 200:
                    owner.bodies.append(json.loads(body))
                    owner.headers.append(dict(self.headers))
                self.send_response(status)
                if retry_after is not None:
                    self.send_header("Retry-After", retry_after)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> "_Server":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait(cond, timeout_s: float = 5.0) -> bool:
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        if cond():
            return True
        time.sleep(0.01)
    return cond()


def _event(i: int) -> dict:
    return {"event": "alert", "frame": i, "track_id": i, "label": "without_mask", "box": [1.5, 2.0, 30.0, 40.0]}


@pytest.fixture
def logs():
    lines: list[str] = []
    sink = logger.add(lambda m: lines.append(str(m)), level="DEBUG", format="{message}")
    yield lines
    logger.remove(sink)


@pytest.mark.parametrize("url", ["ftp://host/x", "localhost:8000/x", "http:///path", "", "https://"])
def test_invalid_url(url):
    with pytest.raises(ValueError, match="webhook URL"):
        Webhook(url)


def test_delivers_in_order_with_json_body():
    with _Server() as server:
        hook = Webhook(server.url, headers={"Authorization": "Bearer s3cret"})
        for i in range(20):
            hook.send(_event(i))
        hook.close(timeout_s=5)
    assert hook.stats == WebhookStats(sent=20)
    assert server.bodies == [_event(i) for i in range(20)]
    assert server.headers[0]["Content-Type"] == "application/json"
    assert server.headers[0]["Authorization"] == "Bearer s3cret"


def test_retries_5xx_then_delivers():
    with _Server(script=[503, 503]) as server, Webhook(server.url, backoff_s=0.01) as hook:
        hook.send(_event(1))
        assert _wait(lambda: hook.stats.sent == 1)
    assert server.calls == 3 and server.bodies == [_event(1)]
    assert hook.stats == WebhookStats(sent=1, retries=2)


def test_429_retried_honouring_retry_after():
    # the backoff alone would wait 30 s; Retry-After: 0 asks for an immediate retry
    with _Server(script=[(429, "0")]) as server, Webhook(server.url, backoff_s=30.0) as hook:
        hook.send(_event(1))
        assert _wait(lambda: hook.stats.sent == 1, timeout_s=3.0)
    assert hook.stats == WebhookStats(sent=1, retries=1) and server.calls == 2


def test_400_fails_without_retry_and_moves_on(logs):
    with _Server(script=[400]) as server, Webhook(server.url + "?token=abc", backoff_s=0.01) as hook:
        hook.send(_event(1))
        hook.send(_event(2))
        assert _wait(lambda: hook.stats.sent == 1)
    assert server.calls == 2 and server.bodies == [_event(2)]
    assert hook.stats == WebhookStats(sent=1, failed=1)
    assert any("HTTP 400" in line for line in logs)
    assert not any("token=abc" in line for line in logs)


def test_gives_up_after_retries():
    with _Server(script=[500] * 10) as server, Webhook(server.url, retries=2, backoff_s=0.01) as hook:
        hook.send(_event(1))
        assert _wait(lambda: hook.stats.failed == 1)
    assert server.calls == 3 and hook.stats == WebhookStats(failed=1, retries=2)


def test_unreachable_never_blocks_send_and_close_is_bounded(logs):
    url = f"http://user:pw@127.0.0.1:{_free_port()}/hook"
    hook = Webhook(url, backoff_s=0.2, retries=50, timeout_s=1.0)
    slowest = 0.0
    for i in range(50):
        start = time.perf_counter()
        hook.send(_event(i))
        slowest = max(slowest, time.perf_counter() - start)
        time.sleep(0.005)
    assert slowest < 0.05  # the worker is retrying meanwhile
    assert hook.stats.retries >= 1
    start = time.monotonic()
    hook.close(timeout_s=0.5)
    assert time.monotonic() - start < 1.5
    assert not hook._thread.is_alive()
    assert hook.stats.sent == 0
    assert hook.stats.dropped + hook.stats.failed == 50
    assert hook.stats.dropped >= 49
    hook.close()  # idempotent
    hook.send(_event(99))  # after close: counted, not sent
    assert hook.stats.dropped + hook.stats.failed == 51
    assert not any("pw" in line for line in logs)


def test_full_queue_drops_oldest(logs):
    with _Server(delay_s=0.3) as server:
        hook = Webhook(server.url, queue_size=3)
        hook.send(_event(0))
        assert _wait(lambda: server.calls == 1)  # the worker is busy with event 0
        for i in range(1, 8):
            hook.send(_event(i))
        assert hook.pending == 3 and hook.stats.dropped == 4
        hook.close(timeout_s=5)
    assert [b["frame"] for b in server.bodies] == [0, 5, 6, 7]
    assert hook.stats == WebhookStats(sent=4, dropped=4)
    assert sum("is behind" in line for line in logs) == 1  # warned once, not per drop


def test_close_delivers_queued_events_first():
    with _Server(delay_s=0.02) as server:
        hook = Webhook(server.url)
        for i in range(10):
            hook.send(_event(i))
        hook.close(timeout_s=5)
    assert len(server.bodies) == 10 and hook.stats.sent == 10 and hook.stats.dropped == 0
