"""Threads or Ray actors for several live sources? Measure both on this machine.

(a) ``threads``: what ``maskwatch run --config cams.yaml`` does (``maskwatch/multi.py``): one process, a capture
    thread per source, one shared int8 model pair served round-robin by ``--workers`` inference threads (1 with
    each of ``--thread-counts`` torch threads, then 2 with 1 torch thread), a Monitor per source.
(b) ``ray``: one Ray actor per source, each loading its own pipeline and reading its frames itself (a capture
    thread and the same single-source loop inside the actor), torch threads = cores / N.

Every source is a video file looped and played at its own fps (live semantics: frames are dropped when the
consumer is behind). Each configuration runs in a fresh process for ``--seconds`` after every source has
processed its first frame, and reports per-source processed fps, the total, the share of captured frames dropped,
peak memory (RSS summed over the process tree, and PSS, which counts shared library pages once), startup time
(process start → every source has a first result) and how busy the CPU was with other work meanwhile.

    python tools/bench_multicam.py --n 1 2 4 --seconds 30 --json /tmp/multicam.json
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

from maskwatch.capture.base import Source

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_VIDEO = ROOT.parent / "shared" / "data" / "videos" / "nomask.mp4"


class LoopingLiveSource(Source):
    """A video file played at its own fps, forever (it reopens at the end), as if it were a camera."""

    is_live = True
    finite = False
    frame_count = None

    def __init__(self, path: Path, name: str) -> None:
        from maskwatch.capture.sources import VideoFileSource

        self.path, self.name, self._open = path, name, VideoFileSource
        self.video = VideoFileSource(path)
        self.fps = self.video.fps
        self._start: float | None = None
        self._sent = 0

    def read(self):
        if self._start is None:
            self._start = time.monotonic()
        delay = self._start + self._sent / self.fps - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        self._sent += 1
        item = self.video.read()
        if item is None:
            self.video.close()
            self.video = self._open(self.path)
            item = self.video.read()
        return item[0], self.name

    def close(self) -> None:
        self.video.close()


class Counting:
    """A Monitor that also counts the frames the detector ran on (with auto stride, most frames are tracked only)."""

    def __init__(self, monitor) -> None:
        self.monitor, self.detected = monitor, 0

    def __call__(self, frame):
        result = self.monitor(frame)
        self.detected += result.detected
        return result

    def __getattr__(self, attr: str):
        return getattr(self.monitor, attr)


# process-tree memory and CPU from /proc (psutil is not a dependency) -------------------------------------------
def _children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            tree.setdefault(ppid, []).append(int(entry.name))
    return tree


def process_tree(root: int) -> list[int]:
    tree, out, todo = _children(), [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo += tree.get(pid, [])
    return out


def memory_mb(pids: list[int]) -> tuple[float, float]:
    """(RSS, PSS) in MB summed over ``pids``."""
    rss = pss = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                if line.startswith("Rss:"):
                    rss += int(line.split()[1])
                elif line.startswith("Pss:"):
                    pss += int(line.split()[1])
        except OSError:
            continue
    return rss / 1024, pss / 1024


def cpu_ticks(pids: list[int]) -> int:
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        except (OSError, IndexError, ValueError):
            continue
    return total


def busy_ticks() -> int:
    fields = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    return sum(fields) - fields[3] - fields[4]  # minus idle and iowait


class Sampler(threading.Thread):
    """Samples the memory of the process tree under ``root`` every ``interval_s``; keeps the peaks."""

    def __init__(self, root: int, interval_s: float = 0.5) -> None:
        super().__init__(daemon=True)
        self.root, self.interval_s = root, interval_s
        self.peak_rss = self.peak_pss = 0.0
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.wait(self.interval_s):
            rss, pss = memory_mb(process_tree(self.root))
            self.peak_rss, self.peak_pss = max(self.peak_rss, rss), max(self.peak_pss, pss)


# (a) threads ---------------------------------------------------------------------------------------------------
def bench_threads(video: Path, n: int, seconds: float, t0: float, torch_threads: int = 0, workers: int = 1) -> dict:
    from maskwatch.config import config_from_dict
    from maskwatch.runner.lanes import Lane, run_sources
    from maskwatch.wiring import build_monitor, build_pipeline

    sampler = Sampler(os.getpid())
    sampler.start()
    cfg = config_from_dict({"runtime": {"threads": torch_threads}})
    pipeline = build_pipeline(cfg)
    pipeline.warmup()
    lanes = []
    for i in range(n):
        source = LoopingLiveSource(video, f"cam{i}")
        share = -(-n // min(workers, n))  # sources per worker: each gets 1/share of its worker
        monitor = build_monitor(cfg, pipeline, source_name=source.name, fps=source.fps * share, live=True)
        lanes.append(Lane(source.name, source, Counting(monitor)))
    stop, marks = threading.Event(), {}

    def watch() -> None:
        while not all(lane.stats.frames for lane in lanes) and not stop.is_set():
            time.sleep(0.01)
        marks["start"] = _mark(lanes, t0)
        time.sleep(seconds)
        marks["end"] = _mark(lanes, t0)
        stop.set()

    threading.Thread(target=watch, daemon=True).start()
    run_sources(lanes, [], stop=stop, workers=workers, status_interval_s=3600, summary_interval_s=3600)
    sampler.done.set()
    sampler.join()
    return _result("threads", n, marks, sampler, torch_threads=_torch_threads(), workers=min(workers, n))


def _torch_threads() -> int:
    import torch

    return torch.get_num_threads()


def _mark(lanes, t0: float) -> dict:
    return {
        "t": time.monotonic() - t0,
        "frames": [lane.stats.frames for lane in lanes],
        "read": [lane.producer.stats.read for lane in lanes],
        "dropped": [lane.producer.stats.dropped for lane in lanes],
        "detected": [lane.process.detected for lane in lanes],
        "stride": [lane.process.stride.every for lane in lanes],
        "busy": busy_ticks(),
        "ours": cpu_ticks(process_tree(os.getpid())),
    }


def _result(design: str, n: int, marks: dict, sampler: Sampler, **extra) -> dict:
    a, b = marks["start"], marks["end"]
    span = b["t"] - a["t"]
    fps = [(f1 - f0) / span for f0, f1 in zip(a["frames"], b["frames"], strict=True)]
    det = [(d1 - d0) / span for d0, d1 in zip(a["detected"], b["detected"], strict=True)]
    read = sum(b["read"]) - sum(a["read"])
    dropped = sum(b["dropped"]) - sum(a["dropped"])
    hz, cores = os.sysconf("SC_CLK_TCK"), os.cpu_count() or 1
    other = max(b["busy"] - a["busy"] - (b["ours"] - a["ours"]), 0) / hz / span / cores
    return {
        "design": design,
        "n": n,
        "startup_s": round(a["t"], 1),
        "window_s": round(span, 1),
        "fps_per_source": [round(v, 2) for v in fps],
        "fps_total": round(sum(fps), 2),
        "detections_per_s_total": round(sum(det), 2),
        "detect_every_end": b["stride"],
        "dropped_share": round(dropped / read, 3) if read else None,
        "peak_rss_mb": round(sampler.peak_rss),
        "peak_pss_mb": round(sampler.peak_pss),
        "other_cpu_share": round(other, 3),
        "loadavg_1m": os.getloadavg()[0],
        **extra,
    }


# (b) one Ray actor per source ------------------------------------------------------------------------------------
def bench_ray(video: Path, n: int, seconds: float, t0: float, torch_threads: int = 0, workers: int = 1) -> dict:
    import ray

    cores = os.cpu_count() or 1
    sampler = Sampler(os.getpid())
    sampler.start()
    ray.init(address="local", num_cpus=cores, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    try:
        actor_class = ray.remote(CameraActor)
        threads = torch_threads or max(1, cores // n)
        actors = [
            actor_class.options(num_cpus=cores / n).remote(str(video), f"cam{i}", threads, str(ROOT)) for i in range(n)
        ]
        ray.get([a.start.remote() for a in actors])
        while not all(s["frames"] for s in ray.get([a.sample.remote() for a in actors])):
            time.sleep(0.05)
        marks = {"start": _ray_mark(actors, t0)}
        time.sleep(seconds)
        marks["end"] = _ray_mark(actors, t0)
        pids = ray.get([a.pid.remote() for a in actors])
        actors_rss, actors_pss = memory_mb(pids)
        ray.get([a.stop.remote() for a in actors])
    finally:
        sampler.done.set()
        sampler.join()
        ray.shutdown()
    actors = {"actors_rss_mb": round(actors_rss), "actors_pss_mb": round(actors_pss)}
    return _result("ray", n, marks, sampler, torch_threads=threads, workers=n, **actors)


def _ray_mark(actors, t0: float) -> dict:
    import ray

    samples = ray.get([a.sample.remote() for a in actors])
    return {
        "t": time.monotonic() - t0,
        "frames": [s["frames"] for s in samples],
        "read": [s["read"] for s in samples],
        "dropped": [s["dropped"] for s in samples],
        "detected": [s["detected"] for s in samples],
        "stride": [s["stride"] for s in samples],
        "busy": busy_ticks(),
        "ours": cpu_ticks(process_tree(os.getpid())),
    }


class CameraActor:
    """One source in its own process: its own pipeline, capture thread and single-source loop."""

    def __init__(self, video: str, name: str, threads: int, root: str) -> None:
        sys.path.insert(0, root)
        import torch

        from maskwatch.config import config_from_dict
        from maskwatch.runner.lanes import Lane
        from maskwatch.wiring import build_monitor, build_pipeline

        torch.set_num_threads(threads)
        cfg = config_from_dict({"runtime": {"threads": threads}})
        pipeline = build_pipeline(cfg)
        pipeline.warmup()
        source = LoopingLiveSource(Path(video), name)
        monitor = build_monitor(cfg, pipeline, source_name=name, fps=source.fps, live=True)
        self.lane = Lane(name, source, Counting(monitor))
        self.stop_event = threading.Event()
        self.thread: threading.Thread | None = None

    def start(self) -> None:
        from maskwatch.runner.lanes import run_sources

        kwargs = {"stop": self.stop_event, "status_interval_s": 3600, "summary_interval_s": 3600}
        self.thread = threading.Thread(target=run_sources, args=([self.lane], []), kwargs=kwargs, daemon=True)
        self.thread.start()

    def sample(self) -> dict:
        producer = self.lane.producer
        read, dropped = (producer.stats.read, producer.stats.dropped) if producer else (0, 0)
        process = self.lane.process
        return {
            "frames": self.lane.stats.frames,
            "read": read,
            "dropped": dropped,
            "detected": process.detected,
            "stride": process.stride.every,
        }

    def pid(self) -> int:
        return os.getpid()

    def stop(self) -> None:
        self.stop_event.set()
        if self.thread is not None:
            self.thread.join(timeout=10)


# driver ------------------------------------------------------------------------------------------------------------
def table(rows: list[dict]) -> str:
    lines = [
        "| design | workers | torch threads | N | fps per source | total fps | detector runs/s | detect every "
        "| dropped | peak RSS (MB) | peak PSS (MB) | startup (s) | other CPU |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        per = ", ".join(f"{v:.1f}" for v in r["fps_per_source"])
        lines.append(
            f"| {r['design']} | {r.get('workers', 1)} | {r['torch_threads']} | {r['n']} | {per} | {r['fps_total']:.1f} "
            f"| {r['detections_per_s_total']:.1f} | {'/'.join(map(str, r['detect_every_end']))} "
            f"| {100 * (r['dropped_share'] or 0):.0f} % "
            f"| {r['peak_rss_mb']} | {r['peak_pss_mb']} | {r['startup_s']} | {100 * r['other_cpu_share']:.0f} % |"
        )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--video", type=Path, default=DEFAULT_VIDEO, help="video every source loops (live-like)")
    parser.add_argument("--n", type=int, nargs="+", default=[1, 2, 4], help="numbers of sources (default 1 2 4)")
    parser.add_argument("--designs", nargs="+", default=["threads", "ray"], choices=["threads", "ray"])
    parser.add_argument("--seconds", type=float, default=30.0, help="measured seconds per configuration")
    parser.add_argument(
        "--thread-counts",
        type=int,
        nargs="+",
        default=[1, 0],
        help="torch threads of the threads design, each measured (0: torch's default, one per core; default 1 0)",
    )
    parser.add_argument(
        "--workers",
        type=int,
        nargs="+",
        default=[1, 2],
        help="inference threads of the threads design, each measured with torch threads 1 (default 1 2)",
    )
    parser.add_argument("--json", type=Path, help="write the rows as JSON")
    parser.add_argument("--worker", choices=["threads", "ray"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:  # one configuration, in this fresh process
        t0 = time.monotonic()
        sys.path.insert(0, str(ROOT))
        from loguru import logger

        logger.remove()
        logger.add(sys.stderr, level="WARNING")
        bench = bench_threads if args.worker == "threads" else bench_ray
        result = bench(args.video, args.n[0], args.seconds, t0, args.thread_counts[0], args.workers[0])
        print(json.dumps(result), flush=True)
        return 0
    if not args.video.is_file():
        parser.error(f"no video at {args.video}; pass --video")
    rows = []
    runs = []  # (design, torch threads, workers)
    for design in args.designs:
        if design == "ray":
            runs.append(("ray", 0, 1))
            continue
        runs += [("threads", t, 1) for t in args.thread_counts]
        runs += [("threads", 1, w) for w in args.workers if w > 1]
    for n in args.n:
        for design, threads, workers in runs:
            if workers > n:
                continue
            command = [sys.executable, __file__, "--worker", design, "--n", str(n), "--seconds", str(args.seconds)]
            command += ["--video", str(args.video), "--thread-counts", str(threads), "--workers", str(workers)]
            done = subprocess.run(command, capture_output=True, text=True, timeout=args.seconds + 600, check=False)
            if done.returncode != 0:
                print(done.stderr[-3000:], file=sys.stderr)
                return 1
            rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
            print(json.dumps(rows[-1]), flush=True)
    print(table(rows))
    if args.json is not None:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
