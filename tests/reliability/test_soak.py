"""The soak test: a looping video through the full run pipeline, sampled for memory, threads and fps."""

from __future__ import annotations

import json
import subprocess
import threading
from pathlib import Path

import cv2
import pytest

from maskwatch.commands import soak as soak_mod
from maskwatch.config import load_config
from maskwatch.demo import demo_path
from maskwatch.errors import MaskwatchError
from maskwatch.monitor.pipeline import FacePipeline
from tests.conftest import FakeClassifier, FakeDetector, write_video
from tests.helpers import maskwatch

SAMPLE_KEYS = {
    "elapsed_s",
    "dt_s",
    "rss_mb",
    "threads",
    "os_threads",
    "fds",
    "frames",
    "fps",
    "queue",
    "cpu_pct",
    "load1",
}
SUMMARY_KEYS = {
    "rss_start_mb", "rss_end_mb", "rss_growth_pct", "rss_max_mb", "threads_start", "threads_end", "threads_max",
    "fds_start", "fds_end", "fps_median", "fps_p10", "fps_p90", "fps_cv", "frames", "rss_ok", "threads_ok", "fps_ok",
    "threads_before_run", "threads_after_run",
}  # fmt: skip
CLIP_FRAMES = 12


def error_lines(proc: subprocess.CompletedProcess) -> list[str]:
    return [line for line in proc.stderr.splitlines() if "ERROR" in line]


@pytest.fixture
def clip(tmp_path: Path) -> Path:
    return write_video(tmp_path / "clip.mp4", frames=CLIP_FRAMES)


def test_soak_with_fakes_loops_samples_and_plots(tmp_path, clip, record):
    cfg = load_config(None, {})
    build = soak_mod.run_builder(cfg, FacePipeline(FakeDetector(), FakeClassifier()))
    before = threading.active_count()
    out = tmp_path / "out"
    result = soak_mod.soak(clip, 0.1, out, build=build, interval_s=0.5, warmup_s=1.0)
    after = threading.active_count()

    saved = json.loads((out / "soak.json").read_text())
    samples, summary = saved["samples"], saved["summary"]
    missing = [k for s in samples for k in SAMPLE_KEYS - s.keys()]
    png = cv2.imread(str(out / "soak.png"))
    lines = (out / "detections.jsonl").read_text().splitlines()
    ok = (
        saved == json.loads(json.dumps(result))
        and len(samples) >= 8
        and not missing
        and summary.keys() >= SUMMARY_KEYS
        and png is not None
        and png.shape[0] > 300
        and png.std() > 5
        and summary["frames"] > CLIP_FRAMES
        and saved["loops"] >= 1
        and len(lines) == summary["frames"]
        and summary["threads_before_run"] == summary["threads_after_run"] == before == after
    )
    record(
        "soak",
        "6 s soak with fake models on a 12-frame clip",
        "samples with every key, soak.json + a readable soak.png, the clip looped, threads back to the pre-run count",
        f"{len(samples)} samples (missing keys: {missing or 'none'}), png {None if png is None else png.shape}, "
        f"{summary['frames']} frames over {saved['loops']} loops, {len(lines)} detection lines, "
        f"threads {before} before / {after} after, RSS {summary['rss_growth_pct']} %, fps p10/median "
        f"{summary['fps_p10']}/{summary['fps_median']}",
        ok,
    )
    assert ok, summary


def test_summary_flags_growth_thread_rise_and_fps_dips(record):
    def sample(t: float, rss: float, threads: int, fps: float) -> dict:
        return {"elapsed_s": t, "dt_s": 1.0, "rss_mb": rss, "threads": threads, "os_threads": threads + 3,
                "fds": 9, "frames": int(t * 10), "fps": fps, "queue": 8}  # fmt: skip

    steady = [sample(t, 100.0, 3, 10.0) for t in range(1, 21)]
    leaky = [sample(t, 100.0 + t, 3 + (t > 15), 10.0 if t % 4 else 2.0) for t in range(1, 21)]
    good = soak_mod.summarize(steady, 20.0, 5.0, 1.0)
    bad = soak_mod.summarize(leaky, 20.0, 5.0, 1.0)
    problems = soak_mod.failures(bad)
    ok = good["rss_ok"] and good["threads_ok"] and good["fps_ok"] and not soak_mod.failures(good)
    ok = ok and not (bad["rss_ok"] or bad["threads_ok"] or bad["fps_ok"]) and len(problems) == 3
    record(
        "soak",
        "verdicts on synthetic samples",
        "steady run passes; RSS +1 MB per sample, a thread added, fps dips to 2: all three fail",
        f"steady: {soak_mod.failures(good) or 'pass'}; leaky: {problems}",
        ok,
    )
    assert ok, (good, bad)


def test_cli_soak_with_shipped_models(tmp_path, clip, record):
    out, config = tmp_path / "soak", tmp_path / "fp32.yaml"
    config.write_text("runtime:\n  precision: fp32\n")  # the fp32 files load in 0.5 s, the int8 ones in ~12 s
    proc = maskwatch("soak", "--minutes", "0.05", "--video", str(clip), "--out", str(out), "--config", str(config),
                     "--interval-s", "0.5")  # fmt: skip
    errors = error_lines(proc)
    named = all(k in proc.stdout for k in ("rss_ok", "threads_ok", "fps_ok"))
    wrote = (out / "soak.json").is_file() and cv2.imread(str(out / "soak.png")) is not None
    ok = (
        proc.returncode in (0, 1)
        and "Traceback" not in proc.stderr
        and wrote
        and named
        and (len(errors) == (proc.returncode == 1))
        and all("soak: " in line for line in errors)
    )
    record(
        "soak",
        "`maskwatch soak --minutes 0.05` with the shipped fp32 models",
        "exit 0 or 1 (a finding, one ERROR line), soak.json + soak.png written, verdicts printed, no traceback",
        f"exit {proc.returncode}, files written: {wrote}, verdicts printed: {named}, error lines: {errors or 'none'}",
        ok,
    )
    assert ok, proc.stdout + proc.stderr


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--minutes", "0.05", "--video", "{tmp}/missing.mp4"], "does not exist"),
        (["--minutes", "0"], "--minutes must be above 0"),
        (["--minutes", "1", "--interval-s", "-2"], "--interval-s must be above 0"),
    ],
)
def test_cli_soak_user_errors(tmp_path, args, fragment, record):
    proc = maskwatch("soak", *[a.replace("{tmp}", str(tmp_path)) for a in args], "--out", str(tmp_path / "o"))
    errors = error_lines(proc)
    ok = proc.returncode == 1 and len(errors) == 1 and fragment in errors[0] and "Traceback" not in proc.stderr
    record(
        "soak",
        f"`maskwatch soak {' '.join(args)}`",
        f"one ERROR line naming '{fragment}', exit 1",
        f"exit {proc.returncode}, ERROR lines: {[e.split('ERROR')[-1].strip() for e in errors]}",
        ok,
    )
    assert ok, proc.stderr


def test_the_default_video_is_the_shipped_demo_clip():
    assert soak_mod.resolve_video(None) == demo_path()


def test_no_default_video_asks_for_video(tmp_path, monkeypatch, record):
    monkeypatch.setattr(soak_mod, "demo_folder", lambda: tmp_path / "nowhere")
    with pytest.raises(MaskwatchError) as info:
        soak_mod.resolve_video(None)
    ok = "--video" in str(info.value)
    record("soak", "no --video and no demo clip", "an error asking for --video", str(info.value), ok)
    assert ok
