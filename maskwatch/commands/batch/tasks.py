"""The stages of ``maskwatch batch`` as Ray runs them, one call per chunk or video: analyse → stitch → render → finish.

Each runs in a worker process what ``maskwatch run`` does for its part of one file, writing under temporary
names (:func:`_tmp`); ``finish`` renames the outputs only when the video is complete, then writes the receipt.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2

from maskwatch.commands.batch.chunks import (
    Chunk,
    analyse_chunk,
    concat_videos,
    merge_chunks,
    read_records,
    render_chunk,
)
from maskwatch.commands.batch.receipts import OUTPUTS, outputs_of, remove_partials
from maskwatch.errors import OutputError

_PIPELINES: dict[tuple, tuple] = {}
"""Models loaded in this worker process, by (config, precision): Ray reuses workers, so each loads them once."""


def _config(config: str | None, precision: str | None):
    from maskwatch.config import load_config

    return load_config(config, {"runtime.device": "cpu", "runtime.precision": precision})


def _models(config: str | None, precision: str | None):
    key = (config, precision)
    if key not in _PIPELINES:
        from maskwatch.wiring import build_pipeline, effective_engine

        cfg = _config(config, precision)
        if effective_engine(cfg) == "torch" and not cfg.runtime.threads:
            import torch  # the torch engine only: the lean install (ONNX Runtime, one thread a session) has no torch

            torch.set_num_threads(1)  # Ray runs one task per core
        pipeline = build_pipeline(cfg)
        pipeline.warmup()
        _PIPELINES[key] = (cfg, pipeline)
    return _PIPELINES[key]


def _tmp(out: Path, stem: str, name: str) -> Path:
    """A work file of ``stem`` (hidden, ``.partial`` in its name): removed or renamed when the video is done."""
    return out / f".{stem}.partial.{name}"


def analyse_task(video: str, out: str, stem: str, chunk: Chunk, config: str | None, precision, progress=None) -> dict:
    """Ray task: analyse one chunk (a whole short video writes its annotated video in the same pass)."""
    cfg, pipeline = _models(config, precision)
    out_dir = Path(out)
    whole = chunk.stop is None and chunk.start == 0
    part = analyse_chunk(
        Path(video),
        chunk,
        cfg,
        pipeline,
        _tmp(out_dir, stem, f"c{chunk.index}.jsonl"),
        annotated=_tmp(out_dir, stem, "annotated.mp4") if whole else None,
        on_frames=(lambda n: progress.add.remote(n)) if progress is not None else None,
    )
    return part


def stitch_task(video: str, out: str, stem: str, parts: list[dict]) -> dict:
    """Ray task: merge the chunks into the video's detections, events and report; slice the records to render."""
    from maskwatch.outputs.report import write_report

    out_dir = Path(out)
    parts = sorted(parts, key=lambda p: p["index"])
    records = [read_records(_tmp(out_dir, stem, f"c{p['index']}.jsonl")) for p in parts]
    merged = merge_chunks(parts, records)
    _write_lines(_tmp(out_dir, stem, "detections.jsonl"), merged.records)
    _write_lines(_tmp(out_dir, stem, "events.jsonl"), merged.events)
    summary = merged.summary | {
        "processing_fps": round(merged.summary["frames_analysed"] / max(merged.summary["task_s"], 1e-9), 2)
    }
    write_report(
        out_dir / f".{stem}.partial",
        source=video,
        summary=summary,
        people=merged.people,
        timeline=merged.timeline,
        events=merged.events,
    )
    if len(parts) > 1:  # each chunk's records, with the final ids, for its render task
        for p in parts:
            _write_lines(_tmp(out_dir, stem, f"c{p['index']}.final.jsonl"), merged.records[p["start"] : p["stop"]])
    report = json.loads(Path(f"{out_dir / f'.{stem}.partial'}.report.json").read_text())
    return {
        "frames": len(merged.records),
        "fps": parts[0]["fps"],
        "run_fps": summary["processing_fps"],
        "people": report["people"]["total"],
        "alerts": report["alerts"],
        "ranges": [(p["index"], p["start"], p["stop"]) for p in parts],
    }


def render_task(video: str, out: str, stem: str, index: int, start: int, config: str | None, precision) -> int:
    """Ray task: draw one chunk's final records onto its frames (a segment of the annotated video)."""
    cfg = _config(config, precision)
    out_dir = Path(out)
    records = read_records(_tmp(out_dir, stem, f"c{index}.final.jsonl"))
    return render_chunk(Path(video), start, records, cfg, _tmp(out_dir, stem, f"c{index}.mp4"))


def finish_task(video: str, out: str, stem: str, stitched: dict, task_s: float, fourcc: str = "mp4v") -> dict:
    """Ray task: join the segments (if any), check the frame count, put every output in place, write the receipt."""
    started = time.monotonic()
    out_dir = Path(out)
    annotated = _tmp(out_dir, stem, "annotated.mp4")
    method = "single pass"
    if len(stitched["ranges"]) > 1:
        segments = [_tmp(out_dir, stem, f"c{i}.mp4") for i, _, _ in stitched["ranges"]]
        method = concat_videos(segments, annotated, stitched["fps"], fourcc)
    cap = cv2.VideoCapture(str(annotated))
    frames = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
    cap.release()
    if frames != stitched["frames"]:
        raise OutputError(f"annotated video of {video} has {frames} frames, expected {stitched['frames']}")
    prefix = out_dir / f".{stem}.partial"  # the report was written with this prefix: its JSON is already a work file
    for suffix in ("report.md", "compliance.png"):
        os.replace(f"{prefix}.{suffix}", out_dir / f"{stem}.{suffix}")
    final = outputs_of(out_dir, stem)
    for name in OUTPUTS:
        os.replace(_tmp(out_dir, stem, name), final[name])
    remove_partials(out_dir, stem)
    done = {
        "video": video,
        "source_size": Path(video).stat().st_size,
        "frames": stitched["frames"],
        "sizes": {name: final[name].stat().st_size for name in OUTPUTS},
        "fps": stitched["run_fps"],
        "people": stitched["people"],
        "alerts": stitched["alerts"],
        "chunks": len(stitched["ranges"]),
        "joined_by": method,
        "task_s": round(task_s + time.monotonic() - started, 2),
    }
    receipt = out_dir / f"{stem}.done.json"
    receipt.with_suffix(".tmp").write_text(json.dumps(done, indent=2))
    os.replace(receipt.with_suffix(".tmp"), receipt)
    return done


TASKS: dict[str, Callable[..., Any]] = {
    "analyse": analyse_task,
    "stitch": stitch_task,
    "render": render_task,
    "finish": finish_task,
}


def _write_lines(path: Path, rows: list[dict]) -> None:
    with open(path, "w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, separators=(",", ":")) + "\n")
        f.flush()
        os.fsync(f.fileno())
