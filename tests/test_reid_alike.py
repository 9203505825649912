"""People dressed alike are told apart by the shape of their faces, and a lost person's id is not given to a face
where another person was a moment ago."""

from __future__ import annotations

import numpy as np

from maskwatch.monitor.reid import appearance, held_elsewhere, similarity
from maskwatch.monitor.track import FaceTracker
from maskwatch.types import FaceDetections

TINT = np.array([0.55, 0.75, 1.0])  # one skin-like colour for everybody


def _face(kind: str) -> np.ndarray:
    """A 50 x 40 face in the one colour: the same colours in the same amounts, different strokes (horizontal
    features: brows, eyes, mouth; or vertical ones)."""
    rows, cols = np.mgrid[0:50, 0:40]
    gray = np.where(((rows if kind == "across" else cols) // 3) % 2 == 0, 250, 160)
    return (gray[..., None] * TINT).astype(np.uint8)


def _frame(kind: str | None, x: int) -> tuple[np.ndarray, FaceDetections]:
    image = np.full((240, 320, 3), 90, np.uint8)
    if kind is None:
        return image, FaceDetections.empty()
    image[60:80, x : x + 40] = (20, 30, 40)  # hair
    image[80:130, x : x + 40] = _face(kind)
    faces = FaceDetections(xyxy=[[x, 80, x + 40, 130]], det_score=[0.9], class_id=[1], class_prob=[[0.1, 0.8, 0.1]])
    return image, faces


def test_alike_colours_different_faces_are_not_one_person() -> None:
    image_a, faces_a = _frame("across", 100)
    image_b, faces_b = _frame("down", 100)
    image_c, faces_c = _frame("across", 30)
    a = appearance(image_a, faces_a.xyxy[0])
    assert similarity(a, appearance(image_c, faces_c.xyxy[0])) > 0.95  # the same face elsewhere
    assert similarity(a, appearance(image_b, faces_b.xyxy[0])) < 0.65  # another face, the same colours


def test_someone_dressed_alike_who_comes_in_after_a_person_left_gets_a_new_id() -> None:
    tracker = FaceTracker(min_hits=2, min_votes=2, max_lost=3, reid_max_gap_s=10.0, reid_similarity=0.65)
    plan = [("across", 100 + i) for i in range(5)] + [(None, 0)] * 10 + [("down", 104)] * 4
    ids = []
    for i, (kind, x) in enumerate(plan):
        image, faces = _frame(kind, x)
        ids.append(list(tracker.update(faces, i, i / 10, image=image).faces.track_id))
    assert ids[4] == [1] and ids[-1] == [2]


def test_a_face_where_another_person_was_a_moment_ago_is_held_elsewhere() -> None:
    box = np.array([100, 100, 140, 150], np.float64)
    near = (np.array([125, 105, 165, 155], np.float64), 9.6)  # another person's track, last seen 0.4 s ago
    assert held_elsewhere(box, 10.0, [near])
    assert not held_elsewhere(box, 10.0, [(near[0], 8.0)])  # 2 s ago: gone
    assert not held_elsewhere(box, 10.0, [(np.array([260, 100, 300, 150], np.float64), 9.9)])  # far away
