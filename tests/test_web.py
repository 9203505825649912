"""The ``--http`` remote view: routes, auth, stream, shutdown, and the status page in headless Chromium."""

from __future__ import annotations

import http.client
import json
import re
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest
from loguru import logger
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest
from prometheus_client.parser import text_string_to_metric_families

import maskwatch.serve.channel as channel
from maskwatch.errors import ConfigError, OutputError
from maskwatch.monitor.base import PeopleStatus
from maskwatch.outputs.picture import Picture
from maskwatch.outputs.render import OverlayRenderer
from maskwatch.runner.status import RunStatus, SourceStatus
from maskwatch.serve.metrics import prometheus_text
from maskwatch.serve.web import WebView, is_loopback
from maskwatch.types import Event, FaceDetections, Frame, FrameResult

REPO = Path(__file__).resolve().parents[1]
PEOPLE = PeopleStatus(people_now=2, people_total=3, unmasked_total=1, alerts=1, compliance=0.6667, detect_every=2)
STAGES = {"detect": 30.1, "classify": 3.2, "track": 0.2, "render": 1.1}
STATUS = RunStatus(
    uptime_s=12.5,
    sources=(SourceStatus("lobby-cam", True, True, 24.75, 300, 4, 0, STAGES, PEOPLE),),
)
STATUS_JSON = {
    "source": "lobby-cam",
    "live": True,
    "uptime_s": 12.5,
    "frames": 300,
    "dropped": 4,
    "fps": 24.75,
    "stage_ms": {"detect": 30.1, "classify": 3.2, "track": 0.2, "render": 1.1},
    "detect_every": 2,
    "people_now": 2,
    "people_total": 3,
    "unmasked_total": 1,
    "alerts": 1,
    "compliance": 0.6667,
    "outages": 0,
    "connected": True,
}


def event(frame: int, track: int, kind: str = "alert", label: str | None = "without_mask") -> Event:
    return Event(kind, "2024-05-01T12:00:00Z", "cam", frame, track, label, 0.93, [10, 20, 50, 70])


def result(index: int, events: list[Event] | None = None, image: np.ndarray | None = None) -> FrameResult:
    image = np.zeros((120, 160, 3), np.uint8) if image is None else image
    frame = Frame(image=image, index=index, timestamp_s=0, name="cam")
    return FrameResult(frame=frame, faces=FaceDetections.empty(), events=events or [])


def request(view: WebView, path: str, method: str = "GET", headers: dict | None = None, body: bytes | None = None):
    """(status, headers, body) of one request to ``view``."""
    conn = http.client.HTTPConnection("127.0.0.1", view.port, timeout=5)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


def next_part(fp) -> bytes:
    """Read one JPEG part of a multipart MJPEG body."""
    line = fp.readline()
    while line in (b"\r\n", b"\n"):
        line = fp.readline()
    assert line.strip() == b"--frame", line
    headers = {}
    while line := fp.readline().strip():
        key, value = line.decode().split(":", 1)
        headers[key.lower()] = value.strip()
    assert headers["content-type"] == "image/jpeg"
    return fp.read(int(headers["content-length"]))


def open_stream(view: WebView, path: str = "/stream.mjpg"):
    conn = http.client.HTTPConnection("127.0.0.1", view.port, timeout=5)
    conn.request("GET", path)
    resp = conn.getresponse()
    assert resp.status == 200
    assert resp.getheader("Content-Type") == "multipart/x-mixed-replace; boundary=frame"
    return conn, resp


def decode(data: bytes) -> np.ndarray:
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    assert image is not None
    return image


@pytest.fixture
def view():
    with WebView(port=0, status=lambda: STATUS, max_events=5) as v:
        yield v


def test_status_json(view: WebView) -> None:
    status, headers, body = request(view, "/status")
    assert status == 200 and headers["content-type"] == "application/json"
    data = json.loads(body)
    assert data["frame"] is None and data["clients"] == 0
    view.write(result(41), np.zeros((120, 160, 3), np.uint8))
    data = json.loads(request(view, "/status")[2])
    assert data["frame"] == 41
    assert {k: data[k] for k in STATUS_JSON} == STATUS_JSON


def _source(name: str, frames: int = 0, **kw) -> SourceStatus:
    return SourceStatus(name, False, kw.pop("connected", True), 0.0, frames, 0, 0, kw.pop("stage_ms", {}), **kw)


def test_status_scrubs_credentials_and_survives_a_failing_callback() -> None:
    calls = iter([RunStatus(1.0, (_source("rtsp://admin:secret@10.0.0.5/live"),))])

    def status() -> RunStatus:
        return next(calls)  # StopIteration the second time: a broken status callback

    with WebView(port=0, status=status) as v:
        assert json.loads(request(v, "/status")[2])["source"] == "rtsp://***@10.0.0.5/live"
        assert request(v, "/status")[0] == 500
        assert request(v, "/events")[0] == 200  # the server is still up


def test_events_order_limit_and_bound(view: WebView) -> None:
    assert json.loads(request(view, "/events")[2]) == []
    for i in range(4):
        image = np.zeros((4, 4, 3), np.uint8)
        view.write(result(i), image)
        for e in (event(i, 10 * i), event(i, 10 * i + 1, "end", None)):
            view.send(e, image)
    events = json.loads(request(view, "/events")[2])
    assert len(events) == 5  # max_events
    assert [(e["frame"], e["track_id"]) for e in events] == [(1, 11), (2, 20), (2, 21), (3, 30), (3, 31)]
    assert events[-1] == event(3, 31, "end", None).to_json()
    assert [e["track_id"] for e in json.loads(request(view, "/events?limit=2")[2])] == [30, 31]
    assert json.loads(request(view, "/events?limit=0")[2]) == []
    assert len(json.loads(request(view, "/events?limit=99")[2])) == 5
    assert request(view, "/events?limit=-1")[0] == 400


_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})? (\S+)$")


def parse_metrics(text: str) -> dict[str, float]:
    values = {}
    for line in text.splitlines():
        if line.startswith("#"):
            assert re.match(r"^# (HELP|TYPE) maskwatch_\w+ \S", line), line
            continue
        match = _SAMPLE.match(line)
        assert match, line
        values[match[1] + (match[2] or "")] = float(match[3])
    return values


def test_metrics(view: WebView) -> None:
    status, headers, body = request(view, "/metrics")
    assert status == 200 and headers["content-type"] == CONTENT_TYPE_LATEST
    assert headers["content-type"].startswith("text/plain; version=")
    text = body.decode()
    values = parse_metrics(text)
    assert values["maskwatch_people_total"] == 3
    assert values['maskwatch_stage_milliseconds{stage="detect"}'] == pytest.approx(30.1)
    assert values['maskwatch_stage_milliseconds{stage="render"}'] == pytest.approx(1.1)
    assert values["maskwatch_source_connected"] == 1
    assert values["maskwatch_compliance_ratio"] == pytest.approx(0.6667)
    assert values["maskwatch_http_stream_clients"] == 0
    assert values["maskwatch_dropped_frames_total"] == 4
    assert "# TYPE maskwatch_frames_total counter" in text and "# TYPE maskwatch_fps gauge" in text
    assert text.count("# TYPE maskwatch_stage_milliseconds gauge") == 1


def test_metrics_skip_missing_and_escape_labels() -> None:
    undecided = PeopleStatus(0, 0, 0, 0, None, 1)
    weird = _source("cam", connected=False, stage_ms={'we"ird\\\n': 1.5}, people=undecided)
    text = prometheus_text(RunStatus(1.0, (weird,)), clients=2)
    values = parse_metrics(text)
    assert "maskwatch_compliance_ratio" not in text and values["maskwatch_people_total"] == 0
    untracked = prometheus_text(RunStatus(1.0, (_source("cam"),)), clients=0)
    assert "maskwatch_people_total" not in untracked and "maskwatch_frames_total 0.0" in untracked
    assert values["maskwatch_source_connected"] == 0 and values["maskwatch_http_stream_clients"] == 2
    assert 'maskwatch_stage_milliseconds{stage="we\\"ird\\\\\\n"} 1.5' in text.splitlines()


def scrape(view: WebView) -> dict[str, tuple[str, dict[tuple[str, tuple], float]]]:
    """/metrics through prometheus_client's parser: {family: (type, {(sample name, sorted labels): value})}."""
    status, headers, body = request(view, "/metrics")
    assert status == 200
    families = {}
    for family in text_string_to_metric_families(body.decode()):
        samples = {(s.name, tuple(sorted(s.labels.items()))): s.value for s in family.samples}
        families[family.name] = (family.type, samples)
    return families


def test_metrics_parse_with_prometheus_client(view: WebView) -> None:
    families = scrape(view)
    # the parser drops a counter's _total from the family name; the exposed sample names keep it
    exposed = {name for _, samples in families.values() for name, _ in samples}
    assert exposed == {
        "maskwatch_uptime_seconds", "maskwatch_frames_total", "maskwatch_dropped_frames_total", "maskwatch_fps",
        "maskwatch_stage_milliseconds", "maskwatch_detect_every", "maskwatch_people_in_view",
        "maskwatch_people_total", "maskwatch_unmasked_people_total", "maskwatch_alerts_total",
        "maskwatch_compliance_ratio", "maskwatch_source_outages_total", "maskwatch_source_connected",
        "maskwatch_http_stream_clients",
    }  # fmt: skip
    assert families["maskwatch_frames"] == ("counter", {("maskwatch_frames_total", ()): 300})
    assert families["maskwatch_dropped_frames"] == ("counter", {("maskwatch_dropped_frames_total", ()): 4})
    assert families["maskwatch_people"] == ("counter", {("maskwatch_people_total", ()): 3})
    assert families["maskwatch_uptime_seconds"] == ("gauge", {("maskwatch_uptime_seconds", ()): 12.5})
    assert families["maskwatch_source_connected"] == ("gauge", {("maskwatch_source_connected", ()): 1})
    assert families["maskwatch_compliance_ratio"][1] == {("maskwatch_compliance_ratio", ()): pytest.approx(0.6667)}
    kind, stages = families["maskwatch_stage_milliseconds"]
    assert kind == "gauge"
    assert stages == {
        ("maskwatch_stage_milliseconds", (("stage", stage),)): pytest.approx(ms) for stage, ms in STAGES.items()
    }
    assert families["maskwatch_http_stream_clients"] == ("gauge", {("maskwatch_http_stream_clients", ()): 0})


def test_metrics_per_source_labels_and_read_at_scrape_time() -> None:
    door = _source("door", 60, stage_ms={"detect": 5.5}, people=PeopleStatus(1, 1, 0, 2, None, 1))
    lobby = _source('lo"bby', 40, connected=False, stage_ms={"detect": 6.0}, people=PeopleStatus(0, 2, 1, 0, 0.5, 1))
    status = RunStatus(3.0, (door, lobby), per_source=True)
    single = RunStatus(1.0, (_source("x", 9),))
    with WebView(port=0, status=lambda: status) as v, WebView(port=0, status=lambda: single) as other:
        families = scrape(v)
        assert families["maskwatch_frames"][1] == {
            ("maskwatch_frames_total", (("source", "door"),)): 60,
            ("maskwatch_frames_total", (("source", 'lo"bby'),)): 40,
        }
        assert families["maskwatch_stage_milliseconds"][1] == {
            ("maskwatch_stage_milliseconds", (("source", "door"), ("stage", "detect"))): 5.5,
            ("maskwatch_stage_milliseconds", (("source", 'lo"bby'), ("stage", "detect"))): 6.0,
        }
        assert families["maskwatch_compliance_ratio"][1] == {
            ("maskwatch_compliance_ratio", (("source", 'lo"bby'),)): 0.5
        }
        assert families["maskwatch_alerts"][1] == {
            ("maskwatch_alerts_total", (("source", "door"),)): 2,
            ("maskwatch_alerts_total", (("source", 'lo"bby'),)): 0,
        }
        assert families["maskwatch_uptime_seconds"][1] == {("maskwatch_uptime_seconds", ()): 3.0}
        status = RunStatus(3.0, (replace(door, frames=61), lobby), per_source=True)  # read per scrape
        assert scrape(v)["maskwatch_frames"][1][("maskwatch_frames_total", (("source", "door"),))] == 61
        assert scrape(other)["maskwatch_frames"][1] == {("maskwatch_frames_total", ()): 9}
        assert v.registry is not other.registry and v.registry is not REGISTRY
    assert "maskwatch_frames_total" not in generate_latest(REGISTRY).decode()  # the global registry is untouched


def test_snapshot(view: WebView, monkeypatch: pytest.MonkeyPatch) -> None:
    assert request(view, "/snapshot.jpg")[0] == 503
    encodes = []
    real = cv2.imencode
    monkeypatch.setattr(channel.cv2, "imencode", lambda *a, **k: encodes.append(1) or real(*a, **k))
    image = np.full((90, 200, 3), 127, np.uint8)
    for i in range(3):
        view.write(result(i, image=image), image)
    assert encodes == []  # write never encodes
    status, headers, body = request(view, "/snapshot.jpg")
    assert status == 200 and headers["content-type"] == "image/jpeg"
    assert decode(body).shape == (90, 200, 3)
    assert request(view, "/snapshot.jpg")[2] == body
    assert len(encodes) == 1  # encoded once, then shared


def test_frames_are_drawn_only_when_a_client_asks(view: WebView) -> None:
    drawn: list[int] = []

    class Counting(OverlayRenderer):
        def draw(self, overlay, image):
            drawn.append(int(image[0, 0, 0]))
            return super().draw(overlay, image)

    renderer = Counting(hud=False)
    for i in range(20):
        image = np.full((90, 200, 3), i, np.uint8)
        frame = result(i, image=image)
        frame.faces = FaceDetections(xyxy=[[20, 20, 60, 70]], det_score=[0.9])
        view.write_picture(frame, Picture(image, renderer.plan(frame)))
    assert drawn == []  # nobody watched: nothing drawn
    body = request(view, "/snapshot.jpg")[2]
    assert request(view, "/snapshot.jpg")[2] == body and drawn == [19]  # the latest frame, drawn once
    assert (decode(body)[20:70, 20] != 19).any()  # with its box


def test_stream_delivers_parts(view: WebView) -> None:
    first = np.full((120, 160, 3), 40, np.uint8)
    view.write(result(0, image=first), first)
    conn, resp = open_stream(view)
    try:
        assert abs(int(decode(next_part(resp.fp)).mean()) - 40) <= 2
        assert json.loads(request(view, "/status")[2])["clients"] == 1
        second = np.full((120, 160, 3), 200, np.uint8)
        view.write(result(1, image=second), second)
        assert abs(int(decode(next_part(resp.fp)).mean()) - 200) <= 2
    finally:
        resp.close()
        conn.close()
    deadline = time.monotonic() + 3
    while json.loads(request(view, "/status")[2])["clients"] and time.monotonic() < deadline:
        view.write(result(2), np.zeros((120, 160, 3), np.uint8))  # the handler notices the gone client on write
        time.sleep(0.1)
    assert json.loads(request(view, "/status")[2])["clients"] == 0


def test_stream_frames_limit_ends_the_response(view: WebView) -> None:
    view.write(result(0), np.zeros((120, 160, 3), np.uint8))
    conn, resp = open_stream(view, "/stream.mjpg?frames=1")
    try:
        assert decode(next_part(resp.fp)).shape == (120, 160, 3)
        assert resp.fp.read().strip() == b""  # then EOF
    finally:
        resp.close()
        conn.close()


@pytest.mark.parametrize(
    "path", ["/nope", "/../../etc/passwd", "/%2e%2e/", "/%2e%2e/%2e%2e/etc/passwd", "/static/../x", "//etc/passwd"]
)
def test_unknown_and_traversal_paths_404(view: WebView, path: str) -> None:
    status, _, body = request(view, path)
    assert status == 404 and b"root:" not in body


def test_methods(view: WebView) -> None:
    for method in ("POST", "PUT", "DELETE", "PATCH", "OPTIONS"):
        status, headers, _ = request(view, "/status", method=method, body=b"x=1")
        assert status == 405 and headers["allow"] == "GET, HEAD"
    assert request(view, "/door", method="POST", body=b"x=1")[0] == 405  # only /login and /logout take a form
    status, headers, body = request(view, "/", method="HEAD")
    assert status == 200 and body == b"" and int(headers["content-length"]) > 0


def test_page_is_self_contained(view: WebView) -> None:
    status, headers, body = request(view, "/")
    page = body.decode()
    assert status == 200 and headers["content-type"].startswith("text/html")
    assert "<title>maskwatch</title>" in page and "lobby-cam" in page and "stream.mjpg" in page
    assert "innerHTML" not in page and not re.search(r"(src|href)=\"?https?:", page)


def test_token_required() -> None:
    """Bearer header for everything; ``?token=`` only on the stream and the snapshot; never a token in a log line."""
    logs: list[str] = []
    sink = logger.add(logs.append, level="DEBUG", format="{message}")
    try:
        with WebView(port=0, token="s3cret-tok", status=lambda: STATUS) as v:
            v.write(result(0), np.zeros((120, 160, 3), np.uint8))
            for path in ("/status", "/metrics", "/stream.mjpg", "/snapshot.jpg", "/events", "/nope"):
                assert request(v, path)[0] == 401, path
            status, headers, _ = request(v, "/status", headers={"Authorization": "Bearer wrong"})
            assert status == 401 and headers["www-authenticate"].startswith("Bearer")
            for path in ("/status?token=s3cret-tok", "/events?token=s3cret-tok", "/metrics?token=s3cret-tok"):
                assert request(v, path)[0] == 401, path  # the query token opens nothing but the media below
            assert request(v, "/snapshot.jpg?token=s3cret-tokX")[0] == 401
            assert request(v, "/status", headers={"Authorization": "Bearer s3cret-tok"})[0] == 200
            assert request(v, "/snapshot.jpg?token=s3cret-tok")[0] == 200
            assert request(v, "/stream.mjpg?token=s3cret-tok&frames=1")[0] == 200
            status, headers, _ = request(v, "/?token=s3cret-tok")
            assert status == 303 and headers["location"] == "/login?next=/"  # pages: log in; the token is dropped
            assert request(v, "/nope", headers={"Authorization": "Bearer s3cret-tok"})[0] == 404
            assert "s3cret" not in v.url
    finally:
        logger.remove(sink)
    requests = [line for line in logs if line.startswith("HTTP 127.0.0.1")]
    assert len(requests) >= 12 and not any("s3cret" in line or "token=" in line for line in logs)


def test_non_loopback_needs_a_token() -> None:
    for host in ("0.0.0.0", "", "192.168.1.20", "::", "example.com"):
        with pytest.raises(ConfigError, match="serves beyond this machine: set --http-token"):
            WebView(host, 8080)
    assert all(is_loopback(h) for h in ("127.0.0.1", "127.8.9.10", "::1", "[::1]", "localhost"))
    WebView("0.0.0.0", 8080, token="t")  # allowed (not started)


def test_bind_failures() -> None:
    in_use = r"cannot serve HTTP on 127\.0\.0\.1:\d+: address already in use"
    with WebView(port=0) as first, pytest.raises(OutputError, match=in_use):
        WebView(port=first.port).start()
    with pytest.raises(OutputError, match="cannot serve HTTP on 192.0.2.1:0: "):
        WebView("192.0.2.1", 0, token="t").start()  # TEST-NET address: not on this machine


def test_close_with_stream_clients_is_quick() -> None:
    v = WebView(port=0).start()
    assert v.url == f"http://127.0.0.1:{v.port}/"
    v.write(result(0), np.zeros((120, 160, 3), np.uint8))
    conn, resp = open_stream(v)
    idle = socket.create_connection(("127.0.0.1", v.port), timeout=5)  # never sends a request
    waiting = WebView(port=0).start()
    conn2, resp2 = open_stream(waiting)  # no frame yet: waits on the condition
    try:
        next_part(resp.fp)
        time.sleep(0.2)
        for target in (v, waiting):
            started = time.monotonic()
            target.close()
            assert time.monotonic() - started < 2.0
        assert isinstance(resp.fp.read(), bytes)  # the response ends (EOF) instead of hanging
        assert resp2.fp.read().strip() == b""
        assert not v._thread.is_alive()
        v.close()  # idempotent
        with pytest.raises(OSError):
            request(v, "/status")
    finally:
        for closable in (resp, conn, resp2, conn2, idle):
            closable.close()


def test_process_exits_without_close() -> None:
    script = """
import http.client, numpy as np
from maskwatch.serve.web import WebView
from maskwatch.types import FaceDetections, Frame, FrameResult
v = WebView(port=0).start()
image = np.zeros((120, 160, 3), np.uint8)
v.write(FrameResult(Frame(image, 0, 0.0, name="cam"), FaceDetections.empty()), image)
conn = http.client.HTTPConnection("127.0.0.1", v.port, timeout=5)
conn.request("GET", "/stream.mjpg")
resp = conn.getresponse()
assert resp.fp.readline().strip() == b"--frame"
print("streaming", flush=True)
"""
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=30, cwd=REPO, check=False)
    assert done.returncode == 0 and b"streaming" in done.stdout, done.stderr.decode()[-2000:]
    assert time.monotonic() - started < 20


def demo_frame() -> np.ndarray:
    """A gray frame with two annotated 'faces', like the renderer draws."""
    image = np.full((360, 480, 3), 110, np.uint8)
    cv2.rectangle(image, (60, 70), (180, 220), (60, 200, 60), 3)
    cv2.rectangle(image, (280, 90), (400, 240), (40, 40, 230), 3)
    cv2.putText(image, "mask 0.97", (60, 60), cv2.FONT_HERSHEY_SIMPLEX, 0.7, (60, 200, 60), 2)
    cv2.putText(image, "no mask 0.93", (280, 80), cv2.FONT_HERSHEY_SIMPLEX, 0.7, (40, 40, 230), 2)
    cv2.putText(image, "lobby-cam  frame 57", (10, 345), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (255, 255, 255), 1)
    return image


def run_chromium(chromium: str, profile: Path, *args: str) -> subprocess.CompletedProcess:
    command = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--no-first-run"]
    command += ["--window-size=1100,800", "--virtual-time-budget=4000", f"--user-data-dir={profile}", *args]
    return subprocess.run(command, capture_output=True, timeout=60, check=False)


def test_status_page_in_headless_chromium(tmp_path: Path) -> None:
    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.skip("chromium not installed (apt-get install chromium)")
    status = RunStatus(12.5, (replace(STATUS.sources[0], people=replace(PEOPLE, people_total=1234)),))
    with WebView(port=0, status=lambda: status) as v:
        image = demo_frame()
        v.write(result(57, image=image), image)
        v.send(event(57, 7), image)
        url = v.url
        shot = tmp_path / "http_view.png"
        done = run_chromium(chromium, tmp_path / "profile", f"--screenshot={shot}", url)
        assert shot.exists(), done.stderr.decode(errors="replace")[-2000:]
        dom = run_chromium(chromium, tmp_path / "profile", "--dump-dom", url).stdout.decode()
    artifacts = REPO / "test-artifacts"
    artifacts.mkdir(exist_ok=True)
    shutil.copyfile(shot, artifacts / "http_view.png")

    cells = re.findall(r"<td>([^<]*)</td>", dom)
    assert "people total" in cells and cells[cells.index("people total") + 1] == "1234"
    assert cells[cells.index("source") + 1] == "lobby-cam" and cells[cells.index("frame") + 1] == "57"
    assert re.search(r'<li class="ev-alert">[^<]*alert\s+track 7\s+without_mask \(0\.93\)</li>', dom)
    assert re.search(r'<img id="stream" alt="live view" src="stream\.mjpg(\?frames=1)?"', dom)
    assert "token=" not in dom and "log out" not in dom  # open on loopback: nothing to log out of

    png = cv2.imread(str(shot))
    assert png is not None and png.shape == (800, 1100, 3)
    assert len(np.unique(png.reshape(-1, 3), axis=0)) > 50  # not a blank page
    b, g, r = (png[..., i].astype(int) for i in range(3))
    assert np.count_nonzero((r > 180) & (g < 90) & (b < 90)) > 200  # the red 'no mask' box of the streamed frame
