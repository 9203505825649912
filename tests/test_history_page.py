"""The HTTP view's history pages: ``/history.json`` behind the token, and ``/history`` (inline SVG charts, no
script) in headless Chromium after logging in."""

from __future__ import annotations

import json
import shutil
import urllib.error
import urllib.request
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

from maskwatch.history.writer import HistoryWriter
from maskwatch.serve.history_page import HistoryPages
from maskwatch.serve.web import WebView
from maskwatch.types import Event

REPO = Path(__file__).resolve().parents[1]
TOKEN = "hist-Token-42"
NOW = datetime(2026, 12, 7, 18, 30, tzinfo=UTC).timestamp()
IMAGE = np.zeros((4, 4, 3), np.uint8)


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z")


@pytest.fixture(scope="module")
def history(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three weeks of a shop door: more people in the afternoon, some unmasked, a few alerts."""
    path = tmp_path_factory.mktemp("history") / "h.db"
    rng = np.random.default_rng(3)
    with HistoryWriter(path, report_at=None, clock=lambda: NOW - 22 * 86400, poll_s=0.02) as w:
        track = 0
        for day in range(21, -1, -1):
            for hour in range(8, 19):
                for _ in range(int(rng.integers(0, 4 + (hour > 13) * 4))):
                    track += 1
                    ts = NOW - day * 86400 - (18.5 - hour) * 3600 + float(rng.uniform(0, 3000))
                    if ts > NOW:
                        continue
                    label = str(rng.choice(["with_mask", "with_mask", "with_mask", "without_mask"]))
                    if label == "without_mask" and rng.random() < 0.5:
                        w.send(Event("alert", iso(ts), "door", 1, track, label, 0.9, [0, 0, 1, 1], 1.0), IMAGE)
                    w.send(Event("end", iso(ts + 5), "door", 1, track, label, 0.9, [0, 0, 1, 1], 6.0), IMAGE)
    return path


def get(url: str, token: str | None = TOKEN) -> tuple[int, bytes]:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.status, answer.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def served(path: Path) -> WebView:
    view = WebView(port=0, token=TOKEN)
    HistoryPages(path, tz=UTC, clock=lambda: NOW).mount(view)
    return view.start()


def test_history_json_behind_the_token(history: Path, tmp_path: Path) -> None:
    with served(history) as view:
        assert get(view.url + "history.json", token=None)[0] == 401
        code, body = get(view.url + "history.json?by=hour&since=2026-12-07&until=2026-12-07")
        assert code == 200
        report = json.loads(body)
        assert report["by"] == "hour" and report["timezone"] == "UTC (UTC+00:00)"
        hours = [p["period"] for p in report["periods"]]
        assert hours and all(h.startswith("2026-12-07 ") for h in hours) and hours == sorted(hours)
        assert report["total"]["people"] == sum(p["people"] for p in report["periods"]) > 0
        code, body = get(view.url + "history.json")  # the last 30 days by day
        days = json.loads(body)["periods"]
        assert code == 200 and len(days) == 22 and days[-1]["period"] == "2026-12-07"
        assert get(view.url + "history.json?by=week")[0] == 400
        assert get(view.url + "history.json?since=soon")[0] == 400
    with served(tmp_path / "none.db") as view:
        code, body = get(view.url + "history.json")
        assert code == 503 and "does not exist" in json.loads(body)["error"]
        code, body = get(view.url + "history")
        assert code == 503 and b"does not exist" in body


def test_a_run_with_history_and_http_mounts_the_pages(tmp_path: Path) -> None:
    from maskwatch.config import load_config
    from maskwatch.wiring.outputs import build_web_view

    cfg = load_config(None, {"history.path": str(tmp_path / "h.db")})
    view = build_web_view(cfg, ("127.0.0.1", 0), status=lambda: None)
    assert {"/history", "/history.json"} <= set(view.routes)
    plain = build_web_view(load_config(None, {}), ("127.0.0.1", 0), status=lambda: None)
    assert "/history" not in plain.routes


def test_history_page_in_headless_chromium(history: Path) -> None:
    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.skip("chromium not installed (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    code, body = 0, b""
    with served(history) as view, sync_playwright() as p:
        code, body = get(view.url + "history.json?by=day&since=2026-12-07&until=2026-12-07")
        today = json.loads(body)["total"]
        browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1100, "height": 1400})
            page.goto(view.url + "history")
            assert page.url.startswith(view.url + "login")  # a browser without a session logs in first
            page.fill("#token", TOKEN)
            page.click("button[type=submit]")
            page.wait_for_url(view.url + "history")
            assert page.locator("svg").count() == 2 and page.locator("script").count() == 0
            assert page.locator("svg").first.locator("rect").count() > 40  # bars of 22 days, stacked
            assert page.locator("svg").nth(1).locator("polyline").count() >= 1  # the day's compliance line
            total = page.locator("table").nth(1).locator("tr.total td").all_inner_texts()
            share = "n/a" if today["compliance"] is None else f"{today['compliance'] * 100:.1f} %"
            assert total == ["total", str(today["entries"]), str(today["people"]), str(today["unmasked"]),
                             str(today["alerts"]), share]  # fmt: skip
            assert TOKEN not in page.content()
            artifacts = REPO / "test-artifacts"
            artifacts.mkdir(exist_ok=True)
            page.screenshot(path=str(artifacts / "history_page.png"), full_page=True)
            page.click("text=← 2026-12-06")
            page.wait_for_url(view.url + "history?day=2026-12-06")
            assert "Per hour, 2026-12-06" in page.content()
        finally:
            browser.close()
    assert code == 200
