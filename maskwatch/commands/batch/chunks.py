"""Chunks of a long video: analysed in parallel, stitched back frame-exact with one set of person ids.

A chunk owns frames ``[start, stop)`` and is analysed from ``warm`` (a little earlier), so that its tracker
already knows the people in view at ``start``. The warm-up frames are also the previous chunk's last frames:
there both chunks saw the same faces, and a chunk's person takes the id of the previous chunk's person whose
boxes it matched. Events are kept once (warm-up events and ``end`` events of people who go on into the next chunk
are dropped; a repeated alert needs a masked spell in between, as in the live policy).

Nothing here imports Ray: :mod:`maskwatch.commands.batch.tasks` runs these functions as tasks.
"""

from __future__ import annotations

import bisect
import contextlib
import json
import os
import shutil
import subprocess
import tempfile
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np

from maskwatch.errors import OutputError, SourceError
from maskwatch.metrics import box_iou
from maskwatch.monitor.records import PersonRecord, TimelinePoint
from maskwatch.types import CLASS_NAMES, UNDECIDED, FaceDetections, Frame, FrameResult

LINK_IOU = 0.5
"""Boxes of two chunks on the same frame with at least this IoU are the same face."""


@dataclass(frozen=True)
class Chunk:
    """Frames ``[start, stop)`` of a video (``stop`` None: to its end), analysed from frame ``warm``."""

    index: int
    start: int
    stop: int | None
    warm: int


def probe(video: Path) -> tuple[int | None, float]:
    """(frame count from the header or None, fps) of a video; (None, 25.0) when it does not open."""
    cap = cv2.VideoCapture(str(video))
    try:
        count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) if cap.isOpened() else 0
        fps = cap.get(cv2.CAP_PROP_FPS) if cap.isOpened() else 0.0
    finally:
        cap.release()
    return (count if count > 0 else None), (float(fps) if fps and 0 < fps < 1000 else 25.0)


def plan_chunks(frames: int | None, fps: float, chunk_s: float, overlap_s: float) -> list[Chunk]:
    """Split ``frames`` into chunks of about ``chunk_s`` seconds; one chunk when short, unknown or ``chunk_s`` 0.

    The last chunk reads to the real end of the file, so a header count that is off by a few frames costs nothing.
    """
    size = round(chunk_s * fps)
    if not frames or size <= 0 or frames < 1.5 * size:
        return [Chunk(0, 0, None, 0)]
    n = max(2, round(frames / size))
    bounds = [round(i * frames / n) for i in range(n)]
    overlap = round(overlap_s * fps)
    return [
        Chunk(i, start, bounds[i + 1] if i + 1 < n else None, max(0, start - overlap)) for i, start in enumerate(bounds)
    ]


class _FrameCounter:
    """A data-only sink that reports the number of frames written every ``every`` frames and at the end."""

    data_only = True
    takes_events = False

    def __init__(self, report: Callable[[int], None], every: int = 25) -> None:
        self.report, self.every, self.pending = report, every, 0

    def write(self, result: FrameResult, annotated: np.ndarray) -> None:
        self.pending += 1
        if self.pending >= self.every:
            self.report(self.pending)
            self.pending = 0

    def close(self) -> None:
        if self.pending:
            self.report(self.pending)
            self.pending = 0


def analyse_chunk(
    video: Path,
    chunk: Chunk,
    cfg,
    pipeline,
    detections: Path,
    *,
    annotated: Path | None = None,
    on_frames: Callable[[int], None] | None = None,
) -> dict:
    """Detect, classify and track frames ``warm..stop`` of ``video``; per-frame records go to ``detections``.

    ``annotated`` (a chunk without warm-up only, i.e. a whole video) also writes the annotated video in the same
    pass. Returns what the merge needs: the frames really read, people, events and timeline (times in seconds from
    the start of the video), stage times.
    """
    from maskwatch.capture.sources import VideoFileSource
    from maskwatch.outputs.sinks import JsonLinesSink, VideoSink
    from maskwatch.runner.single import RunStats, run
    from maskwatch.wiring import build_monitor, run_settings
    from maskwatch.wiring.outputs import build_renderer, output_fourcc

    if annotated is not None and chunk.warm != chunk.start:
        raise ValueError("a chunk with warm-up frames cannot write its annotated video in the same pass")
    source = VideoFileSource(video, start=chunk.warm, stop=chunk.stop)
    monitor = build_monitor(cfg, pipeline, source_name=str(video), fps=source.fps, live=False)
    stats = RunStats()
    with contextlib.ExitStack() as stack:
        sinks: list = [stack.enter_context(JsonLinesSink(detections))]
        if annotated is not None:
            sinks.append(stack.enter_context(VideoSink(annotated, fps=source.fps, fourcc=output_fourcc(cfg))))
        if on_frames is not None:
            sinks.append(stack.enter_context(contextlib.closing(_FrameCounter(on_frames))))
        run(
            source,
            monitor,
            sinks,
            build_renderer(cfg),
            queue_size=run_settings(cfg)["queue_size"],
            progress=False,
            stats=stats,
            status_interval_s=float("inf"),
            summary_interval_s=float("inf"),
        )
    stop = chunk.warm + source.frames_read
    if chunk.stop is not None and stop != chunk.stop:
        raise SourceError(
            f"video {video} gave {stop - chunk.warm} frames from frame {chunk.warm}, expected up to {chunk.stop}"
        )
    offset = chunk.warm / source.fps
    return {
        "index": chunk.index,
        "start": chunk.start,
        "stop": stop,
        "warm": chunk.warm,
        "fps": source.fps,
        "frames": stats.frames,
        "wall_s": round(stats.wall_s, 3),
        "stage_ms": dict(stats.stage_ms),
        "detect_every": monitor.stride.every,
        "people": [asdict(p) | {"first_s": p.first_s + offset, "last_s": p.last_s + offset} for p in monitor.people],
        "events": [e.to_json() | {"t_s": round(e.t_s + offset, 3)} for e in monitor.events],
        "timeline": [asdict(t) | {"t_s": t.t_s + offset} for t in monitor.timeline],
    }


@dataclass
class Merged:
    """One video's outputs put together from its chunks."""

    records: list[dict]
    """One detections record per frame, in order, with video-wide track ids."""
    events: list[dict]
    people: list[PersonRecord]
    timeline: list[TimelinePoint]
    summary: dict


def link_ids(previous: dict[int, list[dict]], overlap: list[dict], min_iou: float = LINK_IOU) -> dict[int, int]:
    """Map this chunk's track ids to the previous chunk's, from the frames both saw.

    ``previous``: frame -> faces of the previous chunk (its final ids); ``overlap``: this chunk's records of those
    frames. A pair votes on each frame where its boxes overlap by ``min_iou``; the strongest pairs win, one to one,
    and only when they agree on at least half of the frames where this chunk's track was seen.
    """
    votes: Counter[tuple[int, int]] = Counter()
    seen: Counter[int] = Counter()
    for record in overlap:
        mine = [f for f in record["faces"] if "track_id" in f]
        theirs = [f for f in previous.get(record["frame"], []) if "track_id" in f]
        seen.update(f["track_id"] for f in mine)
        if not mine or not theirs:
            continue
        iou = box_iou(np.array([f["box"] for f in mine], np.float32), np.array([f["box"] for f in theirs], np.float32))
        for i, j in zip(*np.nonzero(iou >= min_iou), strict=True):
            votes[(mine[i]["track_id"], theirs[j]["track_id"])] += 1
    mapping: dict[int, int] = {}
    taken: set[int] = set()
    for (mine_id, their_id), n in votes.most_common():
        if mine_id in mapping or their_id in taken or 2 * n < seen[mine_id]:
            continue
        mapping[mine_id] = their_id
        taken.add(their_id)
    return mapping


def merge_chunks(parts: list[dict], records: list[list[dict]]) -> Merged:
    """Stitch the chunks' results (``parts`` from :func:`analyse_chunk`, ``records`` their detections lines).

    Raises :class:`SourceError` unless the chunks cover every frame exactly once, in order.
    """
    merged: list[dict] = []
    events: list[dict] = []
    people: dict[int, dict] = {}
    timeline: list[TimelinePoint] = []
    next_id = 1
    previous: dict[int, list[dict]] = {}
    for part, recs in zip(parts, records, strict=True):
        start, stop = part["start"], part["stop"]
        mapping = link_ids(previous, [r for r in recs if r["frame"] < start]) if part["index"] else {}
        owned = [r for r in recs if start <= r["frame"] < stop]
        if [r["frame"] for r in owned] != list(range(start, stop)) or (merged and merged[-1]["frame"] != start - 1):
            raise SourceError(f"chunk {part['index']} did not give frames {start}..{stop - 1} exactly, in order")
        for record in owned:
            for face in record["faces"]:
                if "track_id" in face:
                    if face["track_id"] not in mapping:
                        mapping[face["track_id"]] = next_id
                        next_id += 1
                    face["track_id"] = mapping[face["track_id"]]
        merged.extend(owned)
        previous = {r["frame"]: r["faces"] for r in owned}
        for event in part["events"]:
            if event["frame"] >= start and event["track_id"] in mapping:
                events.append(event | {"track_id": mapping[event["track_id"]]})
        for p in part["people"]:
            if p["track_id"] in mapping:
                _add_person(people, p | {"track_id": mapping[p["track_id"]]})
        t_lo, t_hi = start / part["fps"], stop / part["fps"]
        timeline += [TimelinePoint(**t) for t in part["timeline"] if t_lo <= t["t_s"] < t_hi]
    events = _dedup_events(events, merged)
    for e in events:  # a person's time in view spans chunks: count it from the first sighting
        if e["track_id"] in people:
            person = people[e["track_id"]]
            e["duration_s"] = round(min(e["t_s"], person["last_s"]) - person["first_s"], 2)
    alerts = Counter(e["track_id"] for e in events if e["event"] == "alert")
    in_view = Counter(f["track_id"] for r in merged for f in r["faces"] if "track_id" in f)
    persons = [
        PersonRecord(
            track_id=g,
            first_s=p["first_s"],
            last_s=p["last_s"],
            frames=in_view[g],
            label=p["label"],
            unmasked=p["unmasked"],
            alerts=alerts[g],
        )
        for g, p in sorted(people.items(), key=lambda item: (item[1]["first_s"], item[0]))
    ]
    frames = sum(p["frames"] for p in parts)
    stage_ms: dict[str, float] = defaultdict(float)
    for p in parts:
        for name, ms in p["stage_ms"].items():
            stage_ms[name] += ms * p["frames"] / max(frames, 1)
    summary = {
        "frames": len(merged),
        "chunks": len(parts),
        "frames_analysed": frames,
        "task_s": round(sum(p["wall_s"] for p in parts), 2),
        "detect_every": parts[0]["detect_every"],
        "stage_ms": {k: round(v, 2) for k, v in stage_ms.items()},
    }
    return Merged(merged, events, persons, timeline, summary)


def _add_person(people: dict[int, dict], p: dict) -> None:
    """Fold one chunk's record of a person into the video-wide one (later chunks decide the final label)."""
    known = people.get(p["track_id"])
    if known is None:
        people[p["track_id"]] = dict(p)
        return
    known["first_s"] = min(known["first_s"], p["first_s"])
    if p["last_s"] >= known["last_s"]:
        known["last_s"] = p["last_s"]
        known["label"] = p["label"] or known["label"]
    known["unmasked"] = known["unmasked"] or p["unmasked"]


def _dedup_events(events: list[dict], records: list[dict]) -> list[dict]:
    """Drop ``end`` events of people seen again later, and alerts repeated without a masked spell in between."""
    last_seen: dict[int, int] = {}
    masked: dict[int, list[int]] = defaultdict(list)
    for r in records:
        for f in r["faces"]:
            if "track_id" in f:
                last_seen[f["track_id"]] = r["frame"]
                if f["label"] == CLASS_NAMES[0]:
                    masked[f["track_id"]].append(r["frame"])
    last_end = {e["track_id"]: e["frame"] for e in sorted(events, key=lambda e: e["frame"]) if e["event"] == "end"}
    kept: list[dict] = []
    alerted: dict[int, int] = {}
    for e in sorted(events, key=lambda e: e["frame"]):
        g = e["track_id"]
        if e["event"] == "end" and (last_seen.get(g, -1) > e["frame"] or last_end[g] > e["frame"]):
            continue
        if e["event"] == "alert":
            before = alerted.get(g)
            frames = masked[g]
            if before is not None and bisect.bisect_left(frames, before) == bisect.bisect_left(frames, e["frame"]):
                continue
            alerted[g] = e["frame"]
        kept.append(e)
    return kept


def faces_from_json(faces: list[dict]) -> FaceDetections:
    """The :class:`FaceDetections` of one detections record (boxes, labels, scores, track ids)."""
    n = len(faces)
    class_id = np.array([CLASS_NAMES.index(f["label"]) if f["label"] else UNDECIDED for f in faces], np.int64)
    prob = np.zeros((n, len(CLASS_NAMES)), np.float32)
    for i, f in enumerate(faces):
        if class_id[i] != UNDECIDED:
            prob[i, class_id[i]] = f["score"]
    return FaceDetections(
        xyxy=np.array([f["box"] for f in faces], np.float32) if n else np.zeros((0, 4), np.float32),
        det_score=np.array([f["det_score"] for f in faces], np.float32),
        class_id=class_id,
        class_prob=prob,
        track_id=np.array([f.get("track_id", -1) for f in faces], np.int64),
    )


def render_chunk(video: Path, start: int, records: list[dict], cfg, out: Path) -> int:
    """Draw ``records`` (frames ``start`` .. ``start + len - 1``, final ids) onto the video's frames into ``out``."""
    from maskwatch.capture.sources import VideoFileSource
    from maskwatch.outputs.sinks import VideoSink
    from maskwatch.wiring.outputs import build_renderer, output_fourcc

    renderer = build_renderer(cfg)
    source = VideoFileSource(video, start=start, stop=start + len(records))
    try:
        with VideoSink(out, fps=source.fps, fourcc=output_fourcc(cfg)) as sink:
            for record in records:
                item = source.read()
                if item is None:
                    raise SourceError(f"video {video} ended at frame {start + sink.frames_written} while rendering")
                ts = item.timestamp_s if item.timestamp_s is not None else record["frame"] / source.fps
                frame = Frame(image=item.image, index=record["frame"], timestamp_s=ts)
                result = FrameResult(frame=frame, faces=faces_from_json(record["faces"]))
                sink.write(result, renderer.annotate(result))
        return sink.frames_written
    finally:
        source.close()


def ffmpeg_exe() -> str | None:
    """An ffmpeg binary (``ffmpeg`` on PATH, else the one of the ``imageio-ffmpeg`` package), or None."""
    exe = shutil.which("ffmpeg")
    if exe:
        return exe
    with contextlib.suppress(ImportError, RuntimeError):
        import imageio_ffmpeg

        return imageio_ffmpeg.get_ffmpeg_exe()
    return None


def concat_videos(parts: list[Path], out: Path, fps: float, fourcc: str = "mp4v") -> str:
    """Join ``parts`` end to end into ``out``: stream copy with ffmpeg when there is one, else re-encode (OpenCV).

    Returns the method used ("copy" or "reencode").
    """
    exe = ffmpeg_exe()
    if exe is not None:
        with tempfile.NamedTemporaryFile("w", suffix=".txt", dir=out.parent, delete=False) as listing:
            for part in parts:
                listing.write(f"file '{part.resolve()}'\n")
        try:
            cmd = [
                exe,
                "-v",
                "error",
                "-y",
                "-f",
                "concat",
                "-safe",
                "0",
                "-i",
                listing.name,
                "-c",
                "copy",
                "-f",
                "mp4",
            ]
            done = subprocess.run([*cmd, str(out)], capture_output=True, text=True, timeout=3600)
            if done.returncode == 0:
                return "copy"
        finally:
            os.unlink(listing.name)
    writer = None
    try:
        for part in parts:
            cap = cv2.VideoCapture(str(part))
            while True:
                ok, frame = cap.read()
                if not ok:
                    break
                if writer is None:
                    h, w = frame.shape[:2]
                    writer = cv2.VideoWriter(str(out), cv2.VideoWriter.fourcc(*fourcc), fps, (w, h))
                    if not writer.isOpened():
                        raise OutputError(f"cannot write video {out}")
                writer.write(frame)
            cap.release()
    finally:
        if writer is not None:
            writer.release()
    return "reencode"


def read_records(path: Path) -> list[dict]:
    """The detections lines of a chunk."""
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]
