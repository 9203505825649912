"""Small faces on small frames: the detector's recall by face size, false boxes, AP50 and cost at its input size,
at other input sizes and in overlapping tiles (:mod:`maskwatch.models.tiling`), at fp32 and int8 (ONNX Runtime,
one thread, as ``run`` uses them).

Frames (never written anywhere):

- ``scaled``: each val scene resized so its longer side is ``--long-side`` px (360: faces mostly 8-35 px);
- ``portrait``: 360x640 portrait frames, val scenes resized to 360 px wide and stacked top to bottom (a face cut
  by a seam or the bottom edge to less than 60 % of its area is an ignore region: neither missed nor false);
- ``clips`` (``--videos``): every ``--clip-step``-th frame of real clips resized to a longer side of 640, the
  truth being the faces the fp32 detector finds on the full-size frame (large faces: does tiling split them?).

Sizes are the longer side of the annotated box in the small frame. Recall, false boxes (unmatched boxes per frame)
and labels use the operating threshold ``--threshold``; AP50 ranks every box from ``--floor`` up. Boxes pass the
pipeline's nested-box rule. Labels: the same-precision classifier on the crop of each matched face. With
``--teacher`` (CenterFace), faces it finds that no annotation covers are ignore regions too.

Variants: ``native`` (input size = the frame's longer side, no resize), a number (that input size), ``tilesAxB``
(the whole frame plus A x B overlapping tiles, A along the longer side), ``-only`` (tiles without the whole
frame), ``-small`` (tiles add only faces up to ``--tile-face`` px: ``tiles2x1-small`` is
``detector.tile_small_frames``).

    python tools/small_faces.py --voc ../shared/data/facemask-voc \
        --split ../shared/data/facemask-voc/splits/val.txt --videos ../shared/data/videos/*.mp4 --json out.json
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from maskwatch.metrics import average_precision, box_iou, match_image, suppress_nested
from maskwatch.models.onnx_engine import OnnxMaskClassifier, OnnxRetinaFaceDetector, open_session
from maskwatch.models.tiling import TiledDetector
from maskwatch.monitor.crop import crop_face
from maskwatch.types import CLASS_NAMES, UNMASKED, FaceDetections

BUCKETS = ((0, 16), (16, 24), (24, 32), (32, 10_000))
VARIANTS = (
    "native",
    "640",
    "800",
    "960",
    "1280",
    "tiles2x1",
    "tiles2x2",
    "tiles2x2-only",
    "tiles2x1-small",
    "tiles2x2-small",
)
DEFAULT_VARIANTS = ("640", "800", "960", "1280", "tiles2x1", "tiles2x2", "tiles2x1-small", "tiles2x2-small")
FILES = {"fp32": ("detector.onnx", "classifier.onnx"), "int8": ("detector_int8.onnx", "classifier_int8.onnx")}
MASKED = CLASS_NAMES.index("with_mask")


@dataclass
class Sample:
    """One small frame with its truth: ``gt`` boxes and classes, ``ignore`` regions."""

    name: str
    image: np.ndarray
    gt: np.ndarray
    gt_class: np.ndarray
    ignore: np.ndarray = field(default_factory=lambda: np.zeros((0, 4)))


def unannotated_faces(scenes: list, teacher_path: Path | None) -> dict[str, np.ndarray]:
    """Per scene stem, the faces a stronger detector (CenterFace, as for pseudo-labels) finds that no annotation
    covers, in scene pixels: they become ignore regions (the annotations leave out many background faces)."""
    if teacher_path is None:
        return {}
    from maskwatch.train.pseudo import CenterFace, PseudoSettings, covered, detect_merged

    teacher, settings, out = CenterFace(teacher_path), PseudoSettings(), {}
    for scene in scenes:
        found = detect_merged(teacher, cv2.imread(str(scene.image_path)), settings)[:, :4]
        out[scene.image_path.stem] = found[~covered(found, scene.xyxy, settings.covered_iou)].astype(np.float64)
    return out


def scaled_scenes(scenes: list, long_side: int, extra: dict[str, np.ndarray]) -> list[Sample]:
    out = []
    for scene in scenes:
        image = cv2.imread(str(scene.image_path))
        s = long_side / max(image.shape[:2])
        small = cv2.resize(image, None, fx=s, fy=s, interpolation=cv2.INTER_AREA)
        ignore = extra.get(scene.image_path.stem, np.zeros((0, 4))) * s
        out.append(Sample(scene.image_path.stem, small, scene.xyxy.astype(np.float64) * s, scene.class_id, ignore))
    return out


def portrait_mosaics(
    scenes: list, extra: dict[str, np.ndarray], width: int = 360, height: int = 640, keep: float = 0.6
) -> list[Sample]:
    """Val scenes resized to ``width`` and stacked into ``width`` x ``height`` frames (each scene used once)."""
    out: list[Sample] = []
    parts: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = []
    used = 0
    for scene in scenes:
        image = cv2.imread(str(scene.image_path))
        s = width / image.shape[1]
        interp = cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR
        ignore = extra.get(scene.image_path.stem, np.zeros((0, 4))) * s
        parts.append((cv2.resize(image, (width, round(image.shape[0] * s)), interpolation=interp),
                      scene.xyxy.astype(np.float64) * s, scene.class_id, ignore))  # fmt: skip
        used += parts[-1][0].shape[0]
        if used >= height:
            out.append(stack(parts, height, keep, f"portrait{len(out)}"))
            parts, used = [], 0
    return out


def stack(parts: list, height: int, keep: float, name: str) -> Sample:
    canvas = np.concatenate([p[0] for p in parts])[:height]
    gt, cls, ignore, y = [], [], [], 0
    for image, boxes, classes, unannotated in parts:
        ignore.append(unannotated + np.array([0, y, 0, y]))
        shifted = boxes + np.array([0, y, 0, y])
        clipped = shifted.copy()
        clipped[:, [1, 3]] = clipped[:, [1, 3]].clip(y, min(y + image.shape[0], height))
        area = lambda b: (b[:, 2] - b[:, 0]) * np.clip(b[:, 3] - b[:, 1], 0, None)  # noqa: E731
        whole = area(clipped) >= keep * np.maximum(area(shifted), 1e-9)
        gt.append(clipped[whole])
        cls.append(classes[whole])
        ignore.append(clipped[~whole & (area(clipped) > 0)])
        y += image.shape[0]
    return Sample(name, np.ascontiguousarray(canvas), np.concatenate(gt), np.concatenate(cls), np.concatenate(ignore))


def clip_frames(paths: list[Path], step: int, finder: OnnxRetinaFaceDetector, threshold: float) -> list[Sample]:
    """Frames of real clips at long side 640; truth: the faces found on the full-size frame."""
    out = []
    for path in paths:
        label = CLASS_NAMES.index("without_mask" if "nomask" in path.name else "with_mask")
        video, index = cv2.VideoCapture(str(path)), 0
        while True:
            ok, frame = video.read()
            if not ok:
                break
            if index % step == 0:
                faces = finder.detect(frame)
                faces = faces[faces.det_score >= threshold]
                s = 640 / max(frame.shape[:2])
                small = cv2.resize(frame, None, fx=s, fy=s, interpolation=cv2.INTER_AREA)
                boxes = faces.xyxy.astype(np.float64) * s
                out.append(Sample(f"{path.stem}#{index}", small, boxes, np.full(len(boxes), label)))
            index += 1
        video.release()
    return out


class Sized:
    """The ONNX detector with ``input_size`` = the frame's longer side (no resizing), one facade per size."""

    def __init__(self, opened, floor: float) -> None:
        self.opened, self.floor, self.by_size = opened, floor, {}
        self.score_threshold, self.precision = floor, "fp32"

    def detect(self, image: np.ndarray) -> FaceDetections:
        side = max(image.shape[:2])
        if side not in self.by_size:
            self.by_size[side] = OnnxRetinaFaceDetector(
                "", input_size=side, score_threshold=self.floor, opened=self.opened
            )
        return self.by_size[side].detect(image)


def build_variants(
    weights: Path, precision: str, names: list[str], floor: float, overlap: float, tile_face: float = 32
) -> dict:
    opened = open_session(weights / FILES[precision][0], 1)
    make = lambda size: OnnxRetinaFaceDetector(  # noqa: E731
        "", input_size=size, score_threshold=floor, opened=opened
    )
    base = make(None)
    tiled = lambda grid, whole, most=None: TiledDetector(  # noqa: E731
        base, grid=grid, overlap=overlap, max_side=10_000, whole_frame=whole, tile_face_max=most
    )
    table = {
        "native": lambda: Sized(opened, floor),
        "tiles2x1": lambda: tiled((2, 1), True),
        "tiles2x2": lambda: tiled((2, 2), True),
        "tiles2x2-only": lambda: tiled((2, 2), False),
        "tiles2x1-small": lambda: tiled((2, 1), True, tile_face),
        "tiles2x2-small": lambda: tiled((2, 2), True, tile_face),
    }
    return {name: (table[name]() if name in table else make(int(name))) for name in names}


def run_all(samples: list[Sample], detectors: dict, nested: float) -> dict:
    """Detect every sample with every (precision, variant), interleaved frame by frame so timings share load."""
    found: dict = {key: [] for key in detectors}
    for sample in samples:
        for key, detector in detectors.items():
            t0 = time.perf_counter()
            faces = detector.detect(sample.image)
            ms = (time.perf_counter() - t0) * 1e3
            if len(faces) > 1 and nested > 0:
                faces = faces[suppress_nested(faces.xyxy, faces.det_score, nested)]
            found[key].append((faces, ms))
    return found


def labels_of(sample: Sample, boxes: np.ndarray, classifier: OnnxMaskClassifier, margin: float) -> np.ndarray:
    if not len(boxes):
        return np.zeros(0, np.int64)
    return classifier.classify([crop_face(sample.image, b, margin) for b in boxes]).argmax(axis=1)


def on_ignored(xyxy: np.ndarray, ignore: np.ndarray) -> np.ndarray:
    """Boxes that are an ignore region's face: IoU >= 0.3, or at least half of the box inside the region."""
    own = np.prod(xyxy[:, 2:] - xyxy[:, :2], axis=1).clip(min=1e-9)
    lt, rb = np.maximum(xyxy[:, None, :2], ignore[None, :, :2]), np.minimum(xyxy[:, None, 2:], ignore[None, :, 2:])
    inside = np.prod(np.clip(rb - lt, 0, None), axis=-1) / own[:, None]
    return ((box_iou(xyxy, ignore) >= 0.3) | (inside >= 0.5)).any(axis=1)


def score_variant(samples: list[Sample], results: list, classifier, threshold: float, margin: float) -> dict:
    """Recall by size bucket, false boxes per frame, AP50, label agreement and median ms of one variant."""
    hit_sizes, all_sizes, false_boxes, empty_frames, with_faces = [], [], 0, 0, 0
    ap_boxes, ap_scores, ap_gt = [], [], []
    labels_right = unmasked_as_mask = unmasked_total = 0
    for sample, (faces, _) in zip(samples, results, strict=True):
        if len(sample.ignore) and len(faces):
            faces = faces[~on_ignored(faces.xyxy, sample.ignore)]
        ap_boxes.append(faces.xyxy)
        ap_scores.append(faces.det_score)
        ap_gt.append(sample.gt)
        sure = faces[faces.det_score >= threshold]
        m = match_image(sure.xyxy, sure.det_score, sample.gt)
        sizes = np.maximum(sample.gt[:, 2] - sample.gt[:, 0], sample.gt[:, 3] - sample.gt[:, 1])
        all_sizes.append(sizes)
        hit_sizes.append(sizes[m.gt_matched])
        false_boxes += int((~m.pred_tp).sum())
        if len(sample.gt):
            with_faces += 1
            empty_frames += int(len(sure) == 0)
        tp = np.flatnonzero(m.pred_tp)
        predicted = labels_of(sample, sure.xyxy[tp], classifier, margin)
        truth = sample.gt_class[m.pred_gt[tp]]
        labels_right += int(((predicted == MASKED) == (truth == MASKED)).sum())
        unmasked = np.isin(truth, [CLASS_NAMES.index(c) for c in UNMASKED])
        unmasked_total += int(unmasked.sum())
        unmasked_as_mask += int((predicted[unmasked] == MASKED).sum())
    sizes, hits = np.concatenate(all_sizes), np.concatenate(hit_sizes)
    recall = {}
    for lo, hi in BUCKETS:
        n = int(((sizes >= lo) & (sizes < hi)).sum())
        found = int(((hits >= lo) & (hits < hi)).sum())
        recall[f"{lo}-{hi}" if hi < 10_000 else f"{lo}+"] = {"n": n, "found": found, "recall": found / n if n else None}
    matched = sum(len(h) for h in hit_sizes)
    return {
        "frames": len(samples),
        "faces": int(len(sizes)),
        "recall": matched / max(len(sizes), 1),
        "recall_by_size": recall,
        "false_boxes_per_frame": false_boxes / max(len(samples), 1),
        "frames_with_faces_but_no_box": empty_frames / max(with_faces, 1),
        "ap50": average_precision(ap_boxes, ap_scores, ap_gt)[0],
        "mask_label_agreement": labels_right / max(matched, 1),
        "unmasked_called_mask": f"{unmasked_as_mask}/{unmasked_total}",
        "detect_ms_median": float(np.median([ms for _, ms in results])),
    }


def print_table(report: dict) -> None:
    for set_name, rows in report["sets"].items():
        print(f"\n{set_name}")
        print(f"{'variant':<22}{'<16':>11}{'16-24':>11}{'24-32':>11}{'32+':>11}{'recall':>8}{'FP/fr':>7}"
              f"{'nobox':>7}{'AP50':>7}{'label':>7}{'unm>m':>8}{'ms':>8}")  # fmt: skip
        for key, r in rows.items():
            cells = [
                f"{b['recall']:.3f}({b['n']})" if b["recall"] is not None else "-" for b in r["recall_by_size"].values()
            ]
            print(f"{key:<22}" + "".join(f"{c:>11}" for c in cells)
                  + f"{r['recall']:>8.3f}{r['false_boxes_per_frame']:>7.2f}{r['frames_with_faces_but_no_box']:>7.2f}"
                  f"{r['ap50']:>7.3f}{r['mask_label_agreement']:>7.3f}{r['unmasked_called_mask']:>8}"
                  f"{r['detect_ms_median']:>8.1f}")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--voc", type=Path, required=True, help="Pascal VOC folder (images/, annotations/)")
    parser.add_argument("--split", type=Path, required=True, help="stems to use (report on val only)")
    parser.add_argument("--videos", type=Path, nargs="*", default=[], help="real clips for the `clips` set")
    parser.add_argument("--weights", type=Path, default=Path(__file__).resolve().parents[1] / "weights")
    parser.add_argument(
        "--variants", nargs="+", default=list(DEFAULT_VARIANTS), help=f"of {', '.join(VARIANTS)} or a size"
    )
    parser.add_argument("--tile-face", type=float, default=32, help="-small variants: largest face (px) tiles add")
    parser.add_argument("--teacher", type=Path, help="CenterFace .onnx: faces it finds unannotated are ignored")
    parser.add_argument("--precisions", nargs="+", default=["fp32", "int8"], choices=sorted(FILES))
    parser.add_argument("--long-side", type=int, default=360, help="longer side of the `scaled` frames")
    parser.add_argument("--overlap", type=float, default=0.25, help="share of a tile its neighbour covers")
    parser.add_argument("--threshold", type=float, default=0.5, help="operating score (detector.score_threshold)")
    parser.add_argument("--floor", type=float, default=0.3, help="lowest score returned (tracking.low_score)")
    parser.add_argument("--nested", type=float, default=0.6, help="the pipeline's detector.nested_overlap")
    parser.add_argument("--margin", type=float, default=0.15, help="the classifier's crop margin")
    parser.add_argument("--clip-step", type=int, default=10)
    parser.add_argument("--limit", type=int, default=0, help="use only the first N scenes (0: all)")
    parser.add_argument("--json", type=Path, help="write the report here")
    args = parser.parse_args()

    from maskwatch.data.voc import read_voc

    scenes = read_voc(args.voc, args.split)[: args.limit or None]
    extra = unannotated_faces(scenes, args.teacher)
    sets = {
        f"scaled{args.long_side}": scaled_scenes(scenes, args.long_side, extra),
        "portrait360x640": portrait_mosaics(scenes, extra),
    }
    if args.videos:
        finder = OnnxRetinaFaceDetector(args.weights / FILES["fp32"][0], score_threshold=args.threshold)
        sets["clips640"] = clip_frames(args.videos, args.clip_step, finder, args.threshold)
    detectors, classifiers = {}, {}
    for precision in args.precisions:
        classifiers[precision] = OnnxMaskClassifier(args.weights / FILES[precision][1], threads=1)
        for name, det in build_variants(
            args.weights, precision, args.variants, args.floor, args.overlap, args.tile_face
        ).items():
            detectors[(precision, name)] = det
    report: dict = {"settings": {k: str(v) for k, v in vars(args).items()}, "sets": {}}
    for set_name, samples in sets.items():
        results = run_all(samples, detectors, args.nested)
        report["sets"][set_name] = {
            f"{p} {n}": score_variant(samples, results[(p, n)], classifiers[p], args.threshold, args.margin)
            for p, n in detectors
        }
    print_table(report)
    if args.json:
        args.json.write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
