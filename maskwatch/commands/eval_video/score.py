"""Scores one clip: MOT metrics (py-motmetrics) and per-person decisions and alerts (ours).

Inputs are what ``maskwatch run`` writes: the ``--detections`` records (``{"frame": i, "faces": [{"box", "label",
"track_id"}]}``, frames from 0) and the ``--events`` records. Tracks are the hypotheses; a face without a
``track_id`` is not a person yet and is left out.

- Each frame, hypotheses are matched to truth boxes (optimal assignment, IoU >= 0.5). Those matched to an ignore
  region (a static face, a face mostly hidden), or lying at least half inside one, are dropped from the MOT
  scoring, as MOTChallenge does with distractors. A track belongs to the truth id it was matched to most often
  (clips without boxes: the person in view at the time, so such clips must show one person at a time).
- A person's *label spell* is a run of ``labels.csv`` rows with one label. Its decided label is the label maskwatch
  showed on that person most often during the spell (none: undecided, counted wrong).
- A change of a person's label (a spell that follows another with another label) is scored by
  :mod:`~maskwatch.commands.eval_video.changes`: how long until the new label is shown and stays, and flickers.
- An alert belongs to the truth id its track was matched to on the alert's frame (else the track's id). On an
  unmasked spell: the first is a hit, the others duplicates; on a masked spell: a false alert; on a static face: a
  static-face alert; on no one: an unmatched alert.
"""

from __future__ import annotations

import statistics
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from maskwatch.commands.eval_video.changes import ChangeShown, change_summary, changes_shown
from maskwatch.commands.eval_video.truth import STATIC, ClipTruth, Spell
from maskwatch.metrics import box_iou
from maskwatch.monitor.kalman import linear_assignment

MATCH_IOU = 0.5
MOT_KEYS = ("idf1", "mota", "id_switches")
PERSON_KEYS = (
    "label_accuracy",
    "alert_recall",
    "duplicate_alerts_per_person",
    "false_alerts_per_person",
    "static_face_alerts",
    "median_time_to_alert_s",
    "people_true",
    "people_counted",
)


@dataclass(frozen=True)
class LabelSpell:
    """A person's consecutive frames with one true label (merged ``labels.csv`` rows)."""

    person: int
    label: str
    first: int
    last: int

    @property
    def unmasked(self) -> bool:
        return Spell(self.person, self.first, self.last, self.label).unmasked


@dataclass
class PersonCounts:
    """The per-person tallies of a clip (or of several, added up)."""

    spells: int = 0
    correct_labels: int = 0
    undecided: int = 0
    unmasked: int = 0
    alerted: int = 0
    duplicates: int = 0
    masked: int = 0
    false_alerts: int = 0
    static_face_alerts: int = 0
    unmatched_alerts: int = 0
    alerts: int = 0
    people_true: int = 0
    """People in the truth (faces that move; static faces are not people)."""
    people_counted: int = 0
    """People maskwatch counted (the ``people_total`` of its summary and report)."""
    times_to_alert_s: list[float] = field(default_factory=list)

    def add(self, other: PersonCounts) -> None:
        for name, value in vars(other).items():
            setattr(self, name, getattr(self, name) + value)

    def metrics(self) -> dict[str, Any]:
        """The per-person metrics (None where nothing could be counted)."""
        ratio = _ratio
        times = self.times_to_alert_s
        return {
            "label_accuracy": ratio(self.correct_labels, self.spells),
            "alert_recall": ratio(self.alerted, self.unmasked),
            "duplicate_alerts_per_person": ratio(self.duplicates, self.unmasked),
            "false_alerts_per_person": ratio(self.false_alerts, self.masked),
            "static_face_alerts": self.static_face_alerts,
            "median_time_to_alert_s": round(statistics.median(times), 2) if times else None,
            "people_true": self.people_true,
            "people_counted": self.people_counted,
        }


@dataclass
class ClipScore:
    """One clip's scores: MOT metrics (None without boxes or motmetrics) and per-person counts."""

    name: str
    frames: int
    boxes: bool
    counts: PersonCounts
    mot: dict[str, float | int | None]
    accumulator: Any = None
    changes: list[ChangeShown] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        c = self.counts
        extra = {k: v for k, v in vars(c).items() if k != "times_to_alert_s"}
        changes = {**change_summary(self.changes), "changes": [change.to_json() for change in self.changes]}
        return {**self.mot, **c.metrics(), **changes, "frames": self.frames, "boxes": self.boxes, "counts": extra}


def _ratio(num: float, den: float) -> float | None:
    return round(num / den, 4) if den else None


def label_spells(spells: list[Spell]) -> list[LabelSpell]:
    """Merge each person's consecutive rows of one label (a person who leaves and returns keeps one spell)."""
    merged: list[LabelSpell] = []
    by_person: dict[int, list[Spell]] = defaultdict(list)
    for s in spells:
        if s.kind != STATIC:
            by_person[s.person].append(s)
    for person, rows in sorted(by_person.items()):
        rows.sort(key=lambda s: s.first)
        current = None
        for s in rows:
            if current is not None and current.label == s.label:
                current = LabelSpell(person, s.label, current.first, max(current.last, s.last))
                merged[-1] = current
            else:
                current = LabelSpell(person, s.label, s.first, s.last)
                merged.append(current)
    return merged


def _hypotheses(records: list[dict]) -> dict[int, tuple[list[int], np.ndarray, list[str | None]]]:
    """Frame (from 1) -> (track ids, xyxy, labels) of the tracked faces."""
    out = {}
    for record in records:
        faces = [f for f in record.get("faces", []) if f.get("track_id") is not None]
        if faces:
            xyxy = np.asarray([f["box"] for f in faces], np.float64).reshape(-1, 4)
            out[int(record["frame"]) + 1] = ([int(f["track_id"]) for f in faces], xyxy, [f.get("label") for f in faces])
    return out


def _match(gt_xyxy: np.ndarray, hyp_xyxy: np.ndarray) -> tuple[list[tuple[int, int]], np.ndarray]:
    """Optimal (gt, hyp) pairs with IoU >= MATCH_IOU, and the IoU matrix."""
    iou = box_iou(gt_xyxy, hyp_xyxy)
    if iou.size == 0:
        return [], iou
    cost = np.where(iou >= MATCH_IOU, 1.0 - iou, 1.0)
    return [(g, h) for g, h in linear_assignment(cost) if iou[g, h] >= MATCH_IOU], iou


def _inside(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(len(a), len(b)): the share of each box of ``a`` that lies inside each box of ``b``."""
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(rb - lt, 0, None), axis=-1)
    area = np.prod(np.clip(a[:, 2:] - a[:, :2], 1e-9, None), axis=-1)
    return inter / area[:, None]


class _Associations:
    """Which truth id each track was matched to, frame by frame, and what label it showed."""

    def __init__(self) -> None:
        self.votes: dict[int, Counter] = defaultdict(Counter)
        self.at: dict[tuple[int, int], int] = {}
        self.shown: dict[int, dict[int, list[str | None]]] = defaultdict(lambda: defaultdict(list))

    def add(self, frame: int, track: int, person: int, label: str | None) -> None:
        self.votes[track][person] += 1
        self.at[(track, frame)] = person
        self.shown[person][frame].append(label)

    def owner(self, track: int, frame: int | None = None) -> int | None:
        if frame is not None and (track, frame) in self.at:
            return self.at[(track, frame)]
        votes = self.votes.get(track)
        return votes.most_common(1)[0][0] if votes else None


def _mot_accumulator(truth: ClipTruth, hyps, assoc: _Associations):
    """Match every frame; fill ``assoc``; return a motmetrics accumulator (None without motmetrics)."""
    try:
        import motmetrics as mm
    except ModuleNotFoundError:
        mm = None
    acc = mm.MOTAccumulator(auto_id=False) if mm is not None else None
    assert truth.boxes is not None
    empty = (np.zeros(0, int), np.zeros((0, 4)), np.zeros(0, bool))
    for frame in range(1, truth.frames + 1):
        ids, gt_xyxy, considered = truth.boxes.get(frame, empty)
        tracks, hyp_xyxy, labels = hyps.get(frame, ([], np.zeros((0, 4)), []))
        pairs, iou = _match(gt_xyxy, hyp_xyxy)
        dropped = set()
        for g, h in pairs:
            assoc.add(frame, tracks[h], int(ids[g]), labels[h])
            if not considered[g]:
                dropped.add(h)
        ignored = np.flatnonzero(~considered)
        if len(ignored):  # a box mostly inside an ignore region (e.g. tighter than the VOC box) is on it too
            inside = _inside(hyp_xyxy, gt_xyxy[ignored])
            for h in set(range(len(tracks))) - {h for _, h in pairs}:
                if inside[h].max() >= MATCH_IOU:
                    g = ignored[int(inside[h].argmax())]
                    assoc.add(frame, tracks[h], int(ids[g]), labels[h])
                    dropped.add(h)
        if acc is None:
            continue
        keep = np.array([h for h in range(len(tracks)) if h not in dropped], np.intp)
        dist = 1.0 - iou[np.ix_(considered, keep)] if iou.size else np.zeros((int(considered.sum()), len(keep)))
        dist = np.where(dist <= 1.0 - MATCH_IOU, dist, np.nan)
        acc.update(list(ids[considered]), [tracks[h] for h in keep], dist, frameid=frame)
    return acc


def _time_associations(truth: ClipTruth, hyps, assoc: _Associations) -> None:
    """Clips without boxes: every track in a frame belongs to the one person whose rows contain that frame."""
    for frame, (tracks, _, labels) in hyps.items():
        present = {s.person for s in truth.spells if s.first <= frame <= s.last}
        if len(present) == 1:
            person = present.pop()
            for track, label in zip(tracks, labels, strict=True):
                assoc.add(frame, track, person, label)


def mot_summary(accumulators: list, names: list[str]) -> dict[str, dict[str, float | int | None]]:
    """IDF1, MOTA and ID switches per name, and ``OVERALL`` over all of them (motmetrics)."""
    import motmetrics as mm

    metrics = ["idf1", "mota", "num_switches"]
    table = mm.metrics.create().compute_many(accumulators, metrics=metrics, names=names, generate_overall=True)

    def row(name: str) -> dict[str, float | int | None]:
        r = table.loc[name]
        idf1, mota = float(r["idf1"]), float(r["mota"])
        return {  # no truth box to score (a clip of posters only): None
            "idf1": round(idf1, 4) if np.isfinite(idf1) else None,
            "mota": round(mota, 4) if np.isfinite(mota) else None,
            "id_switches": int(r["num_switches"]),
        }

    return {name: row(name) for name in [*names, "OVERALL"]}


def score_clip(truth: ClipTruth, records: list[dict], events: list[dict], people_counted: int = 0) -> ClipScore:
    """Score one clip from its detections records and events (see the module docstring); ``people_counted`` is
    how many people maskwatch counted on it."""
    hyps = _hypotheses(records)
    assoc = _Associations()
    acc = None
    if truth.boxes is not None:
        acc = _mot_accumulator(truth, hyps, assoc)
    else:
        _time_associations(truth, hyps, assoc)
    counts = PersonCounts(people_counted=people_counted)
    counts.people_true = len({s.person for s in truth.spells if s.kind != STATIC})
    spells = label_spells(truth.spells)
    for spell in spells:
        shown = Counter(
            label
            for frame, labels in assoc.shown.get(spell.person, {}).items()
            if spell.first <= frame <= spell.last
            for label in labels
            if label is not None
        )
        decided = shown.most_common(1)[0][0] if shown else None
        counts.spells += 1
        counts.undecided += decided is None
        counts.correct_labels += decided == spell.label
        counts.unmasked += spell.unmasked
        counts.masked += not spell.unmasked
    _count_alerts(truth, spells, events, assoc, counts)
    mot: dict[str, float | int | None] = dict.fromkeys(MOT_KEYS)
    if acc is not None:
        mot = mot_summary([acc], [truth.name])[truth.name]
    changes = changes_shown(spells, assoc.shown, truth.fps)
    return ClipScore(truth.name, truth.frames, truth.boxes is not None, counts, mot, acc, changes)


def _count_alerts(truth: ClipTruth, spells: list[LabelSpell], events, assoc: _Associations, counts) -> None:
    hits: dict[LabelSpell, list[int]] = defaultdict(list)
    for event in events:
        if event.get("event") != "alert":
            continue
        counts.alerts += 1
        frame = int(event["frame"]) + 1
        person = assoc.owner(int(event["track_id"]), frame)
        if person is None:
            counts.unmatched_alerts += 1
            continue
        if truth.kind_of(person) == STATIC:
            counts.static_face_alerts += 1
            continue
        own = [s for s in spells if s.person == person]
        if not own:  # a truth id without labels: nobody to hold the alert against
            counts.unmatched_alerts += 1
            continue
        spell = min(own, key=lambda s: _distance(s, frame))
        if spell.unmasked:
            hits[spell].append(frame)
        else:
            counts.false_alerts += 1
    for spell, frames in hits.items():
        counts.alerted += 1
        counts.duplicates += len(frames) - 1
        counts.times_to_alert_s.append(round((min(frames) - spell.first) / truth.fps, 3))


def _distance(spell: LabelSpell, frame: int) -> int:
    """Frames from ``frame`` to ``spell`` (0 inside it)."""
    return max(spell.first - frame, frame - spell.last, 0)
