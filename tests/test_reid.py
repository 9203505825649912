"""Re-identification: a person lost beyond max_lost, or across a cut, keeps their id when seen again."""

from __future__ import annotations

import numpy as np

from maskwatch.monitor.reid import appearance, similarity
from maskwatch.monitor.track import FaceTracker
from maskwatch.types import FaceDetections


def _frame(color: tuple[int, int, int] | None, x: int) -> tuple[np.ndarray, FaceDetections]:
    """A grey frame with one coloured 'face' (with a darker hair band) at x, and its detection."""
    image = np.full((240, 320, 3), 90, np.uint8)
    if color is None:
        return image, FaceDetections.empty()
    image[60:80, x : x + 40] = (20, 30, 40)
    image[80:130, x : x + 40] = color
    faces = FaceDetections(xyxy=[[x, 80, x + 40, 130]], det_score=[0.9], class_id=[1], class_prob=[[0.1, 0.8, 0.1]])
    return image, faces


def _tracker() -> FaceTracker:
    return FaceTracker(min_hits=2, min_votes=2, max_lost=3, reid_max_gap_s=10.0, reid_similarity=0.8)


def test_signatures_match_the_same_face_and_not_another():
    image_a, faces_a = _frame((60, 120, 200), 100)
    image_b, faces_b = _frame((200, 60, 40), 30)
    image_c, faces_c = _frame((60, 120, 200), 30)
    a = appearance(image_a, faces_a.xyxy[0])
    assert similarity(a, appearance(image_c, faces_c.xyxy[0])) > 0.95
    assert similarity(a, appearance(image_b, faces_b.xyxy[0])) < 0.8
    assert appearance(image_a, np.array([400, 300, 420, 320])) is None and similarity(a, None) == 0.0


def _run(tracker: FaceTracker, plan: list[tuple[tuple[int, int, int] | None, int]], start: int = 0) -> list:
    ids = []
    for i, (color, x) in enumerate(plan, start):
        image, faces = _frame(color, x)
        step = tracker.update(faces, i, i / 10, image=image)
        ids.append(list(step.faces.track_id))
    return ids


def test_a_person_who_leaves_and_returns_keeps_the_id_and_a_stranger_does_not():
    blue, red = (60, 120, 200), (200, 60, 40)
    tracker = _tracker()
    ids = _run(tracker, [(blue, 100 + i) for i in range(5)] + [(None, 0)] * 20 + [(blue, 250)] * 4)
    assert ids[4] == [1] and ids[-1] == [1]  # lost for 2 s (max_lost is 3 frames): the same person again
    assert tracker.confirmed_total == 1
    ids = _run(tracker, [(None, 0)] * 20 + [(red, 250)] * 4, start=29)
    assert ids[-1] == [2]  # someone else


def test_a_dormant_person_ends_after_the_gap():
    tracker = _tracker()
    _run(tracker, [((60, 120, 200), 100)] * 4)
    ended = []
    for i in range(4, 200):
        ended += tracker.update(FaceDetections.empty(), i, i / 10).ended
    assert [t.track_id for t in ended] == [1]  # after max_lost it is dormant, after 10 s more it has left


def test_without_reid_a_lost_person_ends_at_max_lost():
    tracker = FaceTracker(min_hits=2, min_votes=2, max_lost=3)
    _run(tracker, [((60, 120, 200), 100)] * 4)
    ended = []
    for i in range(4, 9):
        ended += tracker.update(FaceDetections.empty(), i, i / 10).ended
    assert [t.track_id for t in ended] == [1]


def test_after_a_cut_only_a_face_that_looks_alike_continues_a_track():
    blue, red = (60, 120, 200), (200, 60, 40)
    tracker = _tracker()
    _run(tracker, [(blue, 100)] * 4)
    image, faces = _frame(red, 100)  # the same place, another face: a different shot
    step = tracker.update(faces, 4, 0.4, image=image, cut=True)
    assert len(step.faces) == 0  # not person 1 (a new candidate)
    image, faces = _frame(blue, 102)
    step = tracker.update(faces, 5, 0.5, image=image, cut=True)
    assert list(step.faces.track_id) == [1]
