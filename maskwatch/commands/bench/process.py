"""What a user feels of a run, measured on whole ``maskwatch run`` processes: start-up of a one-image run, peak
memory of a video run, and how much of its speed a video run keeps when another process spins on one core."""

from __future__ import annotations

import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

_DONE = re.compile(r"done: (\d+) frames in ([\d.]+) s \(processed at ([\d.]+) frames/s\)")


def _run(args: list[str]) -> tuple[float, float, str]:
    """Run ``maskwatch ARGS``; (wall seconds, peak RSS MB of that process, stderr).

    The peak is the kernel's high-water mark of the process's own memory (``VmHWM``), read every 20 ms while it
    runs: ``ru_maxrss`` would count the pages it shared with this (torch-laden) process before its exec.
    """
    start = time.perf_counter()
    with tempfile.TemporaryFile("w+") as err_file:
        proc = subprocess.Popen([sys.executable, "-m", "maskwatch", *args], stdout=subprocess.DEVNULL,
                                stderr=err_file, text=True)  # fmt: skip
        peak_kb = 0
        while proc.poll() is None:
            peak_kb = max(peak_kb, _high_water_kb(proc.pid))
            time.sleep(0.02)
        wall = time.perf_counter() - start
        err_file.seek(0)
        err = err_file.read()
    if proc.returncode != 0:
        raise RuntimeError(f"maskwatch {' '.join(args)} failed: {err.strip().splitlines()[-1:]}")
    return wall, peak_kb / 1024, err


def _high_water_kb(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


def _fps(stderr: str) -> float:
    found = _DONE.search(stderr)
    if found is None:
        raise RuntimeError("the run printed no 'done:' line")
    return float(found.group(3))


def process_figures(clip: Path, image: np.ndarray, common: list[str], repeats: int = 3) -> dict:
    """``startup_s``: median wall time of a one-image ``run`` (fresh process, ``image``); ``rss_mb``: peak RSS of
    a ``run`` over ``clip``; ``busy_core_ratio``: its fps with another process spinning on one core over its fps
    alone (medians of ``repeats``, the two conditions alternated). ``common``: extra flags (config, engine)."""
    with tempfile.TemporaryDirectory(prefix="maskwatch-bench-") as tmp:
        photo = Path(tmp) / "photo.png"
        cv2.imwrite(str(photo), image)
        out = str(Path(tmp) / "out.png")
        starts = [_run(["run", "--source", str(photo), "--output", out, "--no-progress", *common])[0]
                  for _ in range(repeats)]  # fmt: skip
        video = ["run", "--source", str(clip), "--no-progress", *common]
        idle, busy, rss = [], [], []
        for _ in range(repeats):
            _, peak, err = _run(video)
            idle.append(_fps(err))
            rss.append(peak)
            spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
            try:
                busy.append(_fps(_run(video)[2]))
            finally:
                spinner.kill()
                spinner.wait()
    return {
        "startup_s": statistics.median(starts),
        "rss_mb": max(rss),
        "busy_core_ratio": statistics.median(busy) / statistics.median(idle),
        "process_runs": {"startup_s": starts, "idle_fps": idle, "busy_fps": busy, "rss_mb": rss},
    }
