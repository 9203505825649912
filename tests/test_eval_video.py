"""The video benchmark's scorer and command, on tiny synthetic clips whose truth is known (no ../shared, no network)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from maskwatch.cli import main
from maskwatch.commands.eval_video.run import RecordSink, run_clip, summarize, table_lines
from maskwatch.commands.eval_video.score import label_spells, score_clip
from maskwatch.commands.eval_video.truth import (
    MOT_PEDESTRIAN,
    MOT_STATIC_PERSON,
    STATIC,
    BenchmarkError,
    BoxRow,
    Spell,
    find_clips,
    read_clip,
    write_clip,
)

FPS = 10.0
N = 30


def _person_box(i: int, person: int) -> tuple[float, float, float, float]:
    """Person 1 walks right along y=20, person 2 along y=70: never overlapping."""
    x = 5 + 4 * i
    y = 20 if person == 1 else 70
    return (float(x), float(y), float(x + 30), float(y + 30))


POSTER = (150.0, 10.0, 180.0, 40.0)


def _clip(tmp_path: Path, *, boxes: bool = True, labels: tuple[str, str] = ("without_mask", "with_mask")) -> Path:
    """A 30-frame clip folder: two people (ids 1, 2) and a static face (id 1000, an ignore region)."""
    folder = tmp_path / "clip"
    folder.mkdir(parents=True, exist_ok=True)
    writer = cv2.VideoWriter(str(folder / "video.mp4"), cv2.VideoWriter_fourcc(*"mp4v"), FPS, (200, 120))
    for _ in range(N):
        writer.write(np.zeros((120, 200, 3), np.uint8))
    writer.release()
    rows = []
    for i in range(N):
        rows += [BoxRow(i + 1, p, _person_box(i, p), True, MOT_PEDESTRIAN, 1.0) for p in (1, 2)]
        rows.append(BoxRow(i + 1, 1000, POSTER, False, MOT_STATIC_PERSON, 1.0))
    spells = [Spell(1, 1, N, labels[0]), Spell(2, 1, N, labels[1]), Spell(1000, 1, N, "without_mask", STATIC)]
    write_clip(
        folder, name="clip", video="video.mp4", fps=FPS, frames=N, size_wh=(200, 120), spells=spells,
        rows=rows if boxes else None,
    )  # fmt: skip
    return folder


def _records(track_of=lambda i, p: p, labels=("without_mask", "with_mask"), poster_track: int | None = None):
    """Detections records of a tracker: ``track_of(i, person)`` gives each person's track id at frame i."""
    records = []
    for i in range(N):
        faces = [{"box": list(_person_box(i, p)), "label": labels[p - 1], "track_id": track_of(i, p)} for p in (1, 2)]
        if poster_track is not None:
            faces.append({"box": list(POSTER), "label": "without_mask", "track_id": poster_track})
        records.append({"frame": i, "faces": faces})
    return records


def _alert(frame: int, track: int) -> dict:
    return {"event": "alert", "frame": frame, "track_id": track, "label": "without_mask"}


def test_perfect_tracker_scores_one(tmp_path):
    pytest.importorskip("motmetrics")
    truth = read_clip(_clip(tmp_path))
    score = score_clip(truth, _records(), [_alert(10, 1)]).to_json()
    assert score["idf1"] == 1.0 and score["mota"] == 1.0 and score["id_switches"] == 0
    assert score["label_accuracy"] == 1.0
    assert score["alert_recall"] == 1.0
    assert score["duplicate_alerts_per_person"] == 0.0
    assert score["false_alerts_per_person"] == 0.0
    assert score["static_face_alerts"] == 0
    assert score["median_time_to_alert_s"] == pytest.approx(1.0)  # alert on frame 11, first seen on frame 1


def test_broken_id_is_a_switch(tmp_path):
    pytest.importorskip("motmetrics")
    truth = read_clip(_clip(tmp_path))
    records = _records(track_of=lambda i, p: p if p == 2 or i < 15 else 7)
    score = score_clip(truth, records, []).to_json()
    assert score["id_switches"] == 1
    assert score["idf1"] < 1.0
    assert score["mota"] == pytest.approx(1 - 1 / (2 * N), abs=1e-4)


def test_duplicate_false_and_static_alerts(tmp_path):
    pytest.importorskip("motmetrics")
    truth = read_clip(_clip(tmp_path))
    records = _records(track_of=lambda i, p: p if p == 2 or i < 15 else 7, poster_track=9)
    events = [_alert(10, 1), _alert(20, 7), _alert(25, 7), _alert(12, 2), _alert(5, 9), {"event": "end", "frame": 29}]
    score = score_clip(truth, records, events).to_json()
    assert score["alert_recall"] == 1.0
    assert score["duplicate_alerts_per_person"] == 2.0  # three alerts for one unmasked person
    assert score["false_alerts_per_person"] == 1.0  # the masked person alerted once
    assert score["static_face_alerts"] == 1
    # the poster's track is neither a hit nor a false positive: only the switch counts
    assert score["mota"] == pytest.approx(1 - 1 / (2 * N), abs=1e-4)
    assert score["counts"]["alerts"] == 5


def test_a_box_inside_an_ignore_region_is_on_it(tmp_path):
    """A tracker's box tighter than the truth's box of a static face (IoU < 0.5) still belongs to that face."""
    pytest.importorskip("motmetrics")
    truth = read_clip(_clip(tmp_path))
    records = _records()
    for record in records:
        record["faces"].append({"box": [155.0, 15.0, 172.0, 33.0], "label": "without_mask", "track_id": 9})
    score = score_clip(truth, records, [_alert(10, 1), _alert(12, 9)]).to_json()
    assert score["mota"] == 1.0 and score["static_face_alerts"] == 1 and score["counts"]["unmatched_alerts"] == 0


def test_missed_and_mislabelled_person(tmp_path):
    truth = read_clip(_clip(tmp_path))
    records = _records(labels=("with_mask", "with_mask"))
    score = score_clip(truth, records, []).to_json()
    assert score["alert_recall"] == 0.0
    assert score["label_accuracy"] == 0.5
    assert score["median_time_to_alert_s"] is None


def test_per_person_metrics_without_motmetrics(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "motmetrics", None)  # import fails as when it is not installed
    truth = read_clip(_clip(tmp_path))
    score = score_clip(truth, _records(), [_alert(10, 1), _alert(20, 1)]).to_json()
    assert score["idf1"] is None and score["mota"] is None and score["id_switches"] is None
    assert score["alert_recall"] == 1.0 and score["duplicate_alerts_per_person"] == 1.0


def test_boxes_unknown_clip_attributes_by_time(tmp_path):
    folder = tmp_path / "real"
    folder.mkdir()
    cv2.imwrite(str(folder / "x.png"), np.zeros((8, 8, 3), np.uint8))
    (folder / "video.mp4").write_bytes(b"")  # only its existence is checked by read_clip
    spells = [Spell(1, 1, 10, "without_mask"), Spell(2, 16, 25, "with_mask"), Spell(1, 31, 40, "without_mask")]
    write_clip(folder, name="real", video="video.mp4", fps=5, frames=40, size_wh=(8, 8), spells=spells, rows=None)
    truth = read_clip(folder)
    assert truth.boxes is None

    def seen(frame: int, track: int, label: str) -> dict:
        return {"frame": frame - 1, "faces": [{"box": [0, 0, 4, 4], "label": label, "track_id": track}]}

    records = [seen(2, 1, "without_mask"), seen(3, 1, "without_mask"), seen(17, 2, "with_mask")]
    records.append(seen(33, 3, "without_mask"))
    events = [_alert(2, 1), _alert(32, 3)]
    score = score_clip(truth, records, events).to_json()
    assert score["idf1"] is None
    assert score["label_accuracy"] == 1.0
    assert score["alert_recall"] == 1.0
    assert score["duplicate_alerts_per_person"] == 1.0  # the returning person was alerted again
    assert score["median_time_to_alert_s"] == pytest.approx(0.4)


def test_label_spells_merge_a_return_but_not_a_change():
    spells = [Spell(1, 1, 10, "without_mask"), Spell(1, 20, 30, "without_mask"), Spell(1, 31, 40, "with_mask")]
    merged = label_spells(spells + [Spell(5, 1, 40, "with_mask", STATIC)])
    assert [(s.person, s.label, s.first, s.last) for s in merged] == [
        (1, "without_mask", 1, 30),
        (1, "with_mask", 31, 40),
    ]


def test_summary_and_table_have_every_key(tmp_path):
    truth = read_clip(_clip(tmp_path))
    result = summarize([score_clip(truth, _records(), [_alert(10, 1)])])
    keys = ["idf1", "mota", "id_switches", "label_accuracy", "alert_recall", "duplicate_alerts_per_person"]
    keys += ["false_alerts_per_person", "static_face_alerts", "median_time_to_alert_s"]
    for key in keys:
        assert key in result and key in result["clips"]["clip"]
    lines = table_lines(result)
    assert lines[0].startswith("clip") and lines[-1].startswith("OVERALL") and len(lines) == 3
    json.dumps(result)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda d: d / "missing", "does not exist"),
        (lambda d: d, "no clips"),
        (lambda d: _broken(d, "labels"), "labels.csv"),
        (lambda d: _broken(d, "info"), "seqinfo.ini"),
        (lambda d: _broken(d, "gt"), "gt.txt"),
    ],
)
def test_bad_benchmark_folder_is_one_error(tmp_path, make, message, capsys):
    data = make(tmp_path)
    with pytest.raises(BenchmarkError, match=message):
        [read_clip(c) for c in find_clips(data)]
    assert main(["eval-video", "--data", str(data)]) == 1


def _broken(tmp_path: Path, what: str) -> Path:
    folder = _clip(tmp_path)
    if what == "labels":
        (folder / "gt" / "labels.csv").write_text("id,first_frame,last_frame,label,kind\n1,1,x,with_mask,person\n")
    elif what == "info":
        (folder / "seqinfo.ini").write_text("[Sequence]\nname=clip\n")
    else:
        (folder / "gt" / "gt.txt").unlink()
    return tmp_path


def test_run_clip_in_process_with_fake_models(tmp_path):
    """The in-process run (same builders and runner as `run`) on a square that walks for 4 s: one person, alerted."""
    from maskwatch.config import load_config
    from maskwatch.monitor.pipeline import FacePipeline
    from tests.conftest import FakeClassifier, FakeDetector

    folder = tmp_path / "walk"
    folder.mkdir()
    writer = cv2.VideoWriter(str(folder / "video.mp4"), cv2.VideoWriter_fourcc(*"mp4v"), FPS, (160, 120))
    rows = []
    for i in range(40):
        img = np.full((120, 160, 3), 20, np.uint8)
        x = 10 + 2 * i
        cv2.rectangle(img, (x, 30), (x + 39, 79), (230, 230, 230), -1)
        writer.write(img)
        rows.append(BoxRow(i + 1, 1, (x, 30, x + 40, 80), True, MOT_PEDESTRIAN, 1.0))
    writer.release()
    spells = [Spell(1, 1, 40, "without_mask")]
    write_clip(folder, name="walk", video="video.mp4", fps=FPS, frames=40, size_wh=(160, 120), spells=spells, rows=rows)
    truth = read_clip(folder)
    cfg = load_config(None, {"tracking.detect_every": 1})  # the scorer, not the stride, is under test
    produced = run_clip(cfg, FacePipeline(FakeDetector(), FakeClassifier()), truth)
    assert isinstance(produced, RecordSink) and len(produced.records) == 40
    records = [produced.records[i] for i in sorted(produced.records)]
    assert produced.people_counted == 1  # the monitor's people_total
    score = score_clip(truth, records, produced.events, produced.people_counted).to_json()
    assert score["alert_recall"] == 1.0 and score["duplicate_alerts_per_person"] == 0.0
    assert score["label_accuracy"] == 1.0
    assert score["people_true"] == 1 and score["people_counted"] == 1
    if score["idf1"] is not None:
        assert score["id_switches"] == 0 and score["idf1"] > 0.9


def test_demo_clip_is_shipped_and_scorable():
    from maskwatch.demo import demo_folder, demo_path, resolve_source

    path = demo_path()
    assert path.is_file() and path.stat().st_size < 1_000_000
    truth = read_clip(demo_folder())
    assert truth.boxes is not None and any(s.unmasked for s in truth.people)
    assert resolve_source("demo") == str(path)
    assert resolve_source("clip.mp4") == "clip.mp4"
