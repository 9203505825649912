"""Chunked analysis of a long video: frame-exact seeking, one set of person ids, events kept once, exact joins."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from maskwatch.capture.sources import VideoFileSource
from maskwatch.commands.batch import chunks
from maskwatch.commands.batch.chunks import (
    Chunk,
    analyse_chunk,
    concat_videos,
    link_ids,
    merge_chunks,
    plan_chunks,
    read_records,
)
from maskwatch.config import Config
from maskwatch.errors import SourceError
from maskwatch.metrics import box_iou
from maskwatch.monitor.pipeline import FacePipeline
from tests.conftest import FakeClassifier, FakeDetector

BITS = 8


def write_indexed_video(path: Path, frames: int, size_wh=(192, 120), fps: float = 10.0) -> Path:
    """A bright square walking right (and wrapping around), and the frame's index in a row of black/white blocks."""
    w, h = size_wh
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
    for i in range(frames):
        img = np.full((h, w, 3), 30, np.uint8)
        x = 20 + (i * 4) % 110
        cv2.rectangle(img, (x, 50), (x + 40, 100), (230, 230, 230), -1)
        for b in range(BITS):  # dark grey / mid grey: below the fake detector's brightness threshold
            img[h - 16 :, b * 16 : b * 16 + 16] = 110 if (i >> b) & 1 else 0  # bottom row: clear of the HUD
        writer.write(img)
    writer.release()
    return path


def frame_number(image: np.ndarray) -> int:
    return sum(1 << b for b in range(BITS) if image[-14:-2, b * 16 + 2 : b * 16 + 14].mean() > 55)


def test_plan_chunks_covers_every_frame_once():
    plan = plan_chunks(1000, 25.0, chunk_s=10.0, overlap_s=2.0)
    assert len(plan) == 4 and plan[0] == Chunk(0, 0, 250, 0)
    assert [c.start for c in plan] == [0, 250, 500, 750] and plan[-1].stop is None  # the last reads to the end
    assert all(c.warm == c.start - 50 for c in plan[1:])
    assert plan_chunks(300, 25.0, chunk_s=10.0, overlap_s=2.0) == [Chunk(0, 0, None, 0)]  # short: whole
    assert plan_chunks(None, 25.0, 10.0, 2.0) == [Chunk(0, 0, None, 0)]  # unknown length: whole
    assert plan_chunks(1000, 25.0, 0.0, 2.0) == [Chunk(0, 0, None, 0)]  # chunking off


def test_a_range_of_a_video_is_frame_exact(tmp_path):
    video = write_indexed_video(tmp_path / "v.mp4", 40)
    source = VideoFileSource(video, start=13, stop=29)
    got = []
    while (item := source.read()) is not None:
        got.append(frame_number(item[0]))
    source.close()
    assert got == list(range(13, 29))


def _analyse(video: Path, plan: list[Chunk], tmp_path: Path, detect_every: int = 1):
    # the same square wraps around: without re-identification each pass is a new person, some across chunk borders
    cfg = Config.model_validate({"tracking": {"reid_max_gap_s": 0, "detect_every": detect_every}})
    tmp_path.mkdir(exist_ok=True)
    parts, records = [], []
    for chunk in plan:
        pipeline = FacePipeline(FakeDetector(), FakeClassifier())  # a fresh model per chunk, as on another worker
        path = tmp_path / f"c{chunk.index}.jsonl"
        parts.append(analyse_chunk(video, chunk, cfg, pipeline, path))
        records.append(read_records(path))
    return merge_chunks(parts, records)


@pytest.mark.parametrize("detect_every", [1, 4])
def test_chunked_analysis_matches_the_whole_video(tmp_path, detect_every):
    video = write_indexed_video(tmp_path / "v.mp4", 90)
    whole = _analyse(video, [Chunk(0, 0, None, 0)], tmp_path / "whole", detect_every)
    plan = plan_chunks(90, 10.0, chunk_s=3.0, overlap_s=1.0)
    assert len(plan) == 3
    split = _analyse(video, plan, tmp_path / "split", detect_every)
    assert [r["frame"] for r in split.records] == list(range(90))
    assert len(whole.people) >= 3  # the square wraps around: several people, some of them across chunk borders
    for a, b in zip(whole.records, split.records, strict=True):
        assert [f.get("track_id") for f in a["faces"]] == [f.get("track_id") for f in b["faces"]], a["frame"]
        assert [f["label"] for f in a["faces"]] == [f["label"] for f in b["faces"]], a["frame"]
        if a["faces"]:
            iou = box_iou([f["box"] for f in a["faces"]], [f["box"] for f in b["faces"]])
            assert np.diag(iou).min() > 0.9
    assert [(p.track_id, p.label, p.frames, p.alerts) for p in split.people] == [
        (p.track_id, p.label, p.frames, p.alerts) for p in whole.people
    ]
    if detect_every > 1:  # a person who leaves just before a border is seen too little in the next chunk's warm-up
        # to be confirmed there, so their `end` comes from the earlier chunk's end: compare the alerts only
        whole.events[:] = [e for e in whole.events if e["event"] == "alert"]
        split.events[:] = [e for e in split.events if e["event"] == "alert"]
        assert len(whole.events) == 3
    strip = [(e["event"], e["frame"], e["track_id"], e["label"]) for e in whole.events]
    assert [(e["event"], e["frame"], e["track_id"], e["label"]) for e in split.events] == strip
    for a, b in zip(whole.events, split.events, strict=True):
        assert b["duration_s"] == pytest.approx(a["duration_s"], abs=0.11) and b["t_s"] == pytest.approx(a["t_s"])
    assert split.summary["frames"] == 90 and split.summary["chunks"] == 3


def test_a_gap_between_chunks_is_an_error(tmp_path):
    video = write_indexed_video(tmp_path / "v.mp4", 30)
    plan = [Chunk(0, 0, 10, 0), Chunk(1, 12, None, 8)]  # frames 10 and 11 belong to nobody
    with pytest.raises(SourceError, match="did not give frames"):
        _analyse(video, plan, tmp_path)


def test_link_ids_needs_agreement_on_most_shared_frames():
    prev = {f: [{"box": [0, 0, 10, 10], "track_id": 7}, {"box": [50, 50, 60, 60], "track_id": 8}] for f in range(4)}
    overlap = [
        {"frame": f, "faces": [{"box": [1, 0, 11, 10], "track_id": 1}, {"box": [20, 20, 30, 30], "track_id": 2}]}
        for f in range(4)
    ]
    assert link_ids(prev, overlap) == {1: 7}  # 2 overlaps nothing: a new person
    overlap[0]["faces"].append({"box": [50, 50, 60, 60], "track_id": 3})  # seen once in 1 frame, agrees once: kept
    assert link_ids(prev, overlap) == {1: 7, 3: 8}


def _record(frame: int, label: str | None, tid: int = 1) -> dict:
    return {"frame": frame, "faces": [{"box": [0, 0, 9, 9], "label": label, "score": 0.9, "track_id": tid}]}


def test_events_are_kept_once():
    records = [_record(f, "without_mask") for f in range(10)] + [_record(f, "with_mask") for f in range(10, 12)]
    records += [_record(f, "without_mask") for f in range(12, 20)]
    events = [
        {"event": "alert", "frame": 2, "track_id": 1},
        {"event": "end", "frame": 5, "track_id": 1},  # the end of chunk 1, but the person goes on: dropped
        {"event": "alert", "frame": 7, "track_id": 1},  # again without a masked spell: dropped
        {"event": "alert", "frame": 15, "track_id": 1},  # after a masked spell: kept
        {"event": "end", "frame": 19, "track_id": 1},
    ]
    kept = chunks._dedup_events(events, records)
    assert [(e["event"], e["frame"]) for e in kept] == [("alert", 2), ("alert", 15), ("end", 19)]


@pytest.mark.parametrize("method", ["reencode", "copy"])
def test_segments_join_frame_exact(tmp_path, monkeypatch, method):
    if method == "reencode":
        monkeypatch.setattr(chunks, "ffmpeg_exe", lambda: None)
    elif chunks.ffmpeg_exe() is None:
        pytest.skip("no ffmpeg here (pip install imageio-ffmpeg)")
    video = write_indexed_video(tmp_path / "v.mp4", 50)
    records = [{"frame": i, "faces": []} for i in range(50)]
    cfg = Config()
    segments = []
    for k, (a, b) in enumerate([(0, 17), (17, 34), (34, 50)]):
        segments.append(tmp_path / f"s{k}.mp4")
        assert chunks.render_chunk(video, a, records[a:b], cfg, segments[-1]) == b - a
    out = tmp_path / "joined.mp4"
    assert concat_videos(segments, out, 10.0) == method
    cap = cv2.VideoCapture(str(out))
    seen = []
    while True:
        ok, image = cap.read()
        if not ok:
            break
        seen.append(frame_number(image))
    assert seen == list(range(50))
