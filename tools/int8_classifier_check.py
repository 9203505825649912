"""fp32 vs int8 ONNX classifier on data from other sources than the val split.

Prints the accuracy on ``../shared/data/mask-crops`` (every 4th crop of each class) and, for the faces the fp32
detector finds on every 3rd frame of the real clips (``../shared/data/videos``), the mean class probabilities and
the share of each arg-max label. Run from the repository root:

    python tools/int8_classifier_check.py [--shared ../shared]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np

from maskwatch.models.onnx_engine import OnnxMaskClassifier, OnnxRetinaFaceDetector
from maskwatch.monitor.crop import DEFAULT_CROP_MARGIN, crop_face
from maskwatch.types import CLASS_NAMES


def clip_crops(detector: OnnxRetinaFaceDetector, video: Path, every: int = 3) -> list[np.ndarray]:
    """The largest-score face of every ``every``-th frame of ``video``, cut as ``run`` cuts it."""
    cap = cv2.VideoCapture(str(video))
    crops, index = [], 0
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        if index % every == 0:
            crops += [crop_face(frame, box, DEFAULT_CROP_MARGIN) for box in detector.detect(frame).xyxy[:1]]
        index += 1
    cap.release()
    return crops


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shared", type=Path, default=Path(__file__).resolve().parents[2] / "shared")
    args = parser.parse_args()
    models = {"fp32": OnnxMaskClassifier("classifier.onnx"), "int8": OnnxMaskClassifier("classifier_int8.onnx")}
    for name in ("with_mask", "without_mask"):
        files = sorted((args.shared / "data" / "mask-crops" / name).glob("*"))[::4]
        crops = [c for c in (cv2.imread(str(f)) for f in files) if c is not None]
        want = CLASS_NAMES.index(name)
        scores = []
        for model in models.values():
            probs = np.concatenate([model.classify(crops[i : i + 32]) for i in range(0, len(crops), 32)])
            scores.append(f"{float((probs.argmax(1) == want).mean()):.3f}")
        print(f"mask-crops {name} (n={len(crops)}): accuracy fp32 {scores[0]}, int8 {scores[1]}")
    detector = OnnxRetinaFaceDetector("detector.onnx")
    for video in sorted((args.shared / "data" / "videos").glob("*.mp4")):
        crops = clip_crops(detector, video)
        if not crops:
            continue
        for precision, model in models.items():
            probs = model.classify(crops)
            share = np.bincount(probs.argmax(1), minlength=len(CLASS_NAMES)) / len(crops)
            print(
                f"{video.name} (n={len(crops)}) {precision}: mean P {[round(float(p), 3) for p in probs.mean(0)]}, "
                f"arg-max share {[round(float(s), 3) for s in share]}  ({', '.join(CLASS_NAMES)})"
            )


if __name__ == "__main__":
    main()
