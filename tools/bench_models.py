"""ms per 640x480 frame of ONNX detector files, side by side: before/after a retraining, and input-size trade-offs.

Each model file is run at each ``--sizes`` input (longest side), interleaved call by call in one process on one
frame of the real clip (resized to 640x480), ``--threads`` intra-op threads; medians of ``--runs``. The
classifier files (``--classifiers``) are timed on a batch of 4 face crops the same way.

    python tools/bench_models.py --detectors old/detector.onnx weights/detector.onnx \
        [--classifiers old/classifier.onnx weights/classifier.onnx] [--sizes 640 800 960] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import cv2
import numpy as np

from maskwatch.models.onnx_engine import OnnxMaskClassifier, OnnxRetinaFaceDetector

ROOT = Path(__file__).resolve().parent.parent


def frame() -> np.ndarray:
    for path in (ROOT.parent / "shared" / "data" / "videos" / "mask.mp4", ROOT / "maskwatch" / "demo" / "demo.mp4"):
        cap = cv2.VideoCapture(str(path))
        ok, image = cap.read()
        cap.release()
        if ok:
            return cv2.resize(image, (640, 480), interpolation=cv2.INTER_AREA)
    raise SystemExit("no clip to take a frame from")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--detectors", nargs="+", required=True)
    parser.add_argument("--classifiers", nargs="*", default=[])
    parser.add_argument("--sizes", nargs="+", type=int, default=[640])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    image = frame()
    calls = {}
    for path in args.detectors:
        for size in args.sizes:
            det = OnnxRetinaFaceDetector(path, input_size=size, threads=args.threads)
            calls[f"detector {path} @{size}"] = lambda d=det: d.detect(image)
    crops = [image[100:228, 200:300]] * 4
    for path in args.classifiers:
        clf = OnnxMaskClassifier(path, threads=args.threads)
        calls[f"classifier {path} x4"] = lambda c=clf: c.classify(crops)
    times: dict[str, list[float]] = {name: [] for name in calls}
    for fn in calls.values():
        fn()  # warm-up
    for _ in range(args.runs):
        for name, fn in calls.items():
            t0 = time.perf_counter()
            fn()
            times[name].append((time.perf_counter() - t0) * 1000)
    result = {name: round(statistics.median(ms), 2) for name, ms in times.items()}
    for name, ms in result.items():
        print(f"{name}: {ms} ms (median of {args.runs}, {args.threads} thread)")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
