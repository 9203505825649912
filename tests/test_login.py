"""The HTTP view's login: the form, the session cookie, expiry, log-out, redirects, and a browser logging in."""

from __future__ import annotations

import http.client
import shutil
from pathlib import Path
from urllib.parse import urlencode

import numpy as np
import pytest
from loguru import logger

from maskwatch.serve.auth import Sessions, local_path
from maskwatch.serve.routes import Reply, Request
from maskwatch.serve.web import WebView
from maskwatch.types import FaceDetections, Frame, FrameResult

REPO = Path(__file__).resolve().parents[1]
TOKEN = "tok-Secret-42"
FORM = {"Content-Type": "application/x-www-form-urlencoded"}


def request(view: WebView, path: str, method: str = "GET", headers: dict | None = None, body: bytes | None = None):
    """(status, lower-case headers, body) of one request to ``view``."""
    conn = http.client.HTTPConnection("127.0.0.1", view.port, timeout=5)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


def login(view: WebView, token: str = TOKEN, next_path: str = "/"):
    return request(view, "/login", "POST", FORM, urlencode({"token": token, "next": next_path}).encode())


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def view():
    with WebView(port=0, token=TOKEN, session_ttl_s=600) as v:
        v.add_route("/hello", lambda request: Reply(b"hello"))
        yield v


def test_login_sets_an_opaque_strict_http_only_cookie(view: WebView) -> None:
    status, headers, _ = request(view, "/hello", headers={"Accept": "text/html"})
    assert status == 303 and headers["location"] == "/login?next=/hello"
    status, headers, body = request(view, "/login?next=/hello")
    assert status == 200 and b'name="token"' in body and b'value="/hello"' in body
    assert "form-action 'self'" in headers["content-security-policy"]

    status, headers, _ = login(view, next_path="/hello")
    assert status == 303 and headers["location"] == "/hello"
    cookie = headers["set-cookie"]
    attributes = {part.strip().split("=")[0].lower() for part in cookie.split(";")[1:]}
    assert {"httponly", "samesite", "path", "max-age"} <= attributes and "SameSite=Strict" in cookie
    assert "Max-Age=600" in cookie
    name, value = cookie.split(";")[0].split("=", 1)
    assert name == f"maskwatch_session_{view.port}" and len(value) >= 40 and TOKEN not in value
    jar = {"Cookie": f"{name}={value}"}
    for path in ("/", "/status", "/events", "/metrics", "/hello"):
        assert request(view, path, headers=jar)[0] == 200, path
    assert request(view, "/status", headers={"Cookie": f"{name}={value[:-2]}xx"})[0] == 401
    assert request(view, "/status", headers={"Cookie": f"other={value}"})[0] == 401
    assert login(view, next_path="/hello")[1]["set-cookie"].split(";")[0] != f"{name}={value}"  # a new one each time


def test_a_wrong_token_gets_the_form_again(view: WebView) -> None:
    status, headers, body = login(view, token="guess")
    assert status == 401 and "set-cookie" not in headers and b"Wrong token" in body
    status, headers, body = request(view, "/login", "POST", FORM, b"next=/")  # no token at all
    assert status == 401 and "set-cookie" not in headers
    assert request(view, "/login", "POST", FORM | {"Content-Length": "999999"}, b"x")[0] == 413


def test_refused_requests_pages_redirect_the_rest_401(view: WebView) -> None:
    status, headers, _ = request(view, "/?source=door")
    assert status == 303 and headers["location"] == "/login?next=/%3Fsource%3Ddoor"
    status, headers, _ = request(view, "/hello")  # a script, not a browser: 401
    assert status == 401 and headers["www-authenticate"].startswith("Bearer")
    assert request(view, "/status", headers={"Accept": "application/json"})[0] == 401
    assert request(view, "/hello", headers={"Authorization": f"Bearer {TOKEN}"})[0] == 200


@pytest.mark.parametrize(
    ("target", "expected"),
    [("/door", "/door"), ("/door?source=x", "/door?source=x"), ("//evil.example/", "/"), ("https://evil.example", "/"),
     ("/\\evil.example", "/"), ("", "/"), ("door", "/"), ("/a\r\nSet-Cookie: x=1", "/")],
)  # fmt: skip
def test_login_only_redirects_here(view: WebView, target: str, expected: str) -> None:
    assert local_path(target) == expected
    assert login(view, next_path=target)[1]["location"] == expected


def test_sessions_expire_and_log_out(view: WebView) -> None:
    clock = Clock()
    view.access.sessions.clock = clock
    cookie = login(view)[1]["set-cookie"].split(";")[0]
    assert request(view, "/status", headers={"Cookie": cookie})[0] == 200
    clock.now += 599
    assert request(view, "/status", headers={"Cookie": cookie})[0] == 200
    clock.now += 2
    assert request(view, "/status", headers={"Cookie": cookie})[0] == 401  # expired
    assert len(view.access.sessions) == 0  # and forgotten

    cookie = login(view)[1]["set-cookie"].split(";")[0]
    status, headers, _ = request(view, "/logout", "POST", {"Cookie": cookie}, b"")
    assert status == 303 and headers["location"] == "/login" and "Max-Age=0" in headers["set-cookie"]
    assert request(view, "/status", headers={"Cookie": cookie})[0] == 401
    assert request(view, "/logout")[0] == 405  # log-out is a form post, not a link


def test_sessions_are_bounded() -> None:
    clock = Clock()
    sessions = Sessions(ttl_s=10, max_sessions=3, clock=clock)
    ids = [sessions.create() for _ in range(5)]
    assert len(sessions) == 3 and not sessions.valid(ids[0]) and sessions.valid(ids[4])
    clock.now += 11
    sessions.create()
    assert len(sessions) == 1  # the expired ones went with the next login


def test_loopback_without_a_token_stays_open() -> None:
    with WebView(port=0) as v:
        assert request(v, "/status")[0] == 200 and request(v, "/")[0] == 200
        status, headers, _ = request(v, "/login?next=/status")
        assert status == 303 and headers["location"] == "/status"
        assert b"log out" not in request(v, "/")[2]


def test_the_token_never_reaches_a_log_line(view: WebView) -> None:
    logs: list[str] = []
    sink = logger.add(logs.append, level="DEBUG", format="{message}")
    try:
        login(view)
        login(view, token=TOKEN + "x")
        request(view, f"/snapshot.jpg?token={TOKEN}")
        request(view, f"/login?next=/&token={TOKEN}")
        request(view, f"/{TOKEN}", headers={"Authorization": f"Bearer {TOKEN}"})  # even as a path
    finally:
        logger.remove(sink)
    lines = [line for line in logs if line.startswith("HTTP 127.0.0.1")]
    assert len(lines) == 5 and not any("tok-Secret" in line for line in logs), lines


def test_a_browser_logs_in_and_watches(tmp_path: Path) -> None:
    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.skip("chromium not installed (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    image = np.full((240, 320, 3), 90, np.uint8)
    with WebView(port=0, token=TOKEN) as v, sync_playwright() as p:
        v.write(FrameResult(Frame(image, 3, 0.0, name="cam"), FaceDetections.empty()), image)
        browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 900, "height": 600})
            page.goto(v.url + "?still=1")
            assert page.url == v.url + "login?next=/%3Fstill%3D1"
            page.fill("#token", "wrong")
            page.click("button[type=submit]")
            assert page.inner_text("#error") == "Wrong token."
            page.fill("#token", TOKEN)
            page.click("button[type=submit]")
            page.wait_for_url(v.url + "?still=1")
            page.wait_for_function("() => document.getElementById('stream').naturalWidth === 320")
            page.wait_for_function("() => document.querySelectorAll('#status tr').length > 0")
            assert page.evaluate("() => document.cookie") == ""  # HttpOnly: no script can read the session
            assert TOKEN not in page.content()
            artifacts = REPO / "test-artifacts"
            artifacts.mkdir(exist_ok=True)
            page.screenshot(path=str(artifacts / "http_view_logged_in.png"))
            page.click("text=log out")
            page.wait_for_url(v.url + "login")
            assert page.context.cookies() == []  # the cookie is gone
            page.goto(v.url)
            assert page.url.startswith(v.url + "login")
        finally:
            browser.close()


def test_request_sees_get_only_for_pages(view: WebView) -> None:
    seen: list[Request] = []
    view.add_route("/seen", lambda r: seen.append(r) or Reply(b"ok"))
    assert request(view, "/seen", "POST", {"Cookie": "x"}, b"a=1")[0] == 405
    assert request(view, "/seen", headers={"Authorization": f"Bearer {TOKEN}"})[0] == 200
    assert [r.method for r in seen] == ["GET"]
