"""``maskwatch bench --device cuda``: the fp32 models on a GPU, batch 1 vs batched, against the CPU's video I/O.

For each frame size: per-model latency at each batch size (the detector on whole frames, the classifier on face
crops), end-to-end fps of the runner (decode thread → detect → classify, no output) at batch 1 and at the best
batch, and the decode and encode ceilings of the same clip on this machine's CPU, so that the slowest stage shows.
Runs on ``--device cpu`` too (that is how it is tested without a GPU).
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import cv2
import numpy as np
import torch

from maskwatch.commands.bench.core import bench_frames, time_interleaved
from maskwatch.config import Config

SIZES_WH = ((640, 480), (1280, 720))
BATCHES = (1, 2, 4, 8, 16)


def _sync(device: str) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def _synced(fn: Callable[[], object], device: str) -> Callable[[], None]:
    """``fn`` followed by a device sync, so a timed call includes its GPU work (a no-op on the CPU)."""

    def call():
        fn()
        _sync(device)

    return call


def _clip(frames: list[np.ndarray], path: Path, fps: float = 25.0) -> tuple[Path, float]:
    """Write ``frames`` as an mp4v clip; returns the path and the encode rate (frames per second)."""
    h, w = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"mp4v"), fps, (w, h))
    t0 = time.perf_counter()
    for frame in frames:
        writer.write(frame)
    writer.release()
    return path, len(frames) / (time.perf_counter() - t0)


def _decode_fps(path: Path) -> float:
    cap = cv2.VideoCapture(str(path))
    n, t0 = 0, time.perf_counter()
    while cap.grab() and cap.retrieve()[0]:
        n += 1
    cap.release()
    return n / (time.perf_counter() - t0)


def _runner_fps(pipeline, clip: Path, batch: int) -> float:
    from maskwatch.capture.sources import open_source
    from maskwatch.runner.single import run

    source = open_source(str(clip))
    try:
        return run(source, pipeline, [], None, status_interval_s=1e9, progress=False, batch_frames=batch).fps
    finally:
        source.close()


@torch.inference_mode()
def device_bench(
    cfg: Config,
    video: Path | None,
    *,
    device: str = "cuda",
    sizes: tuple[tuple[int, int], ...] = SIZES_WH,
    batches: tuple[int, ...] = BATCHES,
    frames: int = 150,
    runs: int = 20,
    repeats: int = 3,
) -> dict:
    """The numbers described in the module docstring, as a dict (``sizes`` → per-size results).

    Every (size, batch) model call is timed interleaved with the others, and the end-to-end runs at batch 1 and at
    the best batch alternate ``repeats`` times (medians), so machine drift hits all of them alike.
    """
    from maskwatch.wiring import build_pipeline, with_runtime

    pipeline = build_pipeline(with_runtime(cfg, device=device, precision="fp32"))
    result: dict = {"device": device, "torch": torch.__version__, "repeats": repeats, "sizes": {}}
    if torch.device(device).type == "cuda":
        result["gpu"] = torch.cuda.get_device_name(0)
    base = bench_frames(video, frames)
    images: dict[tuple[int, int], list[np.ndarray]] = {}
    calls: dict[tuple[str, tuple[int, int], int], Callable[[], None]] = {}
    for w, h in sizes:
        imgs = images[(w, h)] = [cv2.resize(f, (w, h), interpolation=cv2.INTER_AREA) for f in base]
        pipeline.warmup((w, h))
        faces = [pipeline.detector.detect(imgs[i]) for i in range(min(len(imgs), 20))]
        crops = [c for img, f in zip(imgs, faces, strict=False) for c in pipeline.crops(img, f)] or [imgs[0][:64, :64]]
        for b in batches:
            batch = [imgs[i % len(imgs)] for i in range(b)]
            group = [crops[i % len(crops)] for i in range(b)]
            detect, classify = pipeline.detector.detect_batch, pipeline.classifier.classify
            calls[("detector_ms", (w, h), b)] = _synced(partial(detect, batch), device)
            calls[("classifier_ms", (w, h), b)] = _synced(partial(classify, group), device)
    timed = time_interleaved(calls, runs, warmup=2)
    for w, h in sizes:
        entry: dict = {key: {b: timed[(key, (w, h), b)] for b in batches} for key in ("detector_ms", "classifier_ms")}
        per_frame = {b: entry["detector_ms"][b]["median_ms"] / b for b in batches}
        best = min(per_frame, key=lambda b: per_frame[b])
        entry["best_batch"] = best
        entry["detector_ms_per_frame"] = {"batch_1": per_frame[batches[0]], "best": per_frame[best]}
        with tempfile.TemporaryDirectory() as tmp:
            clip, encode_fps = _clip(images[(w, h)], Path(tmp) / "clip.mp4")
            entry["encode_fps"] = encode_fps
            entry["decode_fps"] = _decode_fps(clip)
            fps: dict[str, list[float]] = {"batch_1": [], "best": []}
            for _ in range(max(1, repeats)):
                fps["batch_1"].append(_runner_fps(pipeline, clip, batches[0]))
                fps["best"].append(_runner_fps(pipeline, clip, best))
            entry["end_to_end_fps"] = {k: float(np.median(v)) for k, v in fps.items()}
        stages = {
            "decode (CPU)": entry["decode_fps"],
            "encode (CPU)": entry["encode_fps"],
            "models (batched)": 1000.0 / (per_frame[best] + entry["classifier_ms"][batches[0]]["median_ms"]),
        }
        entry["bound_by"] = min(stages, key=lambda k: stages[k])
        result["sizes"][f"{w}x{h}"] = entry
    return result


def device_lines(result: dict) -> list[str]:
    """A short summary of :func:`device_bench`."""
    lines = [f"device {result['device']} {result.get('gpu', '')} (torch {result['torch']}), fp32"]
    for size, e in result["sizes"].items():
        det = e["detector_ms_per_frame"]
        lines.append(
            f"{size}: detector {det['batch_1']:.2f} ms/frame at batch 1, {det['best']:.2f} at batch {e['best_batch']}; "
            f"classifier {e['classifier_ms'][min(e['classifier_ms'])]['median_ms']:.2f} ms per face batch of 1"
        )
        fps = e["end_to_end_fps"]
        lines.append(
            f"  end to end {fps['batch_1']:.1f} fps (batch 1), {fps['best']:.1f} fps (batch {e['best_batch']}); "
            f"CPU decode {e['decode_fps']:.0f} fps, encode {e['encode_fps']:.0f} fps -> bound by {e['bound_by']}"
        )
    return lines
