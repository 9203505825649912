"""A still living face (blinks, a moving mouth) is a person and alerts; a still picture of a face is not."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from maskwatch.monitor.alerts import AlertPolicy
from maskwatch.monitor.facechange import interior_change
from maskwatch.monitor.monitor import Monitor, StrideControl
from maskwatch.monitor.pipeline import FacePipeline
from maskwatch.monitor.static import LifeMeter
from maskwatch.monitor.track import FaceTracker
from maskwatch.types import Frame
from tests.conftest import FakeClassifier, FakeDetector

FPS = 25.0


def _texture(h: int, w: int, low: int, high: int, seed: int) -> np.ndarray:
    noise = np.random.default_rng(seed).random((h, w)).astype(np.float32)
    noise = cv2.GaussianBlur(noise, (0, 0), 1.5)
    noise = (noise - noise.min()) / max(float(np.ptp(noise)), 1e-6)
    return (low + noise * (high - low)).astype(np.uint8)


def _face(eyes_open: bool, mouth_open: float) -> np.ndarray:
    """A face-like picture, 72 x 60: bright textured skin (the fake detector's face), two eyes, a mouth."""
    face = _texture(72, 60, 150, 235, seed=2)
    if eyes_open:
        for x in (18, 42):
            cv2.ellipse(face, (x, 28), (7, 4), 0, 0, 360, 230, -1)  # the white
            cv2.circle(face, (x, 28), 3, 30, -1)  # the pupil
    else:
        for x in (18, 42):
            cv2.line(face, (x - 7, 29), (x + 7, 29), 110, 1)  # a closed lid
    cv2.ellipse(face, (30, 54), (11, max(1, round(1 + 6 * mouth_open))), 0, 0, 360, 60, -1)
    return face


def _frame(background: np.ndarray, face: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The face at a fixed place (a fixed camera), the whole picture with sensor noise (sigma 3 gray levels)."""
    image = background.copy()
    image[80:152, 130:190] = face
    noisy = np.clip(image.astype(np.float32) + rng.normal(0, 3.0, image.shape), 0, 255).astype(np.uint8)
    return cv2.merge([noisy, noisy, noisy])


def _monitor(every: int) -> Monitor:
    return Monitor(
        FacePipeline(FakeDetector(), FakeClassifier()),  # the bright face: "without_mask"
        FaceTracker(min_hits=3, min_votes=3),
        AlertPolicy("test", min_duration_s=1.0),
        StrideControl(every),
        life=LifeMeter(static_after_s=3.0),
    )


def _play(faces: list[np.ndarray], every: int) -> Monitor:
    background, rng, monitor = _texture(240, 320, 0, 100, seed=1), np.random.default_rng(0), _monitor(every)
    for i, face in enumerate(faces):
        monitor(Frame(image=_frame(background, face, rng), index=i, timestamp_s=i / FPS))
    return monitor


@pytest.mark.parametrize("every", [4, 1])
def test_a_still_face_that_blinks_and_talks_is_alerted_within_1_5_s(every: int) -> None:
    faces = []
    for i in range(75):  # 3 s at 25 fps: the head never moves; the mouth opens and closes, a blink at 0.5 s
        blink = 12 <= i % 60 <= 15
        faces.append(_face(eyes_open=not blink, mouth_open=0.5 + 0.5 * np.sin(2 * np.pi * i / 10)))
    monitor = _play(faces, every)
    alerts = [e for e in monitor.events if e.event == "alert"]
    assert len(alerts) == 1 and alerts[0].t_s <= 1.5
    assert monitor.snapshot()["people_total"] == 1


@pytest.mark.parametrize("every", [4, 1])
def test_a_still_picture_of_a_face_never_counts(every: int) -> None:
    monitor = _play([_face(eyes_open=True, mouth_open=0.5)] * 125, every)  # 5 s, fixed camera, sensor noise only
    assert not [e for e in monitor.events if e.event == "alert"]
    assert monitor.snapshot()["people_total"] == 0
    (track,) = monitor.tracker.tracks
    assert track.static and not track.live


def test_interior_change_sees_a_blink_and_not_noise() -> None:
    rng = np.random.default_rng(3)
    background = _texture(240, 320, 0, 100, seed=1)
    box = np.array([130, 80, 190, 152], np.float64)
    gray = [cv2.cvtColor(_frame(background, _face(o, 0.5), rng), cv2.COLOR_BGR2GRAY) for o in (True, True, False)]
    still = interior_change(gray[0], gray[1], box, np.eye(2, 3))
    blink = interior_change(gray[1], gray[2], box, np.eye(2, 3))
    assert still is not None and blink is not None
    assert still < 0.01 < 0.05 < blink
