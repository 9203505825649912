"""Frame rates from 1 to 240 fps: the tracking rules written in frames (detect stride, hits, votes, lost frames)
last as long in seconds at any rate, so a slow CCTV camera counts and alerts a person as a 25-fps one does.

The scene is drawn: a man without a mask walks slowly through a textured room for 8 s; the detector and the
classifier are fakes that find him where he is drawn and call him unmasked, so only the frame rate varies.
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from maskwatch.types import FaceDetections, Frame

AREA = "slow and fast cameras"
W, H = 640, 360
_ROOM = cv2.normalize(
    cv2.GaussianBlur(np.random.default_rng(7).integers(0, 255, (H, W, 3), dtype=np.uint8), (0, 0), 3),
    None, 40, 160, cv2.NORM_MINMAX,
)  # fmt: skip


def _walker(t: float) -> tuple[np.ndarray, list[float]]:
    """The room with the man at time ``t`` (50 px/s to the right, swaying a little) and his face box."""
    image = _ROOM.copy()
    cx, cy = int(120 + 50 * t), int(150 + 6 * np.sin(2 * t))
    cv2.rectangle(image, (cx - 60, cy + 60), (cx + 60, H), (70, 60, 140), -1)
    cv2.ellipse(image, (cx, cy), (40, 52), 0, 0, 360, (150, 180, 220), -1)
    for dx in (-14, 14):
        cv2.circle(image, (cx + dx, cy - 12), 4, (30, 30, 30), -1)
    cv2.line(image, (cx - 12, cy + 25), (cx + 12, cy + 25), (60, 60, 160), 3)
    return image, [cx - 42.0, cy - 55.0, cx + 42.0, cy + 55.0]


class _FindsHim:
    score_threshold = 0.5
    precision = "fp32"
    box: list[float] = [0.0, 0.0, 1.0, 1.0]

    def detect(self, image):
        return FaceDetections(xyxy=[self.box], det_score=[0.9])

    def detect_batch(self, images):
        return [self.detect(i) for i in images]


class _Unmasked:
    precision = "fp32"

    def classify(self, crops):
        return np.tile(np.array([[0.05, 0.9, 0.05]], np.float32), (len(crops), 1))


@pytest.mark.parametrize("fps", [1, 2, 3, 25, 240])
def test_a_person_is_counted_and_alerted_at_any_frame_rate(fps, record):
    from maskwatch.config import config_from_dict
    from maskwatch.monitor.pipeline import FacePipeline
    from maskwatch.wiring import build_monitor

    detector = _FindsHim()
    frames = 8 * fps
    monitor = build_monitor(config_from_dict({}), FacePipeline(detector, _Unmasked(), score_threshold=0.5),
                            source_name="cctv", fps=float(fps), live=False, frame_count=frames)  # fmt: skip
    alerts = []
    for i in range(frames):
        image, detector.box = _walker(i / fps)
        alerts += [e for e in monitor(Frame(image, i, i / fps)).events if e.event == "alert"]
    people = monitor.snapshot()["people_total"]
    grey = [t.track_id for t in monitor.tracker.tracks if not t.live]
    first = alerts[0].t_s if alerts else None
    ok = people == 1 and len(alerts) == 1 and first is not None and first <= 3.5 and not grey
    observed = f"{people} counted, {len(alerts)} alert(s)" + (f", the first at {first:.1f} s" if alerts else "")
    observed += f"; drawn grey (static): {bool(grey)}"
    record(AREA, f"unmasked man in view 8 s at {fps} fps", "counted once, alerted within 3.5 s, not static",
           observed, ok)  # fmt: skip
    assert ok, observed
