"""Tracking rules counted in frames, held in seconds at any frame rate.

``tracking.detect_every``, ``min_hits``, ``min_votes``, ``vote_window`` and ``max_lost`` are counts of frames or
of detections. Their configured values are what a source at :data:`REFERENCE_FPS` gets; at another frame rate
each becomes the count that lasts as long. A 2-fps CCTV camera with the counts of a 25-fps one would detect every
2 s and need 6 s to confirm a person; a 240-fps clip would drop an id after an eighth of a second.
"""

from __future__ import annotations

from dataclasses import dataclass

REFERENCE_FPS = 25.0
"""The frame rate the configured counts are written for (the video benchmark's)."""


@dataclass(frozen=True)
class FrameRules:
    """The counts a source at ``fps`` uses."""

    detect_every: int
    """Frames between detector runs."""
    min_hits: int
    """Detections before a track is a person."""
    min_votes: int
    """Classifications (one per detection) before a label is decided."""
    vote_window: int
    """Recent classifications the label is voted over."""
    max_lost: int
    """Frames a person may go unseen and keep the id."""


def frame_rules(
    fps: float, *, detect_every: int, min_hits: int, min_votes: int, vote_window: int, max_lost: int
) -> FrameRules:
    """The counts that last at ``fps`` what the configured ones last at :data:`REFERENCE_FPS`.

    Confirmation and decision keep at least two detections where two or more are configured (one frame alone is
    never a person), and a track always survives the frames between two detector runs. ``detect_every`` 1 stays
    1 (detect on every frame, at any rate).
    """
    fps = fps if fps and fps > 0 else REFERENCE_FPS
    every = 1 if detect_every == 1 else max(1, round(detect_every * fps / REFERENCE_FPS))  # 1: every frame
    detections = (fps / every) / (REFERENCE_FPS / detect_every)  # detections per second against the reference

    def scaled(count: int) -> int:
        return max(min(count, 2), round(count * detections))

    votes = scaled(min_votes)
    return FrameRules(
        detect_every=every,
        min_hits=scaled(min_hits),
        min_votes=votes,
        vote_window=max(votes, round(vote_window * detections)),
        max_lost=max(every + 1, round(max_lost * fps / REFERENCE_FPS)),
    )
