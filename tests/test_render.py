"""The overlay: track ids with decided labels, and face blurring for privacy."""

from __future__ import annotations

import cv2
import numpy as np

from maskwatch.outputs.render import OverlayRenderer, blur_boxes, hud_text
from maskwatch.runner.status import face_counts
from maskwatch.types import UNDECIDED, FaceDetections, Frame, FrameResult, MaskClass


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


def _one_face(image: np.ndarray, box) -> FrameResult:
    faces = FaceDetections(xyxy=[box], det_score=[0.9], class_id=[1], class_prob=[[0.1, 0.8, 0.1]], track_id=[3])
    return FrameResult(frame=Frame(image=image, index=0, timestamp_s=0.0), faces=faces)


def _changed_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.flatnonzero(np.any(a != b, axis=(1, 2)))


def test_lines_and_labels_grow_with_the_frame():
    """A 4K frame gets proportionally the same overlay as a 480p one, not 2 px lines and 10 px text."""
    renderer = OverlayRenderer(hud=False)
    small_t, small_f = renderer.style_for((640, 480))
    big_t, big_f = renderer.style_for((3840, 2160))
    assert (small_t, small_f) == (2, 0.5)  # the configured values at the reference size
    assert big_t >= 8 and big_f >= 2.0
    big = np.full((2160, 3840, 3), 60, np.uint8)
    out = renderer.annotate(_one_face(big, [1500, 800, 2300, 1800]))
    # the box's left edge is as thick as the scaled thickness (not 2 px)
    edge = np.flatnonzero(np.any(out[1300, 1400:1600] != 60, axis=-1))
    assert len(edge) >= big_t - 1
    # the label above the box is tall enough to read on a screen showing 4K scaled down ~3x
    rows = _changed_rows(out[:800], big[:800])
    assert len(rows) >= 45


def test_hud_stays_a_small_strip_on_tiny_frames():
    for h, w in ((48, 64), (120, 160), (480, 640), (2160, 3840)):
        image = np.full((h, w, 3), 60, np.uint8)
        result = _one_face(image, [w // 3, h // 3, 2 * w // 3, h - 2])
        with_hud = OverlayRenderer(hud=True).annotate(result, fps=25.0)
        without = OverlayRenderer(hud=False).annotate(result, fps=25.0)
        rows = _changed_rows(with_hud, without)
        assert len(rows) <= 0.12 * h + 1, (h, w, len(rows))
        if h >= 480:
            assert len(rows) >= 0.03 * h  # and still readable where there is room


def test_the_hud_says_its_fps_is_processing_speed() -> None:
    faces = FaceDetections(xyxy=np.zeros((2, 4)), det_score=np.ones(2), class_id=np.array([MaskClass.INCORRECT, -1]))
    result = FrameResult(frame=Frame(np.zeros((48, 64, 3), np.uint8), 0, 0.0), faces=faces)
    assert hud_text(result, 12.34) == "processing 12.3 fps  mask: 0  no mask: 0  incorrect: 1"


def test_face_counts_cover_every_face_in_readable_names() -> None:
    ids = np.array([MaskClass.WITH_MASK, MaskClass.INCORRECT, UNDECIDED, UNDECIDED])
    faces = FaceDetections(xyxy=np.zeros((4, 4)), det_score=np.ones(4), class_id=ids)
    counts = faces.counts()
    assert sum(counts.values()) == len(faces) and counts["undecided"] == 2
    assert face_counts(counts) == "mask 1, no mask 0, mask worn incorrectly 1, undecided 2"
