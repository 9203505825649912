"""Shared test helpers: synthetic videos and images, fake models that follow the stage Protocols."""

from __future__ import annotations

import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from maskwatch.models.base import Detector
from maskwatch.types import FaceDetections


def write_video(
    path: Path,
    frames: int = 12,
    size_wh: tuple[int, int] = (160, 120),
    fps: float = 10.0,
    *,
    fourcc: str = "mp4v",
    still: np.ndarray | None = None,
) -> Path:
    """A small video with a bright square moving over a dark background; frame i carries i in its top-left pixel.

    ``still``: every frame is this BGR image instead (``size_wh`` is then its size).
    """
    w, h = size_wh if still is None else (still.shape[1], still.shape[0])
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), fps, (w, h))
    assert writer.isOpened()
    for i in range(frames):
        if still is not None:
            writer.write(still)
            continue
        img = np.full((h, w, 3), 30, np.uint8)
        x = 10 + (i * 5) % max(w - 60, 1)
        cv2.rectangle(img, (x, 30), (x + 40, 80), (220, 220, 220), -1)
        writer.write(img)
    writer.release()
    return path


def count_frames(path: Path) -> tuple[int, tuple[int, int], float]:
    """Decode every frame of ``path``: (count, size_wh, fps)."""
    cap = cv2.VideoCapture(str(path))
    assert cap.isOpened(), f"{path} does not open"
    n, size = 0, (0, 0)
    fps = cap.get(cv2.CAP_PROP_FPS)
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        n += 1
        size = (frame.shape[1], frame.shape[0])
    cap.release()
    return n, size, fps


class FakeDetector(Detector):
    """Finds bright regions' bounding box (one face) — deterministic, no weights."""

    def __init__(self, delay_s: float = 0.0, fail_at: int | None = None) -> None:
        self.delay_s = delay_s
        self.fail_at = fail_at
        self.calls = 0

    def detect(self, image_bgr: np.ndarray) -> FaceDetections:
        self.calls += 1
        if self.fail_at is not None and self.calls > self.fail_at:
            raise RuntimeError("detector exploded")
        if self.delay_s:
            time.sleep(self.delay_s)
        ys, xs = np.nonzero(image_bgr.mean(axis=2) > 128)
        if len(xs) == 0:
            return FaceDetections.empty()
        return FaceDetections(xyxy=[[xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]], det_score=[0.9])


class FakeClassifier:
    """Calls a crop 'without_mask' when it is mostly bright, else 'with_mask'."""

    def classify(self, crops_bgr: list[np.ndarray]) -> np.ndarray:
        out = np.zeros((len(crops_bgr), 3), np.float32)
        for i, crop in enumerate(crops_bgr):
            out[i] = [0.1, 0.8, 0.1] if crop.mean() > 128 else [0.8, 0.1, 0.1]
        return out


@pytest.fixture
def video(tmp_path: Path) -> Path:
    return write_video(tmp_path / "in.mp4")
