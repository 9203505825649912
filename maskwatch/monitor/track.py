"""ByteTrack-style face tracking (numpy only) with a per-track vote over the classifier's labels.

Each track carries a constant-velocity Kalman filter on ``(cx, cy, w/h, h)``. Every detection update first matches
the confident detections to all alive tracks, then the low-score ones to the tracks still being tracked (Zhang et
al., ByteTrack, 2022); matching is an optimal assignment on ``1 - IoU`` with an IoU gate, and what is left of the
tracks seen last time and the confident detections is matched again on boxes widened by half their size (a face
that moved more than its size between detector frames: Yang et al., C-BIoU, 2023). Three rules keep a fast
mover's identity (:mod:`maskwatch.monitor.associate`): a person's track that overlaps a face that does not look
like them while one that does is free close by takes that one instead (the face under a dancer's last box is the
bystander he hid); what is still left of the people seen moving and of the confident detections is matched on
the distance from the predicted centre (a reach that grows with the face's size); and a static track (a picture)
keeps only a face that overlaps it well and never joins the widened or motion passes (a passer-by in front of a
poster is not the poster). A candidate becomes a
confirmed track (a person with an id) after ``min_hits`` consecutive matches; a confirmed track survives
``max_lost`` frames without detections, so short occlusions keep their id. Confident matches vote on the label;
the decided label changes when another class wins the vote window, or sooner when a change detector
(:mod:`maskwatch.monitor.vote`) sees the person put a mask on or take it off.

Re-identification: with an image, faces get an appearance signature (:mod:`maskwatch.monitor.reid`; computed for
new candidates, every 4th match of a person, and after a cut).
A confirmed track lost for longer than ``max_lost`` frames becomes *dormant* and is remembered for
``reid_max_gap_s`` seconds; a new candidate whose signature matches a lost or dormant track (``reid_similarity``)
when it would be confirmed takes that track's id, votes and history instead of a new id, so a person who is
occluded, crosses someone, leaves and comes back, or survives a cut stays one person.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from maskwatch.metrics import box_iou
from maskwatch.monitor.associate import lookalike_swaps, motion_pairs
from maskwatch.monitor.kalman import buffered, kf_init, kf_predict, kf_update, match, state_to_xyxy, xyxy_to_z
from maskwatch.monitor.reid import appearance, held_elsewhere, similarity
from maskwatch.monitor.trackstate import DORMANT, LOST, TENTATIVE, TRACKED, Track
from maskwatch.types import CLASS_NAMES, NO_TRACK, UNDECIDED, FaceDetections

_NUM_CLASSES = len(CLASS_NAMES)
STATIC_IOU = 0.5
"""A static track (a picture) takes only a detection that overlaps where it is by this much (IoU)."""
MOTION_UPDATES = 2
"""The motion pass considers tracks seen on one of the last this many detector updates."""
MOTION_DIFFERENT = 0.5
"""The motion pass never pairs a track with a face whose signature is less similar than this (someone else)."""
BUFFER = 0.5
"""Second matching pass: boxes widened by this share of their width and height on every side."""


@dataclass
class TrackStep:
    """What one frame gives: a row per visible confirmed track, the tracks that ended, and how many candidates."""

    faces: FaceDetections
    ended: list[Track]
    tentative: int = 0


class FaceTracker:
    """ByteTrack-style multi-face tracker; call :meth:`update` on detected frames and :meth:`predict` on others."""

    def __init__(
        self,
        *,
        high_score: float = 0.5,
        low_score: float = 0.1,
        new_track_score: float = 0.6,
        match_iou: float = 0.3,
        low_match_iou: float = 0.5,
        max_lost: int = 30,
        min_hits: int = 3,
        vote_window: int = 15,
        vote_threshold: float = 0.6,
        min_votes: int = 3,
        reid_max_gap_s: float = 0.0,
        reid_similarity: float = 0.65,
        hold_unmoved_s: float = 0.0,
        motion_match: bool = True,
    ) -> None:
        self.high_score = high_score
        self.low_score = low_score
        self.new_track_score = new_track_score
        self.match_iou = match_iou
        self.low_match_iou = low_match_iou
        self.max_lost = max_lost
        self.min_hits = max(int(min_hits), 1)
        self.vote_window = max(int(vote_window), 1)
        self.vote_threshold = vote_threshold
        self.min_votes = max(int(min_votes), 1)
        self.reid_max_gap_s = reid_max_gap_s
        self.reid_similarity = reid_similarity
        self.hold_unmoved_s = hold_unmoved_s
        self.motion_match = motion_match
        self._gap = 1  # frames from the previous detector update to this one
        self._updated: int | None = None  # the previous detector update's frame
        self.confirmed_total = 0
        self._alive: list[Track] = []  # tentative and confirmed, in creation order
        self._dormant: list[Track] = []  # confirmed, lost beyond max_lost, kept for re-identification
        self._features: dict[int, np.ndarray | None] = {}  # this update's detections' signatures, as computed
        self._image: np.ndarray | None = None
        self._boxes: np.ndarray = np.zeros((0, 4), np.float32)
        self._frame: int | None = None
        self._cut_ts = -np.inf  # when the picture last changed completely

    @property
    def tracks(self) -> list[Track]:
        """Confirmed tracks still alive (tracked or lost)."""
        return [t for t in self._alive if t.confirmed]

    @property
    def dormant(self) -> list[Track]:
        """Confirmed tracks lost beyond ``max_lost`` that are still remembered for re-identification."""
        return list(self._dormant)

    @property
    def reid(self) -> bool:
        """Whether lost people are re-identified by appearance (needs images passed to :meth:`update`)."""
        return self.reid_max_gap_s > 0

    def update(
        self, faces: FaceDetections, frame_index: int, ts: float, image: np.ndarray | None = None, cut: bool = False
    ) -> TrackStep:
        """Detections of one frame (with classifier output in class_id/class_prob, possibly UNDECIDED) -> tracks.

        ``image`` (the frame, BGR) gives every detection an appearance signature for re-identification. ``cut``:
        the picture changed completely since the last update (a cut, black frames): positions say nothing, so a
        track only continues on a face that looks like it (``reid_similarity``).
        """
        self._advance(frame_index)
        self._gap = 1 if self._updated is None else max(int(frame_index) - self._updated, 1)
        self._updated = int(frame_index)
        self._cut_ts = float(ts) if cut else self._cut_ts
        self._features = {}
        self._image = image if self.reid else None
        self._boxes = faces.xyxy
        scores = faces.det_score
        high = np.flatnonzero(scores >= self.high_score)
        low = np.flatnonzero((scores >= self.low_score) & (scores < self.high_score))
        matched: dict[int, int] = {}  # id(track) -> detection index

        pool = list(self._alive)
        pairs = match(
            np.array([t.xyxy for t in pool]), faces.xyxy[high], self.match_iou, allowed=self._alike(pool, high, cut)
        )
        pairs = self._lookalikes(self._held_still(pairs, pool, faces.xyxy[high]), pool, high, faces.xyxy)
        taken = self._take(pairs, pool, high, faces, frame_index, ts, matched, vote=True)
        # faces that moved by more than their size since the last detector frame (a fast walker, a wide stride,
        # a candidate with no velocity yet): the same matching on boxes widened by half their size on every side,
        # for the tracks seen last time and the detections left over (buffered IoU, Yang et al., C-BIoU, 2023)
        pool = [t for t in self._alive if t.state != LOST and id(t) not in matched and not t.static]
        free = np.array([int(i) for i in high if int(i) not in taken], np.int64)
        if pool and len(free):
            pairs = match(
                buffered(np.array([t.xyxy for t in pool]), BUFFER),
                buffered(faces.xyxy[free], BUFFER),
                self.match_iou,
                allowed=self._alike(pool, free, cut),
            )
            pairs = self._lookalikes(pairs, pool, free, faces.xyxy)
            taken |= self._take(pairs, pool, free, faces, frame_index, ts, matched, vote=True)
        if not cut:  # after a cut, positions say nothing
            taken |= self._by_motion(faces, high, taken, frame_index, ts, matched)
        unmatched_high = [int(i) for i in high if int(i) not in taken]

        pool = [t for t in self._alive if t.state == TRACKED and id(t) not in matched]
        pairs = match(
            np.array([t.xyxy for t in pool]), faces.xyxy[low], self.low_match_iou, allowed=self._alike(pool, low, cut)
        )
        self._take(pairs, pool, low, faces, frame_index, ts, matched, vote=False)

        survivors = []
        for track in self._alive:
            if id(track) in matched:
                survivors.append(track)
            elif track.state != TENTATIVE:  # a tentative candidate that misses is dropped
                if self._holds(track):
                    # followed for a while and never seen to move in the scene (a poster behind a passer-by?): hold
                    # it where it was last seen rather than extrapolate a velocity that the occluder gave its box
                    # onto the passer-by's face
                    track.mean = np.concatenate([xyxy_to_z(track.det_xyxy), np.zeros(4)])
                    track.xyxy = track.det_xyxy.copy()
                track.state = LOST
                survivors.append(track)
        self._alive = survivors
        ended = self._drop_expired(frame_index, ts)

        for d in unmatched_high:
            if scores[d] >= self.new_track_score:
                track = self._start(faces, d, frame_index, ts)
                matched[id(track)] = d
        for track in list(self._alive):
            if track.state == TENTATIVE and track.hits >= self.min_hits:
                kept = self._confirm(track, frame_index)
                if kept is not track:
                    matched[id(kept)] = matched.pop(id(track))

        rows = [(t, matched[id(t)]) for t in self._alive if t.confirmed and id(t) in matched]
        rows.sort(key=lambda row: row[0].track_id)
        return TrackStep(self._rows(rows, faces), ended, self._tentative())

    def predict(self, frame_index: int, ts: float) -> TrackStep:
        """A frame on which the detector did not run: advance every track's motion model and return the
        confirmed tracks that are being tracked (not lost) at their predicted boxes."""
        self._advance(frame_index)
        ended = self._drop_expired(frame_index, ts)
        rows = sorted((t for t in self._alive if t.state == TRACKED), key=lambda t: t.track_id)
        return TrackStep(self._rows([(t, None) for t in rows], None), ended, self._tentative())

    def finish(self) -> list[Track]:
        """End all confirmed tracks (end of input); returns them; the tracker is empty afterwards.

        Ids keep counting (and ``confirmed_total`` keeps its value) if the tracker is used again.
        """
        ended = self.tracks + self._dormant
        for track in ended:
            track.xyxy = track.det_xyxy.copy()
        self._alive, self._dormant = [], []
        self._frame = self._updated = None
        return ended

    def _held_still(self, pairs, pool: list[Track], xyxy: np.ndarray) -> list[tuple[int, int]]:
        """``pairs`` without those of a static track (a picture) whose detection overlaps where it is by less than
        :data:`STATIC_IOU`: a passer-by in front of a poster is not the poster, and must not take its place."""
        if not self.motion_match:
            return pairs
        return [
            (t, d)
            for t, d in pairs
            if not pool[t].static or box_iou(pool[t].xyxy[None], xyxy[d][None])[0, 0] >= STATIC_IOU
        ]

    def _lookalikes(self, pairs, pool: list[Track], dets: np.ndarray, xyxy: np.ndarray) -> list[tuple[int, int]]:
        """First-pass ``pairs`` (indexing ``pool`` and ``dets``) with a person's track moved to a free face close by
        that looks like them when the face it overlaps does not (:func:`~maskwatch.monitor.associate.lookalike_swaps`;
        needs signatures: re-identification on)."""
        if self._image is None or not self.motion_match:
            return pairs
        paired = {d for _, d in pairs}
        free = [j for j in range(len(dets)) if j not in paired]
        features = [t.feature if t.confirmed else None for t in pool]
        boxes = np.array([t.xyxy for t in pool]).reshape(-1, 4)
        return lookalike_swaps(
            pairs, boxes, features, xyxy[dets], free, lambda j: self._feature(int(dets[j])), self.reid_similarity
        )

    def _by_motion(
        self, faces: FaceDetections, high: np.ndarray, taken: set[int], frame_index, ts, matched
    ) -> set[int]:
        """Match what is left of the people seen moving and the candidates (with signatures: a candidate must look
        like the face, ``reid_similarity``), seen on one of the last :data:`MOTION_UPDATES` updates, and of the
        confident detections by distance from the predicted centre (:func:`.associate.motion_pairs`)."""
        if not self.motion_match:
            return set()
        gap = max(self._gap, 1)
        recent = [t for t in self._alive if (frame_index - t.last_frame) <= gap * MOTION_UPDATES]
        # seen to move (a person, not a picture), or a candidate that looks like the face (needs signatures)
        candidates = self._image is not None
        pool = [t for t in recent if id(t) not in matched and (t.live or (candidates and t.state == TENTATIVE))]
        free = np.array([int(i) for i in high if int(i) not in taken], np.int64)
        if not pool or not len(free):
            return set()
        unseen = np.array([max((frame_index - t.last_frame) / gap - 1.0, 0.0) for t in pool])
        features: list[np.ndarray | None] = [t.feature if self._image is not None else None for t in pool]
        pairs = motion_pairs(
            np.array([t.xyxy for t in pool]).reshape(-1, 4),
            unseen,
            features,
            faces.xyxy[free],
            lambda j: self._feature(int(free[j])),
            np.array([self.reid_similarity if t.state == TENTATIVE else MOTION_DIFFERENT for t in pool]),
        )
        return self._take(pairs, pool, free, faces, frame_index, ts, matched, vote=True)

    def _advance(self, frame_index: int) -> None:
        """Run every track's motion model over the frames since the previous call (at least one step)."""
        steps = 1 if self._frame is None else max(1, int(frame_index) - self._frame)
        steps = min(steps, self.max_lost + 1)  # beyond that nothing lost survives and tracked ones are lost
        self._frame = int(frame_index)
        for track in self._alive:
            for _ in range(steps):
                track.mean, track.cov = kf_predict(track.mean, track.cov)
            track.xyxy = state_to_xyxy(track.mean)

    def _hit(self, track: Track, faces: FaceDetections, d: int, frame_index: int, ts: float, *, vote: bool) -> None:
        """Update a track with detection ``d``; a tentative one is confirmed after ``min_hits``."""
        track.mean, track.cov = kf_update(track.mean, track.cov, xyxy_to_z(faces.xyxy[d]))
        track.xyxy = faces.xyxy[d].copy()
        track.det_xyxy = track.xyxy.copy()
        track.score = float(faces.det_score[d])
        track.last_frame, track.last_ts = int(frame_index), float(ts)
        track.hits += 1
        if vote and faces.class_id[d] != UNDECIDED:
            self._vote(track, faces, d, ts)
        if vote and (track.state == TENTATIVE or (not track.static and track.hits % 4 == 0)):
            self._learn(track, self._feature(d))
        if track.state != TENTATIVE:
            track.state = TRACKED

    def _start(self, faces: FaceDetections, d: int, frame_index: int, ts: float) -> Track:
        box = faces.xyxy[d].copy()
        mean, cov = kf_init(xyxy_to_z(box))
        track = Track(
            track_id=NO_TRACK,
            xyxy=box,
            score=float(faces.det_score[d]),
            first_frame=int(frame_index),
            last_frame=int(frame_index),
            first_ts=float(ts),
            last_ts=float(ts),
            det_xyxy=box.copy(),
            mean=mean,
            cov=cov,
            votes=deque(maxlen=self.vote_window),
            feature=self._feature(d),
        )
        if faces.class_id[d] != UNDECIDED:
            self._vote(track, faces, d, ts)
        self._alive.append(track)
        return track

    def _vote(self, track: Track, faces: FaceDetections, d: int, ts: float) -> None:
        track.vote(
            faces.class_id[d], faces.class_prob[d], threshold=self.vote_threshold, min_votes=self.min_votes, ts=ts
        )

    def _take(self, pairs, pool, dets, faces, frame_index, ts, matched, *, vote: bool) -> set[int]:
        """Update each paired track with its detection (``pairs`` index ``pool`` and ``dets``), record it in
        ``matched``; returns the detection indices taken."""
        for t, d in pairs:
            self._hit(pool[t], faces, int(dets[d]), frame_index, ts, vote=vote)
            matched[id(pool[t])] = int(dets[d])
        return {int(dets[d]) for _, d in pairs}

    def _holds(self, track: Track) -> bool:
        """Whether ``track``, lost now, stays where it was last seen: with ``hold_unmoved_s`` > 0, a track followed
        that long that has not shown life (``track.live``, set by the monitor's life meter)."""
        held = self.hold_unmoved_s > 0 and track.state == TRACKED and not track.live
        return held and track.last_ts - track.first_ts >= self.hold_unmoved_s

    def _alike(self, pool: list[Track], dets: np.ndarray, cut: bool) -> np.ndarray | None:
        """After a cut: which track-detection pairs look alike (an unknown signature allows nothing)."""
        if not cut or not self.reid:
            return None
        return np.array(
            [[similarity(t.feature, self._feature(d)) >= self.reid_similarity for d in dets] for t in pool], bool
        ).reshape(len(pool), len(dets))

    def _feature(self, d: int) -> np.ndarray | None:
        """The appearance signature of this update's detection ``d`` (None without an image)."""
        if d not in self._features:
            image = self._image
            self._features[d] = None if image is None else appearance(image, self._boxes[d])
        return self._features[d]

    @staticmethod
    def _learn(track: Track, feature: np.ndarray | None) -> None:
        """Blend a new appearance signature into the track's (a running average, renormalised)."""
        if feature is None:
            return
        if track.feature is None:
            track.feature = feature
            return
        blend = 0.8 * track.feature + 0.2 * feature
        track.feature = blend / max(float(np.linalg.norm(blend)), 1e-6)

    def _confirm(self, track: Track, frame_index: int) -> Track:
        """Make a candidate a person: the lost or dormant person it looks like (that track carries on and is
        returned), else a new id."""
        best, best_sim = None, self.reid_similarity
        if self.reid and track.feature is not None:
            for old in [t for t in self._alive if t.state == LOST] + self._dormant:
                sim = similarity(old.feature, track.feature)
                if old.last_frame < track.first_frame and sim >= best_sim:
                    best, best_sim = old, sim
        # where another person was a moment ago (since the last cut): theirs more likely than a look-alike's
        lost = [t for t in self._alive if t.state == LOST and t is not best and t.last_ts > self._cut_ts]
        if best is not None and held_elsewhere(track.xyxy, track.first_ts, [(t.xyxy, t.last_ts) for t in lost]):
            best = None
        if best is None:
            self.confirmed_total += 1
            track.track_id = self.confirmed_total
            track.state = TRACKED
            return track
        best.xyxy, best.det_xyxy = track.xyxy.copy(), track.det_xyxy.copy()
        best.mean, best.cov, best.score = track.mean, track.cov, track.score
        best.last_frame, best.last_ts = track.last_frame, track.last_ts
        best.hits += track.hits
        for class_id, prob in track.votes:
            best.vote(class_id, prob, threshold=self.vote_threshold, min_votes=self.min_votes)
        self._learn(best, track.feature)
        best.placed += 1  # a new place: the life meter judges it afresh
        best.state = TRACKED
        self._dormant = [t for t in self._dormant if t is not best]
        self._alive = [best if t is track else t for t in self._alive if t is not best]
        return best

    def _drop_expired(self, frame_index: int, ts: float) -> list[Track]:
        """Move confirmed tracks lost for more than ``max_lost`` frames to the dormant memory; return the tracks
        that leave for good (dormant longer than ``reid_max_gap_s``, or at once without re-identification)."""
        expired = [t for t in self._alive if t.state == LOST and frame_index - t.last_frame > self.max_lost]
        for track in expired:
            track.xyxy = track.det_xyxy.copy()
            track.state = DORMANT
        self._alive = [t for t in self._alive if not any(t is e for e in expired)]
        self._dormant += expired
        ended = [t for t in self._dormant if not self.reid or ts - t.last_ts > self.reid_max_gap_s]
        self._dormant = [t for t in self._dormant if not any(t is e for e in ended)]
        return ended

    def _tentative(self) -> int:
        return sum(1 for t in self._alive if t.state == TENTATIVE)

    @staticmethod
    def _rows(rows: Sequence[tuple[Track, int | None]], faces: FaceDetections | None) -> FaceDetections:
        """Output rows: the matched detection's box and score when ``faces`` is given, else the track's own.

        A static track (a poster) is an untracked, undecided face: drawn grey, never counted as a person.
        """
        if not rows:
            return FaceDetections.empty()
        none = np.zeros(_NUM_CLASSES, np.float32)
        return FaceDetections(
            xyxy=np.array([t.xyxy if faces is None else faces.xyxy[d] for t, d in rows], np.float32),
            det_score=np.array([t.score for t, _ in rows], np.float32),
            class_id=np.array([UNDECIDED if t.static else t.label for t, _ in rows], np.int64),
            class_prob=np.array([none if t.static else t.mean_prob for t, _ in rows], np.float32),
            track_id=np.array([NO_TRACK if t.static else t.track_id for t, _ in rows], np.int64),
        )
