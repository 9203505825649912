"""``maskwatch bench``: fp32 vs int8 latency and size of both models, end-to-end fps, and the seed architecture.

Everything is measured in one process on the same machine, fp32 and int8 interleaved call by call (and run by
run for the pipeline) so that load changes hit both alike; results are medians (and p90) of many calls.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Hashable, Mapping
from functools import partial
from pathlib import Path
from typing import TypeVar

import cv2
import numpy as np
from loguru import logger

from maskwatch.commands.bench.e2e import e2e_figures
from maskwatch.commands.bench.models import engines, load_models, onnx_int8_files, torch_installed
from maskwatch.commands.bench.process import process_figures
from maskwatch.config import Config
from maskwatch.errors import SourceError

BENCH_SIZE_WH = (640, 480)


def summarize(times_ms: list[float]) -> dict[str, float]:
    """Median and 90th percentile of a list of timings (ms)."""
    arr = np.asarray(times_ms, dtype=np.float64)
    return {"median_ms": float(np.median(arr)), "p90_ms": float(np.percentile(arr, 90)), "runs": len(times_ms)}


K = TypeVar("K", bound=Hashable)


def _torch():
    """torch when it is installed (the [train] extra), else None: the bench runs without it."""
    return importlib.import_module("torch") if importlib.util.find_spec("torch") is not None else None


def time_interleaved(calls: Mapping[K, Callable[[], object]], runs: int, warmup: int = 3) -> dict[K, dict[str, float]]:
    """Time each zero-argument call ``runs`` times, alternating between them; summaries keyed like ``calls``."""
    torch = sys.modules.get("torch")  # the torch models' calls need no autograd; the ONNX ones never import torch
    with torch.inference_mode() if torch is not None else contextlib.nullcontext():
        return _time_interleaved(calls, runs, warmup)


def _time_interleaved(calls: Mapping[K, Callable[[], object]], runs: int, warmup: int) -> dict[K, dict[str, float]]:
    for fn in calls.values():
        for _ in range(warmup):
            fn()
    times: dict[K, list[float]] = {name: [] for name in calls}
    for _ in range(runs):
        for name, fn in calls.items():
            t0 = time.perf_counter()
            fn()
            times[name].append((time.perf_counter() - t0) * 1e3)
    return {name: summarize(t) for name, t in times.items()}


def bench_frames(video: Path | None, frames: int) -> list[np.ndarray]:
    """``frames`` frames of ``video`` resized to 640×480 (looping if short); synthetic frames without a video."""
    w, h = BENCH_SIZE_WH
    if video is None:
        logger.warning("no --video given and no demo video found: timing on synthetic frames without faces")
        rng = np.random.default_rng(0)
        return [rng.integers(0, 255, (h, w, 3), dtype=np.uint8) for _ in range(max(frames, 1))]
    cap = cv2.VideoCapture(str(video))
    out: list[np.ndarray] = []
    try:
        while len(out) < frames:
            ok, frame = cap.read()
            if not ok:
                if not out:
                    raise SourceError(f"cannot read frames from video {video}")
                cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
                ok, frame = cap.read()
                if not ok:
                    break
            out.append(cv2.resize(frame, (w, h), interpolation=cv2.INTER_AREA))
    finally:
        cap.release()
    return out


def synthetic_frames(frames: int) -> list[np.ndarray]:
    """``frames`` smooth 640×480 frames like a camera's (a shaded background, a skin-toned face-sized ellipse and a
    box moving across, slight noise), so that decoding and encoding cost what a real clip's do; no face the detector
    is meant to find."""
    w, h = BENCH_SIZE_WH
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:h, 0:w]
    base = np.stack([60 + 80 * xx / w, 90 + 60 * yy / h, 120 + 40 * (xx + yy) / (w + h)], axis=-1).astype(np.uint8)
    out = []
    for i in range(max(frames, 1)):
        frame = base.copy()
        cx, cy = int(w * (0.3 + 0.4 * ((i % 100) / 100))), int(h * 0.45)
        cv2.ellipse(frame, (cx, cy), (60, 80), 0, 0, 360, (120, 150, 200), -1, cv2.LINE_AA)
        cv2.rectangle(frame, (w - 150 - i % 80, 300), (w - 60 - i % 80, 420), (40, 40, 160), -1)
        noise = rng.integers(-4, 5, frame.shape, dtype=np.int16)
        out.append(np.clip(frame.astype(np.int16) + noise, 0, 255).astype(np.uint8))
    return out


def write_clip(frames: list[np.ndarray], path: Path, fps: float = 25.0) -> Path:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"mp4v"), fps, BENCH_SIZE_WH)
    for frame in frames:
        writer.write(frame)
    writer.release()
    return path


def pipeline_fps(cfg: Config, variant: str, clip: Path) -> tuple[float, int]:
    """Frames per second of ``run`` (decode thread → detect → classify, no output) on ``clip``; (fps, faces).

    ``variant``: "fp32" or "int8" (the engine that :func:`engines` picks for it), or "onnx" (ONNX fp32).
    """
    from maskwatch.capture.sources import open_source
    from maskwatch.monitor.pipeline import FacePipeline
    from maskwatch.runner.single import run

    engine = "onnx" if variant == "onnx" else engines(cfg)[variant]
    precision = "fp32" if variant == "onnx" else variant
    detector, classifier = load_models(cfg, engine, precision)
    c = cfg.classifier
    pipeline = FacePipeline(detector, classifier, c.crop_margin, c.min_confidence, cfg.detector.nested_overlap)
    pipeline.warmup(BENCH_SIZE_WH)
    source = open_source(str(clip))
    try:
        stats = run(source, pipeline, [], None, status_interval_s=1e9, progress=False)
    finally:
        source.close()
    return stats.fps, stats.faces


def seed_frcnn_ms(runs: int) -> dict[str, float] | None:
    """Timing of the original project's detector, torchvision Faster R-CNN R50-FPN, on one 640×480 frame.

    Random weights (no download): only the time is meant, and it barely depends on the weights.
    """
    if runs <= 0 or not torch_installed():
        return None
    import torch
    from torchvision.models.detection import fasterrcnn_resnet50_fpn

    w, h = BENCH_SIZE_WH
    model = fasterrcnn_resnet50_fpn(weights=None, weights_backbone=None, num_classes=4, min_size=h, max_size=w).eval()
    x = [torch.rand(3, h, w)]
    return time_interleaved({"frcnn": lambda: model(x)}, runs=runs, warmup=1)["frcnn"]


def file_bytes(path: str | Path) -> int:
    from maskwatch.models.manifest import resolve_weights

    return resolve_weights(path).stat().st_size


def common_flags(cfg: Config, config_path: Path | None, engine: str, precision: str) -> list[str]:
    """The flags that make a ``maskwatch run`` process use this bench's config, engine and precision."""
    flags = ["--config", str(config_path)] if config_path is not None else []
    return [*flags, "--engine", engine, "--precision", precision]


def model_latency(cfg: Config, image: np.ndarray, runs: int, batch: int) -> tuple[dict, dict, int]:
    """Detector and classifier call times (the network alone), every variant of :func:`latency_variants`
    interleaved: (detector timings, classifier timings per batch size, faces found in ``image``)."""
    from maskwatch.models.prep import crops_to_batch

    models = latency_variants(cfg)
    det_calls, cls_inputs = {}, {}
    for name, (det, _) in models.items():
        x, _ = det.preprocess(image)
        if hasattr(det, "session"):
            feed = {det.input_name: x}
            det_calls[name] = partial(det.session.run, ["loc", "logits"], feed)
        else:
            det_calls[name] = partial(det._net, x.float())
    logger.info(f"timing the detector on a {image.shape[1]}×{image.shape[0]} frame ({runs} runs each)")
    det_t = time_interleaved(det_calls, runs)
    first = next(iter(models.values()))
    faces = first[0].detect(image)
    crop = image[: BENCH_SIZE_WH[1] // 4, : BENCH_SIZE_WH[0] // 4]
    cls_t = {}
    for n in sorted({1, batch}):
        calls = {}
        for name, (_, cls) in models.items():
            if hasattr(cls, "session"):
                cls_inputs[name] = {cls.input_name: crops_to_batch([crop] * n, cls.input_size)}
                calls[name] = partial(cls.session.run, None, cls_inputs[name])
            else:
                from maskwatch.models.classifier import crops_to_tensor

                calls[name] = partial(cls._fused, crops_to_tensor([crop] * n, cls.input_size))
        logger.info(f"timing the classifier at batch {n} ({runs} runs each)")
        cls_t[n] = time_interleaved(calls, runs)
    return det_t, cls_t, len(faces)


def latency_variants(cfg: Config) -> dict[str, tuple]:
    """The models :func:`model_latency` times: "fp32" and "int8" (engines as :func:`engines` picks them; int8 left
    out without int8 files), plus "torch_fp32" when fp32 runs on ONNX Runtime (for scale)."""
    chosen = engines(cfg)
    out = {"fp32": load_models(cfg, chosen["fp32"], "fp32")}
    if chosen["int8"] is not None:
        out["int8"] = load_models(cfg, chosen["int8"], "int8")
    if chosen["fp32"] == "onnx" and torch_installed():  # the torch engine beside it, where the [train] extra is
        out["torch_fp32"] = load_models(cfg, "torch", "fp32")
    return out


def model_bytes(cfg: Config) -> dict[str, dict[str, int | None]]:
    """Sizes of the files the fp32 and int8 figures come from: {"detector": {"fp32": ..., "int8": ...}, ...}."""
    chosen = engines(cfg)
    fp32 = (
        (cfg.detector.onnx_weights, cfg.classifier.onnx_weights)
        if chosen["fp32"] == "onnx"
        else (cfg.detector.weights, cfg.classifier.weights)
    )
    int8 = onnx_int8_files(cfg) if chosen["int8"] == "onnx" else None
    return {
        name: {"fp32": file_bytes(fp32[i]), "int8": None if int8 is None else file_bytes(int8[i])}
        for i, name in enumerate(("detector", "classifier"))
    }


def _ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None or b == 0 else a / b


def model_entry(t1: dict, tb: dict, sizes: dict, usual: int, chosen: dict, engine: str) -> dict:
    """One model's figures: latency at batch 1 (``t1``) and at its ``usual`` batch (``tb``), sizes and ratios."""
    fp32, int8 = tb["fp32"]["median_ms"], tb["int8"]["median_ms"] if "int8" in tb else None
    out = {
        "fp32_ms": fp32,
        "int8_ms": int8,
        "fp32_bytes": sizes["fp32"],
        "int8_bytes": sizes["int8"],
        "latency_ratio": _ratio(int8, fp32),
        "size_ratio": _ratio(sizes["int8"], sizes["fp32"]),
        "usual_batch": usual,
        "engines": chosen,
        "batch_1": t1,
        f"batch_{usual}": tb,
    }
    if engine != "onnx":
        return out
    return {**out, "onnx_ms": fp32, "torch_fp32_ms": tb["torch_fp32"]["median_ms"] if "torch_fp32" in tb else None}


def _pipeline_runs(
    cfg: Config, chosen: dict[str, str | None], variants: tuple[str, ...], clip: Path, repeats: int
) -> tuple[dict[str, list[float]], dict[str, int]]:
    """``repeats`` rounds of :func:`pipeline_fps` over the precisions, interleaved: (fps per run, faces seen)."""
    fps: dict[str, list[float]] = {p: [] for p in variants}
    faces_seen: dict[str, int] = {}
    for r in range(repeats):
        for p in variants:
            value, faces_seen[p] = pipeline_fps(cfg, p, clip)
            fps[p].append(value)
            logger.info(f"pipeline {p} ({chosen[p]}) run {r + 1}/{repeats}: {value:.1f} fps")
    return fps, faces_seen


def run_bench(
    cfg: Config,
    video: Path | None,
    frames: int = 150,
    repeats: int = 3,
    latency_runs: int = 50,
    batch: int = 4,
    seed_runs: int = 3,
    config_path: Path | None = None,
) -> dict:
    """All measurements of ``maskwatch bench`` as one JSON-ready dict (see docs/performance.md).

    The engine is ``runtime.engine`` where the config or ``--engine`` sets it, else ONNX Runtime. fp32 figures run
    on that engine; int8 figures on ONNX Runtime when the int8 ``.onnx`` files exist (None without them).
    ``startup_s``, ``rss_mb``, ``busy_core_ratio`` and ``pipeline_fps_e2e`` time
    whole ``maskwatch run`` processes with that engine (``config_path`` is passed on to them): ``pipeline_fps_e2e``
    is the default config's fps writing an annotated video, beside ``--detect-every 1``, on a synthetic 640×480 clip
    and on the bench clip (``video`` resized to 640×480) when there is one.
    """
    from maskwatch.wiring import check_runtime, onnx_threads, with_runtime

    engine = cfg.runtime.engine if "engine" in cfg.runtime.model_fields_set else "onnx"
    cfg = with_runtime(cfg, device="cpu", engine=engine)
    precision = cfg.runtime.precision
    if precision == "int8" and engines(cfg)["int8"] is None:
        logger.warning("no int8 model files (`maskwatch quantize` makes them): whole runs are timed at fp32")
        precision = "fp32"
    flags = common_flags(cfg, config_path, engine, precision)
    cfg = with_runtime(cfg, precision="fp32")
    check_runtime(with_runtime(cfg, engine="torch") if torch_installed() else cfg)
    images = bench_frames(video, frames)
    det_t, cls_t, faces = model_latency(cfg, images[0], latency_runs, batch)
    chosen = engines(cfg)
    variants = tuple(p for p in ("fp32", "int8") if chosen[p] is not None)
    clip_dir = tempfile.TemporaryDirectory(prefix="maskwatch-bench-")
    with clip_dir:
        folder = Path(clip_dir.name)
        clip = write_clip(images, folder / "bench.mp4")
        fps, faces_seen = _pipeline_runs(cfg, chosen, variants, clip, repeats)
        logger.info("timing whole processes: one-image start-up, video peak RSS, one core busy")
        process = process_figures(clip, images[0], flags, repeats)
        logger.info("timing whole runs end to end (decode → detect → classify → track → draw → encode)")
        e2e = {"synthetic": e2e_figures(write_clip(synthetic_frames(frames), folder / "synthetic.mp4"), flags, repeats)}
        if video is not None:
            e2e["video"] = e2e_figures(clip, flags, repeats)

    logger.info(f"timing the seed Faster R-CNN R50-FPN ({seed_runs} runs)")
    seed = seed_frcnn_ms(seed_runs)
    sizes = model_bytes(cfg)

    main_clip = "video" if "video" in e2e else "synthetic"
    return {
        "detector": model_entry(det_t, det_t, sizes["detector"], 1, chosen, engine),
        "classifier": model_entry(cls_t[1], cls_t[batch], sizes["classifier"], batch, chosen, engine),
        "pipeline_fps": {p: statistics.median(fps[p]) if p in fps else None for p in ("fp32", "int8")},
        "pipeline_runs": fps,
        "pipeline_faces": faces_seen,
        "pipeline_fps_e2e": e2e[main_clip]["fps"]["default"],
        "pipeline_fps_e2e_detect_every_1": e2e[main_clip]["fps"]["detect_every_1"],
        "e2e": e2e,
        "seed_frcnn_ms": None if seed is None else seed["median_ms"],
        "seed_frcnn": seed,
        "engine": engine,
        **process,
        "setup": {
            "video": str(video) if video else None,
            "frames": len(images),
            "frame_wh": list(BENCH_SIZE_WH),
            "faces_in_first_frame": faces,
            "detect_every": cfg.tracking.detect_every,
            "run_precision": precision,
            "e2e_clip": main_clip,
            "threads": torch.get_num_threads() if (torch := _torch()) else None,
            "machine": platform.machine(),
            "processor": platform.processor() or platform.machine(),
            "torch": torch.__version__ if torch else None,
            **({"onnx_threads": onnx_threads(cfg)} if engine == "onnx" else {}),
        },
    }


def report_lines(result: dict) -> list[str]:
    """A short human-readable summary of :func:`run_bench`'s result."""
    lines = []

    def ms(v: float | None) -> str:
        return "    n/a" if v is None else f"{v:7.2f}"

    for name in ("detector", "classifier"):
        r = result[name]
        ratio = "" if r["latency_ratio"] is None else f" (x{r['latency_ratio']:.2f})"
        int8_mb = "n/a" if r["int8_bytes"] is None else f"{r['int8_bytes'] / 1e6:.2f} MB"
        torch_fp32 = f"  torch fp32 {r['torch_fp32_ms']:.2f} ms" if r.get("torch_fp32_ms") is not None else ""
        lines.append(
            f"{name:<10} fp32 {ms(r['fp32_ms'])} ms  int8 {ms(r['int8_ms'])} ms{ratio}, batch {r['usual_batch']}; "
            f"size {r['fp32_bytes'] / 1e6:.2f} MB -> {int8_mb}{torch_fp32}"
        )
    fps = result["pipeline_fps"]
    int8 = "n/a" if fps["int8"] is None else f"{fps['int8']:.1f} fps"
    lines.append(f"pipeline   fp32 {fps['fp32']:.1f} fps  int8 {int8}  (detect + classify on every frame, no output)")
    if "pipeline_fps_e2e" in result:
        every = result["setup"]["detect_every"]
        lines.append(
            f"end to end ({result['setup']['e2e_clip']} 640x480 clip, annotated mp4 out): default config "
            f"(detect every {every}) {result['pipeline_fps_e2e']:.1f} fps, detect every frame "
            f"{result['pipeline_fps_e2e_detect_every_1']:.1f} fps"
        )
    if "startup_s" in result:
        lines.append(
            f"process    ({result['engine']}) one-image run {result['startup_s']:.2f} s, video run peak "
            f"{result['rss_mb']:.0f} MB, fps with one core busy x{result['busy_core_ratio']:.2f} of idle"
        )
    if result["seed_frcnn_ms"] is not None:
        lines.append(f"seed Faster R-CNN R50-FPN at 640x480: {result['seed_frcnn_ms']:.0f} ms per frame")
    return lines
