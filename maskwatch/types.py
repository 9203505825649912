"""The typed results that flow through maskwatch's stages.

The detector fills a :class:`FaceDetections`, the classifier enriches it with classes and
probabilities, and the renderer and sinks only read the :class:`FrameResult` that carries it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum
from typing import Final, Literal, get_args

import numpy as np

ClassKey = Literal["with_mask", "without_mask", "mask_weared_incorrect"]
"""A class's name in data, config, detections, events and reports (:attr:`MaskClass.key`)."""


class MaskClass(IntEnum):
    """The classifier's classes, by class id: the name in data and files, what users read, the box colour, and
    whether a person decided this class raises an alert. The one table of labels: config, renderer, report,
    monitor and alert policy all read it."""

    WITH_MASK = 0
    WITHOUT_MASK = 1
    INCORRECT = 2

    @property
    def key(self) -> ClassKey:
        """The name in the training data, config files, detections, events and reports (``mask_weared_incorrect``
        is the dataset's own spelling)."""
        keys: tuple[ClassKey, ClassKey, ClassKey] = ("with_mask", "without_mask", "mask_weared_incorrect")
        return keys[self]

    @property
    def display(self) -> str:
        """The short name drawn on boxes and in the HUD."""
        return ("mask", "no mask", "incorrect")[self]

    @property
    def description(self) -> str:
        """The name in log lines and reports."""
        return ("mask", "no mask", "mask worn incorrectly")[self]

    @property
    def color(self) -> tuple[int, int, int]:
        """The default box colour (B, G, R): green, red, amber."""
        return ((0, 200, 0), (0, 0, 230), (0, 170, 255))[self]

    @property
    def alerts(self) -> bool:
        """Whether a person decided this class raises an alert by default (and counts as unmasked)."""
        return self is not MaskClass.WITH_MASK

    @classmethod
    def from_key(cls, key: str) -> MaskClass:
        """The class whose :attr:`key` is ``key`` (a :class:`KeyError` when none is)."""
        for c in cls:
            if c.key == key:
                return c
        raise KeyError(key)


CLASS_NAMES: tuple[str, ...] = tuple(c.key for c in MaskClass)
"""Class names, in class-id order, exactly as in the training data."""
UNMASKED: frozenset[str] = frozenset(c.key for c in MaskClass if c.alerts)
"""The class names that count as unmasked: no mask, or a mask worn incorrectly."""

UNDECIDED = -1
"""Class id of a face that has not been classified (drawn grey)."""
UNDECIDED_KEY: Final = "undecided"
"""The name of :data:`UNDECIDED` in config colours, counts and reports."""
UNDECIDED_COLOR: tuple[int, int, int] = (160, 160, 160)
"""Grey: a face without a decided label (not classified yet, or a face that never moved: a poster, a screen)."""
ColorKey = ClassKey | Literal["undecided"]
"""The names that have a box colour: the classes and ``undecided``."""


def default_colors() -> dict[ColorKey, tuple[int, int, int]]:
    """The box colours (B, G, R) of every class (:attr:`MaskClass.color`) and of ``undecided`` (grey)."""
    colors: dict[ColorKey, tuple[int, int, int]] = {c.key: c.color for c in MaskClass}
    colors["undecided"] = UNDECIDED_COLOR
    return colors


NO_TRACK = -1
"""Track id of a face the tracker has not (yet) confirmed as a person."""


@dataclass
class FaceDetections:
    """Faces of one frame as parallel arrays (one row per face).

    xyxy: (N, 4) float32 pixel boxes in the frame; det_score: (N,) detector confidence;
    class_id: (N,) int64, ``UNDECIDED`` until classified; class_prob: (N, C) class probabilities;
    track_id: (N,) int64 person id given by the tracker, ``NO_TRACK`` when untracked.
    """

    xyxy: np.ndarray
    det_score: np.ndarray
    class_id: np.ndarray = field(default=None)  # type: ignore[arg-type]
    class_prob: np.ndarray = field(default=None)  # type: ignore[arg-type]
    track_id: np.ndarray = field(default=None)  # type: ignore[arg-type]

    def __post_init__(self) -> None:
        self.xyxy = np.asarray(self.xyxy, dtype=np.float32).reshape(-1, 4)
        n = len(self.xyxy)
        self.det_score = np.asarray(self.det_score, dtype=np.float32).reshape(-1)
        if self.class_id is None:
            self.class_id = np.full(n, UNDECIDED, dtype=np.int64)
        if self.class_prob is None:
            self.class_prob = np.zeros((n, len(CLASS_NAMES)), dtype=np.float32)
        self.class_id = np.asarray(self.class_id, dtype=np.int64).reshape(-1)
        self.class_prob = np.asarray(self.class_prob, dtype=np.float32).reshape(n, len(CLASS_NAMES))
        if self.track_id is None:
            self.track_id = np.full(n, NO_TRACK, dtype=np.int64)
        self.track_id = np.asarray(self.track_id, dtype=np.int64).reshape(-1)
        for name in ("det_score", "class_id", "class_prob", "track_id"):
            if len(getattr(self, name)) != n:
                raise ValueError(f"FaceDetections.{name} has {len(getattr(self, name))} rows, xyxy has {n}")

    @classmethod
    def empty(cls) -> FaceDetections:
        return cls(xyxy=np.zeros((0, 4), np.float32), det_score=np.zeros(0, np.float32))

    def __len__(self) -> int:
        return len(self.xyxy)

    def __getitem__(self, index: np.ndarray | slice | list[int]) -> FaceDetections:
        """Select faces with a boolean mask, an index array or a slice."""
        return FaceDetections(
            xyxy=self.xyxy[index],
            det_score=self.det_score[index],
            class_id=self.class_id[index],
            class_prob=self.class_prob[index],
            track_id=self.track_id[index],
        )

    @property
    def class_score(self) -> np.ndarray:
        """Probability of the chosen class per face (0 where undecided)."""
        if len(self) == 0:
            return np.zeros(0, np.float32)
        score = self.class_prob[np.arange(len(self)), np.clip(self.class_id, 0, None)]
        return np.where(self.class_id == UNDECIDED, 0.0, score).astype(np.float32)

    def label(self, i: int) -> str | None:
        """Class name of face ``i``, or None if undecided."""
        cid = int(self.class_id[i])
        return None if cid == UNDECIDED else CLASS_NAMES[cid]

    def counts(self) -> dict[str, int]:
        """Number of faces per class name and ``undecided``: every face counted once."""
        counts = {c.key: int(np.sum(self.class_id == c)) for c in MaskClass}
        return counts | {UNDECIDED_KEY: len(self) - sum(counts.values())}


@dataclass
class Frame:
    """A captured frame: BGR uint8 image, its index in the source and capture time."""

    image: np.ndarray
    index: int
    timestamp_s: float
    """Position in the source for files (index / fps), monotonic capture time for live sources."""
    captured_at: float = 0.0
    """time.monotonic() when the producer read it, used to measure staleness."""
    name: str = ""
    """Name of what the frame came from: the video or stream, or the image file for image inputs."""


EventKind = Literal["alert", "update", "end", "cross"]
"""What an event says: a person was decided unmasked or wrongly masked (``alert``), changed label (``update``),
left (``end``), or crossed a counting line (``cross``: ``line`` and ``direction`` say which and which way)."""
EVENT_KINDS: tuple[EventKind, ...] = get_args(EventKind)


@dataclass
class Event:
    """One line of the ``--events`` log: a track was decided unmasked (``alert``), changed label, ended or crossed a
    counting line.

    ``ts`` is ISO 8601 UTC; ``t_s`` the position in the source in seconds (files) or seconds since the start
    (live); ``box`` is the face's last [x1, y1, x2, y2] in frame pixels. ``person``: the track counts as a person
    in the run's numbers (it showed life, in the zones if there are any) when the event is made; an ``update`` or a
    ``cross`` of a track that does not count (yet) says False, and a track that never counted has no ``end``.
    Whoever counts people from events counts the tracks of ``person`` events, as the run's summary does.
    """

    event: EventKind
    ts: str
    source: str
    frame: int
    track_id: int
    label: str | None
    confidence: float
    box: list[float]
    duration_s: float = 0.0
    t_s: float = 0.0
    snapshot: str | None = None
    line: str | None = None
    direction: Literal["in", "out"] | None = None
    person: bool = True

    def __post_init__(self) -> None:
        if self.event not in EVENT_KINDS:
            raise ValueError(f"event kind must be one of {', '.join(EVENT_KINDS)}, got {self.event!r}")

    def to_json(self) -> dict:
        record = {
            "event": self.event,
            "ts": self.ts,
            "source": self.source,
            "frame": self.frame,
            "track_id": self.track_id,
            "label": self.label,
            "confidence": round(float(self.confidence), 4),
            "box": [round(float(v), 1) for v in self.box],
            "duration_s": round(float(self.duration_s), 2),
            "t_s": round(float(self.t_s), 3),
            "person": self.person,
        }
        if self.snapshot is not None:
            record["snapshot"] = self.snapshot
        if self.line is not None:
            record["line"], record["direction"] = self.line, self.direction
        return record


@dataclass
class FrameResult:
    """Everything known about one processed frame; renderer and sinks only read it.

    ``detected``: False when the detector skipped this frame and the faces are the tracker's predictions.
    ``events``: what the alert policy decided on this frame (empty without tracking).
    """

    frame: Frame
    faces: FaceDetections
    timings_ms: dict[str, float] = field(default_factory=dict)
    detected: bool = True
    events: list[Event] = field(default_factory=list)

    @property
    def frame_index(self) -> int:
        return self.frame.index

    @property
    def size_wh(self) -> tuple[int, int]:
        h, w = self.frame.image.shape[:2]
        return w, h

    def to_json(self) -> dict:
        """The ``--detections`` JSON-lines record of this frame."""
        faces = self.faces
        scores = faces.class_score
        return {
            "source": self.frame.name,
            "frame": self.frame.index,
            "faces": [
                {
                    "box": [round(float(v), 1) for v in faces.xyxy[i]],
                    "label": faces.label(i),
                    "score": round(float(scores[i]), 4),
                    "det_score": round(float(faces.det_score[i]), 4),
                    **({"track_id": int(faces.track_id[i])} if faces.track_id[i] != NO_TRACK else {}),
                }
                for i in range(len(faces))
            ],
        }
