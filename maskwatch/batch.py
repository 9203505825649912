"""``maskwatch batch``: annotate many recorded videos on Ray, one task per video, retried, resumable.

Each task runs exactly what ``maskwatch run`` does for one file (annotated video, detections, events, report)
into ``OUT/<stem>.*``, writing under temporary names and renaming only when the video is complete, then a
``<stem>.done.json`` receipt. A re-run skips a video whose receipt still matches its outputs (checked: sizes
and the annotated video's frame count, not mere presence). Ray is an optional extra; the core never imports it.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
from loguru import logger

from maskwatch.errors import MaskwatchError

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


def annotate(video: str, out: str, stem: str, config: str | None, precision: str | None) -> dict:
    """One video, as ``maskwatch run`` would do it; runs inside a Ray worker (or in-process)."""
    import torch

    from maskwatch.app import run_command

    torch.set_num_threads(1)
    out_dir = Path(out)
    final = outputs_of(out_dir, stem)
    tmp = {name: p.with_name(f".{p.name}.partial{p.suffix}") for name, p in final.items()}
    prefix = out_dir / f".{stem}.partial"
    log_path = out_dir / f"{stem}.log"
    sink = logger.add(log_path, level="INFO", format="{time:HH:mm:ss} {level: <7} {message}")
    started = time.monotonic()
    try:
        args = argparse.Namespace(
            source=video,
            output=tmp["annotated.mp4"],
            detections=tmp["detections.jsonl"],
            events=tmp["events.jsonl"],
            report=prefix,
            config=Path(config) if config else None,
            device="cpu",
            precision=precision,
            realtime=False,
            show=False,
            no_progress=True,
            snapshots=False,
            webhook=None,
            http=None,
            http_token=None,
            blur_faces=False,
            detect_every=None,
            no_track=False,
            log_level="INFO",
        )
        tmp["events.jsonl"].unlink(missing_ok=True)  # the events log appends: start a retry from empty
        rc = run_command(args, lambda level: None)
        if rc != 0:
            raise MaskwatchError(f"run ended with exit status {rc}")
        report = json.loads(Path(f"{prefix}.report.json").read_text())
        os.replace(f"{prefix}.report.json", tmp["report.json"])
        for suffix in ("report.md", "compliance.png"):
            os.replace(f"{prefix}.{suffix}", out_dir / f"{stem}.{suffix}")
        for name in OUTPUTS:
            os.replace(tmp[name], final[name])
        frames = int(report["summary"]["frames"])
        done = {
            "video": video,
            "source_size": Path(video).stat().st_size,
            "frames": frames,
            "sizes": {name: final[name].stat().st_size for name in OUTPUTS},
            "fps": report["summary"]["fps"],
            "people": report["people"]["total"],
            "alerts": report["alerts"],
            "wall_s": round(time.monotonic() - started, 2),
        }
        receipt = out_dir / f"{stem}.done.json"
        receipt.with_suffix(".tmp").write_text(json.dumps(done, indent=2))
        os.replace(receipt.with_suffix(".tmp"), receipt)
        return done
    finally:
        logger.remove(sink)


def run_batch(
    inputs: str,
    out: Path,
    *,
    address: str | None = None,
    workers: int | None = None,
    retries: int = 1,
    config: Path | None = None,
    precision: str | None = None,
) -> list[TaskResult]:
    """Annotate every video of ``inputs`` into ``out`` on Ray; failures are retried, then reported."""
    try:
        import ray
    except ImportError:
        raise MaskwatchError("maskwatch batch needs Ray: pip install 'maskwatch[ray]'") from None
    from tqdm import tqdm

    videos = expand_inputs(inputs)
    out.mkdir(parents=True, exist_ok=True)
    results: dict[Path, TaskResult] = {}
    todo: list[tuple[Path, str]] = []
    for video in videos:
        stem = stem_of(video, videos)
        done = finished(out, stem, video)
        if done is not None:
            results[video] = TaskResult(
                str(video), "skipped", done["frames"], 0.0, done["people"], done["alerts"], 0, "already done"
            )
        else:
            todo.append((video, stem))
    logger.info(f"{len(videos)} videos: {len(todo)} to annotate, {len(videos) - len(todo)} already done")
    if todo:
        _init_ray(ray, address, workers)
        task = ray.remote(num_cpus=1, max_retries=0)(annotate)
        cfg = str(config.resolve()) if config else None
        attempts = {video: 0 for video, _ in todo}
        stems = dict(todo)
        pending = {}

        def submit(video: Path) -> None:
            attempts[video] += 1
            pending[task.remote(str(video), str(out.resolve()), stems[video], cfg, precision)] = video

        for video, _ in todo:
            submit(video)
        with tqdm(total=len(todo), unit="video", desc="batch", dynamic_ncols=True) as bar:
            while pending:
                ready, _ = ray.wait(list(pending), num_returns=1)
                video = pending.pop(ready[0])
                try:
                    done = ray.get(ready[0])
                except Exception as exc:  # a failed task: its own error, retried up to --retries times
                    error = _first_line(exc)
                    if attempts[video] <= retries:
                        logger.warning(f"{video.name} failed (attempt {attempts[video]}): {error}; retrying")
                        submit(video)
                        continue
                    results[video] = TaskResult(str(video), "failed", attempts=attempts[video], error=error)
                    logger.error(f"{video.name} failed after {attempts[video]} attempt(s): {error}")
                else:
                    results[video] = TaskResult(
                        str(video),
                        "done",
                        done["frames"],
                        done["fps"],
                        done["people"],
                        done["alerts"],
                        attempts[video],
                        task_s=done["wall_s"],
                    )
                bar.update(1)
    table = [results[v] for v in videos]
    (out / "batch_summary.json").write_text(json.dumps([asdict(r) for r in table], indent=2))
    return table


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
