"""``maskwatch bench --stages``: what each stage of annotating a video costs per frame, one after the other."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from maskwatch.commands.bench.core import file_bytes
from maskwatch.config import Config
from maskwatch.errors import SourceError


def stage_costs(cfg: Config, video: Path, frames: int = 200, threads: int = 1) -> dict:
    """Per-frame cost of each stage of annotating ``video`` at its own size, as one batch worker runs it.

    Stages run one after the other on the same frames with ``threads`` torch threads: decode (OpenCV), inference
    (detect + classify, the configured precision), render (overlay), encode (the configured fourcc); medians in ms,
    plus the bytes per frame of the input and of the annotated output (storage).
    """
    from maskwatch.wiring import effective_engine

    if effective_engine(cfg) == "onnx":  # ONNX Runtime takes its intra-op threads from the config
        runtime = cfg.runtime.model_copy(update={"threads": threads})
        return _stage_costs(cfg.model_copy(update={"runtime": runtime}), video, frames, threads)
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        return _stage_costs(cfg, video, frames, threads)
    finally:
        torch.set_num_threads(previous)


def _stage_costs(cfg: Config, video: Path, frames: int, threads: int) -> dict:
    from maskwatch.types import Frame
    from maskwatch.wiring import build_pipeline, configured_precision
    from maskwatch.wiring.outputs import build_renderer, output_fourcc

    cap = cv2.VideoCapture(str(video))
    images: list[np.ndarray] = []
    decode: list[float] = []
    while len(images) < frames:
        t0 = time.perf_counter()
        ok, image = cap.read()
        if not ok:
            break
        decode.append((time.perf_counter() - t0) * 1e3)
        images.append(image)
    fps = cap.get(cv2.CAP_PROP_FPS) or 25.0
    cap.release()
    if not images:
        raise SourceError(f"cannot read frames from video {video}")
    h, w = images[0].shape[:2]
    pipeline = build_pipeline(cfg)
    pipeline.warmup((w, h))
    renderer = build_renderer(cfg)
    infer, render, encode, results = [], [], [], []
    for i, image in enumerate(images):
        t0 = time.perf_counter()
        results.append(pipeline(Frame(image=image, index=i, timestamp_s=i / fps)))
        infer.append((time.perf_counter() - t0) * 1e3)
    annotated = []
    for result in results:
        t0 = time.perf_counter()
        annotated.append(renderer.annotate(result))
        render.append((time.perf_counter() - t0) * 1e3)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "out.mp4"
        writer = cv2.VideoWriter(str(out), cv2.VideoWriter.fourcc(*output_fourcc(cfg)), fps, (w, h))
        for image in annotated:
            t0 = time.perf_counter()
            writer.write(image)
            encode.append((time.perf_counter() - t0) * 1e3)
        writer.release()
        out_bytes = out.stat().st_size / len(annotated)
    cap = cv2.VideoCapture(str(video))
    in_frames = int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) or len(images)
    cap.release()
    return {
        "video": str(video),
        "size_wh": [w, h],
        "fps": fps,
        "frames": len(images),
        "threads": threads,
        "precision": f"{'onnx ' if hasattr(pipeline.detector, 'session') else ''}"
        f"{getattr(pipeline.detector, 'precision', configured_precision(cfg))}",
        "faces_per_frame": sum(len(r.faces) for r in results) / len(results),
        "decode_ms": float(np.median(decode)),
        "infer_ms": float(np.median(infer)),
        "render_ms": float(np.median(render)),
        "encode_ms": float(np.median(encode)),
        "in_bytes_per_frame": file_bytes(video) / in_frames,
        "out_bytes_per_frame": out_bytes,
    }


def stage_lines(costs: dict) -> list[str]:
    """:func:`stage_costs` as a few lines, with the share of each stage in a worker's time per frame."""
    stages = ("decode", "infer", "render", "encode")
    total = sum(costs[f"{s}_ms"] for s in stages)
    w, h = costs["size_wh"]
    lines = [f"per frame at {w}x{h}, {costs['threads']} thread(s), {costs['precision']}, {costs['frames']} frames:"]
    for s in stages:
        ms = costs[f"{s}_ms"]
        lines.append(f"  {s:<7} {ms:7.2f} ms  {ms / total:5.1%}")
    lines.append(f"  total   {total:7.2f} ms  = {1000 / total:.1f} frames/s per core")
    kb_in, kb_out = costs["in_bytes_per_frame"] / 1e3, costs["out_bytes_per_frame"] / 1e3
    lines.append(f"  storage {kb_in:.1f} kB in, {kb_out:.1f} kB out per frame")
    return lines
