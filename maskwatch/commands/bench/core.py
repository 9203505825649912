"""``maskwatch bench``: fp32 vs int8 latency and size of both models, end-to-end fps, and the seed architecture.

Everything is measured in one process on the same machine, fp32 and int8 interleaved call by call (and run by
run for the pipeline) so that load changes hit both alike; results are medians (and p90) of many calls.
"""

from __future__ import annotations

import platform
import statistics
import tempfile
import time
from collections.abc import Callable, Hashable, Mapping
from functools import partial
from pathlib import Path
from typing import TypeVar

import cv2
import numpy as np
import torch
from loguru import logger

from maskwatch.commands.bench.process import process_figures
from maskwatch.config import Config
from maskwatch.errors import MaskwatchError, SourceError

BENCH_SIZE_WH = (640, 480)


def summarize(times_ms: list[float]) -> dict[str, float]:
    """Median and 90th percentile of a list of timings (ms)."""
    arr = np.asarray(times_ms, dtype=np.float64)
    return {"median_ms": float(np.median(arr)), "p90_ms": float(np.percentile(arr, 90)), "runs": len(times_ms)}


K = TypeVar("K", bound=Hashable)


@torch.inference_mode()
def time_interleaved(calls: Mapping[K, Callable[[], object]], runs: int, warmup: int = 3) -> dict[K, dict[str, float]]:
    """Time each zero-argument call ``runs`` times, alternating between them; summaries keyed like ``calls``."""
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


def write_clip(frames: list[np.ndarray], path: Path, fps: float = 25.0) -> Path:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, BENCH_SIZE_WH)
    for frame in frames:
        writer.write(frame)
    writer.release()
    return path


def pipeline_fps(cfg: Config, variant: str, clip: Path) -> tuple[float, int]:
    """Frames per second of ``run`` (decode thread → detect → classify, no output) on ``clip``; (fps, faces).

    ``variant``: "fp32" or "int8" (the torch engine at that precision), or "onnx" (the ONNX engine).
    """
    from maskwatch.build import build_pipeline, with_runtime
    from maskwatch.capture.sources import open_source
    from maskwatch.runner.single import run

    engine = with_runtime(cfg, engine="onnx") if variant == "onnx" else with_runtime(cfg, precision=variant)
    pipeline = build_pipeline(engine)
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
    if runs <= 0:
        return None
    from torchvision.models.detection import fasterrcnn_resnet50_fpn

    w, h = BENCH_SIZE_WH
    model = fasterrcnn_resnet50_fpn(weights=None, weights_backbone=None, num_classes=4, min_size=h, max_size=w).eval()
    x = [torch.rand(3, h, w)]
    return time_interleaved({"frcnn": lambda: model(x)}, runs=runs, warmup=1)["frcnn"]


def file_bytes(path: str | Path) -> int:
    from maskwatch.models.weights import resolve_weights

    return resolve_weights(path).stat().st_size


def common_flags(cfg: Config, config_path: Path | None) -> list[str]:
    """The flags that make a ``maskwatch run`` process use this bench's config and engine."""
    from maskwatch.build import configured_engine

    flags = ["--config", str(config_path)] if config_path is not None else []
    return [*flags, "--engine", configured_engine(cfg)]


def model_latency(cfg: Config, image: np.ndarray, runs: int, batch: int, onnx: bool) -> tuple[dict, dict, int]:
    """Detector and classifier call times, fp32 and int8 (and the ONNX engine's graphs with ``onnx``) interleaved:
    (detector timings, classifier timings per batch size, faces found in ``image``)."""
    from maskwatch.build import build_onnx_models, model_files
    from maskwatch.models.classifier import MaskClassifier, crops_to_tensor
    from maskwatch.models.detector import load_detector

    files = model_files(cfg)
    det = {p: load_detector(w) for p, w in files["detector"].items()}
    cls = {p: MaskClassifier(w) for p, w in files["classifier"].items()}
    onnx_det, onnx_cls = build_onnx_models(cfg) if onnx else (None, None)

    x, _ = det["fp32"].preprocess(image)
    x = x.float()
    logger.info(f"timing the detector on a {x.shape[3]}×{x.shape[2]} input ({runs} runs each)")
    calls = {
        "fp32": lambda: det["fp32"]._net(x),
        "int8": lambda: det["int8"]._net(x),
        "fp32_unfused": lambda: det["fp32"].model(x),
    }
    if onnx_det is not None:
        feed = {onnx_det.input_name: x.numpy()}
        calls["onnx"] = lambda: onnx_det.session.run(["loc", "logits"], feed)
    det_t = time_interleaved(calls, runs)
    faces = det["fp32"].detect(image)
    crop = image[: BENCH_SIZE_WH[1] // 4, : BENCH_SIZE_WH[0] // 4]
    cls_t = {}
    for n in sorted({1, batch}):
        xc = crops_to_tensor([crop] * n, cls["fp32"].input_size)
        logger.info(f"timing the classifier at batch {n} ({runs} runs each)")
        calls = {p: (lambda p=p, xc=xc: cls[p]._fused(xc)) for p in ("fp32", "int8")}
        if onnx_cls is not None:
            calls["onnx"] = partial(onnx_cls.session.run, None, {onnx_cls.input_name: xc.numpy()})
        cls_t[n] = time_interleaved(calls, runs)
    return det_t, cls_t, len(faces)


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

    ``startup_s``, ``rss_mb`` and ``busy_core_ratio`` time whole ``maskwatch run`` processes with the configured
    engine and precision (``config_path`` and the engine are passed on to them).

    With ``runtime.engine: onnx`` the ONNX engine is timed too, beside torch fp32 and int8 ("onnx" entries).
    """
    from maskwatch.build import check_runtime, configured_engine, model_files, onnx_threads, with_runtime

    onnx = configured_engine(cfg) == "onnx"
    flags = common_flags(cfg, config_path)
    cfg = with_runtime(cfg, device="cpu", engine="torch")
    check_runtime(cfg)
    files = model_files(cfg)
    images = bench_frames(video, frames)
    det_t, cls_t, faces = model_latency(cfg, images[0], latency_runs, batch, onnx)

    variants = ("fp32", "int8", "onnx") if onnx else ("fp32", "int8")
    clip_dir = tempfile.TemporaryDirectory(prefix="maskwatch-bench-")
    fps: dict[str, list[float]] = {p: [] for p in variants}
    faces_seen = {}
    with clip_dir:
        clip = write_clip(images, Path(clip_dir.name) / "bench.mp4")
        for r in range(repeats):
            for p in variants:
                value, faces_seen[p] = pipeline_fps(cfg, p, clip)
                fps[p].append(value)
                logger.info(f"pipeline {p} run {r + 1}/{repeats}: {value:.1f} fps")

        logger.info("timing whole processes: one-image start-up, video peak RSS, one core busy")
        process = process_figures(clip, images[0], flags, repeats)

    logger.info(f"timing the seed Faster R-CNN R50-FPN ({seed_runs} runs)")
    seed = seed_frcnn_ms(seed_runs)
    det_bytes = {p: file_bytes(w) for p, w in files["detector"].items()}
    cls_bytes = {p: file_bytes(w) for p, w in files["classifier"].items()}

    def entry(t1: dict, tb: dict, sizes: dict, usual: int) -> dict:
        out = {
            "fp32_ms": tb["fp32"]["median_ms"],
            "int8_ms": tb["int8"]["median_ms"],
            "fp32_bytes": sizes["fp32"],
            "int8_bytes": sizes["int8"],
            "latency_ratio": tb["int8"]["median_ms"] / tb["fp32"]["median_ms"],
            "size_ratio": sizes["int8"] / sizes["fp32"],
            "usual_batch": usual,
            "batch_1": {p: t1[p] for p in variants},
            f"batch_{usual}": {p: tb[p] for p in variants},
        }
        return {**out, "onnx_ms": tb["onnx"]["median_ms"]} if onnx else out

    detector = entry(det_t, det_t, det_bytes, 1)
    detector["fp32_unfused"] = det_t["fp32_unfused"]
    return {
        "detector": detector,
        "classifier": entry(cls_t[1], cls_t[batch], cls_bytes, batch),
        "pipeline_fps": {p: statistics.median(v) for p, v in fps.items()},
        "pipeline_runs": fps,
        "pipeline_faces": faces_seen,
        "seed_frcnn_ms": None if seed is None else seed["median_ms"],
        "seed_frcnn": seed,
        "engine": "onnx" if onnx else "torch",
        **process,
        "setup": {
            "video": str(video) if video else None,
            "frames": len(images),
            "frame_wh": list(BENCH_SIZE_WH),
            "faces_in_first_frame": faces,
            "threads": torch.get_num_threads(),
            "engine": torch.backends.quantized.engine,
            "machine": platform.machine(),
            "processor": platform.processor() or platform.machine(),
            "torch": torch.__version__,
            **({"onnx_threads": onnx_threads(cfg)} if onnx else {}),
        },
    }


def report_lines(result: dict) -> list[str]:
    """A short human-readable summary of :func:`run_bench`'s result."""
    lines = []
    for name in ("detector", "classifier"):
        r = result[name]
        onnx = f"  onnx {r['onnx_ms']:7.2f} ms" if "onnx_ms" in r else ""
        lines.append(
            f"{name:<10} fp32 {r['fp32_ms']:7.2f} ms  int8 {r['int8_ms']:7.2f} ms  "
            f"(x{r['latency_ratio']:.2f}, batch {r['usual_batch']}){onnx}   "
            f"size {r['fp32_bytes'] / 1e6:.2f} MB -> {r['int8_bytes'] / 1e6:.2f} MB (x{r['size_ratio']:.2f})"
        )
    fps = result["pipeline_fps"]
    speedup = fps["int8"] / fps["fp32"]
    onnx = f"  onnx {fps['onnx']:.1f} fps" if "onnx" in fps else ""
    lines.append(f"pipeline   fp32 {fps['fp32']:.1f} fps  int8 {fps['int8']:.1f} fps  (x{speedup:.2f}){onnx}")
    if "startup_s" in result:
        lines.append(
            f"process    ({result['engine']}) one-image run {result['startup_s']:.2f} s, video run peak "
            f"{result['rss_mb']:.0f} MB, fps with one core busy x{result['busy_core_ratio']:.2f} of idle"
        )
    if result["seed_frcnn_ms"] is not None:
        lines.append(f"seed Faster R-CNN R50-FPN at 640x480: {result['seed_frcnn_ms']:.0f} ms per frame")
    return lines


def compare_pt2e(cfg: Config, runs: int = 20, batch: int = 4) -> dict:
    """torchao's PT2E flow (X86Inductor quantizer + ``torch.compile``) beside the shipped eager int8 path.

    Needs ``pip install 'maskwatch[pt2e]'``. Reports, per model: the eager fp32 and eager int8 (shipped) latency,
    the PT2E int8 latency without and with ``torch.compile``, and the one-off compile time.
    """
    try:
        import torchao.quantization.pt2e.quantizer.x86_inductor_quantizer as xiq
        from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e
    except ImportError as exc:
        raise MaskwatchError("--pt2e needs torchao: pip install 'maskwatch[pt2e]'") from exc
    from maskwatch.build import model_files
    from maskwatch.models.classifier import MaskClassifier
    from maskwatch.models.detector import load_detector

    files = model_files(cfg)
    models = {
        "detector": (
            load_detector(files["detector"]["fp32"]),
            load_detector(files["detector"]["int8"]),
            torch.randint(0, 256, (1, 3, BENCH_SIZE_WH[1], BENCH_SIZE_WH[0])).float(),
        ),
        "classifier": (
            MaskClassifier(files["classifier"]["fp32"]),
            MaskClassifier(files["classifier"]["int8"]),
            torch.randint(0, 256, (batch, 3, 80, 80)).float(),
        ),
    }
    out = {}
    for name, (fp32, int8, x) in models.items():
        net = fp32.model if name == "detector" else fp32.net
        eager8 = int8._net if name == "detector" else int8._fused
        logger.info(f"PT2E: quantizing the {name} with the X86 Inductor quantizer and compiling it")
        quantizer = xiq.X86InductorQuantizer().set_global(xiq.get_default_x86_inductor_quantization_config())
        t0 = time.perf_counter()
        prepared = prepare_pt2e(torch.export.export(net.eval(), (x,)).module(), quantizer)
        prepared(x)
        pt2e = convert_pt2e(prepared)
        quantize_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        with torch.no_grad():
            compiled = torch.compile(pt2e)
            compiled(x)
        compile_s = time.perf_counter() - t0
        with torch.no_grad():
            slow = {
                "fp32_eager": partial(net, x),
                "int8_eager_torch_ao": partial(eager8, x),
                "int8_pt2e": partial(pt2e, x),
            }
            t = time_interleaved(slow, max(3, runs // 4))
            fast = {"int8_pt2e_compiled": partial(compiled, x), "int8_eager_torch_ao_2": partial(eager8, x)}
            t |= time_interleaved(fast, runs)
        out[name] = {
            "input_shape": list(x.shape),
            "pt2e_quantize_s": quantize_s,
            "pt2e_compile_s": compile_s,
            **{k: v["median_ms"] for k, v in t.items()},
        }
    return out


@torch.inference_mode()
def stage_costs(cfg: Config, video: Path, frames: int = 200, threads: int = 1) -> dict:
    """Per-frame cost of each stage of annotating ``video`` at its own size, as one batch worker runs it.

    Stages run one after the other on the same frames with ``threads`` torch threads: decode (OpenCV), inference
    (detect + classify, the configured precision), render (overlay), encode (the configured fourcc); medians in ms,
    plus the bytes per frame of the input and of the annotated output (storage).
    """
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        return _stage_costs(cfg, video, frames, threads)
    finally:
        torch.set_num_threads(previous)


def _stage_costs(cfg: Config, video: Path, frames: int, threads: int) -> dict:
    from maskwatch.build import build_pipeline, build_renderer, configured_engine, configured_precision, output_fourcc
    from maskwatch.types import Frame

    cap = cv2.VideoCapture(str(video))
    images, decode = [], []
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
        writer = cv2.VideoWriter(str(out), cv2.VideoWriter_fourcc(*output_fourcc(cfg)), fps, (w, h))
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
        "precision": "onnx fp32" if configured_engine(cfg) == "onnx" else configured_precision(cfg),
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
