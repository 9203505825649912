"""Close faces: a face that fills much of the frame is boxed again on the frame zoomed out, once."""

from __future__ import annotations

import numpy as np

from maskwatch.monitor.closeup import closeup_pass, zoomed_out
from maskwatch.types import FaceDetections


class TwoBoxesWhenClose:
    """A detector standing in for the real one's failure: a face larger than half the input gets two shifted
    boxes; a smaller one gets its true box. The 'face' is the bright square drawn on the frame."""

    def __init__(self) -> None:
        self.calls: list[tuple[int, int]] = []

    def detect(self, image: np.ndarray) -> FaceDetections:
        self.calls.append(image.shape[:2])
        ys, xs = np.nonzero(image[..., 0] > 200)
        boxes: list[list[float]] = []
        scores: list[float] = []
        if len(xs):
            x1, y1, x2, y2 = float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1)
            if (x2 - x1) > image.shape[1] / 2:
                shift = (x2 - x1) * 0.3
                boxes += [[x1, y1, x2 - shift, y2 - shift], [x1 + shift, y1 + shift, x2, y2]]
                scores += [0.9, 0.8]
            else:
                boxes.append([x1, y1, x2, y2])
                scores.append(0.95)
        small = np.nonzero(image[..., 1] > 200)  # a second, small face drawn in green
        if len(small[0]):
            sy, sx = small
            boxes.append([float(sx.min()), float(sy.min()), float(sx.max() + 1), float(sy.max() + 1)])
            scores.append(0.7)
        return FaceDetections(xyxy=np.array(boxes, np.float32).reshape(-1, 4), det_score=np.array(scores, np.float32))

    def detect_batch(self, images: list[np.ndarray]) -> list[FaceDetections]:
        return [self.detect(image) for image in images]


def test_a_face_filling_the_frame_gets_one_box_from_the_zoomed_out_pass() -> None:
    image = np.zeros((200, 300, 3), np.uint8)
    image[20:190, 60:240, 0] = 255  # a face 180 px wide in a 300 px frame
    detector = TwoBoxesWhenClose()
    first = detector.detect(image)
    assert len(first) == 2
    faces = closeup_pass(detector, image, first, trigger=0.3, min_score=0.5)
    assert detector.calls[-1] == (400, 600)  # looked again, on the canvas twice the size
    assert len(faces) == 1
    np.testing.assert_allclose(faces.xyxy[0], [60, 20, 240, 190], atol=1)  # in the frame's pixels


def test_small_faces_cost_no_second_pass() -> None:
    image = np.zeros((200, 300, 3), np.uint8)
    image[50:80, 100:130, 0] = 255
    detector = TwoBoxesWhenClose()
    first = detector.detect(image)
    assert closeup_pass(detector, image, first, trigger=0.3, min_score=0.5) is first
    assert len(detector.calls) == 1


def test_another_face_beside_the_close_one_is_kept() -> None:
    image = np.zeros((200, 300, 3), np.uint8)
    image[20:190, 60:240, 0] = 255
    image[5:25, 270:290, 1] = 255  # a small face in the corner, not inside the close one
    detector = TwoBoxesWhenClose()
    faces = closeup_pass(detector, image, detector.detect(image), trigger=0.3, min_score=0.5)
    assert len(faces) == 2
    assert any(np.allclose(box, [270, 5, 290, 25], atol=1) for box in faces.xyxy)


def test_the_canvas_holds_the_frame_in_its_middle() -> None:
    image = np.full((10, 20, 3), 7, np.uint8)
    canvas, (x0, y0) = zoomed_out(image)
    assert canvas.shape == (20, 40, 3) and (x0, y0) == (10, 5)
    assert (canvas[y0 : y0 + 10, x0 : x0 + 20] == 7).all() and canvas[0, 0, 0] == 114


def test_tracked_video_does_without_the_closeup_pass() -> None:
    from maskwatch.config import config_from_dict
    from maskwatch.monitor.pipeline import FacePipeline
    from maskwatch.wiring import build_monitor

    cfg = config_from_dict({})
    pipeline = FacePipeline(TwoBoxesWhenClose(), None, closeup_trigger=cfg.detector.closeup_trigger)  # type: ignore[arg-type]
    monitor = build_monitor(cfg, pipeline, source_name="clip", fps=25.0, live=False)
    assert cfg.detector.closeup_trigger > 0 and pipeline.closeup_trigger == cfg.detector.closeup_trigger
    assert monitor.pipeline.closeup_trigger == 0 and monitor.pipeline.detector is pipeline.detector


def test_a_close_face_near_the_border_is_not_taken_for_one_cut_off() -> None:
    from maskwatch.monitor.static import _at_edge

    # a face filling a 404x720 portrait frame, 28 px from its right border: whole, its motion counts
    assert not _at_edge(np.array([82.0, 154.0, 376.0, 465.0]), 404, 720)
    assert _at_edge(np.array([82.0, 154.0, 403.0, 465.0]), 404, 720)  # touching the border: cut off


class HairBoxedToo(TwoBoxesWhenClose):
    """Also boxes the hair above a close face as a second, large face, which the zoomed-out view does not do."""

    def detect(self, image: np.ndarray) -> FaceDetections:
        faces = super().detect(image)
        if image.shape[0] > 300:  # the zoomed-out canvas
            return faces
        hair = FaceDetections(xyxy=np.array([[40, 0, 260, 60]], np.float32), det_score=np.array([0.6], np.float32))
        return FaceDetections(
            xyxy=np.concatenate([faces.xyxy, hair.xyxy]), det_score=np.concatenate([faces.det_score, hair.det_score])
        )


def test_a_large_box_the_zoomed_out_view_does_not_confirm_is_dropped() -> None:
    image = np.zeros((200, 300, 3), np.uint8)
    image[40:190, 80:220, 0] = 255  # 140 px: close, but small enough to get one box at first
    detector = HairBoxedToo()
    first = detector.detect(image)
    assert len(first) == 2
    faces = closeup_pass(detector, image, first, trigger=0.3, min_score=0.5)
    assert len(faces) == 1
    np.testing.assert_allclose(faces.xyxy[0], [80, 40, 220, 190], atol=1)
