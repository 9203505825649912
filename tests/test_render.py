"""The overlay: track ids with decided labels, and face blurring for privacy."""

from __future__ import annotations

import cv2
import numpy as np

from maskwatch.outputs.render import OverlayRenderer, blur_boxes
from maskwatch.types import FaceDetections, Frame, FrameResult


def _noise(h: int = 120, w: int = 160) -> np.ndarray:
    image = np.zeros((h, w, 3), np.uint8)
    cv2.randu(image, 0, 255)
    return image


def _detail(region: np.ndarray) -> float:
    return float(np.abs(np.diff(region.astype(np.float32), axis=1)).mean())


def test_blur_boxes_hides_the_face_and_nothing_else():
    image = _noise()
    out = blur_boxes(image, np.array([[40, 30, 100, 100]], np.float32))
    assert _detail(out[40:90, 50:90]) < _detail(image[40:90, 50:90]) / 5
    assert np.array_equal(out[:, 120:], image[:, 120:])  # outside the (grown) box: untouched
    assert np.array_equal(blur_boxes(image, np.zeros((0, 4), np.float32)), image)
    # degenerate and out-of-frame boxes are ignored
    blur_boxes(image, np.array([[50, 50, 50, 80], [-20, -20, -5, -5], [150, 110, 400, 400]], np.float32))


def test_renderer_blurs_faces_when_asked():
    faces = FaceDetections(xyxy=[[40, 30, 100, 100]], det_score=[0.9], class_id=[1], class_prob=[[0.1, 0.8, 0.1]])
    result = FrameResult(frame=Frame(image=_noise(), index=0, timestamp_s=0.0), faces=faces)
    plain = OverlayRenderer(hud=False).annotate(result)
    blurred = OverlayRenderer(hud=False, blur_faces=True).annotate(result)
    inner = (slice(45, 90), slice(50, 90))
    assert _detail(blurred[inner]) < _detail(plain[inner]) / 5
    assert np.array_equal(result.frame.image, result.frame.image.copy())  # input untouched


def test_tracked_faces_show_their_id():
    image = np.full((120, 160, 3), 60, np.uint8)
    tracked = FaceDetections(
        xyxy=[[40, 40, 100, 110]], det_score=[0.9], class_id=[0], class_prob=[[0.9, 0.05, 0.05]], track_id=[7]
    )
    untracked = FaceDetections(xyxy=[[40, 40, 100, 110]], det_score=[0.9], class_id=[0], class_prob=[[0.9, 0.05, 0.05]])
    renderer = OverlayRenderer(hud=False)
    a = renderer.annotate(FrameResult(frame=Frame(image=image, index=0, timestamp_s=0), faces=tracked))
    b = renderer.annotate(FrameResult(frame=Frame(image=image, index=0, timestamp_s=0), faces=untracked))
    label_band = (slice(20, 40), slice(40, 160))
    assert not np.array_equal(a[label_band], b[label_band])  # "#7 mask 90%" vs "mask 90%"
