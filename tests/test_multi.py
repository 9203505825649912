"""Many cameras: the ``sources:`` config, one shared pipeline serving several sources, the shared log and view."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import yaml

from maskwatch.capture.sources import RealtimeFileSource, VideoFileSource
from maskwatch.config import config_from_dict, default_source_name
from maskwatch.errors import ConfigError, SourceError
from maskwatch.monitor.pipeline import FacePipeline
from maskwatch.outputs.events import EventLog, EventOutputs, Snapshots, snapshot_folder
from maskwatch.outputs.sinks import JsonLinesSink
from maskwatch.runner.lanes import Lane, NamedSource, run_sources
from maskwatch.runner.status import RunStatus, SourceStatus, view_status
from maskwatch.serve.metrics import prometheus_text
from maskwatch.serve.web import WebView
from maskwatch.wiring import build_monitor
from tests.conftest import FakeClassifier, FakeDetector, count_frames, write_video
from tests.test_cli import ROOT, assert_user_error, maskwatch
from tests.test_web import request

CFG = {"alerts": {"min_duration_s": 0.0}, "tracking": {"min_hits": 2, "min_votes": 2}}


# config ------------------------------------------------------------------------------------------------------
def test_sources_strings_and_mappings_get_readable_names():
    cfg = config_from_dict(
        {"sources": [0, "rtsp://admin:secret@10.0.0.5:554/live/main", "videos/door.mp4", {"name": "x", "source": "2"}]}
    )
    assert [s.name for s in cfg.sources] == ["camera0", "10.0.0.5-554-live-main", "door", "x"]
    assert [s.source for s in cfg.sources][::3] == ["0", "2"]
    assert "secret" not in default_source_name("http://u:secret@host/cam")
    assert config_from_dict({}).sources == []


@pytest.mark.parametrize(
    ("sources", "message"),
    [
        (["a/door.mp4", "b/door.mp4"], "two sources are named 'door'"),
        ([{"name": "x", "source": "0"}, {"name": "x", "source": "1"}], "two sources are named 'x'"),
        ([{"name": "x"}], "sources.0.source"),
        ([{"source": "0", "nmae": "x"}], "unknown config key 'sources.0.nmae'"),
        ([{"name": "a/b", "source": "0"}], "sources.0.name"),
        ([""], "sources.0.source"),
        ("0", "sources"),
    ],
)
def test_bad_sources_are_named(sources, message):
    with pytest.raises(ConfigError, match=message):
        config_from_dict({"sources": sources})


# the shared pipeline, in process, with fake models -----------------------------------------------------------
def _lanes(tmp_path: Path, specs: dict[str, tuple[int, bool]]) -> list[Lane]:
    cfg = config_from_dict(CFG)
    pipeline = FacePipeline(FakeDetector(), FakeClassifier())
    lanes = []
    for name, (frames, realtime) in specs.items():
        video = VideoFileSource(write_video(tmp_path / f"{name}.mp4", frames=frames, size_wh=(320, 120), fps=25))
        source = NamedSource(RealtimeFileSource(video) if realtime else video, name)
        monitor = build_monitor(cfg, pipeline, source_name=name, fps=source.fps, live=source.is_live)
        lanes.append(Lane(name, source, monitor))
    return lanes


@pytest.mark.parametrize("workers", [1, 2])
def test_sources_share_one_pipeline_one_event_log_and_one_view(tmp_path, workers):
    lanes = _lanes(tmp_path, {"door": (30, False), "lobby": (20, False), "yard": (25, True)})
    events, detections = tmp_path / "events.jsonl", tmp_path / "detections.jsonl"
    started = time.monotonic()
    with (
        JsonLinesSink(detections) as dets,
        WebView(
            port=0, status=lambda: view_status(lanes, started, per_source=True), sources=[lane.name for lane in lanes]
        ) as view,
        EventOutputs([Snapshots(snapshot_folder(events), prefix_source=True), EventLog(events), view]) as log,
    ):
        run_sources(lanes, [log, dets, view], None, workers=workers, status_interval_s=0.2)
        assert [lane.stats.frames for lane in lanes[:2]] == [30, 20]  # files: every frame
        assert 0 < lanes[2].stats.frames <= 25  # realtime: the freshest frames
        data = json.loads(request(view, "/status")[2])
        rows = {row["name"]: row for row in data["sources"]}
        assert list(rows) == ["door", "lobby", "yard"]
        for key in ("fps", "frames", "dropped", "people_now", "people_total", "alerts", "connected", "frame"):
            assert all(key in row for row in rows.values()), key
        assert rows["door"]["frames"] == 30 and rows["door"]["frame"] == 29 and rows["door"]["alerts"] == 1
        assert data["frames"] == sum(lane.stats.frames for lane in lanes)
        for name in ("door", "yard"):
            code, headers, body = request(view, f"/snapshot.jpg?source={name}")
            assert code == 200 and body[:2] == b"\xff\xd8"
        assert request(view, "/snapshot.jpg")[0] == 200  # the first source
        assert request(view, "/snapshot.jpg?source=nope")[0] == 404
        assert request(view, "/stream.mjpg?source=nope")[0] == 404
        metrics = request(view, "/metrics")[2].decode()
        assert 'maskwatch_frames_total{source="lobby"} 20' in metrics
        assert 'maskwatch_stage_milliseconds{source="door",stage="detect"}' in metrics
        seen = {e["source"] for e in json.loads(request(view, "/events")[2])}
        assert seen == {"door", "lobby", "yard"}
    records = [json.loads(line) for line in events.read_text().splitlines()]  # every line is JSON
    by_source = {name: [r for r in records if r["source"] == name] for name in ("door", "lobby", "yard")}
    assert all(r["source"] in by_source for r in records)
    for name, lane in zip(by_source, lanes, strict=True):
        assert [r["event"] for r in by_source[name]] == ["alert", "end"]  # one person each, alerted once
        assert by_source[name] == [e.to_json() for e in lane.process.events]
    shots = sorted(p.name for p in snapshot_folder(events).iterdir())
    assert [s.split("_")[0] for s in shots] == ["door", "lobby", "yard"]
    frames = [json.loads(line) for line in detections.read_text().splitlines()]
    assert {f["source"] for f in frames} == {"door", "lobby", "yard"} and len(frames) == data["frames"]


def test_a_failing_source_ends_alone_and_is_reported(tmp_path):
    lanes = _lanes(tmp_path, {"good": (30, False), "bad": (30, False)})

    class Broken:
        def __init__(self, inner):
            self.inner, self.reads = inner, 0

        def __getattr__(self, attr):
            return getattr(self.inner, attr)

        def read(self):
            self.reads += 1
            if self.reads > 5:
                raise SourceError("camera unplugged")
            return self.inner.read()

    lanes[1].source = NamedSource(Broken(lanes[1].source), "bad")
    with pytest.raises(SourceError, match=r"1 of 2 sources failed \(bad\); first: camera unplugged"):
        run_sources(lanes, [], workers=2)
    assert lanes[0].stats.frames == 30 and lanes[1].stats.frames == 5
    assert all(not lane.producer.is_alive() for lane in lanes)


def test_stop_ends_every_source_promptly(tmp_path):
    lanes = _lanes(tmp_path, {"a": (250, True), "b": (250, True)})  # 10 s each at 25 fps
    stop = threading.Event()
    threading.Timer(0.8, stop.set).start()
    started = time.monotonic()
    run_sources(lanes, [], stop=stop)
    assert time.monotonic() - started < 4.0
    assert all(0 < lane.stats.frames < 250 and lane.stats.stopped_early for lane in lanes)
    assert all(not lane.producer.is_alive() for lane in lanes)


def test_a_stop_marks_only_the_sources_it_cut_short_and_their_reports_say_so(tmp_path):
    from maskwatch.outputs.report import write_run_report

    lanes = _lanes(tmp_path, {"short": (5, False), "long": (250, True)})  # the long one plays 10 s
    stop = threading.Event()

    def stop_after_the_short_one():
        deadline = time.monotonic() + 10
        while not lanes[0].done and time.monotonic() < deadline:
            time.sleep(0.01)
        stop.set()

    threading.Thread(target=stop_after_the_short_one, daemon=True).start()
    run_sources(lanes, [], stop=stop)
    assert lanes[0].stats.frames == 5 and 0 < lanes[1].stats.frames < 250
    assert [lane.stats.stopped_early for lane in lanes] == [False, True]
    for lane in lanes:
        write_run_report(tmp_path / f"events.{lane.name}", lane.source, lane.stats, lane.process)
    partial = {
        lane.name: json.loads((tmp_path / f"events.{lane.name}.report.json").read_text())["summary"]["partial_reason"]
        for lane in lanes
    }
    assert partial == {"short": None, "long": "interrupted"}


def test_a_failing_stage_in_a_helper_worker_stops_every_source(tmp_path):
    lanes = _lanes(tmp_path, {"a": (250, True), "b": (250, True)})
    lanes[1].process = lambda frame: 1 / 0
    started = time.monotonic()
    with pytest.raises(ZeroDivisionError):
        run_sources(lanes, [], workers=2)
    assert time.monotonic() - started < 5.0 and all(not lane.producer.is_alive() for lane in lanes)


def test_prometheus_labels_each_source():
    rows = tuple(SourceStatus(name, True, True, fps, 0, 0, 0, {}) for name, fps in (("a", 2.5), ('b"', 1.0)))
    text = prometheus_text(RunStatus(3.0, rows, per_source=True), 0)
    assert 'maskwatch_fps{source="a"} 2.5' in text and 'maskwatch_fps{source="b\\""} 1.0' in text
    assert "maskwatch_uptime_seconds 3.0" in text


# the command ------------------------------------------------------------------------------------------------
def _config(tmp_path: Path, sources: list, **extra) -> Path:
    """A config with ``sources``; fp32 models, which load in a fraction of the int8 ones' time."""
    path = tmp_path / "cams.yaml"
    path.write_text(yaml.safe_dump({"sources": sources, "runtime": {"precision": "fp32"}, **extra}))
    return path


def test_run_without_source_or_sources_is_one_line(tmp_path):
    assert_user_error(maskwatch("run"), "give --source", "sources:")
    bad = _config(tmp_path, ["a.mp4", "x/a.mp4"])
    assert_user_error(maskwatch("run", "--config", str(bad)), "two sources are named 'a'")


def test_a_source_that_fails_to_open_is_one_line(tmp_path):
    good = write_video(tmp_path / "good.mp4")
    cams = _config(tmp_path, [str(good), {"name": "gate", "source": "rtsp://user:hunter2@127.0.0.1:9/x"}])
    proc = maskwatch("run", "--config", str(cams))
    assert_user_error(proc, "source 'gate'", "rtsp://***@127.0.0.1:9/x")
    assert "hunter2" not in proc.stderr + proc.stdout
    proc = maskwatch("run", "--config", str(_config(tmp_path, [str(good), str(tmp_path / "gone.mp4")])))
    assert_user_error(proc, "source 'gone'", "source not found")


def test_run_many_sources_with_the_real_models(tmp_path):
    a, b = write_video(tmp_path / "a.mp4", frames=12), write_video(tmp_path / "b.mp4", frames=8)
    cams = _config(tmp_path, [str(a), {"name": "back door", "source": str(b)}])
    out = tmp_path / "annotated"
    events, detections = tmp_path / "events.jsonl", tmp_path / "detections.jsonl"
    proc = maskwatch(
        "run", "--config", str(cams), "--output", str(out), "--events", str(events), "--detections", str(detections)
    )
    assert proc.returncode == 0, proc.stderr
    assert "running 2 sources" in proc.stderr and "a: done: 12 frames" in proc.stderr
    assert count_frames(out / "a.mp4")[0] == 12 and count_frames(out / "back door.mp4")[0] == 8
    frames = [json.loads(line) for line in detections.read_text().splitlines()]
    assert sorted(f["source"] for f in frames) == ["a"] * 12 + ["back door"] * 8
    assert events.exists() and (tmp_path / "events.back door.report.json").exists()
    proc = maskwatch("run", "--config", str(cams), "--output", str(tmp_path / "x.mp4"))
    assert_user_error(proc, "must be a folder")


def test_sigterm_stops_all_live_sources(tmp_path):
    a, b = (write_video(tmp_path / f"{n}.mp4", frames=400, fps=25) for n in "ab")  # 16 s each
    cams = _config(tmp_path, [str(a), str(b)], http={"bind": "127.0.0.1:0"})
    command = [sys.executable, "-m", "maskwatch", "run", "--config", str(cams), "--realtime"]
    proc = subprocess.Popen(command, cwd=ROOT, stderr=subprocess.PIPE, text=True, env=os.environ | {"NO_COLOR": "1"})
    lines = []
    for line in proc.stderr:
        lines.append(line)
        if "fps" in line and " | " in line:  # a status line: both sources are running
            break
    proc.send_signal(signal.SIGTERM)
    _, rest = proc.communicate(timeout=20)
    log = "".join(lines) + rest
    assert proc.returncode == 0, log  # realtime sources are live: a signal is a normal stop
    assert "HTTP view on http://127.0.0.1:" in log
    assert "a: done" in log and "b: done" in log and "Traceback" not in log
