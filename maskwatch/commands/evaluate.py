"""``maskwatch eval``: the full pipeline (detector, then classifier) scored against a labelled dataset.

Per-class AP@T ranks every face by det_score × its probability of that class (the pipeline's per-face
class probabilities, as detection benchmarks score multi-class detectors); face AP merges the classes and
ranks by det_score. The confusion matrix and the recalls describe what ``run`` shows: faces at the
operating threshold (the config's ``detector.score_threshold``) with their decided class, matched at
IoU ≥ T, with a background row/column for false positives and misses.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from loguru import logger
from tqdm import tqdm

from maskwatch import metrics
from maskwatch.capture.images import read_image
from maskwatch.data.voc import AnnotatedImage
from maskwatch.errors import MaskwatchError, require
from maskwatch.metrics import average_precision, match_image
from maskwatch.monitor.pipeline import FacePipeline
from maskwatch.types import CLASS_NAMES, UNDECIDED, FaceDetections, Frame, MaskClass

SMALL_FACE_PX = 32
"""Faces whose longer side is below this are 'small' (a separate recall is reported)."""


@dataclass
class EvalResult:
    """Scores of one evaluation; ``to_json`` gives the contract keys plus a few diagnostics."""

    iou: float
    n_images: int
    ap50: dict[str, float]
    map50: float
    face_ap50: float
    confusion: dict
    recall: dict[str, float | None]
    operating_threshold: float
    curves: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict, repr=False)
    non_face: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        return {
            "non_face": self.non_face,
            "map50": self.map50,
            "ap50": self.ap50,
            "face_ap50": self.face_ap50,
            "confusion": self.confusion,
            "n_images": self.n_images,
            "iou": self.iou,
            "recall": self.recall,
            "operating_threshold": self.operating_threshold,
        }


def predict(pipeline: FacePipeline, images: list[AnnotatedImage], progress: bool = True) -> list[FaceDetections]:
    """Run the pipeline on every image, in order (unreadable images are an error: the score would be wrong)."""
    out = []
    for i, item in enumerate(tqdm(images, desc="eval", unit="img", disable=not progress)):
        image = read_image(item.image_path)  # upright, as the annotation tool showed it
        if image is None:
            raise MaskwatchError(f"cannot read image {item.image_path}")
        out.append(pipeline(Frame(image, index=i, timestamp_s=0.0, name=item.image_path.name)).faces)
    return out


def non_face_check(
    pipeline: FacePipeline, images: list[AnnotatedImage], per_image: int = 2, seed: int = 1, progress: bool = True
) -> dict:
    """The classifier on background boxes of the images (sized like their faces, holding none): the share
    labelled ``with_mask`` at probability >= 0.5, the share with any class >= 0.5, and the mean top probability."""
    from maskwatch.data.negatives import background_boxes, non_face_rates

    rng = np.random.default_rng(seed)
    probs = []
    for item in tqdm(images, desc="non-face", unit="img", disable=not progress):
        image = read_image(item.image_path)
        if image is None:
            raise MaskwatchError(f"cannot read image {item.image_path}")
        boxes = background_boxes((image.shape[1], image.shape[0]), item.xyxy, per_image, rng)
        if len(boxes):
            probs.append(pipeline.classify(image, FaceDetections(boxes, np.ones(len(boxes)))).class_prob)
    if not probs:
        return {"crops": 0}
    return non_face_rates(np.concatenate(probs))


def confusion_matrix(images: list[AnnotatedImage], preds: list[FaceDetections], iou: float) -> np.ndarray:
    """(C+1)×(C+1) counts, rows = ground truth, columns = prediction; the last row/column is background."""
    c = len(CLASS_NAMES)
    m = np.zeros((c + 1, c + 1), np.int64)
    for gt, faces in zip(images, preds, strict=True):
        matched = match_image(faces.xyxy, faces.det_score, gt.xyxy, iou).pred_gt
        pred_cls = np.where(faces.class_id == UNDECIDED, c, faces.class_id)
        for p, g in enumerate(matched):
            if g >= 0:
                m[gt.class_id[g], pred_cls[p]] += 1
            else:
                m[c, pred_cls[p]] += 1
        missed = np.setdiff1d(np.arange(len(gt.xyxy)), matched[matched >= 0])
        for g in missed:
            m[gt.class_id[g], c] += 1
    return m


def score(
    images: list[AnnotatedImage], preds: list[FaceDetections], iou: float = 0.5, operating_threshold: float = 0.5
) -> EvalResult:
    """Compute every metric of an evaluation from ground truth and predictions.

    ``preds`` should reach down to a low detector score (complete PR curves); ``operating_threshold`` is the
    detector score ``run`` uses, applied for the confusion matrix and the recalls.
    """
    ap50, curves = {}, {}
    for c, name in enumerate(CLASS_NAMES):
        gts = [gt.xyxy[gt.class_id == c] for gt in images]
        if sum(len(g) for g in gts) == 0:
            continue  # classes absent from the ground truth do not enter the mean
        class_scores = [f.det_score * f.class_prob[:, c] for f in preds]
        keep = [sc > 0 for sc in class_scores]  # a class with probability 0 is not predicted at all
        ap, precision, recall = average_precision(
            [f.xyxy[k] for f, k in zip(preds, keep, strict=True)],
            [sc[k] for sc, k in zip(class_scores, keep, strict=True)],
            gts,
            iou=iou,
        )
        ap50[name] = round(float(ap), 4)
        curves[name] = (recall, precision)
    face_ap, precision, recall = average_precision(
        [f.xyxy for f in preds], [f.det_score for f in preds], [gt.xyxy for gt in images], iou=iou
    )
    curves["face"] = (recall, precision)
    shown = [f[f.det_score >= operating_threshold] for f in preds]
    matrix = confusion_matrix(images, shown, iou)

    boxes, scores, gts = [f.xyxy for f in shown], [f.det_score for f in shown], [gt.xyxy for gt in images]
    selections = {
        "face": None,
        "masked": [gt.class_id != CLASS_NAMES.index("without_mask") for gt in images],
        "small": [
            np.maximum(gt.xyxy[:, 2] - gt.xyxy[:, 0], gt.xyxy[:, 3] - gt.xyxy[:, 1]) < SMALL_FACE_PX for gt in images
        ],
    }
    recall_stats = {}
    for name, select in selections.items():
        value = metrics.recall(boxes, scores, gts, iou=iou, gt_select=select)
        recall_stats[name] = None if np.isnan(value) else round(value, 4)
    return EvalResult(
        iou=iou,
        n_images=len(images),
        ap50=ap50,
        map50=round(float(np.mean(list(ap50.values()))), 4) if ap50 else 0.0,
        face_ap50=round(float(face_ap), 4),
        confusion={
            "labels": [*CLASS_NAMES, "background"],
            "matrix": matrix.tolist(),
            "rows": "ground truth",
            "columns": "prediction",
        },
        recall=recall_stats,
        operating_threshold=operating_threshold,
        curves=curves,
    )


def write_plots(result: EvalResult, folder: Path) -> list[Path]:
    """PR curves and the confusion matrix as PNGs in ``folder``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(6, 5))
    for name, (recall, precision) in result.curves.items():
        ap = result.face_ap50 if name == "face" else result.ap50[name]
        ax.plot(recall, precision, label=f"{name} (AP {ap:.3f})", linestyle="--" if name == "face" else "-")
    ax.set(
        xlabel="recall",
        ylabel="precision",
        xlim=(0, 1),
        ylim=(0, 1.02),
        title=f"PR curves, IoU ≥ {result.iou:g} (mAP {result.map50:.3f})",
    )
    ax.legend(loc="lower left")
    ax.grid(alpha=0.3)
    pr_path = folder / "pr_curves.png"
    fig.savefig(pr_path, dpi=110, bbox_inches="tight")
    plt.close(fig)

    labels = result.confusion["labels"]
    matrix = np.asarray(result.confusion["matrix"])
    fig, ax = plt.subplots(figsize=(6, 5))
    ax.imshow(matrix, cmap="Blues")
    for (r, c), v in np.ndenumerate(matrix):
        ax.text(c, r, str(v), ha="center", va="center", color="black" if v < matrix.max() / 2 else "white")
    ax.set_xticks(range(len(labels)), labels, rotation=30, ha="right")
    ax.set_yticks(range(len(labels)), labels)
    ax.set(xlabel="prediction", ylabel="ground truth", title=f"confusion of faces matched at IoU ≥ {result.iou:g}")
    cm_path = folder / "confusion_matrix.png"
    fig.savefig(cm_path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return [pr_path, cm_path]


def _readable(name: str) -> str:
    """A class name as users read it (``mask worn incorrectly``); other names (``background``) as they are."""
    try:
        return MaskClass.from_key(name).description
    except KeyError:
        return name


def report_lines(result: EvalResult) -> list[str]:
    lines = [
        f"{result.n_images} images, IoU ≥ {result.iou:g}: mAP@{result.iou:g} {result.map50:.4f}, "
        f"face AP {result.face_ap50:.4f}"
    ]
    lines += [f"  AP {_readable(name)}: {ap:.4f}" for name, ap in result.ap50.items()]
    lines.append(
        f"  at detector score ≥ {result.operating_threshold:g}: recall "
        + ", ".join(f"{k} {v}" for k, v in result.recall.items())
    )
    labels = result.confusion["labels"]
    lines.append("  confusion (rows ground truth, columns prediction): " + " | ".join(map(_readable, labels)))
    for label, row in zip(labels, result.confusion["matrix"], strict=True):
        lines.append(f"    {_readable(label):>22}: {row}")
    if result.non_face.get("crops"):
        nf = result.non_face
        lines.append(
            f"  non-face crops ({nf['crops']} background boxes): with_mask at p >= 0.5 {nf['with_mask_ge_0.5']:.1%}, "
            f"any class at p >= 0.5 {nf['any_class_ge_0.5']:.1%}"
        )
    return lines


def write_json(result: EvalResult, path: Path) -> None:
    path.write_text(json.dumps(result.to_json(), indent=2) + "\n")
    logger.info(f"wrote {path}")


def eval_command(args: argparse.Namespace) -> int:
    """``maskwatch eval``: check the flags, score the pipeline on ``--data``, print the scores, write JSON / plots."""
    from maskwatch.config import load_config
    from maskwatch.data.formats import read_dataset
    from maskwatch.media import EXIT_OK
    from maskwatch.outputs.sinks import check_writable
    from maskwatch.wiring import build_pipeline, detector_threshold, runtime_label

    if args.plots is not None:
        require("matplotlib")
    if not 0.0 < args.iou < 1.0:
        raise MaskwatchError(f"--iou must be between 0 and 1, got {args.iou}")
    if not 0.0 < args.score_threshold < 1.0:
        raise MaskwatchError(f"--score-threshold must be between 0 and 1, got {args.score_threshold}")
    overrides = {"runtime.device": args.device, "runtime.precision": args.precision, "runtime.engine": args.engine}
    operating_threshold = detector_threshold(load_config(args.config, overrides))
    cfg = load_config(args.config, {**overrides, "detector.score_threshold": args.score_threshold})
    if args.json is not None:
        check_writable(args.json)
    images = read_dataset(args.data, args.split)
    if not images:
        raise MaskwatchError(f"no images to evaluate in {args.data}")
    pipeline = build_pipeline(cfg)
    logger.info(f"evaluating {len(images)} images ({runtime_label(cfg)})")
    preds = predict(pipeline, images, progress=sys.stderr.isatty())
    result = score(images, preds, iou=args.iou, operating_threshold=operating_threshold)
    result.non_face = non_face_check(pipeline, images, progress=sys.stderr.isatty())
    for line in report_lines(result):
        print(line)
    if args.json is not None:
        write_json(result, args.json)
    if args.plots is not None:
        for path in write_plots(result, args.plots):
            logger.info(f"wrote {path}")
    return EXIT_OK
