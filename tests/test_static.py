"""Static faces: camera motion, faces that never move in the scene (posters) against people who do."""

from __future__ import annotations

import cv2
import numpy as np

from maskwatch.monitor.alerts import AlertPolicy
from maskwatch.monitor.monitor import Monitor
from maskwatch.monitor.pipeline import FacePipeline
from maskwatch.monitor.static import CameraMotion, LifeMeter
from maskwatch.monitor.track import FaceTracker
from maskwatch.types import NO_TRACK, Frame
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
    from maskwatch.build import build_monitor
    from maskwatch.config import config_from_dict

    pipeline = FacePipeline(FakeDetector(), FakeClassifier())
    monitor = build_monitor(config_from_dict({}), pipeline, source_name="cam", fps=25.0, live=True)
    assert monitor.life is not None and monitor.life.static_after_s == 3.0
    assert monitor.tracker.reid_max_gap_s == 30.0 and monitor.tracker.reid_similarity == 0.8
    off = config_from_dict({"tracking": {"static_after_s": 0, "reid_max_gap_s": 0}})
    monitor = build_monitor(off, pipeline, source_name="cam", fps=25.0, live=True)
    assert monitor.life is None and not monitor.tracker.reid
