"""The face tracker on synthetic trajectories: ids, occlusions, skipped frames, label voting, low scores."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pytest

from maskwatch.metrics import box_iou as iou_matrix
from maskwatch.monitor.kalman import linear_assignment
from maskwatch.monitor.track import FaceTracker, Track, TrackStep
from maskwatch.types import NO_TRACK, UNDECIDED, FaceDetections

WITH, WITHOUT = 0, 1
PROBS = {WITH: [0.8, 0.15, 0.05], WITHOUT: [0.1, 0.85, 0.05]}
FPS = 10.0


@dataclass
class Person:
    """A face moving with constant velocity; ``hidden`` frames are not detected."""

    x: float
    y: float
    vx: float
    vy: float
    size: float = 60.0
    start: int = 0
    end: int = 10**9
    hidden: set[int] = field(default_factory=set)
    cls: Callable[[int], int] = lambda f: WITHOUT
    score: Callable[[int], float] = lambda f: 0.9

    def box(self, f: int) -> np.ndarray:
        x, y = self.x + self.vx * f, self.y + self.vy * f
        return np.array([x, y, x + self.size, y + self.size], np.float32)

    def visible(self, f: int) -> bool:
        return self.start <= f < self.end and f not in self.hidden


def render(people: list[Person], f: int, rng: np.random.Generator, noise: float = 1.0) -> tuple[FaceDetections, list]:
    """Detections of frame ``f`` (visible people with box noise and class output, shuffled) and who each one is."""
    rows = []
    for i, p in enumerate(people):
        if p.visible(f):
            cid = p.cls(f)
            prob = PROBS[cid] if cid != UNDECIDED else [0.0, 0.0, 0.0]
            rows.append((i, p.box(f) + rng.normal(0, noise, 4).astype(np.float32), p.score(f), cid, prob))
    rows = [rows[k] for k in rng.permutation(len(rows))]
    if not rows:
        return FaceDetections.empty(), []
    boxes, scores, cids, probs = (np.array([r[k] for r in rows]) for k in range(1, 5))
    return FaceDetections(boxes, scores, cids, probs), [r[0] for r in rows]


@dataclass
class Run:
    steps: dict[int, TrackStep] = field(default_factory=dict)
    ids: dict[int, list[tuple[int, int]]] = field(default_factory=dict)  # person -> [(frame, track id)]
    false_rows: int = 0
    ious: list[float] = field(default_factory=list)  # IoU of each predicted row with its person's true box

    def unique_ids(self, person: int) -> set[int]:
        return {tid for _, tid in self.ids.get(person, [])}

    def switches(self, person: int) -> int:
        seq = [tid for _, tid in self.ids.get(person, [])]
        return sum(a != b for a, b in itertools.pairwise(seq))

    @property
    def ended(self) -> list[Track]:
        return [t for step in self.steps.values() for t in step.ended]


def simulate(
    tracker: FaceTracker, people: list[Person], frames: int, *, every: int = 1, seed: int = 0, noise: float = 1.0
) -> Run:
    """Run the tracker over ``frames`` frames (detecting every ``every``-th) and attribute its rows to people."""
    rng = np.random.default_rng(seed)
    run = Run()
    for f in range(frames):
        if f % every == 0:
            faces, owners = render(people, f, rng, noise)
            step = tracker.update(faces, f, f / FPS)
        else:
            step = tracker.predict(f, f / FPS)
        run.steps[f] = step
        assert np.all(step.faces.track_id != NO_TRACK)
        assert len(set(step.faces.track_id.tolist())) == len(step.faces)
        truth = [i for i, p in enumerate(people) if p.start <= f < p.end]
        iou = iou_matrix(step.faces.xyxy, np.array([people[i].box(f) for i in truth]))
        if f % every == 0:  # rows carry the detector's boxes: attribute each to the person it came from
            pairs = [(r, int(np.flatnonzero((faces.xyxy == step.faces.xyxy[r]).all(1))[0])) for r in range(len(iou))]
            who = {r: owners[d] for r, d in pairs}
        else:  # predicted boxes: optimal assignment to the true boxes
            who = {r: truth[j] for r, j in linear_assignment(1 - iou) if iou[r, j] >= 0.3}
        for r in range(len(step.faces)):
            if r not in who:
                run.false_rows += 1
                continue
            run.ids.setdefault(who[r], []).append((f, int(step.faces.track_id[r])))
            if f % every:
                run.ious.append(float(iou[r, truth.index(who[r])]))
    return run


def test_iou_and_assignment() -> None:
    a = np.array([[0, 0, 10, 10]])
    b = np.array([[0, 0, 10, 10], [5, 0, 15, 10], [20, 20, 30, 30], [3, 3, 3, 3]])
    np.testing.assert_allclose(iou_matrix(a, b), [[1.0, 50 / 150, 0.0, 0.0]])
    assert iou_matrix(np.zeros((0, 4)), b).shape == (0, 4)
    rng = np.random.default_rng(1)
    for shape in [(1, 1), (3, 3), (2, 5), (5, 2), (4, 4), (6, 3)]:
        cost = rng.random(shape).round(2)
        pairs = linear_assignment(cost)
        k = min(shape)
        assert len(pairs) == k and len({r for r, _ in pairs}) == k and len({c for _, c in pairs}) == k
        best = min(
            sum(cost[r, c] for r, c in zip(rows, cols, strict=True))
            for rows in itertools.permutations(range(shape[0]), k)
            for cols in itertools.combinations(range(shape[1]), k)
        )
        assert sum(cost[r, c] for r, c in pairs) == pytest.approx(best)
    assert linear_assignment(np.zeros((0, 3))) == []


def test_empty_inputs() -> None:
    tracker = FaceTracker()
    step = tracker.update(FaceDetections.empty(), 0, 0.0)
    assert len(step.faces) == 0 and step.ended == [] and step.tentative == 0
    assert len(tracker.predict(1, 0.1).faces) == 0
    assert tracker.finish() == [] and tracker.tracks == [] and tracker.confirmed_total == 0


def test_single_person_one_id_after_min_hits() -> None:
    tracker = FaceTracker(min_hits=3)
    run = simulate(tracker, [Person(20, 50, 4, 1)], 40)
    assert len(run.steps[0].faces) == 0 and len(run.steps[1].faces) == 0
    assert run.steps[0].tentative == 1 and run.steps[1].tentative == 1
    assert run.steps[2].faces.track_id.tolist() == [1] and run.steps[2].tentative == 0
    assert run.ids[0] == [(f, 1) for f in range(2, 40)]
    assert run.false_rows == 0 and tracker.confirmed_total == 1 and run.ended == []
    track = tracker.tracks[0]
    assert (track.first_frame, track.last_frame, track.hits) == (0, 39, 40)
    assert track.duration_s == pytest.approx(3.9)


@pytest.mark.parametrize("dy", [0.0, 10.0])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_crossing_people_keep_their_ids(dy: float, seed: int) -> None:
    # 60 px faces 365 px apart closing at 10 px/frame: boxes overlap on frames 31..42, 5 px apart at 36 and 37.
    people = [Person(20, 100, 5, 0), Person(385, 100 + dy, -5, 0)]
    run = simulate(FaceTracker(), people, 70, seed=seed)
    assert run.unique_ids(0) | run.unique_ids(1) == {1, 2}
    assert len(run.unique_ids(0)) == len(run.unique_ids(1)) == 1
    assert run.switches(0) == run.switches(1) == 0
    assert run.false_rows == 0 and len(run.ids[0]) == len(run.ids[1]) == 68


def test_occlusion_shorter_than_max_lost_keeps_id() -> None:
    tracker = FaceTracker(max_lost=30)
    run = simulate(tracker, [Person(20, 50, 3, 1, hidden=set(range(20, 30)))], 60)
    assert run.unique_ids(0) == {1} and run.switches(0) == 0
    assert [f for f, _ in run.ids[0]] == [f for f in range(2, 60) if not 20 <= f < 30]
    assert run.ended == [] and tracker.confirmed_total == 1
    assert tracker.tracks[0].hits == 50


def test_occlusion_longer_than_max_lost_gives_new_id() -> None:
    tracker = FaceTracker(max_lost=30)
    run = simulate(tracker, [Person(20, 50, 3, 1, hidden=set(range(20, 55)))], 70)
    assert run.unique_ids(0) == {1, 2} and run.switches(0) == 1
    assert [len(run.steps[f].ended) for f in range(70)].count(1) == 1
    assert [t.track_id for t in run.steps[50].ended] == [1]  # last seen at 19, 50 - 19 > 30
    ended = run.steps[50].ended[0]
    assert ended.last_frame == 19 and ended.hits == 20
    assert iou_matrix(ended.xyxy, Person(20, 50, 3, 1).box(19))[0, 0] > 0.8  # its last detected box
    assert run.ids[0][-1] == (69, 2) and run.ids[0][run.ids[0].index((57, 2)) - 1] == (19, 1)
    assert tracker.confirmed_total == 2 and [t.track_id for t in tracker.finish()] == [2]


@pytest.mark.parametrize("every", [2, 3])
def test_detect_every_nth_frame_predicts_motion(every: int) -> None:
    # 8 px/frame: a box held still for two frames would overlap its true box by IoU 0.58 only.
    people = [Person(20, 50, 8, 2), Person(500, 300, -6, -1)]
    tracker = FaceTracker()
    run = simulate(tracker, people, 60, every=every)
    assert run.unique_ids(0) == {1} and run.unique_ids(1) == {2}
    assert run.switches(0) == run.switches(1) == 0 and run.false_rows == 0
    first = 2 * every  # confirmed on the third detected frame, then shown on every frame
    assert [f for f, _ in run.ids[0]] == list(range(first, 60))
    assert len(run.ious) == 2 * sum(1 for f in range(first, 60) if f % every)
    assert min(run.ious) > 0.7 and np.mean(run.ious) > 0.85


def test_frame_gaps_without_predict_calls() -> None:
    """update() alone with frame indices jumping by 4: the motion model advances by the gap."""
    tracker = FaceTracker()
    rng = np.random.default_rng(3)
    person = Person(20, 50, 6, 0)
    for f in range(0, 80, 4):
        step = tracker.update(render([person], f, rng)[0], f, f / FPS)
    assert step.faces.track_id.tolist() == [1] and tracker.confirmed_total == 1
    assert iou_matrix(tracker.predict(81, 8.1).faces.xyxy, person.box(81))[0, 0] > 0.85


def _labels(run: Run, frames: range) -> list[int]:
    return [int(run.steps[f].faces.class_id[0]) for f in frames]


def test_vote_flickering_classifier_decides_majority_and_holds() -> None:
    flicker = [WITHOUT, WITHOUT, WITH, WITHOUT, WITHOUT, WITH, WITHOUT, WITHOUT, WITH, WITHOUT]  # 70 % without
    tracker = FaceTracker(vote_window=15, vote_threshold=0.6, min_votes=3)
    run = simulate(tracker, [Person(20, 50, 2, 0, cls=lambda f: flicker[f % 10])], 60)
    # Frame 2 (confirmed): 2 of 3 votes without -> below min_votes; frame 3: 3 of 4 -> decided.
    assert _labels(run, range(2, 60)) == [UNDECIDED] + [WITHOUT] * 57
    np.testing.assert_allclose(run.steps[2].faces.class_prob[0], np.mean([PROBS[c] for c in flicker[:3]], 0))
    track = tracker.tracks[0]
    window = [flicker[f % 10] for f in range(45, 60)]
    assert track.label == WITHOUT
    assert track.confidence == pytest.approx(np.mean([PROBS[c][WITHOUT] for c in window]))


def test_vote_needs_min_votes() -> None:
    tracker = FaceTracker(min_votes=5)
    cls = lambda f: UNDECIDED if f < 3 else WITHOUT  # noqa: E731
    run = simulate(tracker, [Person(20, 50, 2, 0, cls=cls)], 12)
    assert _labels(run, range(2, 12)) == [UNDECIDED] * 5 + [WITHOUT] * 5  # 5th vote on frame 7
    assert not run.steps[2].faces.class_prob.any() and tracker.tracks[0].confidence == pytest.approx(0.85)


def test_vote_follows_a_clear_change_at_once() -> None:
    tracker = FaceTracker(vote_window=15, vote_threshold=0.6, min_votes=3)
    run = simulate(tracker, [Person(20, 50, 2, 0, cls=lambda f: WITHOUT if f < 30 else WITH)], 50)
    # The change detector takes the second WITH vote (frame 31), long before the window's majority (frame 38).
    assert _labels(run, range(2, 31)) == [WITHOUT] * 29
    assert _labels(run, range(31, 50)) == [WITH] * 19
    assert tracker.tracks[0].confidence == pytest.approx(0.8)


def test_low_score_detections_extend_but_do_not_start_or_vote() -> None:
    low = set(range(15, 25))
    person = Person(
        20,
        50,
        4,
        1,
        score=lambda f: 0.3 if f in low else 0.9,
        cls=lambda f: WITH if f in low else WITHOUT,
    )
    loner = Person(400, 300, 0, 0, score=lambda f: 0.3)
    weak = Person(400, 50, 0, 0, score=lambda f: 0.55)  # confident enough to match, not to start a track
    tracker = FaceTracker()
    run = simulate(tracker, [person, loner, weak], 40)
    assert run.unique_ids(0) == {1} and [f for f, _ in run.ids[0]] == list(range(2, 40))
    assert 1 not in run.ids and 2 not in run.ids and run.false_rows == 0
    assert _labels(run, range(15, 25)) == [WITHOUT] * 10  # low-score crops do not vote
    np.testing.assert_allclose(run.steps[20].faces.det_score, [0.3])
    assert tracker.confirmed_total == 1 and all(run.steps[f].tentative == 0 for f in range(2, 40))
    assert tracker.tracks[0].hits == 40 and len(tracker.tracks[0].votes) == 15


def test_finish_and_confirmed_total() -> None:
    people = [
        Person(20, 50, 3, 0, end=30),
        Person(300, 200, -2, 1, start=5),
        Person(600, 400, 0, 0, start=10, end=11),  # one-frame false positive
        Person(100, 400, 0, 0, start=20, end=22),  # two frames: never reaches min_hits
    ]
    tracker = FaceTracker(max_lost=5)
    run = simulate(tracker, people, 50)
    assert run.false_rows == 0 and 2 not in run.ids and 3 not in run.ids
    assert [t.track_id for t in run.ended] == [1] and run.steps[35].ended[0].last_frame == 29
    assert tracker.confirmed_total == 2
    finished = tracker.finish()
    assert [t.track_id for t in finished] == [2]
    assert (finished[0].first_frame, finished[0].last_frame) == (5, 49)
    assert finished[0].duration_s == pytest.approx(4.4)
    assert tracker.tracks == [] and len(tracker.update(FaceDetections.empty(), 50, 5.0).faces) == 0
    assert tracker.confirmed_total == 2


def test_a_different_sized_face_in_the_same_place_is_a_new_person():
    """The next person at the door (or a scene cut) must not inherit the previous person's id."""
    tracker = FaceTracker(min_hits=2, max_lost=30)
    small = FaceDetections(xyxy=[[540, 140, 730, 345]], det_score=[0.9], class_id=[0], class_prob=[[0.9, 0.05, 0.05]])
    large = FaceDetections(xyxy=[[512, 142, 800, 500]], det_score=[0.9], class_id=[1], class_prob=[[0.1, 0.8, 0.1]])
    for i in range(10):
        tracker.update(small, i, i / 25)
    for i in range(10, 35):  # 1 s without faces: the first track is lost but kept
        tracker.update(FaceDetections.empty(), i, i / 25)
    ids = [tracker.update(large, i, i / 25).faces.track_id.tolist() for i in range(35, 40)]
    assert ids[-1] == [2]
    assert tracker.confirmed_total == 2
    # the same face size reappearing there keeps its id (an occlusion, not a new person)
    tracker = FaceTracker(min_hits=2, max_lost=30)
    for i in range(10):
        tracker.update(small, i, i / 25)
    for i in range(10, 35):
        tracker.update(FaceDetections.empty(), i, i / 25)
    assert tracker.update(small, 35, 35 / 25).faces.track_id.tolist() == [1]


@pytest.mark.parametrize("hold", [0.0, 1.0])
def test_a_lost_track_that_never_moved_is_held_where_it_was(hold: float) -> None:
    # a face still for 2 s (a poster), whose box then slides as someone walks in front of it, then hidden
    tracker = FaceTracker(min_hits=2, hold_unmoved_s=hold)
    for f in range(30):
        box = np.array([[100 + 4 * max(0, f - 20), 100, 160, 180]], np.float32)  # the last 10 frames: sliding
        tracker.update(FaceDetections(xyxy=box, det_score=[0.9]), f, f / 10)
    last = tracker.tracks[0].det_xyxy.copy()
    for f in range(30, 45):
        tracker.update(FaceDetections.empty(), f, f / 10)
    (track,) = tracker.tracks
    assert track.state == "lost" and not track.live
    if hold:  # held at its last box
        np.testing.assert_allclose(track.xyxy, last, atol=1e-3)
    else:  # coasting on the velocity the slide gave it
        assert track.xyxy[0] - last[0] > 5


def test_a_face_moving_more_than_its_size_per_update_is_still_one_person() -> None:
    # 36 px per detector frame for a 52 px face (a walker crossing the view, detector on every 4th frame):
    # consecutive boxes overlap at IoU 0.18, under the gate; the buffered pass still pairs them
    tracker = FaceTracker(min_hits=3)
    ids = set()
    for f in range(10):
        box = np.array([[20 + 36 * f, 100, 72 + 36 * f, 160]], np.float32)
        step = tracker.update(FaceDetections(xyxy=box, det_score=[0.9]), 4 * f, 4 * f / 15)
        ids.update(int(i) for i in step.faces.track_id if i != NO_TRACK)
    assert ids == {1} and tracker.confirmed_total == 1
