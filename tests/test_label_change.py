"""A change of mask state (on -> off, off -> on) shows within 0.5 s, and noisy probabilities do not flicker."""

from __future__ import annotations

import numpy as np
import pytest

from maskwatch.monitor.track import FaceTracker
from maskwatch.types import FaceDetections

WITH, WITHOUT = 0, 1
CLEAR = {WITH: [0.8, 0.15, 0.05], WITHOUT: [0.15, 0.8, 0.05]}


def _run(probs: list[np.ndarray], fps: float, every: int = 1) -> list[int]:
    """One face detected and classified on every ``every``-th frame with ``probs``; the decided label on each
    frame (the last one decided on the frames between)."""
    tracker = FaceTracker(min_hits=2, vote_window=15, vote_threshold=0.6, min_votes=3)
    labels: list[int] = []
    for f, prob in enumerate(probs):
        if f % every:
            labels.append(labels[-1])
            continue
        faces = FaceDetections(
            xyxy=np.array([[100, 100, 150, 160]], np.float32),
            det_score=np.array([0.9], np.float32),
            class_id=np.array([int(np.argmax(prob))]),
            class_prob=np.array([prob], np.float32),
        )
        step = tracker.update(faces, f, f / fps)
        labels.append(int(step.faces.class_id[0]) if len(step.faces) else -1)
    return labels


def _noisy(label_of, frames: int, seed: int, noise: float = 0.12) -> list[np.ndarray]:
    """Probabilities around the clear ones of ``label_of(frame)``, with Gaussian noise, renormalised."""
    rng = np.random.default_rng(seed)
    out = []
    for f in range(frames):
        p = np.clip(np.array(CLEAR[label_of(f)]) + rng.normal(0, noise, 3), 0.01, None)
        out.append(p / p.sum())
    return out


RATES = [(25.0, 4), (25.0, 1), (5.0, 1)]  # fps, detector stride (the default: every 4th frame at 25 fps)


@pytest.mark.parametrize(("fps", "every"), RATES)
@pytest.mark.parametrize(("before", "after"), [(WITHOUT, WITH), (WITH, WITHOUT)])
def test_a_change_of_mask_state_shows_within_half_a_second(fps: float, every: int, before: int, after: int) -> None:
    change = int(4 * fps)  # 4 s of one state, then 3 s of the other
    frames = change + int(3 * fps)
    for seed in range(3):
        labels = _run(_noisy(lambda f: before if f < change else after, frames, seed), fps, every)
        assert labels[change - 1] == before
        flips = [f for f in range(change, frames) if labels[f] == after]
        assert flips and (flips[0] - change) / fps <= 0.5, (seed, flips[:1])
        assert all(label == after for label in labels[flips[0] :])  # and stays


@pytest.mark.parametrize(("fps", "every"), RATES)
def test_noisy_probabilities_of_one_state_do_not_flicker(fps: float, every: int) -> None:
    frames = int(10 * fps)
    for seed in range(3):
        # a noisy classifier: the true class loses about one frame in ten
        labels = _run(_noisy(lambda f: WITHOUT, frames, seed, noise=0.35), fps, every)
        decided = labels[labels.index(WITHOUT) :]
        assert all(label == WITHOUT for label in decided), seed
