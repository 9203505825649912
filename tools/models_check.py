"""The shipped (or given) ONNX models on data from other sources than the val split.

- ``mask-crops`` (``../shared/data/mask-crops``, another dataset's face crops): the classifier's accuracy per class
  on the crops as they are and on the face the detector cuts from them (as ``run`` would), the detector's any-face
  rate (the share of crops in which it finds at least one face at score >= 0.5) and multi-box rate (two or more,
  as the detector gives them and after the pipeline's nested-box suppression);
- the real clips (``../shared/data/videos``): for the face the detector finds on every 3rd frame, the classifier's
  mean class probabilities and the share of each arg-max label.

Run from the repository root (every crop; ``--every 4`` for a quicker look):

    python tools/models_check.py [--classifier classifier.onnx classifier_int8.onnx] [--detector detector.onnx]
                                 [--shared ../shared] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import cv2
import numpy as np

from maskwatch.config import DetectorConfig
from maskwatch.metrics import suppress_nested
from maskwatch.models.onnx_engine import OnnxMaskClassifier, OnnxRetinaFaceDetector
from maskwatch.monitor.closeup import closeup_pass
from maskwatch.monitor.crop import DEFAULT_CROP_MARGIN, crop_face
from maskwatch.train.pseudo import crops_half
from maskwatch.types import CLASS_NAMES

NESTED_OVERLAP = DetectorConfig().nested_overlap
CLOSEUP = DetectorConfig().closeup_trigger
"""``detector.nested_overlap`` of the default config: what ``run`` does after the detector."""


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


def classify(model: OnnxMaskClassifier, crops: list[np.ndarray]) -> np.ndarray:
    return np.concatenate([model.classify(crops[i : i + 32]) for i in range(0, len(crops), 32)])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shared", type=Path, default=Path(__file__).resolve().parents[2] / "shared")
    parser.add_argument("--classifier", nargs="+", default=["classifier.onnx", "classifier_int8.onnx"])
    parser.add_argument("--detector", default="detector.onnx")
    parser.add_argument("--every", type=int, default=1, help="use every Nth mask-crops image (default all)")
    parser.add_argument("--json", type=Path)
    parser.add_argument(
        "--heldout", action="store_true", help="mask-crops: only the half that detector training never draws from"
    )
    args = parser.parse_args()
    models = {name: OnnxMaskClassifier(name) for name in args.classifier}
    detector = OnnxRetinaFaceDetector(args.detector)
    report: dict = {"mask_crops": {}, "clips": {}}
    for name in ("with_mask", "without_mask"):
        files = sorted((args.shared / "data" / "mask-crops" / name).glob("*"))[:: args.every]
        if args.heldout:
            files = [f for f in files if crops_half(f) == "heldout"]
        crops = [c for c in (cv2.imread(str(f)) for f in files) if c is not None]
        want = CLASS_NAMES.index(name)
        row = {"n": len(crops)}
        for model_name, model in models.items():
            row[f"accuracy {model_name}"] = round(float((classify(model, crops).argmax(1) == want).mean()), 4)
        found = [detector.detect(c) for c in crops]
        row[f"any_face {args.detector}"] = round(float(np.mean([len(d) > 0 for d in found])), 4)
        row[f"multi_box {args.detector}"] = round(float(np.mean([len(d) > 1 for d in found])), 4)
        found = [
            closeup_pass(detector, c, d, trigger=CLOSEUP, min_score=0.5) for c, d in zip(crops, found, strict=True)
        ]
        nested = [len(suppress_nested(d.xyxy, d.det_score, NESTED_OVERLAP)) > 1 for d in found]
        row[f"multi_box_after_nested {args.detector}"] = round(float(np.mean(nested)), 4)
        cut = [
            crop_face(c, d.xyxy[int(np.argmax(d.det_score))], DEFAULT_CROP_MARGIN)
            for c, d in zip(crops, found, strict=True)
            if len(d)
        ]
        for model_name, model in models.items():  # as run labels them: the detector's face, cut with its margin
            row[f"pipeline_accuracy {model_name}"] = round(float((classify(model, cut).argmax(1) == want).mean()), 4)
        report["mask_crops"][name] = row
        print(f"mask-crops {name}: {row}")
    for video in sorted((args.shared / "data" / "videos").glob("*.mp4")):
        crops = clip_crops(detector, video)
        if not crops:
            continue
        for model_name, model in models.items():
            probs = model.classify(crops)
            share = np.bincount(probs.argmax(1), minlength=len(CLASS_NAMES)) / len(crops)
            row = {"n": len(crops), "mean_p": probs.mean(0).round(3).tolist(), "argmax_share": share.round(3).tolist()}
            report["clips"][f"{video.name} {model_name}"] = row
            print(f"{video.name} {model_name}: {row}  ({', '.join(CLASS_NAMES)})")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
