"""Event outputs: where the alert policy's decisions go, behind one door.

The policy (:class:`~maskwatch.monitor.alerts.AlertPolicy`) decides; each event output is an :class:`EventSink`
(``send(event, image)``, ``close()``), and one :class:`EventOutputs` fan-out hands every event to each of them in
order. The outputs here: :class:`Snapshots` (a face picture per alert; first, so the others see its path) and
:class:`EventLog` (one JSON line per event, flushed and fsynced at once, rotated by size). The webhook
(:mod:`maskwatch.outputs.webhook`) and the HTTP view (:mod:`maskwatch.serve.web`) are event sinks too; the fan-out
is built in one place, :func:`maskwatch.wiring.outputs.build_event_outputs`.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import cv2
import numpy as np
from loguru import logger

from maskwatch.errors import OutputError
from maskwatch.monitor.crop import crop_face
from maskwatch.outputs.render import blur_boxes
from maskwatch.types import Event, FrameResult


class EventSink(Protocol):
    """Receives every event of a run, in order. ``image`` is the frame the event was decided on (unannotated), for
    outputs that keep a picture. ``close`` is idempotent; it delivers or finalizes what is pending, bounded in time."""

    def send(self, event: Event, image: np.ndarray) -> None: ...

    def close(self) -> None: ...


class EventOutputs:
    """The fan-out: a sink that hands each event of each frame to every :class:`EventSink`, in the order given.

    It also takes the events that come after the last frame (``takes_events``). ``close`` closes every output,
    each even when an earlier one fails, and raises the first failure.
    """

    data_only = True
    takes_events = True

    def __init__(self, outputs: Sequence[EventSink]) -> None:
        self.outputs = list(outputs)

    def write(self, result: FrameResult, annotated: np.ndarray) -> None:
        for event in result.events:
            for output in self.outputs:
                output.send(event, result.frame.image)

    def close(self) -> None:
        failure: BaseException | None = None
        for output in self.outputs:
            try:
                output.close()
            except Exception as exc:  # close the others first; the first failure is raised below
                failure = failure or exc
        if failure is not None:
            raise failure

    def __enter__(self) -> EventOutputs:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class EventLog:
    """``--events``: an :class:`EventSink` that appends one JSON line per event, flushed and fsynced; rotates past
    ``max_bytes`` keeping ``backups`` older files."""

    def __init__(self, path: Path, *, max_bytes: int = 10_000_000, backups: int = 5, fsync: bool = True) -> None:
        self.path = Path(path)
        self.max_bytes = max_bytes
        self.backups = backups
        self.fsync = fsync
        self.written = 0
        self.by_type: dict[str, int] = {}
        self._file = self._open()

    def _open(self):
        try:
            return open(self.path, "a", encoding="utf-8")  # noqa: SIM115 (closed by close())
        except OSError as exc:
            raise OutputError(f"cannot write events file {self.path}: {exc.strerror}") from None

    def send(self, event: Event, image: np.ndarray) -> None:
        self._append(json.dumps(event.to_json(), separators=(",", ":")) + "\n")
        self.written += 1
        self.by_type[event.event] = self.by_type.get(event.event, 0) + 1

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

    def close(self) -> None:
        if not self._file.closed:
            with contextlib.suppress(OSError):  # a full disk already raised its error at the write
                self._file.close()

    def __enter__(self) -> EventLog:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class Snapshots:
    """An :class:`EventSink` that saves the face of each alert as ``FOLDER/<track>_<frame>.jpg``
    (``<source>_<track>_<frame>.jpg`` with ``prefix_source``, when several sources share one folder), blurred with
    ``blur``, and records its path in the event (``snapshot``) for the outputs after it."""

    def __init__(self, folder: Path, *, blur: bool = False, crop_margin: float = 0.15, prefix_source: bool = False):
        self.folder = Path(folder)
        self.blur = blur
        self.crop_margin = crop_margin
        self.prefix_source = prefix_source

    def send(self, event: Event, image: np.ndarray) -> None:
        if event.event == "alert":
            event.snapshot = self._save(image, event)

    def _save(self, image: np.ndarray, event: Event) -> str | None:
        box = np.asarray(event.box, np.float32)
        if self.blur:
            image = blur_boxes(image, box[None])
        crop = crop_face(image, box, self.crop_margin)
        folder = self.folder
        stem = f"{event.track_id}_{event.frame}"
        target = folder / (f"{event.source}_{stem}.jpg" if self.prefix_source else f"{stem}.jpg")
        try:
            folder.mkdir(exist_ok=True)
            tmp = target.with_name(f".{target.stem}.partial.jpg")
            ok, data = cv2.imencode(".jpg", crop) if crop.size else (False, None)
            if not ok or data is None:
                raise OSError("image not written")
            tmp.write_bytes(data.tobytes())  # by Python: OpenCV crashes on a folder name that is not UTF-8
            os.replace(tmp, target)
        except OSError as exc:
            logger.warning(f"snapshot of track {event.track_id} not saved: {exc}")
            return None
        return str(target)

    def close(self) -> None:
        """Nothing is kept open."""


def snapshot_folder(events_path: Path) -> Path:
    """Where the snapshots of an ``--events`` log go: ``<events stem>_snapshots`` beside it."""
    return events_path.with_name(f"{events_path.stem}_snapshots")
