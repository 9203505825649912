"""``maskwatch soak``: the full ``run`` pipeline on a looping video for N minutes, watched for leaks and slowdowns.

A sampler thread records memory (RSS), threads, open file descriptors, frames and fps every few seconds. After a
warm-up, the summary compares the end of the run with its start and gives three verdicts: RSS growth at most
5 %, a steady thread count, and fps whose 10th percentile stays above 0.7 × the median.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import statistics
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from loguru import logger

from maskwatch.capture.base import RawFrame, Source
from maskwatch.capture.producer import Producer
from maskwatch.capture.sources import VideoFileSource
from maskwatch.demo import demo_folder
from maskwatch.errors import MaskwatchError, OutputError
from maskwatch.monitor.base import FrameProcessor
from maskwatch.outputs.render import OverlayRenderer
from maskwatch.outputs.sinks import Sink

RSS_LIMIT_PCT = 5.0
FPS_P10_RATIO = 0.7

Build = Callable[[Source, Path], tuple[FrameProcessor, OverlayRenderer | None, list[Sink]]]
"""``build(source, out) -> (process, renderer, sinks)``: the stages of one run; the sinks are closed by soak."""


def validate(minutes: float, interval_s: float, warmup_s: float) -> None:
    """User errors in the soak settings, before anything is loaded."""
    for flag, value, low in (
        ("--minutes", minutes, 0.0),
        ("--interval-s", interval_s, 0.0),
        ("--warmup-s", warmup_s, -1),
    ):
        if not (math.isfinite(value) and value > low):
            raise MaskwatchError(f"{flag} must be {'0 or more' if low < 0 else 'above 0'}, got {value:g}")


def resolve_video(video: Path | None) -> Path:
    """``video``, else the demo clip shipped with maskwatch; a clear error when neither is there."""
    if video is None:
        path = demo_folder() / "demo.mp4"
        if not path.is_file():
            raise MaskwatchError(f"no demo clip in this install ({path}); pass --video PATH")
        return path
    if not Path(video).is_file():
        raise MaskwatchError(f"--video {video} does not exist")
    return Path(video)


class LoopingSource(Source):
    """A video file that reopens itself at its end, forever: a file source (back-pressure, no drops) with no end."""

    is_live, finite, frame_count = False, True, None

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._video = VideoFileSource(self.path)
        self.name, self.fps = self._video.name, self._video.fps
        self.loops = 0

    def read(self) -> RawFrame | None:
        item = self._video.read()
        if item is None:  # the end: reopen (exercises open/close each loop); the runner numbers frames on
            self._video.close()
            self._video = VideoFileSource(self.path)
            self.loops += 1
            item = self._video.read()
        return item

    def close(self) -> None:
        self._video.close()


def run_builder(cfg, pipeline=None) -> Build:
    """What ``maskwatch run`` builds for a tracked file: Monitor, renderer, a video stand-in, detections and events.

    ``pipeline`` replaces the loaded models (tests pass fakes); the writing paths stay the real ones.
    """

    def build(source: Source, out: Path):
        from maskwatch.outputs.sinks import JsonLinesSink
        from maskwatch.wiring import build_monitor, build_pipeline
        from maskwatch.wiring.outputs import build_event_log, build_null_video_sink, build_renderer

        pipe = pipeline if pipeline is not None else build_pipeline(cfg)
        pipe.warmup()
        monitor = build_monitor(cfg, pipe, source_name=source.name, fps=source.fps, live=False)
        for old in out.glob("events.jsonl*"):  # the events log appends: start each soak empty
            old.unlink()
        events = build_event_log(cfg, out / "events.jsonl")
        sinks = [build_null_video_sink(cfg), JsonLinesSink(out / "detections.jsonl"), events]
        return monitor, build_renderer(cfg), sinks

    return build


def _proc_status(key: str) -> int | None:
    with contextlib.suppress(OSError), open("/proc/self/status", encoding="ascii") as f:
        return next((int(line.split()[1]) for line in f if line.startswith(key + ":")), None)
    return None


def rss_mb() -> float:
    """Resident memory now (VmRSS); without /proc the peak (getrusage), which still shows growth."""
    kb = _proc_status("VmRSS")
    if kb is None:
        import resource

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak / 2**20 if sys.platform == "darwin" else peak / 1024
    return kb / 1024


def open_fds() -> int | None:
    for folder in ("/proc/self/fd", "/dev/fd"):
        with contextlib.suppress(OSError):
            return len(os.listdir(folder))
    return None


def _queue_depth() -> int | None:
    """Frames waiting between capture and inference (the runner's queue, reached through its producer thread)."""
    producer = next((t for t in threading.enumerate() if isinstance(t, Producer)), None)
    return producer.frames.qsize() if producer is not None else None


class Sampler(threading.Thread):
    """Takes a sample every ``interval_s``, the last one at ``duration_s``, then sets ``stop`` (also on failure)."""

    def __init__(self, stats, interval_s: float, duration_s: float, stop: threading.Event) -> None:
        super().__init__(name="maskwatch-soak-sampler", daemon=True)
        self.stats, self.interval_s, self.duration_s, self.stop = stats, interval_s, duration_s, stop
        self.done = threading.Event()
        self.samples: list[dict] = []

    def run(self) -> None:
        try:
            start = last = time.monotonic()
            frames, k, self._cpu = 0, 1, time.process_time()
            while True:
                due = min(start + k * self.interval_s, start + self.duration_s)
                if self.done.wait(max(due - time.monotonic(), 0.0)):  # the run ended early (signal, error)
                    if time.monotonic() - last >= 0.5 * self.interval_s:
                        self._take(start, last, frames)
                    return
                last, frames = self._take(start, last, frames)
                if due >= start + self.duration_s:
                    return
                k += 1
        finally:
            self.stop.set()

    def _take(self, start: float, last: float, last_frames: int) -> tuple[float, int]:
        """One sample; ``cpu_pct`` (this process) and ``load1`` (the machine) tell own slowness from contention."""
        now, frames, cpu = time.monotonic(), self.stats.frames, time.process_time()
        s = {
            "elapsed_s": round(now - start, 3),
            "dt_s": round(now - last, 3),
            "rss_mb": round(rss_mb(), 2),
            "threads": threading.active_count(),
            "os_threads": _proc_status("Threads"),
            "fds": open_fds(),
            "frames": frames,
            "fps": round((frames - last_frames) / (now - last), 3) if now > last else 0.0,
            "queue": _queue_depth(),
            "cpu_pct": round(100.0 * (cpu - self._cpu) / (now - last), 1) if now > last else 0.0,
            "load1": round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None,
        }
        self._cpu = cpu
        self.samples.append(s)
        logger.info(
            f"soak {s['elapsed_s']:.1f} s: {s['rss_mb']:.1f} MB, {s['threads']} threads ({s['os_threads']} OS), "
            f"{s['fds']} fds, {frames} frames, {s['fps']:.1f} fps, queue {s['queue']}, CPU {s['cpu_pct']:.0f} %, "
            f"load {s['load1']}"
        )
        return now, frames


def summarize(samples: list[dict], duration_s: float, warmup_s: float, interval_s: float) -> dict:
    """Numbers and verdicts after the warm-up (``warmup_s``, or 20 % of a run shorter than twice that).

    A thread count's start and end are medians of 3 samples (one taken while the video reopens may dip).
    """
    warm = warmup_s if duration_s >= 2 * warmup_s else 0.2 * duration_s
    post = [s for s in samples if s["elapsed_s"] >= warm] or samples[-1:]
    if not post:
        return {"warmup_s": warm, "samples": 0, "rss_ok": False, "threads_ok": False, "fps_ok": False}
    rss = [s["rss_mb"] for s in post]
    rss_end = float(np.median(rss[-3:]))
    growth = 100.0 * (rss_end - rss[0]) / rss[0] if rss[0] > 0 else 0.0
    fps = np.asarray([s["fps"] for s in post if s["dt_s"] >= 0.5 * interval_s] or [s["fps"] for s in post])
    median, p10, p90 = (float(np.percentile(fps, q)) for q in (50, 10, 90))
    summary = {
        "warmup_s": round(warm, 2),
        "samples": len(post),
        "rss_start_mb": rss[0],
        "rss_end_mb": round(rss_end, 2),
        "rss_growth_pct": round(growth, 2),
        "rss_max_mb": max(rss),
    }
    threads_ok = True
    for key in ("threads", "os_threads"):
        values = [s[key] for s in post if s.get(key) is not None] or [None]
        start, end = statistics.median_low(values[:3]), statistics.median_low(values[-3:])
        top = max(values) if start is not None else None
        summary |= {f"{key}_start": start, f"{key}_end": end, f"{key}_max": top}
        threads_ok = threads_ok and (start is None or (end == start and top <= start + 1))
    summary |= {
        "fds_start": post[0]["fds"],
        "fds_end": post[-1]["fds"],
        "fps_median": round(median, 2),
        "fps_p10": round(p10, 2),
        "fps_p90": round(p90, 2),
        "fps_cv": round(float(fps.std(ddof=1) / fps.mean()), 4) if len(fps) > 1 and fps.mean() > 0 else 0.0,
        "frames": post[-1]["frames"],
        "load1_max": max((x["load1"] for x in post if x.get("load1") is not None), default=None),
        "rss_ok": growth <= RSS_LIMIT_PCT,
        "threads_ok": threads_ok,
        "fps_ok": median > 0 and p10 >= FPS_P10_RATIO * median,
    }
    return summary


def failures(summary: dict) -> list[str]:
    """One phrase per failing verdict (empty when the soak passed)."""
    s = summary
    if "rss_growth_pct" not in s:
        return ["no samples were taken"]
    out = [] if s["rss_ok"] else [f"RSS grew {s['rss_growth_pct']:.1f} % (limit {RSS_LIMIT_PCT:g} %)"]
    if not s["threads_ok"]:
        kinds = (("threads", "threads"), ("os_threads", "OS threads"))
        parts = [f"{n} {s[k + '_start']} -> {s[k + '_end']} (max {s[k + '_max']})" for k, n in kinds]
        if s.get("threads_after_run") != s.get("threads_before_run"):
            parts.append(f"{s['threads_after_run']} threads left after the run, {s['threads_before_run']} before")
        out.append(", ".join(parts))
    if not s["fps_ok"]:
        out.append(f"fps p10 {s['fps_p10']:.1f} below {FPS_P10_RATIO:g} x median {s['fps_median']:.1f}")
        if (s.get("load1_max") or 0) > (os.cpu_count() or 1) + 0.5:  # torch threads lose most on a shared CPU
            out[-1] += (
                f" (load average up to {s['load1_max']:g} on {os.cpu_count()} cores: other processes may have competed)"
            )
    return out


def soak(video: Path, minutes: float, out: Path, *, build: Build, interval_s=5.0, warmup_s=60.0, queue_size=8) -> dict:
    """Run ``build``'s stages on ``video`` looped for ``minutes``; write ``out/soak.json`` and ``out/soak.png``.

    Returns the JSON dict. SIGINT/SIGTERM (on the main thread) end the run early; the summary covers what ran.
    """
    from maskwatch.runner.signals import stop_on_signals
    from maskwatch.runner.single import RunStats, run

    validate(minutes, interval_s, warmup_s)
    out = Path(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot create --out {out}: {exc.strerror}") from None
    threads_before = threading.active_count()
    source = LoopingSource(video)
    stats, stop, received = RunStats(), threading.Event(), {}
    sampler = Sampler(stats, interval_s, minutes * 60.0, stop)
    try:
        process, renderer, sinks = build(source, out)
        with contextlib.ExitStack() as stack:
            for sink in sinks:
                stack.callback(sink.close)
            if threading.current_thread() is threading.main_thread():
                received = stack.enter_context(stop_on_signals(stop))
            stack.callback(sampler.join, 10.0)
            stack.callback(sampler.done.set)
            logger.info(f"soak: {minutes:g} min on {source.name} (looped), a sample every {interval_s:g} s")
            sampler.start()
            opts = {"queue_size": queue_size, "status_interval_s": 1e9, "progress": False}
            run(source, process, sinks, renderer, stop=stop, stats=stats, summary=process.summary_line, **opts)
    finally:
        source.close()
    summary = summarize(sampler.samples, minutes * 60.0, warmup_s, interval_s)
    summary |= {"frames": stats.frames, "threads_before_run": threads_before}
    summary["threads_after_run"] = threading.active_count()
    summary["threads_ok"] = summary["threads_ok"] and summary["threads_after_run"] == threads_before
    result = {
        "minutes": minutes,
        "video": str(video),
        "interval_s": interval_s,
        "loops": source.loops,
        "interrupted": received.get("signal") is not None,
        "samples": sampler.samples,
        "summary": summary,
    }
    tmp = out / ".soak.json.partial"
    tmp.write_text(json.dumps(result, indent=2) + "\n")
    os.replace(tmp, out / "soak.json")
    plot(result, out / "soak.png")
    return result


def plot(result: dict, path: Path) -> None:
    """Three panels over time: RSS, threads and open fds, fps; a dashed line where the warm-up ends."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    samples, summary = result["samples"], result["summary"]
    t = [s["elapsed_s"] for s in samples]
    fig = Figure(figsize=(10, 8), dpi=100)
    FigureCanvasAgg(fig)
    rss_ax, thr_ax, fps_ax = fig.subplots(3, 1, sharex=True)
    verdicts = ", ".join(f"{k} {'yes' if summary.get(k) else 'NO'}" for k in ("rss_ok", "threads_ok", "fps_ok"))
    fig.suptitle(f"maskwatch soak: {Path(result['video']).name}, {result['minutes']:g} min ({verdicts})")
    rss_ax.plot(t, [s["rss_mb"] for s in samples], marker=".", color="#1f77b4")
    rss_ax.set(ylabel="RSS (MB)")
    for key, label in (("threads", "Python threads"), ("os_threads", "OS threads"), ("fds", "open fds")):
        values = [s[key] for s in samples]
        if any(v is not None for v in values):
            thr_ax.plot(t, [np.nan if v is None else v for v in values], marker=".", label=label)
    thr_ax.set(ylabel="count")
    thr_ax.legend(loc="upper left", fontsize=8, ncols=3)
    fps_ax.plot(t, [s["fps"] for s in samples], marker=".", color="#2ca02c")
    fps_ax.set(ylabel="fps (per interval)", xlabel="time (s)", ylim=(0, None))
    for ax in (rss_ax, thr_ax, fps_ax):
        ax.axvline(summary.get("warmup_s", 0.0), color="#888888", linestyle="--", linewidth=1)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(str(path), format="png")


def report_lines(result: dict) -> list[str]:
    """One line per summary item, for the terminal."""
    head = [f"soak: {result['minutes']:g} min on {result['video']} ({result['loops']} loops)"]
    return head + [f"{key:<20} {value}" for key, value in result["summary"].items()]
