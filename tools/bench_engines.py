"""Torch vs ONNX Runtime engine: per-call model latency, start-up + one-image ``run``, peak memory, import time.

Usage (the ONNX files from ``maskwatch export --out DIR``):

    python tools/bench_engines.py --onnx DIR [--threads 1 2] [--runs 30] [--starts 5] [--json out.json]

For each thread count N, a child process with ``OMP_NUM_THREADS=N`` times, interleaved call by call, the detector's
``detect`` on one 640x480 frame (and the network alone) and the classifier's ``classify`` of 1 and 4 crops for torch
fp32 and the ONNX engine (fp32 from ``--onnx``, int8 the shipped weights/*_int8.onnx; N intra-op threads); medians
of ``--runs``.
Then ``maskwatch run`` on one image, as a fresh process, ``--starts`` times per engine (interleaved) under
``/usr/bin/time -v``: wall time and peak RSS; and the same run under ``python -X importtime``: total import time.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VIDEO = ROOT.parent / "shared" / "data" / "videos" / "mask.mp4"
VARIANTS = ("torch_fp32", "onnx_fp32", "onnx_int8")


def frame_640x480():
    """The first frame of the demo clip at 640x480 (a drawn scene without the clip)."""
    import cv2
    import numpy as np

    cap = cv2.VideoCapture(str(VIDEO))
    ok, frame = cap.read()
    cap.release()
    if not ok:
        frame = np.full((480, 640, 3), 90, np.uint8)
        cv2.ellipse(frame, (320, 220), (60, 80), 0, 0, 360, (120, 160, 210), -1)
    return cv2.resize(frame, (640, 480), interpolation=cv2.INTER_AREA)


def latency(onnx_dir: Path, threads: int, runs: int) -> dict:
    """Median ms per call of each model in each variant, interleaved (runs in the child process)."""
    import torch

    from maskwatch.commands.bench.core import time_interleaved
    from maskwatch.models.classifier import MaskClassifier, crops_to_tensor
    from maskwatch.models.detector import load_detector
    from maskwatch.models.onnx_engine import OnnxMaskClassifier, OnnxRetinaFaceDetector

    torch.set_num_threads(threads)
    image = frame_640x480()
    det = {
        "torch_fp32": load_detector("detector.pt"),
        "onnx_fp32": OnnxRetinaFaceDetector(onnx_dir / "detector.onnx", threads=threads),
        "onnx_int8": OnnxRetinaFaceDetector("detector_int8.onnx", threads=threads),
    }
    cls = {
        "torch_fp32": MaskClassifier("classifier.pt"),
        "onnx_fp32": OnnxMaskClassifier(onnx_dir / "classifier.onnx", threads=threads),
        "onnx_int8": OnnxMaskClassifier("classifier_int8.onnx", threads=threads),
    }
    x, _ = det["torch_fp32"].preprocess(image)
    x = x.float()
    x_np = {det["onnx_fp32"].input_name: x.numpy()}
    faces = det["torch_fp32"].detect(image)
    crop = image[100:260, 250:370]
    out: dict = {"threads": threads, "faces": len(faces)}
    with torch.inference_mode():
        out["detect"] = time_interleaved({v: (lambda v=v: det[v].detect(image)) for v in VARIANTS}, runs)
        nets = {
            "torch_fp32": lambda: det["torch_fp32"]._net(x),
            "onnx_fp32": lambda: det["onnx_fp32"].session.run(["loc", "logits"], x_np),
            "onnx_int8": lambda: det["onnx_int8"].session.run(["loc", "logits"], x_np),
        }
        out["detector_net"] = time_interleaved(nets, runs)
        for n in (1, 4):
            crops = [crop] * n
            calls = {v: (lambda v=v, crops=crops: cls[v].classify(crops)) for v in VARIANTS}
            out[f"classify_{n}"] = time_interleaved(calls, runs)
        xc = crops_to_tensor([crop] * 4, cls["torch_fp32"].input_size)
        out["classifier_net_4"] = time_interleaved(
            {
                "torch_fp32": lambda: cls["torch_fp32"]._fused(xc),
                "onnx_fp32": lambda: cls["onnx_fp32"].session.run(None, {cls["onnx_fp32"].input_name: xc.numpy()}),
                "onnx_int8": lambda: cls["onnx_int8"].session.run(None, {cls["onnx_int8"].input_name: xc.numpy()}),
            },
            runs,
        )
    return out


def _child_env(threads: int) -> dict:
    return {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}


def run_once(engine: str, config: Path, image: Path, out: Path, threads: int, importtime: bool = False) -> dict:
    """One fresh ``maskwatch run`` on ``image``: wall s and peak RSS MB (``/usr/bin/time -v``), or import time."""
    args = [sys.executable, *(["-X", "importtime"] if importtime else []), "-m", "maskwatch", "run"]
    args += ["--source", str(image), "--output", str(out), "--engine", engine, "--config", str(config), "--no-progress"]
    if not importtime:
        args = ["/usr/bin/time", "-v", *args]
    done = subprocess.run(args, capture_output=True, text=True, cwd=ROOT, env=_child_env(threads), timeout=300)
    if done.returncode != 0:
        raise SystemExit(f"maskwatch run --engine {engine} failed:\n{done.stderr[-2000:]}")
    if importtime:
        rows = [line.split("|") for line in done.stderr.splitlines() if line.startswith("import time:")]
        rows = [(int(cum), name) for _, cum, name in (r for r in rows if len(r) == 3) if cum.strip().isdigit()]
        total_us = sum(cum for cum, name in rows if not name.startswith("  "))  # top-level imports only
        torch_us = [cum for cum, name in rows if name.strip() == "torch"]
        return {"import_s": total_us / 1e6, "torch_import_s": torch_us[0] / 1e6 if torch_us else 0.0}
    wall = re.search(r"Elapsed \(wall clock\) time .*: (?:(\d+):)?(\d+):([\d.]+)", done.stderr)
    rss = re.search(r"Maximum resident set size \(kbytes\): (\d+)", done.stderr)
    hours, minutes, seconds = (float(g or 0) for g in wall.groups())
    return {"wall_s": hours * 3600 + minutes * 60 + seconds, "peak_rss_mb": int(rss.group(1)) / 1024}


def startup(onnx_dir: Path, threads: int, starts: int) -> dict:
    """Medians over ``starts`` interleaved fresh runs per engine, fp32 (the torch engine runs fp32 only)."""
    import cv2

    with tempfile.TemporaryDirectory(prefix="bench-engines-") as tmp:
        folder = Path(tmp)
        config = folder / "engines.yaml"
        config.write_text(
            f"runtime:\n  threads: {threads}\n  precision: fp32\n"
            f"detector:\n  onnx_weights: {onnx_dir / 'detector.onnx'}\n"
            f"classifier:\n  onnx_weights: {onnx_dir / 'classifier.onnx'}\n"
        )
        image = folder / "frame.png"
        cv2.imwrite(str(image), frame_640x480())
        samples: dict[str, list[dict]] = {"torch": [], "onnx": []}
        for i in range(starts):
            for engine in samples:
                samples[engine].append(run_once(engine, config, image, folder / f"{engine}{i}.png", threads))
                samples[engine][-1] |= run_once(engine, config, image, folder / "x.png", threads, importtime=True)
    return {
        engine: {key: statistics.median(s[key] for s in runs) for key in runs[0]} for engine, runs in samples.items()
    }


def table(results: list[dict]) -> list[str]:
    lines = ["| threads | what | torch fp32 | onnx fp32 | onnx int8 |", "|---|---|---|---|---|"]
    names = {
        "detect": "detect() 640x480, ms",
        "detector_net": "detector network only, ms",
        "classify_1": "classify() 1 crop, ms",
        "classify_4": "classify() 4 crops, ms",
        "classifier_net_4": "classifier network only, 4 crops, ms",
    }
    for r in results:
        for key, label in names.items():
            cells = " | ".join(f"{r['latency'][key][v]['median_ms']:.2f}" for v in VARIANTS)
            lines.append(f"| {r['threads']} | {label} | {cells} |")
    lines += ["", "| threads | one-image `run` (fresh process), fp32 | --engine torch | --engine onnx |"]
    lines.append("|---|---|---|---|")
    rows = (("wall_s", "wall s"), ("peak_rss_mb", "peak RSS MB"), ("import_s", "imports s (-X importtime)"))
    for r in results:
        s = r["startup"]
        for key, label in rows:
            lines.append(f"| {r['threads']} | {label} | {s['torch'][key]:.2f} | {s['onnx'][key]:.2f} |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--onnx", type=Path, required=True, help="folder with detector.onnx, classifier.onnx")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--starts", type=int, default=5)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    onnx_dir = args.onnx.resolve()
    if args.child is not None:
        print(json.dumps(latency(onnx_dir, args.child, args.runs)))
        return
    results = []
    for threads in args.threads:
        child = [sys.executable, __file__, "--onnx", str(onnx_dir), "--runs", str(args.runs), "--child", str(threads)]
        done = subprocess.run(child, capture_output=True, text=True, env=_child_env(threads), check=True)
        results.append(
            {
                "threads": threads,
                "latency": json.loads(done.stdout.strip().splitlines()[-1]),
                "startup": startup(onnx_dir, threads, args.starts),
            }
        )
    results.append({"loadavg": os.getloadavg()})
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    print("\n".join(table(results[:-1])))
    print(f"load average at the end: {results[-1]['loadavg']}")


if __name__ == "__main__":
    main()
