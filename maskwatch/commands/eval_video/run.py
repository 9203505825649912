"""``maskwatch eval-video``: run maskwatch on every clip of a benchmark folder, in-process, and score it.

Each clip goes through the same builders and run loop as ``maskwatch run --source CLIP --detections --events``
(pipeline, monitor with tracker and alert policy, the single-source runner); a sink collects the per-frame records
and the events instead of writing files (``--keep DIR`` writes them too).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from loguru import logger

from maskwatch.commands.eval_video.changes import FAST_S, change_summary
from maskwatch.commands.eval_video.score import MOT_KEYS, PERSON_KEYS, ClipScore, PersonCounts, mot_summary, score_clip
from maskwatch.commands.eval_video.truth import BenchmarkError, ClipTruth, find_clips, read_clip
from maskwatch.commands.options import emit
from maskwatch.types import FrameResult

_ALERT_KEYS = {"labels", "min_duration_s", "cooldown_s"}
"""The alert settings that decide what is scored (recorded in the JSON with the tracking settings)."""


class RecordSink:
    """A data-only sink that keeps each frame's ``--detections`` record and every event (as JSON dicts)."""

    data_only = True
    takes_events = True

    def __init__(self) -> None:
        self.records: dict[int, dict] = {}
        self.events: list[dict] = []
        self.people_counted = 0  # the monitor's people_total at the end of the clip

    def write(self, result: FrameResult, annotated) -> None:
        self.records.setdefault(result.frame_index, result.to_json())  # the end-of-input result repeats a frame
        self.events.extend(event.to_json() for event in result.events)

    def close(self) -> None:
        pass


def load_benchmark(data: Path) -> list[ClipTruth]:
    """Every clip of ``data``, checked before any model loads (names must be unique: they key the results)."""
    clips = [read_clip(folder) for folder in find_clips(data)]
    names = [c.name for c in clips]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise BenchmarkError(f"clip names must be unique in {data}: {', '.join(twice)} appear twice (seqinfo.ini name)")
    return clips


def run_clip(cfg, pipeline, truth: ClipTruth) -> RecordSink:
    """Run the monitor over one clip's video exactly as ``maskwatch run`` would; return what it produced."""
    from maskwatch.runner.single import run
    from maskwatch.wiring import build_monitor, build_source, run_settings

    source = build_source(cfg, str(truth.video))
    sink = RecordSink()
    try:
        monitor = build_monitor(
            cfg, pipeline, source_name=source.name, fps=source.fps, live=False, frame_count=source.frame_count
        )
        settings = run_settings(cfg) | {"status_interval_s": 1e9, "summary_interval_s": 1e9}
        run(source, monitor, [sink], None, progress=False, **settings)
        sink.people_counted = monitor.people_status().people_total
    finally:
        source.close()
    return sink


def summarize(scores: list[ClipScore]) -> dict[str, Any]:
    """The overall metrics (MOT over the clips with boxes, per-person counts pooled) and every clip's."""
    total = PersonCounts()
    for score in scores:
        total.add(score.counts)
    with_boxes = [s for s in scores if s.accumulator is not None]
    overall: dict[str, Any] = dict.fromkeys(MOT_KEYS)
    if with_boxes:
        overall = mot_summary([s.accumulator for s in with_boxes], [s.name for s in with_boxes])["OVERALL"]
    counts = {k: v for k, v in vars(total).items() if k != "times_to_alert_s"}
    return {
        **overall,
        **total.metrics(),
        **change_summary([change for score in scores for change in score.changes]),
        "frames": sum(s.frames for s in scores),
        "counts": counts,
        "clips": {s.name: s.to_json() for s in scores},
    }


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.3f}" if abs(value) < 10 else f"{value:.1f}"
    return str(value)


def table_lines(result: dict[str, Any]) -> list[str]:
    """The results as a fixed-width table: one row per clip and the overall row."""
    heads = ["clip", "frames", "IDF1", "MOTA", "IDsw", "label acc", "alert rec", "dup/pers", "false/pers"]
    heads += ["static al", "t->alert s", "people", "counted", "change s", "flicker"]
    keys = ["frames", *MOT_KEYS, *PERSON_KEYS, "max_change_latency_s", "change_flickers"]
    rows = [[name, *(_cell(clip.get(k)) for k in keys)] for name, clip in result["clips"].items()]
    rows.append(["OVERALL", *(_cell(result.get(k)) for k in keys)])
    widths = [max(len(r[i]) for r in [heads, *rows]) for i in range(len(heads))]

    def fmt(r: list[str]) -> str:
        return "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True)))

    lines = [fmt(heads), *(fmt(r) for r in rows)]
    if result.get("label_changes"):
        lines.append(
            f"label changes: {result['label_changes']}, shown {result['changes_shown']} "
            f"({result['changes_shown_fast']} within {FAST_S:g} s), latency median "
            f"{_cell(result['median_change_latency_s'])} s, max {_cell(result['max_change_latency_s'])} s "
            f"(change s: the clip's slowest; -: none or never shown), flickers {result['change_flickers']}"
        )
    return lines


def _write_jsonl(path: Path, items) -> None:
    path.write_text("".join(json.dumps(item, separators=(",", ":")) + "\n" for item in items))


def eval_video_command(args: argparse.Namespace) -> int:
    """Everything ``maskwatch eval-video`` does; user errors raise :class:`~maskwatch.errors.MaskwatchError`."""
    from maskwatch.config import load_config
    from maskwatch.outputs.sinks import check_writable
    from maskwatch.wiring import build_pipeline, runtime_label, tracking_enabled

    clips = load_benchmark(args.data)
    if args.json is not None:
        check_writable(args.json)
    if args.keep is not None:
        args.keep.mkdir(parents=True, exist_ok=True)
    overrides = {"runtime.device": args.device, "runtime.precision": args.precision, "runtime.engine": args.engine}
    cfg = load_config(args.config, overrides)
    if not tracking_enabled(cfg):
        raise BenchmarkError("eval-video scores tracks and alerts: the config turns tracking off (tracking.enabled)")
    pipeline = build_pipeline(cfg)
    pipeline.warmup()
    logger.info(f"eval-video: {len(clips)} clips from {args.data} ({runtime_label(cfg)})")
    started = time.perf_counter()
    scores, seconds = [], {}
    for truth in clips:
        t0 = time.perf_counter()
        produced = run_clip(cfg, pipeline, truth)
        records = [produced.records[i] for i in sorted(produced.records)]
        scores.append(score_clip(truth, records, produced.events, produced.people_counted))
        if args.keep is not None:
            _write_jsonl(args.keep / f"{truth.name}.detections.jsonl", records)
            _write_jsonl(args.keep / f"{truth.name}.events.jsonl", produced.events)
        seconds[truth.name] = round(time.perf_counter() - t0, 1)
        logger.info(f"{truth.name}: {truth.frames} frames in {seconds[truth.name]} s")
    result = summarize(scores)
    for name, clip in result["clips"].items():
        clip["eval_s"] = seconds[name]
    result["eval_s"] = round(time.perf_counter() - started, 1)
    result["runtime"] = runtime_label(cfg)
    result["settings"] = {"tracking": cfg.tracking.model_dump(), "alerts": cfg.alerts.model_dump(include=_ALERT_KEYS)}
    if all(s.accumulator is None for s in scores) and any(s.boxes for s in scores):
        logger.warning("motmetrics is not installed: no IDF1, MOTA, ID switches (pip install 'maskwatch[eval]')")
    return emit(table_lines(result), result, args.json)
