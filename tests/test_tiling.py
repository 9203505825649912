"""Tiling small frames: tiles cover the frame, a small face reaches the detector's scale, one box per face."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from maskwatch.metrics import box_iou
from maskwatch.models.tiling import TiledDetector, merge_detections, spans, tile_windows
from maskwatch.types import FaceDetections


class SquareFinder:
    """A detector standing in for the real one's scale limit: it resizes the frame so its longer side is
    ``input_size`` (as the real one does) and boxes the white squares that are then at least ``min_side`` px on
    each side, larger ones scoring higher; the boxes are in the frame's pixels."""

    def __init__(self, input_size: int = 640, min_side: int = 16) -> None:
        self.input_size, self.min_side = input_size, min_side
        self.score_threshold, self.precision = 0.5, "int8"
        self.calls: list[tuple[int, int]] = []

    def detect(self, image: np.ndarray) -> FaceDetections:
        self.calls.append(image.shape[:2])
        scale = self.input_size / max(image.shape[:2])
        mask = (image.min(axis=2) >= 250).astype(np.uint8)
        _, _, stats, _ = cv2.connectedComponentsWithStats(mask)
        boxes, scores = [], []
        for x, y, w, h, _ in stats[1:]:
            if min(w, h) * scale >= self.min_side:
                boxes.append([x, y, x + w, y + h])
                scores.append(0.5 + min(w, h) / 1000)
        return FaceDetections(xyxy=np.array(boxes, np.float32).reshape(-1, 4), det_score=np.array(scores, np.float32))

    def detect_batch(self, images: list[np.ndarray]) -> list[FaceDetections]:
        return [self.detect(image) for image in images]


def portrait(*squares: tuple[int, int, int]) -> np.ndarray:
    """A grey 360x640 portrait frame with white squares (x, y, side)."""
    image = np.full((640, 360, 3), 90, np.uint8)
    for x, y, side in squares:
        image[y : y + side, x : x + side] = 255
    return image


@pytest.mark.parametrize("length,count,overlap", [(640, 1, 0.25), (640, 2, 0.25), (360, 2, 0.0), (361, 3, 0.3)])
def test_spans_cover_the_side_and_neighbours_share_the_overlap(length: int, count: int, overlap: float) -> None:
    cut = spans(length, count, overlap)
    assert len(cut) == count
    assert cut[0][0] == 0 and cut[-1][1] == length
    size = cut[0][1] - cut[0][0]
    for (_, a1), (b0, b1) in zip(cut, cut[1:], strict=False):
        assert b0 <= a1  # no gap
        assert abs((a1 - b0) - overlap * size) <= 1
        assert abs((b1 - b0) - size) <= 1  # tiles of one size


@pytest.mark.parametrize(
    "count,overlap,error", [(0, 0.25, "at least one tile"), (2, 1.0, "overlap"), (2, -0.1, "overlap")]
)
def test_spans_refuse_impossible_tiles(count: int, overlap: float, error: str) -> None:
    with pytest.raises(ValueError, match=error):
        spans(640, count, overlap)


def test_the_grid_counts_along_the_longer_side_in_both_orientations() -> None:
    tall = tile_windows(640, 360, (2, 1), 0.25)
    wide = tile_windows(360, 640, (2, 1), 0.25)
    assert [(x0, x1) for x0, _, x1, _ in tall] == [(0, 360), (0, 360)]  # portrait: cut top and bottom
    assert [(y0, y1) for _, y0, _, y1 in wide] == [(0, 360), (0, 360)]  # landscape: cut left and right
    assert len(tile_windows(640, 360, (2, 2), 0.25)) == 4


def test_a_small_face_missed_on_the_whole_frame_is_found_in_a_tile() -> None:
    image = portrait((40, 100, 11))  # 11 px: below the stand-in's 16 px at scale 1
    inner = SquareFinder()
    assert len(inner.detect(image)) == 0
    faces = TiledDetector(inner, grid=(2, 2)).detect(image)
    assert len(faces) == 1
    assert box_iou(faces.xyxy, [[40, 100, 51, 111]])[0, 0] > 0.95


def test_a_face_on_a_tile_seam_gets_one_box() -> None:
    grid = TiledDetector(SquareFinder(), grid=(2, 1), overlap=0.25)
    seam = tile_windows(640, 360, (2, 1), 0.25)[0][3]  # bottom edge of the top tile, inside the bottom tile
    image = portrait((100, seam - 10, 14))  # 14 px: found in tiles only; cut by the top tile's edge
    assert len(grid.inner.detect(image[:seam])) == 1  # the top tile boxes the part it sees
    faces = grid.detect(image)
    assert len(faces) == 1
    assert box_iou(faces.xyxy, [[100, seam - 10, 114, seam + 4]])[0, 0] > 0.95


def test_a_face_larger_than_the_overlap_is_boxed_once_thanks_to_the_whole_frame() -> None:
    image = portrait((30, 150, 300))  # crosses both seams of a 2x1 grid and is larger than the overlap
    tiles_only = TiledDetector(SquareFinder(), grid=(2, 1), whole_frame=False).detect(image)
    assert len(tiles_only) == 2  # each tile sees a part of it: why the whole frame is detected too
    faces = TiledDetector(SquareFinder(), grid=(2, 1)).detect(image)
    assert len(faces) == 1
    assert box_iou(faces.xyxy, [[30, 150, 330, 450]])[0, 0] > 0.99


def test_large_frames_and_a_1x1_grid_go_to_the_inner_detector_once() -> None:
    inner = SquareFinder()
    big = np.full((720, 1280, 3), 90, np.uint8)
    TiledDetector(inner, grid=(2, 2), max_side=640).detect(big)
    assert inner.calls == [(720, 1280)]
    inner.calls.clear()
    TiledDetector(inner, grid=(1, 1)).detect(portrait())
    assert inner.calls == [(640, 360)]
    inner.calls.clear()
    TiledDetector(inner, grid=(2, 2)).detect_batch([portrait(), portrait()])
    assert len(inner.calls) == 2 * 5  # the whole frame and four tiles, each frame


def test_the_threshold_and_precision_are_the_inner_detectors() -> None:
    inner = SquareFinder()
    tiled = TiledDetector(inner)
    assert (tiled.score_threshold, tiled.precision) == (0.5, "int8")
    tiled.score_threshold = 0.3  # what a monitor asking for weaker faces sets
    assert inner.score_threshold == 0.3


def test_merge_keeps_the_best_of_overlapping_boxes_and_caps_the_count() -> None:
    a = FaceDetections(xyxy=[[0, 0, 10, 10], [50, 50, 60, 60]], det_score=[0.9, 0.6])
    b = FaceDetections(xyxy=[[1, 1, 10, 10], [52, 52, 58, 58], [100, 100, 110, 110]], det_score=[0.7, 0.95, 0.8])
    merged = merge_detections([a, FaceDetections.empty(), b], nms_iou=0.4, nested_overlap=0.6, max_faces=2)
    assert merged.det_score.tolist() == pytest.approx([0.95, 0.9])  # nested 0.6 box and the cap drop the rest
    assert len(merge_detections([], nms_iou=0.4, nested_overlap=0.6, max_faces=5)) == 0


def test_tiles_can_be_limited_to_small_faces_leaving_large_ones_to_the_whole_frame() -> None:
    image = portrait((30, 150, 300), (40, 40, 11))  # a face cut by both seams and a small one in a corner
    tiles_only = TiledDetector(SquareFinder(), grid=(2, 1), whole_frame=False, tile_face_max=32).detect(image)
    assert box_iou(tiles_only.xyxy, [[40, 40, 51, 51]]).ravel().tolist() == [pytest.approx(1.0)]  # pieces dropped
    faces = TiledDetector(SquareFinder(), grid=(2, 1), tile_face_max=32).detect(image)
    assert box_iou(faces.xyxy, [[30, 150, 330, 450], [40, 40, 51, 51]]).max(axis=0).min() > 0.99
    assert len(faces) == 2


def test_the_config_switch_wraps_the_detector_and_only_small_frames_are_tiled() -> None:
    from maskwatch.config import Config
    from maskwatch.wiring import with_tiling

    inner = SquareFinder()
    assert with_tiling(Config(), inner) is inner  # off by default
    tiled = with_tiling(Config.model_validate({"detector": {"tile_small_frames": True}}), inner)
    assert isinstance(tiled, TiledDetector) and tiled.inner is inner
    tiled.detect(portrait())
    assert inner.calls == [(640, 360), (366, 360), (366, 360)]  # the frame, then its two tiles
    inner.calls.clear()
    tiled.detect(np.zeros((641, 360, 3), np.uint8))
    assert inner.calls == [(641, 360)]
