"""Small frames in overlapping tiles: each tile goes to the detector on its own, the boxes are merged.

The detector resizes a frame so its longer side is its input size, so on a small frame (a 360x640 phone clip) a
face of 12 px stays about 12 px, below the smallest anchors. Cut into overlapping tiles, each tile is enlarged to
the input size and the same face reaches the anchors. A face larger than the overlap can be cut by a tile's edge,
so the whole frame is detected too; all boxes are merged by NMS, and a box lying inside a stronger box of the same
face (a face cut by a tile edge) is dropped (:func:`maskwatch.metrics.suppress_nested`).

Frames whose longer side is above ``max_side`` are detected whole, as without tiling: their small faces are already
near the detector's input scale, and tiles would cost several passes per frame.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from maskwatch.metrics import suppress_nested
from maskwatch.models.base import Detector
from maskwatch.models.onnx_engine import nms
from maskwatch.types import FaceDetections

Window = tuple[int, int, int, int]
"""A tile as ``(x0, y0, x1, y1)`` in frame pixels, end exclusive."""


def spans(length: int, count: int, overlap: float) -> list[tuple[int, int]]:
    """``count`` windows ``(start, end)`` covering ``0..length``, neighbours sharing ``overlap`` of a window."""
    if count < 1:
        raise ValueError(f"a side is cut into at least one tile, got {count}")
    if not 0.0 <= overlap < 1.0:
        raise ValueError(f"tile overlap must be in [0, 1), got {overlap}")
    if count == 1:
        return [(0, length)]
    size = length / (count - (count - 1) * overlap)
    step = size * (1.0 - overlap)
    out = []
    for i in range(count):
        start = int(round(i * step))
        end = length if i == count - 1 else min(length, int(round(i * step + size)))
        out.append((start, end))
    return out


def tile_windows(height: int, width: int, grid: tuple[int, int], overlap: float) -> list[Window]:
    """The tiles of a ``height`` x ``width`` frame: ``grid`` is (tiles along the longer side, along the shorter
    side), so one setting serves portrait and landscape frames alike."""
    along_long, along_short = grid
    cols, rows = (along_long, along_short) if width >= height else (along_short, along_long)
    return [(x0, y0, x1, y1) for y0, y1 in spans(height, rows, overlap) for x0, x1 in spans(width, cols, overlap)]


def merge_detections(
    parts: Sequence[FaceDetections], *, nms_iou: float, nested_overlap: float, max_faces: int
) -> FaceDetections:
    """One frame's faces from several passes (boxes already in frame pixels): NMS at ``nms_iou``, then boxes
    nested in a stronger one (``nested_overlap`` of the smaller inside; 0: kept) dropped; best ``max_faces``."""
    parts = [p for p in parts if len(p)]
    if not parts:
        return FaceDetections.empty()
    xyxy = np.concatenate([p.xyxy for p in parts])
    scores = np.concatenate([p.det_score for p in parts])
    keep = nms(xyxy, scores, nms_iou)
    xyxy, scores = xyxy[keep], scores[keep]
    if nested_overlap > 0 and len(keep) > 1:
        kept = suppress_nested(xyxy, scores, nested_overlap)
        xyxy, scores = xyxy[kept], scores[kept]
    return FaceDetections(xyxy=xyxy[:max_faces], det_score=scores[:max_faces])


class TiledDetector:
    """A :class:`~maskwatch.models.base.Detector` that detects a small frame (longer side at most ``max_side``)
    as the whole frame plus ``grid`` overlapping tiles (see the module); larger frames go to ``inner`` unchanged.

    ``grid`` is (tiles along the longer side, tiles along the shorter side); ``overlap`` the share of a tile its
    neighbour also covers. ``whole_frame`` False skips the whole-frame pass (faces larger than the overlap may
    then be cut). ``tile_face_max`` (px, None: no limit): tiles contribute only faces up to this longer side, the
    larger ones coming from the whole frame. ``score_threshold`` and ``precision`` are the inner detector's.
    """

    def __init__(
        self,
        inner: Detector,
        *,
        grid: tuple[int, int] = (2, 2),
        overlap: float = 0.25,
        max_side: int = 640,
        whole_frame: bool = True,
        nms_iou: float = 0.4,
        nested_overlap: float = 0.6,
        max_faces: int = 200,
        tile_face_max: float | None = None,
    ) -> None:
        if min(grid) < 1:
            raise ValueError(f"tile grid must be at least 1x1, got {grid}")
        spans(2, 2, overlap)  # validates the overlap
        self.inner = inner
        self.grid = (int(grid[0]), int(grid[1]))
        self.overlap = float(overlap)
        self.max_side = int(max_side)
        self.whole_frame = bool(whole_frame)
        self.nms_iou = float(nms_iou)
        self.nested_overlap = float(nested_overlap)
        self.max_faces = int(max_faces)
        self.tile_face_max = tile_face_max
        self.precision: str = inner.precision

    @property
    def score_threshold(self) -> float:
        return self.inner.score_threshold

    @score_threshold.setter
    def score_threshold(self, value: float) -> None:
        self.inner.score_threshold = value

    def tiles_frame(self, image_bgr: np.ndarray) -> bool:
        """Whether ``image_bgr`` is small enough to be tiled."""
        return self.grid != (1, 1) and max(image_bgr.shape[:2]) <= self.max_side

    def detect(self, image_bgr: np.ndarray) -> FaceDetections:
        """Faces of one BGR frame in its pixels: tiled when the frame is small, else the inner detector's."""
        if not self.tiles_frame(image_bgr):
            return self.inner.detect(image_bgr)
        h, w = image_bgr.shape[:2]
        parts = [self.inner.detect(image_bgr)] if self.whole_frame else []
        for x0, y0, x1, y1 in tile_windows(h, w, self.grid, self.overlap):
            found = self.inner.detect(np.ascontiguousarray(image_bgr[y0:y1, x0:x1]))
            if self.tile_face_max is not None and len(found):
                found = found[(found.xyxy[:, 2:] - found.xyxy[:, :2]).max(axis=1) <= self.tile_face_max]
            if len(found):
                parts.append(
                    FaceDetections(xyxy=found.xyxy + np.array([x0, y0, x0, y0], np.float32), det_score=found.det_score)
                )
        return merge_detections(
            parts, nms_iou=self.nms_iou, nested_overlap=self.nested_overlap, max_faces=self.max_faces
        )

    def detect_batch(self, images_bgr: list[np.ndarray]) -> list[FaceDetections]:
        """:meth:`detect` for several frames, one by one."""
        return [self.detect(image) for image in images_bgr]


SMALL_FRAME_SIDE = 640
"""Frames whose longer side is at most this are tiled by :func:`small_frame_tiles` (the shipped input size)."""


def small_frame_tiles(inner: Detector, *, nms_iou: float, nested_overlap: float, max_faces: int) -> TiledDetector:
    """The tiling ``detector.tile_small_frames`` turns on, as measured by ``tools/small_faces.py``: frames up to
    640 px also cut in 2 tiles along the longer side (overlap 0.25), the tiles adding faces of at most 32 px."""
    return TiledDetector(
        inner,
        grid=(2, 1),
        overlap=0.25,
        max_side=SMALL_FRAME_SIDE,
        whole_frame=True,
        nms_iou=nms_iou,
        nested_overlap=nested_overlap,
        max_faces=max_faces,
        tile_face_max=32,
    )
