"""The zone editor (``/zones`` on the HTTP view) in headless Chromium: click corners on the snapshot, read the config
line and the ``--zone`` flag it prints, and check that maskwatch reads them back as the same zone."""

from __future__ import annotations

import http.client
import re
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml

from maskwatch.commands.options import zone_override
from maskwatch.config import config_from_dict
from maskwatch.serve.web import WebView
from maskwatch.serve.zones_page import mount_zones
from maskwatch.types import FaceDetections, Frame, FrameResult

REPO = Path(__file__).resolve().parents[1]
W, H = 640, 360


def snapshot_image() -> np.ndarray:
    """A frame with a grid every 10 % of its size, so the screenshot shows where the clicks landed."""
    image = np.full((H, W, 3), 40, np.uint8)
    for i in range(1, 10):
        cv2.line(image, (i * W // 10, 0), (i * W // 10, H), (90, 90, 90), 1)
        cv2.line(image, (0, i * H // 10), (W, i * H // 10), (90, 90, 90), 1)
    return image


def get(view: WebView, path: str, headers: dict | None = None) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", view.port, timeout=5)
    try:
        conn.request("GET", path, headers=headers or {})
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def test_the_zone_editor_is_behind_the_token_like_every_page():
    with WebView(port=0, token="s3cret") as view:
        mount_zones(view)
        assert get(view, "/zones")[0] in (302, 303, 401)
        status, body = get(view, "/zones", {"Authorization": "Bearer s3cret"})
        assert status == 200 and b"maskwatch zones" in body and b"s3cret" not in body


@pytest.fixture
def browser_page():
    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.skip("chromium not installed (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with WebView(port=0) as view, sync_playwright() as p:
        mount_zones(view)
        frame = Frame(snapshot_image(), 0, 0.0)
        view.write(FrameResult(frame, FaceDetections.empty()), frame.image)
        browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1200, "height": 700})
            page.goto(view.url + "zones")
            page.wait_for_function("() => document.getElementById('snap').naturalWidth > 0")
            yield page
        finally:
            browser.close()


def click_at(page, points: list[tuple[float, float]]) -> None:
    """Click the snapshot at each (x, y) given in fractions of the picture."""
    box = page.locator("#snap").bounding_box()
    for x, y in points:
        page.mouse.click(box["x"] + x * box["width"], box["y"] + y * box["height"])


def test_clicking_corners_prints_the_zone_config_and_the_flag(browser_page):
    page = browser_page
    assert "3 more point" in page.inner_text("#hint") and page.inner_text("#yaml") == ""
    page.fill("#name", "entrance")
    corners = [(0.2, 0.1), (0.8, 0.1), (0.9, 0.9), (0.1, 0.9)]
    click_at(page, corners)
    text, flag = page.inner_text("#yaml"), page.inner_text("#flag")
    artifacts = REPO / "test-artifacts"
    artifacts.mkdir(exist_ok=True)
    page.screenshot(path=str(artifacts / "zones_page.png"))
    assert re.fullmatch(r"zones: \[\{name: entrance, polygon: \[(\[[\d.]+, [\d.]+\](, )?){4}\], mode: watch\}\]", text)
    (zone,) = config_from_dict(yaml.safe_load(text)).zones  # the config reads back what was clicked
    assert zone.name == "entrance" and zone.mode == "watch"
    assert np.allclose(zone.polygon, corners, atol=0.01)
    assert flag.startswith('--zone "') and flag.endswith('"')
    (from_flag,) = config_from_dict({"zones": zone_override(flag[len('--zone "') : -1])}).zones
    assert np.allclose(from_flag.polygon, zone.polygon)
    assert page.inner_text("#problem") == ""
    assert page.locator("#overlay polygon").get_attribute("points").count(",") == 4  # drawn over the snapshot
    page.click("#undo")
    assert page.inner_text("#yaml").count("], [") == 2  # three corners left


def test_a_crossing_polygon_is_flagged_and_a_line_prints_the_lines_config(browser_page):
    page = browser_page
    page.select_option("#mode", "ignore")
    click_at(page, [(0.1, 0.1), (0.9, 0.9), (0.9, 0.1), (0.1, 0.5)])
    assert "crosses itself" in page.inner_text("#problem") and "mode: ignore" in page.inner_text("#yaml")
    page.select_option("#shape", "line")
    page.select_option("#side", "right")
    click_at(page, [(0.02, 0.6), (0.98, 0.6)])
    text = page.inner_text("#yaml")
    (line,) = config_from_dict(yaml.safe_load(text)).lines
    assert (line.name, line.in_side) == ("door", "right")
    assert np.allclose(line.points, [(0.02, 0.6), (0.98, 0.6)], atol=0.01)
    assert not page.locator("#flag").is_visible()  # no flag for a line: it goes in the config
