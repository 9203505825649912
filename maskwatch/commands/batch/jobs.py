"""``maskwatch batch``: annotate many recorded videos on Ray, one task per video, retried, resumable.

Each video goes through the stages of :mod:`maskwatch.commands.batch.tasks` (what ``maskwatch run`` does for one
file: annotated video, detections, events, report, into ``OUT/<stem>.*``); long videos in chunks run in parallel.
A re-run skips a video whose receipt still matches its outputs (:mod:`maskwatch.commands.batch.receipts`).
This module schedules the stages, retries failed ones and collects the outcomes. Ray is an optional extra;
the core never imports it.
"""

from __future__ import annotations

import json
import os
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from loguru import logger

from maskwatch.commands.batch.chunks import Chunk, plan_chunks, probe
from maskwatch.commands.batch.receipts import expand_inputs, finished, remove_partials, stem_of
from maskwatch.commands.batch.summary import TaskResult
from maskwatch.commands.batch.tasks import TASKS
from maskwatch.errors import MaskwatchError


def _timed_task(kind: str, video: str, out: str, stem: str, *args) -> tuple[object, float]:
    """The Ray task: one stage of one video, and the seconds it took (model loading included, queueing not).

    What the stage logs (warnings about the video, errors) is appended to ``OUT/<stem>.log``.
    """
    started = time.monotonic()
    sink = logger.add(Path(out) / f"{stem}.log", level="INFO", format="{time:HH:mm:ss} {level: <7} {message}")
    try:
        logger.info(f"{kind} {Path(video).name}" + (f" chunk {args[0].index}" if kind == "analyse" else ""))
        value = TASKS[kind](video, out, stem, *args)
    except Exception as exc:
        logger.error(f"{kind} failed: {_first_line(exc)}")
        raise
    finally:
        logger.remove(sink)
    return value, time.monotonic() - started


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
    from maskwatch.wiring.outputs import output_fourcc

    fourcc = output_fourcc(load_config(config))
    videos = expand_inputs(inputs)
    out.mkdir(parents=True, exist_ok=True)
    results, jobs, total_frames = _plan(videos, out, chunk_s, overlap_s)
    chunks = sum(len(j.chunks) for j in jobs)
    logger.info(
        f"{len(videos)} videos: {len(jobs)} to annotate ({chunks} chunks), {len(videos) - len(jobs)} already done"
    )
    if jobs:
        _init_ray(ray, address, workers)
        task = ray.remote(num_cpus=1, max_retries=0)(_timed_task)
        progress: Any = ray.remote(num_cpus=0)(_Progress).remote()  # an actor handle
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
                        _give_up(ray, job, error, pending, results, out)
                        continue
                    value, seconds = value
                    job.task_s += seconds
                    job.stage_s[kind] += seconds
                    _advance(job, kind, index, value, submit, results)
            _show(bar, ray.get(progress.total.remote()), len(results), len(videos))
    table = [results[v] for v in videos]
    (out / "batch_summary.json").write_text(json.dumps([asdict(r) for r in table], indent=2))
    return table


def _plan(
    videos: list[Path], out: Path, chunk_s: float, overlap_s: float
) -> tuple[dict[Path, TaskResult], list[_Job], int]:
    """The videos already done (as results), the jobs of the others with their chunks, and their total frames."""
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
    return results, jobs, total_frames


def _give_up(ray, job: _Job, error: str, pending: dict, results: dict, out: Path) -> None:
    """Mark a video failed after its last retry: report it, cancel its other tasks, remove its work files."""
    job.failed = error
    attempts = max(job.attempts.values())
    results[job.video] = TaskResult(str(job.video), "failed", attempts=attempts, error=error)
    logger.error(f"{job.video.name} failed after {attempts} attempt(s): {error}")
    for other, (owner, _, _) in list(pending.items()):  # its other tasks are moot now
        if owner is job:
            ray.cancel(other)
    remove_partials(out, job.stem)


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
