"""Static faces: camera motion, faces that never move in the scene (posters) against people who do."""

from __future__ import annotations

import cv2
import numpy as np

from maskwatch.monitor.alerts import AlertPolicy
from maskwatch.monitor.monitor import Monitor
from maskwatch.monitor.pipeline import FacePipeline
from maskwatch.monitor.static import CameraMotion, LifeMeter
from maskwatch.monitor.track import FaceTracker
from maskwatch.types import NO_TRACK, FaceDetections, Frame
from tests.conftest import FakeClassifier, FakeDetector


def _texture(h: int, w: int, low: int, high: int, seed: int) -> np.ndarray:
    """Smooth random texture (trackable corners) with values in [low, high]."""
    noise = np.random.default_rng(seed).random((h, w)).astype(np.float32)
    noise = cv2.GaussianBlur(noise, (0, 0), 2.0)
    noise = (noise - noise.min()) / max(float(np.ptp(noise)), 1e-6)
    gray = (low + noise * (high - low)).astype(np.uint8)
    return cv2.merge([gray, gray, gray])


def _scene() -> np.ndarray:
    """A dark textured scene (the fake detector sees nothing in it) with a bright textured poster at (200, 80)."""
    canvas = _texture(360, 720, 0, 100, seed=1)
    canvas[80:140, 200:250] = _texture(60, 50, 150, 255, seed=2)
    return canvas


def test_camera_motion_finds_a_pan_and_refuses_a_cut():
    scene = _scene()
    camera = CameraMotion()
    gray = cv2.cvtColor(scene, cv2.COLOR_BGR2GRAY)
    assert np.allclose(camera.update(gray[0:240, 0:320]), np.eye(2, 3))
    moved = camera.update(gray[4:244, 8:328])  # the view moves 8 px right, 4 down: the picture moves left, up
    assert moved is not None
    assert np.allclose(moved[:, 2], [-8, -4], atol=1.0) and np.allclose(moved[:, :2], np.eye(2), atol=0.02)
    other = cv2.cvtColor(_texture(240, 320, 0, 255, seed=9), cv2.COLOR_BGR2GRAY)
    assert camera.update(other) is None  # a cut
    assert camera.update(np.zeros((240, 320), np.uint8)) is None  # black: nothing to follow


def _monitor() -> Monitor:
    return Monitor(
        FacePipeline(FakeDetector(), FakeClassifier()),
        FaceTracker(min_hits=2, min_votes=2),
        AlertPolicy("test", min_duration_s=0.3),
        life=LifeMeter(static_after_s=1.0),
    )


def test_a_poster_under_a_panning_camera_is_static_never_counted_or_alerted():
    scene, monitor, results = _scene(), _monitor(), []
    for i in range(40):  # 4 s at 10 fps, the camera pans 3 px per frame over the poster
        view = np.ascontiguousarray(scene[0:240, 3 * i : 3 * i + 320])
        results.append(monitor(Frame(image=view, index=i, timestamp_s=i / 10)))
    monitor.finish()
    assert all(len(r.faces) == 1 for r in results[5:])  # the poster is still shown...
    assert all(r.faces.track_id[0] == NO_TRACK for r in results[-20:])  # ...as an untracked, grey face
    assert all(r.faces.label(0) is None for r in results[-20:])
    assert not [e for e in monitor.events if e.event == "alert"]
    snap = monitor.snapshot()
    assert snap["people_total"] == 0 and snap["alerts"] == 0 and snap["people_now"] == 0
    assert len(monitor.people) == 0


def test_a_face_moving_through_the_scene_is_a_person_and_alerts():
    background = _texture(240, 320, 0, 100, seed=1)
    face = _texture(50, 40, 150, 255, seed=2)
    monitor, results = _monitor(), []
    for i in range(40):  # fixed camera, the face walks 4 px per frame
        image = background.copy()
        image[90:140, 20 + 4 * i : 60 + 4 * i] = face
        results.append(monitor(Frame(image=image, index=i, timestamp_s=i / 10)))
    monitor.finish()
    alerts = [e for e in monitor.events if e.event == "alert"]
    assert len(alerts) == 1 and alerts[0].track_id == 1
    assert all(r.faces.track_id[0] == 1 for r in results[-20:])
    assert monitor.snapshot()["people_total"] == 1 and len(monitor.people) == 1


def test_a_person_moving_in_place_shows_life():
    # a face that stays where it is but sways by a couple of pixels (someone standing at a counter)
    background = _texture(240, 320, 0, 100, seed=1)
    face = _texture(60, 50, 150, 255, seed=2)
    monitor = _monitor()
    for i in range(40):
        image = background.copy()
        dx = int(round(2.5 * np.sin(i * 1.3)))
        image[90:150, 130 + dx : 180 + dx] = face
        monitor(Frame(image=image, index=i, timestamp_s=i / 10))
    (track,) = monitor.tracker.tracks
    assert track.live and not track.static
    assert monitor.snapshot()["people_total"] == 1


def test_without_the_life_meter_every_track_is_a_person_at_once():
    monitor = Monitor(FacePipeline(FakeDetector(), FakeClassifier()), FaceTracker(min_hits=2, min_votes=2))
    still = _texture(240, 320, 0, 100, seed=1)
    still[90:140, 130:170] = _texture(50, 40, 150, 255, seed=2)
    for i in range(5):
        monitor(Frame(image=still, index=i, timestamp_s=i / 10))
    assert monitor.snapshot()["people_total"] == 1


def test_the_builder_follows_the_config():
    from maskwatch.config import config_from_dict
    from maskwatch.wiring import build_monitor

    pipeline = FacePipeline(FakeDetector(), FakeClassifier())
    monitor = build_monitor(config_from_dict({}), pipeline, source_name="cam", fps=25.0, live=True)
    assert monitor.life is not None and monitor.life.static_after_s == 3.0
    assert monitor.tracker.reid_max_gap_s == 30.0 and monitor.tracker.reid_similarity == 0.65
    off = config_from_dict({"tracking": {"static_after_s": 0, "reid_max_gap_s": 0}})
    monitor = build_monitor(off, pipeline, source_name="cam", fps=25.0, live=True)
    assert monitor.life is None and not monitor.tracker.reid


class BlobDetector(FakeDetector):
    """One face per bright blob (connected bright pixels), so that several faces can be in view."""

    def detect(self, image_bgr: np.ndarray) -> FaceDetections:
        mask = (image_bgr.mean(axis=2) > 128).astype(np.uint8)
        n, _, stats, _ = cv2.connectedComponentsWithStats(mask)
        boxes = [[x, y, x + w, y + h] for x, y, w, h, area in stats[1:n] if area >= 50]
        return FaceDetections(xyxy=np.array(boxes, np.float32).reshape(-1, 4), det_score=np.full(len(boxes), 0.9))


def _blob_monitor() -> Monitor:
    return Monitor(
        FacePipeline(BlobDetector(), FakeClassifier()),
        FaceTracker(min_hits=2, min_votes=2, hold_unmoved_s=0.5),
        AlertPolicy("test", min_duration_s=0.3),
        life=LifeMeter(static_after_s=1.0),
    )


def test_a_passer_by_in_front_of_a_poster_does_not_bring_it_to_life():
    # fixed camera; a poster; a person walks past above it and their (darker) body sweeps over it
    background = _texture(240, 320, 0, 100, seed=1)
    poster = _texture(50, 40, 150, 255, seed=2)
    face = _texture(40, 34, 150, 255, seed=3)
    body = _texture(140, 44, 40, 120, seed=4)
    monitor, results = _blob_monitor(), []
    for i in range(50):  # 5 s at 10 fps, 6 px per frame from left to right
        image = background.copy()
        image[130:180, 140:180] = poster
        x = 10 + 6 * i
        if x + 39 < 320:
            image[100:240, x - 5 : x + 39] = body[:, : min(44, 320 - x + 5)]
            image[60:100, x : x + 34] = face
        results.append(monitor(Frame(image=image, index=i, timestamp_s=i / 10)))
    monitor.finish()
    alerts = [e for e in monitor.events if e.event == "alert"]
    assert len(alerts) == 1  # the walker, once
    assert monitor.snapshot()["people_total"] == 1 and len(monitor.people) == 1
    last = results[-1]  # the walker has gone: only the poster is in view, grey and untracked
    assert len(last.faces) == 1 and last.faces.track_id[0] == NO_TRACK


def test_a_poster_seen_through_a_zoom_stays_static():
    scene = _texture(240, 320, 0, 100, seed=1)
    scene[50:150, 130:190] = 220  # a poster whose corners (the flow's points) are all in its top quarter,
    scene[50:75, 130:190] = _texture(25, 60, 150, 255, seed=2)  # far from its centre
    monitor, results = _blob_monitor(), []
    for i in range(40):  # zoom 1.0 -> 1.8 about the picture's centre over 4 s
        s = 1.0 + 0.02 * i
        matrix = np.array([[s, 0, 160 * (1 - s)], [0, s, 120 * (1 - s)]], np.float32)
        view = cv2.warpAffine(scene, matrix, (320, 240), flags=cv2.INTER_LINEAR)
        results.append(monitor(Frame(image=view, index=i, timestamp_s=i / 10)))
    monitor.finish()
    assert all(len(r.faces) == 1 for r in results[5:])
    assert all(r.faces.track_id[0] == NO_TRACK for r in results[-20:])
    assert monitor.snapshot()["people_total"] == 0 and not monitor.events
