"""Events: the alert policy that turns tracks into ``alert`` / ``update`` / ``end`` events, and the events log.

The policy decides; the :class:`EventLog` sink writes one JSON line per event, flushed and fsynced at once
(nothing is lost on power loss), rotates by size and optionally saves a face snapshot with each alert.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

import cv2
import numpy as np
from loguru import logger

from maskwatch.errors import OutputError
from maskwatch.monitor.crop import crop_face
from maskwatch.outputs.render import blur_boxes
from maskwatch.types import CLASS_NAMES, UNDECIDED, Event, FrameResult


def utc_now() -> str:
    """The current time as ISO 8601 UTC with milliseconds (``2026-11-26T10:00:00.123Z``)."""
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class TrackLike(Protocol):
    """What the policy reads from a tracker's track (see ``maskwatch.monitor.track.Track``)."""

    track_id: int
    xyxy: np.ndarray
    label: int
    confidence: float
    last_frame: int

    @property
    def duration_s(self) -> float: ...


class AlertPolicy:
    """Decides which events a frame produces.

    - ``alert``: a track is decided one of ``alert_labels`` and has been seen ``min_duration_s``. A track alerts
      once; it may alert again only after ``cooldown_s`` and after having been decided masked in between.
    - ``update`` (optional): a track's decided label changed from one class to another.
    - ``end`` (optional): a confirmed track left (lost for longer than the tracker keeps it).
    """

    def __init__(
        self,
        source: str,
        *,
        alert_labels: Iterable[str] = ("without_mask", "mask_weared_incorrect"),
        min_duration_s: float = 1.0,
        cooldown_s: float = 300.0,
        updates: bool = True,
        ends: bool = True,
        clock: Callable[[], str] = utc_now,
    ) -> None:
        self.source = source
        self.alert_ids = {CLASS_NAMES.index(name) for name in alert_labels}
        self.min_duration_s = min_duration_s
        self.cooldown_s = cooldown_s
        self.updates = updates
        self.ends = ends
        self.clock = clock
        self.alerts = 0
        self._label: dict[int, int] = {}
        self._last_alert_s: dict[int, float] = {}
        self._masked_since_alert: dict[int, bool] = {}
        self.alerts_by_track: dict[int, int] = {}

    def step(self, frame_index: int, ts: float, tracks: Sequence[TrackLike], ended: Sequence[TrackLike]) -> list[Event]:
        """Events for one frame: ``tracks`` are the alive confirmed tracks, ``ended`` the ones that just left."""
        events: list[Event] = []
        for track in tracks:
            if track.last_frame != frame_index or track.label == UNDECIDED:
                continue  # only act on what was seen on this frame
            tid, label = track.track_id, int(track.label)
            previous = self._label.get(tid, UNDECIDED)
            self._label[tid] = label
            if previous not in (UNDECIDED, label) and self.updates:
                events.append(self._event("update", frame_index, ts, track))
            if label not in self.alert_ids:
                if tid in self._last_alert_s:
                    self._masked_since_alert[tid] = True
                continue
            if track.duration_s < self.min_duration_s:
                continue
            last = self._last_alert_s.get(tid)
            if last is not None and not (self._masked_since_alert.get(tid) and ts - last >= self.cooldown_s):
                continue
            self._last_alert_s[tid] = ts
            self._masked_since_alert[tid] = False
            self.alerts += 1
            self.alerts_by_track[tid] = self.alerts_by_track.get(tid, 0) + 1
            events.append(self._event("alert", frame_index, ts, track))
        for track in ended:
            if self.ends:
                events.append(self._event("end", frame_index, ts, track))
            for table in (self._label, self._last_alert_s, self._masked_since_alert):
                table.pop(track.track_id, None)
        return events

    def _event(self, kind: str, frame_index: int, ts: float, track: TrackLike) -> Event:
        label = None if track.label == UNDECIDED else CLASS_NAMES[int(track.label)]
        return Event(
            event=kind,
            ts=self.clock(),
            source=self.source,
            frame=frame_index,
            track_id=int(track.track_id),
            label=label,
            confidence=float(track.confidence),
            box=[float(v) for v in track.xyxy],
            duration_s=float(track.duration_s),
            t_s=ts,
        )


class EventLog:
    """``--events``: appends one JSON line per event, flushed and fsynced; rotates past ``max_bytes``.

    ``snapshots`` saves the face of each alert as ``<events stem>_snapshots/<track>_<frame>.jpg`` (blurred with
    ``blur``; ``<source>_<track>_<frame>.jpg`` with ``snapshot_prefix_source``, when several sources share the
    log); ``on_event`` (e.g. a webhook's ``send``) receives every record after it is on disk.
    """

    data_only = True
    takes_events = True

    def __init__(
        self,
        path: Path,
        *,
        max_bytes: int = 10_000_000,
        backups: int = 5,
        snapshots: bool = False,
        blur: bool = False,
        crop_margin: float = 0.15,
        on_event: Callable[[dict], None] | None = None,
        fsync: bool = True,
        snapshot_prefix_source: bool = False,
    ) -> None:
        self.path = Path(path)
        self.max_bytes = max_bytes
        self.backups = backups
        self.snapshots = snapshots
        self.blur = blur
        self.crop_margin = crop_margin
        self.on_event = on_event
        self.fsync = fsync
        self.snapshot_prefix_source = snapshot_prefix_source
        self.written = 0
        self.by_type: dict[str, int] = {}
        self._file = self._open()

    def _open(self):
        try:
            return open(self.path, "a", encoding="utf-8")  # noqa: SIM115 (closed by close())
        except OSError as exc:
            raise OutputError(f"cannot write events file {self.path}: {exc.strerror}") from None

    @property
    def snapshot_dir(self) -> Path:
        return self.path.with_name(f"{self.path.stem}_snapshots")

    def write(self, result: FrameResult, annotated: np.ndarray) -> None:
        for event in result.events:
            if self.snapshots and event.event == "alert":
                event.snapshot = self._snapshot(result.frame.image, event)
            record = event.to_json()
            self._append(json.dumps(record, separators=(",", ":")) + "\n")
            self.written += 1
            self.by_type[event.event] = self.by_type.get(event.event, 0) + 1
            if self.on_event is not None:
                self.on_event(record)

    def _append(self, line: str) -> None:
        try:
            self._file.write(line)
            self._file.flush()
            if self.fsync:
                os.fsync(self._file.fileno())
        except OSError as exc:
            raise OutputError(f"cannot write events file {self.path}: {exc.strerror}") from None
        if self._file.tell() >= self.max_bytes:
            self._rotate()

    def _rotate(self) -> None:
        self._file.close()
        if self.backups == 0:
            self.path.unlink(missing_ok=True)
        else:
            for i in range(self.backups - 1, 0, -1):
                older = self.path.with_name(f"{self.path.name}.{i}")
                if older.exists():
                    os.replace(older, self.path.with_name(f"{self.path.name}.{i + 1}"))
            os.replace(self.path, self.path.with_name(f"{self.path.name}.1"))
        self._file = self._open()
        logger.debug(f"rotated events file {self.path}")

    def _snapshot(self, image: np.ndarray, event: Event) -> str | None:
        box = np.asarray(event.box, np.float32)
        if self.blur:
            image = blur_boxes(image, box[None])
        crop = crop_face(image, box, self.crop_margin)
        folder = self.snapshot_dir
        stem = f"{event.track_id}_{event.frame}"
        target = folder / (f"{event.source}_{stem}.jpg" if self.snapshot_prefix_source else f"{stem}.jpg")
        try:
            folder.mkdir(exist_ok=True)
            tmp = target.with_name(f".{target.stem}.partial.jpg")
            if crop.size == 0 or not cv2.imwrite(str(tmp), crop):
                raise OSError("image not written")
            os.replace(tmp, target)
        except OSError as exc:
            logger.warning(f"snapshot of track {event.track_id} not saved: {exc}")
            return None
        return str(target)

    def close(self) -> None:
        if not self._file.closed:
            with contextlib.suppress(OSError):  # a full disk already raised its error at the write
                self._file.close()

    def __enter__(self) -> EventLog:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class EventForwarder:
    """A sink that hands each event to a callable (the webhook when there is no events file)."""

    data_only = True
    takes_events = True

    def __init__(self, send) -> None:
        self.send = send

    def write(self, result, annotated) -> None:
        for event in result.events:
            self.send(event.to_json())

    def close(self) -> None:
        pass
