"""Event outputs: the events log and the forwarder that hand on what the alert policy decided.

The policy (:class:`~maskwatch.monitor.alerts.AlertPolicy`) decides; the :class:`EventLog` sink writes one JSON
line per event, flushed and fsynced at once (nothing is lost on power loss), rotates by size and optionally saves a
face snapshot with each alert.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
from loguru import logger

from maskwatch.errors import OutputError
from maskwatch.monitor.crop import crop_face
from maskwatch.outputs.render import blur_boxes
from maskwatch.types import Event, FrameResult


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
            ok, data = cv2.imencode(".jpg", crop) if crop.size else (False, None)
            if not ok:
                raise OSError("image not written")
            tmp.write_bytes(data.tobytes())  # by Python: OpenCV crashes on a folder name that is not UTF-8
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
