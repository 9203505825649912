"""Static faces (posters, paintings, screens) and camera motion.

A face that moves only with the camera is not a person. :class:`CameraMotion` estimates how the whole picture
moved between two detector frames (sparse optical flow on a small gray frame, a RANSAC similarity transform).
:class:`LifeMeter` follows a few corner points inside each face with optical flow at full resolution (on a small
window around the face), takes their median motion and subtracts what the camera did at the face: the rest,
summed over time, is how far the
face moved *in the scene* (``drift``). A poster's steps stay at sensor noise (median 0.1-0.2 px per detector
frame on the benchmark, pans and zooms included) and its drift under about 0.1 face heights; a person who walks,
turns, sways or leans moves by more. The camera's motion is measured on the scene around the people, so a face
that fills much of the picture is not taken for the scene. A living face also changes *inside itself* while it
stands still (blinks, a moving mouth): :mod:`maskwatch.monitor.facechange` measures that change after registering
the face onto its previous view. A track *shows life* once its drift reaches ``drift_frac`` face heights, or
its last five steps have a median of ``step_px`` pixels (someone moving in place), or its detected box leaves
where a fixed face would be by ``move_frac`` heights, or ``change_frames`` detector frames within ``change_s``
seconds show ``change_share`` of its interior changed; a track that has not shown life after ``static_after_s``
is *static*: drawn grey, never counted as a person, never alerted.
"""

from __future__ import annotations

import cv2
import numpy as np

from maskwatch.monitor.facechange import face_motion, interior_change
from maskwatch.monitor.track import TRACKED, Track


class CameraMotion:
    """The camera's motion between consecutive :meth:`update` calls, as a 2x3 similarity transform in pixels.

    ``update`` returns the transform that maps the previous frame's coordinates onto this one's, the identity on
    the first frame, or None when the two frames do not overlap (a cut, a black frame, too little texture).
    """

    def __init__(self, width: int = 160, max_corners: int = 80, min_inliers: int = 12) -> None:
        self.width = width
        self.max_corners = max_corners
        self.min_inliers = min_inliers
        self._prev: np.ndarray | None = None
        self._points: np.ndarray | None = None

    def update(self, gray: np.ndarray, people: np.ndarray | None = None) -> np.ndarray | None:
        """``gray``: the frame as one channel (uint8), at full size; ``people``: faces (N x 4 boxes, pixels) in it.

        The camera's motion is measured on the scene around the people (their heads and bodies, see
        :func:`person_region`, are left out when enough of the scene is left): a face close to the camera would
        otherwise be the scene whose motion is subtracted from its own."""
        h, w = gray.shape[:2]
        scale = min(self.width / max(w, 1), 1.0)
        gray = cv2.resize(gray, (max(round(w * scale), 8), max(round(h * scale), 8)), interpolation=cv2.INTER_AREA)
        prev, points = self._prev, self._points
        self._prev = gray
        self._points = self._corners(gray, people, scale)
        if prev is None:
            return np.eye(2, 3)
        if points is None or len(points) < self.min_inliers or prev.shape != gray.shape:
            return None
        moved, status, _ = cv2.calcOpticalFlowPyrLK(prev, gray, points, None, winSize=(9, 9), maxLevel=1)
        ok = status.reshape(-1) == 1
        if ok.sum() < self.min_inliers:
            return None
        matrix, inliers = cv2.estimateAffinePartial2D(
            points[ok], moved[ok], method=cv2.RANSAC, ransacReprojThreshold=1.0
        )
        if matrix is None or inliers is None or int(inliers.sum()) < max(self.min_inliers, 0.3 * ok.sum()):
            return None
        matrix = matrix.astype(np.float64)
        matrix[:, 2] /= scale  # the linear part is the same at every scale, the shift grows with it
        return matrix

    def _corners(self, gray: np.ndarray, people: np.ndarray | None, scale: float) -> np.ndarray | None:
        """Corners to follow to the next frame: off the people when enough are left there, else anywhere."""
        if people is not None and len(people):
            mask = np.full(gray.shape, 255, np.uint8)
            for box in np.asarray(people, np.float64).reshape(-1, 4):
                x1, y1, x2, y2 = _head_and_body(box) * scale
                mask[max(int(y1), 0) : max(int(y2) + 1, 0), max(int(x1), 0) : max(int(x2) + 1, 0)] = 0
            found = cv2.goodFeaturesToTrack(gray, self.max_corners, 0.01, 4, mask=mask)
            if found is not None and len(found) >= 2 * self.min_inliers:
                return found
        return cv2.goodFeaturesToTrack(gray, self.max_corners, 0.01, 4)


def warp_boxes(xyxy: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """Boxes (N, 4) moved by a 2x3 similarity transform (centre mapped, size scaled)."""
    xyxy = np.asarray(xyxy, np.float64).reshape(-1, 4)
    centre = (xyxy[:, :2] + xyxy[:, 2:]) / 2
    size = xyxy[:, 2:] - xyxy[:, :2]
    scale = float(np.sqrt(abs(np.linalg.det(matrix[:, :2]))))
    moved = centre @ matrix[:, :2].T + matrix[:, 2]
    return np.concatenate([moved - size * scale / 2, moved + size * scale / 2], axis=1)


def _overlaps(box: np.ndarray, others: list[np.ndarray]) -> bool:
    """Whether another face covers a tenth of ``box`` or more (an occluder drags the flow with it)."""
    area = max(float((box[2] - box[0]) * (box[3] - box[1])), 1.0)
    for other in others:
        w = min(box[2], other[2]) - max(box[0], other[0])
        h = min(box[3], other[3]) - max(box[1], other[1])
        if w > 0 and h > 0 and w * h >= 0.1 * area:
            return True
    return False


def person_region(box: np.ndarray) -> np.ndarray:
    """Where a person whose face is ``box`` covers the picture: the head around it and the body below."""
    x1, y1, x2, y2 = np.asarray(box, np.float64)
    w, h = x2 - x1, y2 - y1
    return np.array([x1 - 0.5 * w, y1 - 0.5 * h, x2 + 0.5 * w, y2 + 2.0 * h])


def _head_and_body(box: np.ndarray) -> np.ndarray:
    """The head around a face ``box`` and a body as wide below it: what moves with a person (narrower than
    :func:`person_region`, so that a face close to the camera leaves some of the scene beside it)."""
    x1, y1, x2, y2 = np.asarray(box, np.float64)
    w, h = x2 - x1, y2 - y1
    return np.array([x1 - 0.25 * w, y1 - 0.4 * h, x2 + 0.25 * w, y2 + 2.0 * h])


EDGE_FRAC = 0.03
"""A face box this close to the border (share of its size) may be cut off by it."""


def _at_edge(box: np.ndarray, width: int, height: int) -> bool:
    """Whether ``box`` comes within ``EDGE_FRAC`` of its size of the frame's border (a face cut off there: its
    box's size and centre say little about its motion). A close face fills the frame without being cut off."""
    mx, my = max(2.0, EDGE_FRAC * (box[2] - box[0])), max(2.0, EDGE_FRAC * (box[3] - box[1]))
    return bool(box[0] <= mx or box[1] <= my or box[2] >= width - mx or box[3] >= height - my)


def all_live(tracks: list[Track]) -> None:
    """Without a life meter every confirmed track is a person at once (``tracking.static_after_s`` 0)."""
    for track in tracks:
        track.signs.live = True


class LifeMeter:
    """Marks tracks that show life (they move in the scene) and tracks that are static (they never did).

    Call :meth:`observe` on each detector frame with the alive confirmed tracks. It is the only writer of each
    track's :class:`~maskwatch.monitor.track.LifeSigns`: ``live`` (sticky: a person who stands still after walking
    in stays a person) and ``static`` (not live after ``static_after_s`` of being tracked; cleared as soon as the
    track shows life), and the evidence behind them.
    """

    def __init__(
        self,
        static_after_s: float = 3.0,
        drift_frac: float = 0.2,
        step_px: float = 0.6,
        move_frac: float = 0.6,
        points: int = 16,
        change_share: float = 0.03,
        change_frames: int = 2,
        change_s: float = 1.0,
    ) -> None:
        self.change_share = change_share
        self.change_frames = change_frames
        self.change_s = change_s
        self.static_after_s = static_after_s
        self.step_px = step_px
        self.drift_frac = drift_frac
        self.move_frac = move_frac
        self.points = points
        self._prev_gray: np.ndarray | None = None
        self._prev_frame = -1

    def observe(self, gray: np.ndarray, tracks: list[Track], frame_index: int, matrix: np.ndarray | None) -> None:
        """Update ``tracks`` (those seen on ``frame_index``) from the frame ``gray`` (one channel, full size);
        ``matrix`` is the camera motion since the last call. Live tracks are left alone (life is for good)."""
        for track in tracks:  # moved to a new place by re-identification: judged afresh there
            signs = track.signs
            if signs.placed != track.placed:
                signs.anchor, signs.seen_box, signs.flow_points, signs.placed = None, None, None, track.placed
        # people already seen to move: where they pass in front of a face, that face's motion is theirs
        passers = [person_region(t.xyxy) for t in tracks if t.live and t.state == TRACKED]
        tracks = [t for t in tracks if not t.live]
        for track in tracks:  # unknown camera motion (a cut, a scene without texture): anchors stay where they are
            if track.signs.anchor is not None and matrix is not None:
                track.signs.anchor = warp_boxes(track.signs.anchor, matrix)[0]
        seen = [t for t in tracks if t.last_frame == frame_index]
        h, w = gray.shape[:2]
        # cut off by the border, or behind a passer-by: no evidence either way
        clear = [t for t in seen if not _at_edge(t.det_xyxy, w, h) and not _overlaps(t.det_xyxy, passers)]
        if matrix is not None:
            self._drift(gray, clear, matrix)
        self._prev_gray, self._prev_frame = gray, frame_index
        clear_ids = {id(t) for t in clear}
        for track in seen:
            box = np.asarray(track.det_xyxy, np.float64)
            track.signs.seen_box, track.signs.seen_frame = box.copy(), frame_index
            if track.signs.anchor is None:
                track.signs.anchor = box.copy()
            if id(track) in clear_ids:
                self._weigh(track, box)
            track.signs.static = not track.live and track.last_ts - track.first_ts >= self.static_after_s

    def _weigh(self, track: Track, box: np.ndarray) -> None:
        """Raise the track's evidence of life from its drift, its box's distance from the anchor and its recent
        steps."""
        signs = track.signs
        height = max(float(box[3] - box[1]), 1.0)
        signs.evidence = max(signs.evidence, float(np.hypot(*signs.drift)) / height / self.drift_frac)
        anchor = signs.anchor if signs.anchor is not None else box  # set on this frame at the latest
        signs.evidence = max(signs.evidence, self._moved(anchor, box) / self.move_frac)
        if len(signs.steps) == signs.steps.maxlen:  # steadily moving, if only a little (a person in place)
            signs.evidence = max(signs.evidence, sorted(signs.steps)[len(signs.steps) // 2] / self.step_px)
        changed = [t for t, share in signs.changes if share >= self.change_share and t >= track.last_ts - self.change_s]
        signs.evidence = max(signs.evidence, len(changed) / self.change_frames)  # changes inside itself: alive
        if signs.evidence >= 1.0:
            signs.live = True

    def _drift(self, gray: np.ndarray, tracks: list[Track], camera: np.ndarray) -> None:
        """Add to each track seen on the previous detector frame too how far its face moved against the scene."""
        prev = self._prev_gray
        if prev is None or prev.shape != gray.shape:
            return
        h, w = gray.shape
        boxes = [np.asarray(t.det_xyxy, np.float64) for t in tracks]
        for i, track in enumerate(tracks):
            if track.signs.seen_box is None or track.signs.seen_frame != self._prev_frame:
                continue
            if _overlaps(boxes[i], boxes[:i] + boxes[i + 1 :]):
                continue
            x1, y1, x2, y2 = track.signs.seen_box
            mx, my = 0.15 * (x2 - x1), 0.15 * (y2 - y1)  # the inner face: no background at the edges
            a, b, c, d = int(max(x1 + mx, 0)), int(max(y1 + my, 0)), int(min(x2 - mx, w)), int(min(y2 - my, h))
            if c - a < 8 or d - b < 8:
                continue
            pts = track.signs.flow_points  # last time's points, where they went (found again when too few are left)
            if pts is not None:
                pts = pts[(pts[:, 0] >= a) & (pts[:, 0] < c) & (pts[:, 1] >= b) & (pts[:, 1] < d)]
            if pts is None or len(pts) < 6:
                found = cv2.goodFeaturesToTrack(prev[b:d, a:c], self.points, 0.02, 3)
                if found is None or len(found) < 6:
                    track.signs.flow_points = None
                    continue
                pts = found.reshape(-1, 2) + (a, b)
            # start the search where a fixed face would be (the camera's motion at it): a poster is found there
            # at once, and a jump of the detector's box (to a neighbouring face) cannot lead the flow astray
            centre = (track.signs.seen_box[:2] + track.signs.seen_box[2:]) / 2
            shift = (centre @ camera[:, :2].T + camera[:, 2]) - centre
            # one window around the face in both frames (the optical flow works on these crops only)
            moved = (boxes[i][:2] + boxes[i][2:]) / 2 - centre  # where the detector says the face went
            pad = 8 + int(max(np.abs(shift).max(), np.abs(moved).max()))
            ra, rb, rc, rd = max(a - pad, 0), max(b - pad, 0), min(c + pad, w), min(d + pad, h)
            p0 = (pts - (ra, rb)).astype(np.float32)
            fixed = (pts @ camera[:, :2].T + camera[:, 2] - (ra, rb)).astype(np.float32)  # each point, if fixed
            p1, status, _ = cv2.calcOpticalFlowPyrLK(
                prev[rb:rd, ra:rc],
                gray[rb:rd, ra:rc],
                p0.reshape(-1, 1, 2),
                fixed.reshape(-1, 1, 2).copy(),  # OpenCV writes the result into this array
                winSize=(9, 9),
                maxLevel=1,
                flags=cv2.OPTFLOW_USE_INITIAL_FLOW,
            )
            ok = status.reshape(-1) == 1
            p1 = p1.reshape(-1, 2)[ok]
            track.signs.flow_points = p1 + (ra, rb) if len(p1) >= 6 else None
            if len(p1) < 6:
                continue
            # how far the face moved against the scene: each point's motion minus the camera's motion at that
            # point (a zoom moves points apart: compared at the face's centre alone, a fixed face would drift),
            # the median over points (robust to a few lost ones)
            residual = np.sort(p1 - fixed[ok], axis=0)
            step = residual[len(residual) // 2].astype(np.float64)
            track.signs.drift = track.signs.drift + step
            track.signs.steps.append(float(np.hypot(*step)))
            change = interior_change(prev, gray, boxes[i], face_motion(pts[ok], p1 + (ra, rb), camera, step))
            if change is not None:
                track.signs.changes.append((track.last_ts, change))

    @staticmethod
    def _moved(anchor: np.ndarray, box: np.ndarray) -> float:
        """How far ``box`` is from ``anchor``, in box heights (centre shift plus relative size change)."""
        ha, hb = max(anchor[3] - anchor[1], 1.0), max(float(box[3] - box[1]), 1.0)
        shift = np.hypot((box[0] + box[2] - anchor[0] - anchor[2]) / 2, (box[1] + box[3] - anchor[1] - anchor[3]) / 2)
        return float(shift / max(ha, hb) + abs(np.log(hb / ha)))
