"""The tracker with faces that move by more than their size between detector frames, on synthetic frames.

A fast dancer leaves the place where the tracker expects him and a bystander's face, hidden behind him until then,
appears there; a passer-by crosses in front of a poster; a person moves by more than the buffered pass reaches.
"""

from __future__ import annotations

import numpy as np

from maskwatch.monitor.associate import lookalike_swaps, motion_pairs
from maskwatch.monitor.reid import appearance
from maskwatch.monitor.track import FaceTracker
from maskwatch.types import NO_TRACK, FaceDetections

H, W = 240, 320
FPS = 25.0
EVERY = 4  # the detector runs on every 4th frame


def _face(image: np.ndarray, box, colour: tuple[int, int, int], seed: int) -> None:
    """Paint a face-like patch: a coloured oval with a fixed dark pattern (eyes, mouth) of its own."""
    x1, y1, x2, y2 = (int(v) for v in box)
    patch = np.zeros((y2 - y1, x2 - x1, 3), np.uint8)
    patch[:] = colour
    rng = np.random.default_rng(seed)
    for _ in range(6):
        cx, cy = rng.integers(2, patch.shape[1] - 4), rng.integers(2, patch.shape[0] - 4)
        patch[cy : cy + 3, cx : cx + 4] = rng.integers(0, 80, 3)
    image[y1:y2, x1:x2] = patch


def _frame(faces: list[tuple[np.ndarray, tuple[int, int, int], int]]) -> np.ndarray:
    image = np.full((H, W, 3), 200, np.uint8)
    for box, colour, seed in faces:
        _face(image, box, colour, seed)
    return image


def _detections(boxes: list[np.ndarray]) -> FaceDetections:
    n = len(boxes)
    prob = np.tile(np.array([[0.1, 0.85, 0.05]], np.float32), (n, 1))
    return FaceDetections(np.array(boxes, np.float32).reshape(-1, 4), np.full(n, 0.9), np.ones(n, np.int64), prob)


DANCER = ((220, 120, 90), 1)
BYSTANDER = ((90, 140, 220), 2)


def test_a_fast_mover_keeps_his_track_when_a_face_appears_where_he_was() -> None:
    """The dancer stands over the bystander for 0.5 s, then moves on by more than his face width in one detector
    interval; the bystander's face appears under his last box. The dancer's id stays on the dancer."""
    tracker = FaceTracker(min_hits=2, reid_max_gap_s=5.0)
    dancer = np.array([40, 100, 76, 140], np.float32)
    frame = 0
    for _ in range(4):  # standing still: confirmed, his looks learnt
        tracker.update(_detections([dancer]), frame, frame / FPS, _frame([(dancer, *DANCER)]))
        frame += EVERY
    (dancer_id,) = tracker.update(_detections([dancer]), frame, frame / FPS, _frame([(dancer, *DANCER)])).faces.track_id
    moved = dancer + np.array([46, 0, 46, 0], np.float32)  # 46 px: more than his 36 px width
    bystander = np.array([40, 112, 66, 140], np.float32)  # smaller, lower, under where he stood
    ids = {}
    for _ in range(3):
        frame += EVERY
        image = _frame([(bystander, *BYSTANDER), (moved, *DANCER)])
        step = tracker.update(_detections([bystander, moved]), frame, frame / FPS, image)
        ids = {tuple(np.round(box)): int(i) for box, i in zip(step.faces.xyxy, step.faces.track_id, strict=True)}
        moved = moved + np.array([30, 0, 30, 0], np.float32)
    dancer_box = tuple(np.round(moved - np.array([30, 0, 30, 0], np.float32)))
    assert ids.get(dancer_box) == dancer_id
    assert ids.get(tuple(np.round(bystander))) != dancer_id


def test_a_passer_by_in_front_of_a_poster_does_not_take_its_track() -> None:
    """A static track (a poster: the life meter found no life) keeps only a detection that overlaps it well; a
    walker's face half over it starts a candidate of its own."""
    tracker = FaceTracker(min_hits=2)
    poster = np.array([100, 100, 130, 130], np.float32)
    for f in range(0, 40, EVERY):
        tracker.update(_detections([poster]), f, f / FPS)
    (track,) = tracker.tracks
    track.signs.static = True  # what the life meter writes after static_after_s without life
    walker = poster + np.array([12, -6, 16, -2], np.float32)  # IoU 0.4 with the poster: over the first pass's 0.3
    tracker.update(_detections([walker]), 40, 40 / FPS)
    assert track.last_frame < 40  # the poster did not take the walker's face
    tracker.update(_detections([poster]), 44, 44 / FPS)
    assert track.last_frame == 44 and tracker.tracks == [track]  # and the poster is still itself


def test_a_live_track_follows_a_face_beyond_the_buffered_reach() -> None:
    """A person (live) who moves 1.3 face heights in one detector interval: the buffered boxes overlap at IoU 0.2,
    under the gate; the motion pass pairs them by distance from the predicted centre."""
    tracker = FaceTracker(min_hits=2)
    box = np.array([20, 100, 50, 130], np.float32)
    for f in range(0, 16, EVERY):
        tracker.update(_detections([box]), f, f / FPS)
    (track,) = tracker.tracks
    track.signs.live = True  # what the life meter writes once he moved in the scene
    ids = set()
    for k, f in enumerate(range(16, 40, EVERY)):
        moved = box + np.array([40 * (k + 1), 0, 40 * (k + 1), 0], np.float32)
        step = tracker.update(_detections([moved]), f, f / FPS)
        ids.update(int(i) for i in step.faces.track_id if i != NO_TRACK)
    assert ids == {track.track_id} and tracker.confirmed_total == 1


def test_a_fast_mover_from_his_first_detection_becomes_one_person() -> None:
    """A face that moves 1.25 face heights per detector interval from the start: no overlap even on widened boxes,
    so a candidate is confirmed only through the motion pass, which for candidates needs the face to look alike."""
    tracker = FaceTracker(min_hits=3, reid_max_gap_s=5.0)
    box = np.array([10, 100, 42, 136], np.float32)
    ids = set()
    for k in range(6):
        moved = box + np.array([45 * k, 0, 45 * k, 0], np.float32)
        image = _frame([(moved, *DANCER)])
        step = tracker.update(_detections([moved]), EVERY * k, EVERY * k / FPS, image)
        ids.update(int(i) for i in step.faces.track_id if i != NO_TRACK)
    assert ids == {1} and tracker.confirmed_total == 1
    # without signatures (re-identification off) a candidate is not followed by motion alone
    tracker = FaceTracker(min_hits=3)
    for k in range(6):
        moved = box + np.array([45 * k, 0, 45 * k, 0], np.float32)
        tracker.update(_detections([moved]), EVERY * k, EVERY * k / FPS)
    assert tracker.confirmed_total == 0


def test_lookalike_swap_needs_a_free_face_that_looks_more_alike() -> None:
    image = _frame([(np.array([10, 10, 40, 40]), *DANCER), (np.array([60, 10, 90, 40]), *BYSTANDER)])
    dets = np.array([[60, 10, 90, 40], [10, 10, 40, 40]], np.float32)
    features = [appearance(image, dets[1])]  # the track looks like the dancer (detection 1)

    def feature(d: int):
        return appearance(image, dets[d])

    track_box = np.array([[62, 12, 92, 42]], np.float32)  # overlapping the bystander (detection 0)
    assert lookalike_swaps([(0, 0)], track_box, features, dets, [1], feature, 0.65) == [(0, 1)]
    assert lookalike_swaps([(0, 0)], track_box, [None], dets, [1], feature, 0.65) == [(0, 0)]  # looks unknown
    far = dets.copy()
    far[1] += np.array([200, 150, 200, 150], np.float32)  # the look-alike out of reach
    assert lookalike_swaps([(0, 0)], track_box, features, far, [1], feature, 0.65) == [(0, 0)]


def test_motion_pairs_reach_grows_with_unseen_updates_and_needs_a_similar_size() -> None:
    predicted = np.array([[0, 0, 20, 20]], np.float32)
    det = np.array([[45, 0, 65, 20]], np.float32)  # 2.25 heights away
    assert motion_pairs(predicted, np.array([0.0]), [None], det, lambda d: None, 0.5) == []
    assert motion_pairs(predicted, np.array([1.0]), [None], det, lambda d: None, 0.5) == [(0, 0)]
    big = np.array([[25, 0, 75, 50]], np.float32)  # close, but over twice the area
    assert motion_pairs(predicted, np.array([1.0]), [None], big, lambda d: None, 0.5) == []
