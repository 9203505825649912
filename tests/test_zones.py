"""Zones: who counts (the rule), the monitor counting and alerting only there, the overlay, the wiring, the CLI."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from maskwatch.config import config_from_dict
from maskwatch.monitor.alerts import AlertPolicy
from maskwatch.monitor.monitor import Monitor, StrideControl
from maskwatch.monitor.pipeline import FacePipeline
from maskwatch.monitor.track import FaceTracker
from maskwatch.monitor.zones import Zone, ZoneSet, face_centres
from maskwatch.outputs.render import ZONE_COLORS, OverlayRenderer, dimmed, hud_text
from maskwatch.types import NO_TRACK, FaceDetections, Frame, FrameResult, MaskClass
from maskwatch.wiring import source_lines, source_zones
from tests.helpers import maskwatch

W, H = 320, 240
RIGHT_HALF = Zone("right", [(0.5, 0.0), (1.0, 0.0), (1.0, 1.0), (0.5, 1.0)])
UNMASKED, MASKED = (40, 40, 230), (230, 40, 40)  # BGR: the fake classifier reads red as no mask, blue as a mask


class BlobDetector:
    """Every bright blob is a face (one box per connected component)."""

    def detect(self, image_bgr: np.ndarray) -> FaceDetections:
        mask = (image_bgr.max(axis=2) > 128).astype(np.uint8)
        n, _, stats, _ = cv2.connectedComponentsWithStats(mask)
        boxes = [[x, y, x + w, y + h] for x, y, w, h, _ in stats[1:n]]
        return FaceDetections(xyxy=np.array(boxes, np.float32).reshape(-1, 4), det_score=np.full(len(boxes), 0.9))


class ColourClassifier:
    """A red face wears no mask, a blue one a mask."""

    def classify(self, crops_bgr: list[np.ndarray]) -> np.ndarray:
        out = np.zeros((len(crops_bgr), 3), np.float32)
        for i, crop in enumerate(crops_bgr):
            red = crop[..., 2].mean() > crop[..., 0].mean()
            out[i] = [0.05, 0.9, 0.05] if red else [0.9, 0.05, 0.05]
        return out


def scene(people: list[tuple[float, float, tuple[int, int, int]]], index: int, fps: float = 10.0) -> Frame:
    """A frame with a 30-px square face per person at centre (x, y) in pixels, of the given colour."""
    image = np.full((H, W, 3), 20, np.uint8)
    for x, y, color in people:
        cv2.rectangle(image, (int(x) - 15, int(y) - 15), (int(x) + 15, int(y) + 15), color, -1)
    return Frame(image=image, index=index, timestamp_s=index / fps, name="cam")


def monitor(zones: ZoneSet | None) -> Monitor:
    pipeline = FacePipeline(BlobDetector(), ColourClassifier())
    policy = AlertPolicy("cam", min_duration_s=0.3)
    return Monitor(pipeline, FaceTracker(min_hits=2, min_votes=2), policy, StrideControl(1), zones=zones)


def play(mon: Monitor, frames: list[Frame]) -> tuple[list[FrameResult], list]:
    results = [mon(f) for f in frames]
    return results, [e for r in results for e in r.events] + mon.finish()


# --- the rule -------------------------------------------------------------------------------------------------
def test_a_point_in_a_concave_polygon_is_inside_only_where_the_polygon_is():
    ell = Zone("L", [(0.0, 0.0), (0.5, 0.0), (0.5, 0.5), (1.0, 0.5), (1.0, 1.0), (0.0, 1.0)])
    points = np.array([[0.25, 0.25], [0.75, 0.25], [0.75, 0.75], [0.25, 0.75], [1.2, 0.75]])
    assert ell.contains(points).tolist() == [True, False, True, True, False]


CENTRES = {"left": (0.25, 0.5), "right_top": (0.75, 0.2), "right_bottom": (0.75, 0.8)}
BOTTOM_RIGHT = Zone("till", [(0.5, 0.6), (1.0, 0.6), (1.0, 1.0), (0.5, 1.0)], "ignore")
LEFT_HALF_IGNORED = Zone("street", [(0.0, 0.0), (0.5, 0.0), (0.5, 1.0), (0.0, 1.0)], "ignore")


@pytest.mark.parametrize(
    ("zones", "counted"),
    [
        ([], {"left", "right_top", "right_bottom"}),  # no zones: everyone
        ([RIGHT_HALF], {"right_top", "right_bottom"}),  # a watch zone: only in it
        ([RIGHT_HALF, BOTTOM_RIGHT], {"right_top"}),  # in a watch zone and in no ignore zone
        ([LEFT_HALF_IGNORED], {"right_top", "right_bottom"}),  # only ignore zones: everything outside them
    ],
)
def test_who_counts(zones, counted):
    names = list(CENTRES)
    boxes = np.array([[x * W - 10, y * H - 10, x * W + 10, y * H + 10] for x, y in CENTRES.values()], np.float32)
    assert np.allclose(face_centres(boxes, (W, H)), list(CENTRES.values()))
    inside = ZoneSet(zones).counted(boxes, (W, H))
    assert {name for name, ok in zip(names, inside, strict=True) if ok} == counted


# --- the monitor ----------------------------------------------------------------------------------------------
def test_only_the_person_in_the_watch_zone_is_counted_and_alerted_the_other_is_still_tracked():
    frames = [scene([(60, 60 + 3 * i, UNMASKED), (250, 60 + 3 * i, UNMASKED)], i) for i in range(25)]
    mon = monitor(ZoneSet([RIGHT_HALF]))
    results, events = play(mon, frames)
    last = results[-1].faces
    assert len(last) == 2 and (last.track_id != NO_TRACK).all()  # both tracked
    left_id, right_id = (int(last.track_id[i]) for i in np.argsort(last.xyxy[:, 0]))
    assert {(e.event, e.track_id) for e in events} == {("alert", right_id), ("end", right_id)}
    status = mon.people_status()
    assert (status.people_total, status.unmasked_total, status.alerts, status.compliance) == (1, 1, 1, 0.0)
    assert [p.track_id for p in mon.people] == [right_id]
    assert max(p.in_view for p in mon.timeline) == 1
    assert "in the zones" in mon.summary_line()
    # the same scene without zones counts both
    plain = monitor(None)
    play(plain, frames)
    assert plain.people_status().people_total == 2 and plain.people_status().alerts == 2


def test_a_person_walking_into_the_zone_keeps_one_id_and_alerts_only_once_inside():
    frames = [scene([(30 + 10 * i, 120, UNMASKED)], i) for i in range(28)]  # x 30 -> 300: crosses 160 at i = 13
    mon = monitor(ZoneSet([RIGHT_HALF]))
    results, events = play(mon, frames)
    ids = {int(t) for r in results for t in r.faces.track_id if t != NO_TRACK}
    assert len(ids) == 1
    alert = next(e for e in events if e.event == "alert")
    assert (alert.box[0] + alert.box[2]) / 2 > W / 2  # decided inside, though seen unmasked for 1.3 s before
    assert [e.event for e in events] == ["alert", "end"]
    assert mon.people_status().people_total == 1
    # before entering, the person was tracked but not in view for the counts
    before = [r for r in results if len(r.faces) and (r.faces.xyxy[0, 0] + r.faces.xyxy[0, 2]) / 2 < W / 2]
    assert before and all(r.faces.track_id[0] in ids or r.faces.track_id[0] == NO_TRACK for r in before)
    assert mon.timeline[0].in_view == 0


def test_a_person_who_never_enters_the_zone_raises_no_event_and_is_not_in_the_report():
    frames = [scene([(40 + 2 * i, 100, UNMASKED)], i) for i in range(20)]
    mon = monitor(ZoneSet([RIGHT_HALF]))
    _, events = play(mon, frames)
    assert events == [] and len(mon.people) == 0
    assert mon.people_status().people_total == 0 and mon.people_status().compliance is None


# --- the overlay ----------------------------------------------------------------------------------------------
def result_with(faces: list[tuple[float, int, int]]) -> FrameResult:
    """Faces as (centre x, track id, class id) on a dark frame, all at mid height."""
    boxes = [[x - 20, 100, x + 20, 140] for x, _, _ in faces]
    probs = np.eye(3, dtype=np.float32)[[c for _, _, c in faces]]
    detections = FaceDetections(
        xyxy=boxes, det_score=[0.9] * len(faces), class_id=[c for *_, c in faces], class_prob=probs,
        track_id=[t for _, t, _ in faces],
    )  # fmt: skip
    return FrameResult(Frame(np.full((H, W, 3), 20, np.uint8), 0, 0.0, name="cam"), detections)


def near(image: np.ndarray, y: int, x: int, color: tuple[int, int, int], tol: int = 12) -> bool:
    """Some pixel of the 3x3 window at (y, x) is within ``tol`` of ``color`` on every channel (lines are smooth)."""
    window = image[y - 1 : y + 2, x - 1 : x + 2].reshape(-1, 3).astype(int)
    return bool((np.abs(window - np.array(color)).max(axis=1) <= tol).any())


def test_the_overlay_draws_the_zone_and_dims_the_faces_outside_it():
    result = result_with([(80, 1, int(MaskClass.WITHOUT_MASK)), (240, 2, int(MaskClass.WITHOUT_MASK))])
    plain = OverlayRenderer(hud=False).annotate(result)
    zoned = OverlayRenderer(hud=False, zones=ZoneSet([RIGHT_HALF])).annotate(result)
    red = MaskClass.WITHOUT_MASK.color
    # the face inside keeps its colour; the one outside is drawn in the dimmed colour
    assert tuple(zoned[120, 220]) == red == tuple(plain[120, 220])  # left edge of the inside box
    assert tuple(plain[120, 60]) == red
    assert near(zoned, 120, 60, dimmed(red)) and not near(zoned, 120, 60, red, tol=40)
    # the outline runs along x = 0.5 of the frame, in the watch colour, where no face is
    column = round(0.5 * (W - 1))
    assert near(zoned, 200, column, ZONE_COLORS["watch"], tol=40) and tuple(plain[200, column]) == (20, 20, 20)
    assert np.array_equal(OverlayRenderer(hud=False, zones=ZoneSet()).annotate(result), plain)  # no zones: as ever


def test_the_hud_counts_only_the_faces_in_the_zones():
    result = result_with([(80, 1, int(MaskClass.WITHOUT_MASK)), (240, 2, int(MaskClass.WITH_MASK))])
    counted = ZoneSet([RIGHT_HALF]).counted(result.faces.xyxy, (W, H))
    assert hud_text(result, None, counted) == "mask: 1  no mask: 0  incorrect: 0"
    assert hud_text(result, None) == "mask: 1  no mask: 1  incorrect: 0"


# --- wiring and CLI -------------------------------------------------------------------------------------------
def test_each_source_gets_its_own_zones_else_the_top_level_ones():
    square = [[0.1, 0.1], [0.9, 0.1], [0.9, 0.9], [0.1, 0.9]]
    cfg = config_from_dict(
        {
            "zones": [{"name": "shop", "polygon": square}],
            "lines": [{"name": "door", "points": [[0, 0.5], [1, 0.5]], "in": "right"}],
            "sources": [
                {"source": "a.mp4", "name": "a"},
                {"source": "b.mp4", "name": "b", "zones": [{"name": "till", "polygon": square, "mode": "ignore"}]},
                {"source": "c.mp4", "name": "c", "zones": [], "lines": []},
            ],
        }
    )
    a, b, c = cfg.sources
    assert [z.name for z in source_zones(cfg).zones] == ["shop"]  # --source: the top-level ones
    assert [(z.name, z.mode) for z in source_zones(cfg, a).zones] == [("shop", "watch")]
    assert [(z.name, z.mode) for z in source_zones(cfg, b).zones] == [("till", "ignore")]
    assert not source_zones(cfg, c) and source_lines(cfg, c) == ()
    (door,) = source_lines(cfg, b)
    assert (door.name, door.start, door.end, door.in_side, door.band) == ("door", (0, 0.5), (1, 0.5), "right", 0.3)


@pytest.mark.parametrize(
    ("zone", "says"),
    [
        ("0,0 1,1", "at least 3 points"),
        ("0.1,0.1 0.9,0.9 0.9,0.1 0.1,0.5", "crosses itself"),
        ("0,0 1,0 1.5,1", "outside the frame"),
        ("0,0 1,0 x", "is not x,y"),
    ],
)
def test_an_invalid_zone_on_the_command_line_is_one_line_at_start(tmp_path, zone, says):
    done = maskwatch("run", "--source", "demo", "--zone", zone, "--events", str(tmp_path / "e.jsonl"), timeout=60)
    assert done.returncode != 0
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and says in lines[0] and "Traceback" not in done.stderr, done.stderr
    assert not (tmp_path / "e.jsonl").exists()


@pytest.mark.slow
def test_the_demo_with_a_zone_counts_only_there(tmp_path):
    events, report = tmp_path / "z.jsonl", tmp_path / "z"
    args = ["run", "--source", "demo", "--no-progress", "--events", str(events), "--report", str(report)]
    done = maskwatch(*args, "--zone", "0.5,0 1,0 1,1 0.5,1", timeout=300)
    assert done.returncode == 0, done.stderr
    summary = json.loads(report.with_name("z.report.json").read_text())
    assert summary["summary"]["zones"] == ["zone (watch)"]
    width = 480  # the demo clip's width
    for record in map(json.loads, events.read_text().splitlines()):
        if record["event"] == "alert":  # decided inside the zone
            assert (record["box"][0] + record["box"][2]) / 2 >= width / 2
