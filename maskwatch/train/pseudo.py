"""Pseudo-labels for the detector's training scenes from a stronger face detector (the teacher).

The scenes' annotations leave out many faces (background crowds, small or turned heads); training treats what
they leave out as background, which teaches the detector to miss faces in photos from other sources. A teacher
(CenterFace, trained on WIDER FACE, run through ONNX Runtime) finds them: its confident faces that no annotation
covers become extra training faces, its less confident ones become *ignore* regions (no loss either way).

Box style differs between datasets (CenterFace's boxes sit lower and are narrower than the scenes' boxes), so the
teacher's boxes are mapped to the annotation style by a per-side offset fitted on the faces both agree on.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from loguru import logger

from maskwatch.data.voc import read_voc
from maskwatch.errors import MaskwatchError
from maskwatch.metrics import box_iou as box_iou_np


class CenterFace:
    """CenterFace face detector (heatmap, scale, offset and landmark heads at stride 4) on ONNX Runtime."""

    def __init__(self, onnx_path: str | Path, threads: int = 1) -> None:
        import onnx
        import onnxruntime as ort

        model = onnx.load(str(onnx_path))
        for value in [*model.graph.input[:1], *model.graph.output]:  # the file is exported for 10x3x32x32 inputs
            dims = value.type.tensor_type.shape.dim
            dims[0].dim_value = 1
            for d, name in zip(dims[2:], ("height", "width"), strict=True):
                d.dim_param = name
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        self.session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
        self.input_name = self.session.get_inputs()[0].name

    def detect(self, image_bgr: np.ndarray, long_side: int = 640, threshold: float = 0.3) -> np.ndarray:
        """Faces as an (N, 5) array ``x1, y1, x2, y2, score`` in the image's pixels, after NMS at IoU 0.3."""
        h, w = image_bgr.shape[:2]
        scale = long_side / max(h, w)
        nw, nh = (max(32, int(np.ceil(v * scale / 32)) * 32) for v in (w, h))
        resized = cv2.resize(image_bgr, (nw, nh), interpolation=cv2.INTER_LINEAR)
        blob = resized.transpose(2, 0, 1)[None].astype(np.float32)
        heat, size, offset, _ = self.session.run(None, {self.input_name: blob})
        return decode_centerface(heat, size, offset, (w / nw, h / nh), threshold)


def decode_centerface(
    heat: np.ndarray, size: np.ndarray, offset: np.ndarray, to_image: tuple[float, float], threshold: float
) -> np.ndarray:
    """CenterFace's heads (1x1xHxW heatmap, 1x2xHxW log sizes and 1x2xHxW centre offsets, all at stride 4, in
    (y, x) order) to an (N, 5) ``x1, y1, x2, y2, score`` array, scaled by ``to_image`` (x, y) and NMS'd at 0.3."""
    ys, xs = np.nonzero(heat[0, 0] > threshold)
    if len(ys) == 0:
        return np.zeros((0, 5), np.float32)
    in_h, in_w = heat.shape[2] * 4, heat.shape[3] * 4
    sh, sw = np.exp(size[0, 0, ys, xs]) * 4, np.exp(size[0, 1, ys, xs]) * 4
    cy, cx = (ys + offset[0, 0, ys, xs] + 0.5) * 4, (xs + offset[0, 1, ys, xs] + 0.5) * 4
    x1, y1 = np.maximum(cx - sw / 2, 0), np.maximum(cy - sh / 2, 0)
    boxes = np.stack([x1, y1, np.minimum(x1 + sw, in_w), np.minimum(y1 + sh, in_h)], axis=1)
    boxes *= np.array([to_image[0], to_image[1], to_image[0], to_image[1]], np.float32)
    scores = heat[0, 0, ys, xs]
    keep = nms(boxes, scores, threshold, 0.3)
    return np.concatenate([boxes[keep], scores[keep, None]], axis=1).astype(np.float32)


def nms(boxes: np.ndarray, scores: np.ndarray, score_threshold: float, iou: float) -> np.ndarray:
    """Indices kept by OpenCV's NMS of ``xyxy`` boxes."""
    xywh = [[float(a), float(b), float(c - a), float(d - b)] for a, b, c, d in boxes[:, :4]]
    return np.asarray(cv2.dnn.NMSBoxes(xywh, [float(v) for v in scores], score_threshold, iou), np.int64).reshape(-1)


@dataclass(frozen=True)
class PseudoSettings:
    """Thresholds of :func:`pseudo_label`."""

    long_sides: tuple[int, ...] = (640, 1024)
    """Sizes the teacher runs at (longest side); their faces are merged (NMS)."""
    extra_score: float = 0.6
    """Teacher faces at or above this score that no annotation covers become training faces."""
    ignore_score: float = 0.3
    """Teacher faces between this and ``extra_score`` become ignore regions."""
    covered_iou: float = 0.3
    """A teacher face overlapping an annotation this much (IoU, or this share of its area inside it) is that face."""
    min_side: float = 6.0
    """Teacher faces smaller than this (pixels) are ignore regions, not training faces."""


def detect_merged(teacher: CenterFace, image: np.ndarray, s: PseudoSettings) -> np.ndarray:
    """The teacher's faces at every size of ``s.long_sides``, merged by NMS (IoU 0.4)."""
    found = np.concatenate([teacher.detect(image, side, s.ignore_score) for side in s.long_sides])
    if len(found) == 0:
        return found
    return found[nms(found, found[:, 4], s.ignore_score, 0.4)]


def covered(teacher_xyxy: np.ndarray, gt_xyxy: np.ndarray, iou_min: float) -> np.ndarray:
    """Which teacher boxes coincide with an annotated face (IoU, or their share inside it, at least ``iou_min``)."""
    if len(gt_xyxy) == 0 or len(teacher_xyxy) == 0:
        return np.zeros(len(teacher_xyxy), bool)
    iou = box_iou_np(teacher_xyxy, gt_xyxy)
    x1 = np.maximum(teacher_xyxy[:, None, 0], gt_xyxy[None, :, 0])
    y1 = np.maximum(teacher_xyxy[:, None, 1], gt_xyxy[None, :, 1])
    x2 = np.minimum(teacher_xyxy[:, None, 2], gt_xyxy[None, :, 2])
    y2 = np.minimum(teacher_xyxy[:, None, 3], gt_xyxy[None, :, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area = np.prod(teacher_xyxy[:, 2:] - teacher_xyxy[:, :2], axis=1).clip(min=1e-6)
    return ((iou >= iou_min) | (inter / area[:, None] >= 0.5)).any(axis=1)


def fit_box_style(pairs: list[tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
    """Median offsets of each side (x1, y1, x2, y2), relative to the teacher box's width or height, that map the
    teacher's boxes onto the annotations' style; ``pairs`` are (teacher box, annotated box) of one face."""
    if not pairs:
        return np.zeros(4, np.float32)
    t = np.array([p[0] for p in pairs], np.float32)
    g = np.array([p[1] for p in pairs], np.float32)
    wh = np.concatenate([t[:, 2:] - t[:, :2]] * 2, axis=1).clip(min=1.0)
    return np.median((g - t) / wh, axis=0).astype(np.float32)


def apply_box_style(boxes: np.ndarray, style: np.ndarray) -> np.ndarray:
    wh = np.concatenate([boxes[:, 2:4] - boxes[:, 0:2]] * 2, axis=1)
    return boxes[:, :4] + style[None, :] * wh


def pseudo_label(
    data: Path, split: Path | None, teacher_path: Path, out: Path, s: PseudoSettings = PseudoSettings()
) -> dict:
    """Run the teacher on the scenes of ``split`` and write ``out`` (JSON): per image stem, ``extra`` boxes (new
    training faces, annotation style) and ``ignore`` boxes, plus the fitted box style and counts."""
    if not Path(teacher_path).is_file():
        raise MaskwatchError(f"teacher model not found: {teacher_path}")
    teacher = CenterFace(teacher_path)
    items = read_voc(data, split)
    found_by_stem, pairs = {}, []
    for it in items:
        image = cv2.imread(str(it.image_path), cv2.IMREAD_COLOR)
        if image is None:
            raise MaskwatchError(f"cannot read image {it.image_path}")
        found = detect_merged(teacher, image, s)
        found_by_stem[it.image_path.stem] = (found, it.xyxy)
        if len(found) and len(it.xyxy):
            iou = box_iou_np(found[:, :4], it.xyxy)
            for i, j in zip(*np.nonzero(iou >= 0.5), strict=True):
                if found[i, 4] >= s.extra_score and iou[i].argmax() == j and iou[:, j].argmax() == i:
                    pairs.append((found[i, :4], it.xyxy[j]))
    style = fit_box_style(pairs)
    labels, n_extra, n_ignore = {}, 0, 0
    for stem, (found, gt) in found_by_stem.items():
        free = found[~covered(found[:, :4], gt, s.covered_iou)]
        styled = apply_box_style(free, style) if len(free) else np.zeros((0, 4), np.float32)
        side = np.minimum(styled[:, 2] - styled[:, 0], styled[:, 3] - styled[:, 1]) if len(free) else np.zeros(0)
        is_extra = (free[:, 4] >= s.extra_score) & (side >= s.min_side) if len(free) else np.zeros(0, bool)
        extra = [
            [round(float(v), 1) for v in b] + [round(float(sc), 3)]
            for b, sc in zip(styled[is_extra], free[is_extra, 4], strict=True)
        ]
        ignore = [[round(float(v), 1) for v in b] for b in styled[~is_extra]]
        labels[stem] = {"extra": extra, "ignore": ignore}
        n_extra, n_ignore = n_extra + len(extra), n_ignore + len(ignore)
    result = {
        "teacher": str(teacher_path),
        "settings": {k: list(v) if isinstance(v, tuple) else v for k, v in s.__dict__.items()},
        "box_style": [round(float(v), 4) for v in style],
        "style_pairs": len(pairs),
        "images": len(items),
        "annotated_faces": int(sum(len(it.xyxy) for it in items)),
        "extra_faces": n_extra,
        "ignore_regions": n_ignore,
        "labels": labels,
    }
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    Path(out).write_text(json.dumps(result))
    logger.info(
        "pseudo-labels: {} images, {} annotated faces, {} extra faces, {} ignore regions (box style {} from {} pairs)",
        len(items), result["annotated_faces"], n_extra, n_ignore, result["box_style"], len(pairs),
    )  # fmt: skip
    return result


def crops_half(path: Path) -> str:
    """``train`` or ``heldout``: a fixed half of a crops folder by a hash of the file name, so that the images a
    detector is trained on are never those it is checked on (``tools/models_check.py --heldout``)."""
    return (
        "train" if hashlib.sha1(Path(path).name.encode("utf-8", "surrogateescape")).digest()[0] % 2 == 0 else "heldout"
    )


def label_photos(
    files: list[Path], teacher_path: Path, style: np.ndarray, out: Path, s: PseudoSettings = PseudoSettings()
) -> dict:
    """Pseudo-label photos that have no annotation at all (e.g. face crops from the web, which are close-ups once
    scaled to the detector's input): the teacher's faces at or above ``s.extra_score`` become training faces,
    the rest ignore regions; a photo where the teacher is sure of no face is left out. Writes ``out`` (JSON)
    with per-photo ``scenes`` entries and returns it."""
    teacher = CenterFace(teacher_path)
    scenes = {}
    for path in files:
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if image is None:
            continue
        found = detect_merged(teacher, image, s)
        sure = found[:, 4] >= s.extra_score
        if not sure.any():
            continue
        styled = apply_box_style(found, style)
        h, w = image.shape[:2]
        styled = styled.clip(0, [w, h, w, h])
        # a doubtful box inside a sure face is that face boxed twice, which the detector must learn not to do
        doubtful = styled[~sure][~covered(styled[~sure], styled[sure], s.covered_iou)]
        scenes[str(Path(path).resolve())] = {
            "extra": [[round(float(v), 1) for v in b] for b in styled[sure]],
            "ignore": [[round(float(v), 1) for v in b] for b in doubtful],
        }
    result = {"teacher": str(teacher_path), "box_style": [float(v) for v in style], "scenes": scenes, "labels": {}}
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    Path(out).write_text(json.dumps(result))
    logger.info("pseudo-labelled {} of {} photos", len(scenes), len(files))
    return result


def read_photo_scenes(path: Path) -> list[tuple[Path, np.ndarray, np.ndarray]]:
    """(photo, training faces, ignore regions) of a file written by :func:`label_photos` (empty for others)."""
    try:
        raw = json.loads(Path(path).read_text()).get("scenes", {})
    except (OSError, ValueError) as exc:
        raise MaskwatchError(f"cannot read pseudo-labels {path}: {exc}") from None
    return [
        (
            Path(p),
            np.asarray(v.get("extra", []), np.float32).reshape(-1, 4),
            np.asarray(v.get("ignore", []), np.float32).reshape(-1, 4),
        )
        for p, v in sorted(raw.items())
    ]


def read_pseudo_labels(path: Path) -> dict[str, dict[str, np.ndarray]]:
    """``{stem: {"extra": (N, 4), "ignore": (M, 4)}}`` from a file written by :func:`pseudo_label`."""
    try:
        raw = json.loads(Path(path).read_text()).get("labels", {})
    except (OSError, ValueError, KeyError) as exc:
        raise MaskwatchError(f"cannot read pseudo-labels {path}: {exc}") from None
    return {
        stem: {
            "extra": np.asarray([b[:4] for b in v.get("extra", [])], np.float32).reshape(-1, 4),
            "ignore": np.asarray(v.get("ignore", []), np.float32).reshape(-1, 4),
        }
        for stem, v in raw.items()
    }
