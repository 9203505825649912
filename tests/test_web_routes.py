"""Pages mounted on the HTTP view by features: served behind the token, streamed when they stream."""

from __future__ import annotations

import urllib.error
import urllib.request

import pytest

from maskwatch.serve.routes import Reply, Request
from maskwatch.serve.web import WebView


def _get(url: str, token: str | None = None) -> tuple[int, bytes]:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    try:
        with urllib.request.urlopen(request, timeout=5) as answer:
            return answer.status, answer.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def test_a_mounted_page_answers_behind_the_token() -> None:
    seen: list[Request] = []

    def page(request: Request) -> Reply:
        seen.append(request)
        return Reply(f"hello {request.arg('who', 'nobody')}".encode())

    with WebView(port=0, token="s3cret") as view:
        view.add_route("/hello", page)
        view.start()
        assert _get(view.url + "hello?who=door")[0] == 401
        assert _get(view.url + "hello?who=door", token="s3cret") == (200, b"hello door")
        assert _get(view.url + "nothing", token="s3cret")[0] == 404
    assert seen[0].path == "/hello" and seen[0].client == "127.0.0.1"


def test_a_streamed_page_arrives_in_chunks() -> None:
    def page(request: Request) -> Reply:
        return Reply(ctype="text/event-stream", stream=iter([b"data: 1\n\n", b"data: 2\n\n"]))

    with WebView(port=0) as view:
        view.add_route("/stream", page)
        view.start()
        assert _get(view.url + "stream") == (200, b"data: 1\n\ndata: 2\n\n")


def test_built_in_paths_cannot_be_replaced() -> None:
    view = WebView(port=0)
    with pytest.raises(ValueError):
        view.add_route("/status", lambda request: Reply())


def test_output_faults_show_in_metrics() -> None:
    from maskwatch.runner.faults import record_fault, reset_faults
    from maskwatch.serve.metrics import prometheus_text

    reset_faults()
    record_fault("clips", "disk full")
    record_fault("clips", "disk full")
    assert 'maskwatch_output_faults_total{output="clips"} 2.0' in prometheus_text(None, 0)
    reset_faults()
