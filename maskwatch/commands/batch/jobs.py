"""``maskwatch batch``: annotate many recorded videos on Ray, one task per video, retried, resumable.

Each task runs exactly what ``maskwatch run`` does for one file (annotated video, detections, events, report)
into ``OUT/<stem>.*``, writing under temporary names and renaming only when the video is complete, then a
``<stem>.done.json`` receipt. A re-run skips a video whose receipt still matches its outputs (checked: sizes
and the annotated video's frame count, not mere presence). Ray is an optional extra; the core never imports it.
"""

from __future__ import annotations

import glob
import json
import os
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

import cv2
from loguru import logger

from maskwatch.commands.batch.chunks import (
    Chunk,
    analyse_chunk,
    concat_videos,
    merge_chunks,
    plan_chunks,
    probe,
    read_records,
    render_chunk,
)
from maskwatch.errors import MaskwatchError, OutputError

OUTPUTS = ("annotated.mp4", "detections.jsonl", "events.jsonl", "report.json")


@dataclass
class TaskResult:
    """One video's outcome, as the summary table shows it."""

    video: str
    status: str  # "done", "skipped" (already done) or "failed"
    frames: int = 0
    fps: float = 0.0
    people: int = 0
    alerts: int = 0
    attempts: int = 0
    error: str = ""
    task_s: float = 0.0
    """Whole task time, model loading included (``fps`` is the run's own, as ``maskwatch run`` reports it)."""
    stage_s: dict = field(default_factory=dict)
    """Task seconds by stage (analyse, stitch, render, finish)."""


def expand_inputs(spec: str) -> list[Path]:
    """A glob (``videos/*.mp4``) or a text file listing one video per line; sorted, duplicates removed."""
    path = Path(spec)
    if path.is_file() and path.suffix.lower() in (".txt", ".lst", ".list"):
        lines = [line.strip() for line in path.read_text().splitlines()]
        videos = [Path(line) if Path(line).is_absolute() else path.parent / line for line in lines if line]
    else:
        videos = [Path(p) for p in glob.glob(os.path.expanduser(spec), recursive=True)]
    videos = sorted({v.resolve() for v in videos if v.is_file()})
    if not videos:
        raise MaskwatchError(f"--inputs {spec} matches no video files")
    return videos


def stem_of(video: Path, videos: list[Path]) -> str:
    """Output name of a video: its stem, made unique with its parent folder's name when stems collide."""
    if sum(v.stem == video.stem for v in videos) > 1:
        return f"{video.parent.name}_{video.stem}"
    return video.stem


def outputs_of(out: Path, stem: str) -> dict[str, Path]:
    return {name: out / f"{stem}.{name}" for name in OUTPUTS}


def finished(out: Path, stem: str, video: Path) -> dict | None:
    """The receipt of a finished video if its outputs still match it, else None."""
    receipt = out / f"{stem}.done.json"
    try:
        done = json.loads(receipt.read_text())
        if done.get("source_size") != video.stat().st_size:
            return None
        for name, path in outputs_of(out, stem).items():
            if path.stat().st_size != done["sizes"][name]:
                return None
        cap = cv2.VideoCapture(str(outputs_of(out, stem)["annotated.mp4"]))
        frames = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
        cap.release()
        return done if frames == done["frames"] else None
    except (OSError, ValueError, KeyError, TypeError):
        return None


_PIPELINES: dict[tuple, tuple] = {}
"""Models loaded in this worker process, by (config, precision): Ray reuses workers, so each loads them once."""


def _config(config: str | None, precision: str | None):
    from maskwatch.config import load_config

    return load_config(config, {"runtime.device": "cpu", "runtime.precision": precision})


def _models(config: str | None, precision: str | None):
    key = (config, precision)
    if key not in _PIPELINES:
        import torch

        from maskwatch.build import build_pipeline

        torch.set_num_threads(1)
        cfg = _config(config, precision)
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
        "fps": round(merged.summary["frames_analysed"] / max(merged.summary["task_s"], 1e-9), 2)
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
        "run_fps": summary["fps"],
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


_TASKS = {"analyse": analyse_task, "stitch": stitch_task, "render": render_task, "finish": finish_task}


def _timed_task(kind: str, video: str, out: str, stem: str, *args) -> tuple[object, float]:
    """The Ray task: one stage of one video, and the seconds it took (model loading included, queueing not).

    What the stage logs (warnings about the video, errors) is appended to ``OUT/<stem>.log``.
    """
    started = time.monotonic()
    sink = logger.add(Path(out) / f"{stem}.log", level="INFO", format="{time:HH:mm:ss} {level: <7} {message}")
    try:
        logger.info(f"{kind} {Path(video).name}" + (f" chunk {args[0].index}" if kind == "analyse" else ""))
        value = _TASKS[kind](video, out, stem, *args)
    except Exception as exc:
        logger.error(f"{kind} failed: {_first_line(exc)}")
        raise
    finally:
        logger.remove(sink)
    return value, time.monotonic() - started


def remove_partials(out: Path, stem: str) -> None:
    for path in out.glob(f".{glob.escape(stem)}.partial*"):
        path.unlink(missing_ok=True)


def _write_lines(path: Path, rows: list[dict]) -> None:
    with open(path, "w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, separators=(",", ":")) + "\n")
        f.flush()
        os.fsync(f.fileno())


class _Progress:
    """Frames analysed so far across all tasks (a Ray actor the tasks report to)."""

    def __init__(self) -> None:
        self.frames = 0

    def add(self, n: int) -> None:
        self.frames += n

    def total(self) -> int:
        return self.frames


@dataclass
class _Job:
    """One video on its way through analyse (per chunk) → stitch → render (per chunk) → finish."""

    video: Path
    stem: str
    chunks: list[Chunk]
    parts: dict = field(default_factory=dict)
    rendered: set = field(default_factory=set)
    stitched: dict | None = None
    attempts: Counter = field(default_factory=Counter)
    stage_s: Counter = field(default_factory=Counter)
    task_s: float = 0.0
    failed: str = ""


def run_batch(
    inputs: str,
    out: Path,
    *,
    address: str | None = None,
    workers: int | None = None,
    retries: int = 1,
    config: Path | None = None,
    precision: str | None = None,
    chunk_s: float = 300.0,
    overlap_s: float = 2.0,
) -> list[TaskResult]:
    """Annotate every video of ``inputs`` into ``out`` on Ray; long videos in chunks; failures retried, reported."""
    try:
        import ray
    except ImportError:
        raise MaskwatchError("maskwatch batch needs Ray: pip install 'maskwatch[ray]'") from None
    from tqdm import tqdm

    from maskwatch.config import load_config

    fourcc = load_config(config).output.fourcc
    videos = expand_inputs(inputs)
    out.mkdir(parents=True, exist_ok=True)
    results: dict[Path, TaskResult] = {}
    jobs: list[_Job] = []
    total_frames = 0
    for video in videos:
        stem = stem_of(video, videos)
        done = finished(out, stem, video)
        if done is not None:
            results[video] = TaskResult(
                str(video), "skipped", done["frames"], 0.0, done["people"], done["alerts"], 0, "already done"
            )
            continue
        frames, fps = probe(video)
        total_frames += frames or 0
        jobs.append(_Job(video, stem, plan_chunks(frames, fps, chunk_s, overlap_s)))
    chunks = sum(len(j.chunks) for j in jobs)
    logger.info(
        f"{len(videos)} videos: {len(jobs)} to annotate ({chunks} chunks), {len(videos) - len(jobs)} already done"
    )
    if jobs:
        _init_ray(ray, address, workers)
        task = ray.remote(num_cpus=1, max_retries=0)(_timed_task)
        progress = ray.remote(num_cpus=0)(_Progress).remote()
        cfg = str(config.resolve()) if config else None
        out_s = str(out.resolve())
        pending: dict = {}

        def submit(job: _Job, kind: str, index: int = 0) -> None:
            job.attempts[(kind, index)] += 1
            v = str(job.video)
            if kind == "analyse":
                ref = task.remote(kind, v, out_s, job.stem, job.chunks[index], cfg, precision, progress)
            elif kind == "stitch":
                ref = task.remote(kind, v, out_s, job.stem, list(job.parts.values()))
            elif kind == "render":
                ref = task.remote(kind, v, out_s, job.stem, index, job.chunks[index].start, cfg, precision)
            else:
                ref = task.remote(kind, v, out_s, job.stem, job.stitched, job.task_s, fourcc)
            pending[ref] = (job, kind, index)

        for job in jobs:
            for chunk in job.chunks:
                submit(job, "analyse", chunk.index)
        with tqdm(total=total_frames or None, unit="frame", desc="batch", dynamic_ncols=True, mininterval=1.0) as bar:
            while pending:
                ready, _ = ray.wait(list(pending), num_returns=1, timeout=0.5)
                _show(bar, ray.get(progress.total.remote()), len(results), len(videos))
                for ref in ready:
                    job, kind, index = pending.pop(ref)
                    if job.failed:
                        continue
                    try:
                        value = ray.get(ref)
                    except Exception as exc:  # a failed task: its own error, retried up to --retries times
                        error = _first_line(exc)
                        if job.attempts[(kind, index)] <= retries:
                            logger.warning(f"{job.video.name} {kind} {index} failed: {error}; retrying")
                            submit(job, kind, index)
                            continue
                        job.failed = error
                        attempts = max(job.attempts.values())
                        results[job.video] = TaskResult(str(job.video), "failed", attempts=attempts, error=error)
                        logger.error(f"{job.video.name} failed after {attempts} attempt(s): {error}")
                        for other, (owner, _, _) in list(pending.items()):  # its other tasks are moot now
                            if owner is job:
                                ray.cancel(other)
                        remove_partials(out, job.stem)
                        continue
                    value, seconds = value
                    job.task_s += seconds
                    job.stage_s[kind] += seconds
                    _advance(job, kind, index, value, submit, results)
            _show(bar, ray.get(progress.total.remote()), len(results), len(videos))
    table = [results[v] for v in videos]
    (out / "batch_summary.json").write_text(json.dumps([asdict(r) for r in table], indent=2))
    return table


def _show(bar, frames: int, videos_done: int, videos: int) -> None:
    bar.n = frames
    bar.set_postfix_str(f"{videos_done}/{videos} videos", refresh=True)


def _advance(job: _Job, kind: str, index: int, value, submit, results: dict) -> None:
    """Move a video to its next stage once the tasks of the current one are all in."""
    if kind == "analyse":
        job.parts[index] = value
        if len(job.parts) == len(job.chunks):
            submit(job, "stitch")
    elif kind == "stitch":
        job.stitched = value
        if len(job.chunks) == 1:
            submit(job, "finish")
        else:
            for chunk in job.chunks:
                submit(job, "render", chunk.index)
    elif kind == "render":
        job.rendered.add(index)
        if len(job.rendered) == len(job.chunks):
            submit(job, "finish")
    else:
        logger.info(
            f"{job.video.name}: {value['frames']} frames in {value['chunks']} chunk(s), {value['task_s']:.0f} s"
        )
        results[job.video] = TaskResult(
            str(job.video),
            "done",
            value["frames"],
            value["fps"],
            value["people"],
            value["alerts"],
            max(job.attempts.values()),
            task_s=value["task_s"],
            stage_s={k: round(v, 2) for k, v in job.stage_s.items()},
        )


def _init_ray(ray, address: str | None, workers: int | None) -> None:
    """Join the cluster at ``address`` or start a local Ray with ``workers`` CPUs (default: all cores)."""
    env = {"env_vars": {"OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}}
    if address:
        ray.init(address=address, runtime_env=env, log_to_driver=False)
    else:
        ray.init(num_cpus=workers or os.cpu_count(), include_dashboard=False, runtime_env=env, log_to_driver=False)


def _first_line(exc: BaseException) -> str:
    cause = getattr(exc, "cause", None) or exc
    text = str(cause).strip().splitlines()
    return text[-1] if text else type(cause).__name__


def summary_lines(table: list[TaskResult]) -> list[str]:
    """The end-of-batch table: file, frames, fps, people, alerts, status."""
    lines = [f"{'file':<32} {'frames':>7} {'fps':>6} {'task s':>7} {'people':>6} {'alerts':>6}  status"]
    for r in table:
        status = r.status if r.status != "failed" else f"FAILED after {r.attempts} attempt(s): {r.error}"
        name = Path(r.video).name[:32]
        lines.append(f"{name:<32} {r.frames:>7} {r.fps:>6.1f} {r.task_s:>7.1f} {r.people:>6} {r.alerts:>6}  {status}")
    failed = sum(r.status == "failed" for r in table)
    lines.append(
        f"{len(table)} videos: {sum(r.status == 'done' for r in table)} done, "
        f"{sum(r.status == 'skipped' for r in table)} skipped, {failed} failed"
    )
    return lines
