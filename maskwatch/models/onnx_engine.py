"""The ONNX Runtime engine: the face detector and the mask classifier from ``maskwatch export`` files, without torch.

Both graphs take raw BGR pixels (the mean, and the classifier's std and colour flip, are inside them), so the
preparation here is the torch facades' own (:mod:`maskwatch.models.prep`); the detector's decoding (priors, box
offsets with the variances, score threshold, back to frame pixels) is RetinaFaceDetector's in numpy, its NMS
OpenCV's (``cv2.dnn.NMSBoxes``: the same boxes as the greedy NMS it replaced, about 5x faster). What a file
needs to be decoded (input size, anchor sizes, steps, variances, class names) is read from its ``metadata_props``,
written by :mod:`maskwatch.commands.export`. Files are checked against their folder's ``SHA256SUMS`` before loading.

Sessions run sequentially with ``threads`` intra-op threads (default 1), one inter-op thread and no spin-waiting:
spinning pool threads burn a core that capture, rendering or another camera's worker needs.
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

import cv2
import numpy as np
from loguru import logger

from maskwatch.errors import MaskwatchError, WeightsError
from maskwatch.models.manifest import resolve_weights, verify
from maskwatch.models.prep import Resized, crops_to_batch, prior_boxes, resize_longest_side
from maskwatch.types import CLASS_NAMES, FaceDetections

INSTALL_HINT = (
    "pip install onnxruntime (a dependency of maskwatch; onnx for export and quantize: pip install 'maskwatch[train]')"
)
ARCH = "retinaface_mnet025"
"""The detector architecture this module runs (see :mod:`maskwatch.models.registry`)."""
DETECTOR_KEYS = ("input_size", "min_sizes", "steps", "variances")
CLASSIFIER_KEYS = ("input_size", "class_names")


def require(module: str) -> ModuleType:
    """Import an optional dependency, or raise a one-line :class:`MaskwatchError` with an install hint."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MaskwatchError(
            f"maskwatch's ONNX tools need the '{module}' package, which is missing: {INSTALL_HINT}"
        ) from exc


def open_session(weights: str | Path, threads: int = 1):
    """Verify ``weights`` against its SHA256SUMS and open an onnxruntime CPU session on it.

    Returns (session, path). An unreadable file is one :class:`WeightsError` line, as for the torch files.
    """
    ort = require("onnxruntime")
    if not resolve_weights(weights).is_file():
        raise WeightsError(
            f"weights file not found: {resolve_weights(weights)} (the ONNX engine runs the files `maskwatch export` "
            "writes: set detector.onnx_weights / classifier.onnx_weights to them)"
        )
    path = verify(weights)
    options = ort.SessionOptions()
    options.intra_op_num_threads = max(1, int(threads))
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.add_session_config_entry("session.inter_op.allow_spinning", "0")
    options.log_severity_level = 3  # errors only: a refused file is reported below, in one line
    try:
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime's own errors name protobuf internals
        raise WeightsError(
            f"cannot load weights file {path}: it is corrupt or truncated, not a readable ONNX file "
            f"({type(exc).__name__})"
        ) from exc
    return session, path


def read_metadata(session, path: Path, keys: Sequence[str], arch: str) -> dict:
    """The JSON values of a maskwatch ONNX file's ``metadata_props``: its ``arch`` must be ``arch``, and each of
    ``keys`` must be there."""
    props = session.get_modelmeta().custom_metadata_map
    meta = {}
    for key in ("arch", *keys):
        try:
            meta[key] = json.loads(props[key])
        except (KeyError, ValueError):
            raise WeightsError(
                f"weights file {path} lacks maskwatch's '{key}' metadata: write it with `maskwatch export`"
            ) from None
        if key == "arch" and meta["arch"] != arch:
            raise WeightsError(f"weights file {path} holds a {str(meta['arch'])[:40]!r} model, expected {arch!r}")
    return meta


def read_arch(session, path: Path) -> str:
    """The file's ``arch`` metadata (which backend runs it)."""
    raw = session.get_modelmeta().custom_metadata_map.get("arch")
    try:
        arch = json.loads(raw) if raw is not None else None
    except ValueError:
        arch = None
    if not isinstance(arch, str):
        raise WeightsError(f"weights file {path} lacks maskwatch's 'arch' metadata: write it with `maskwatch export`")
    return arch


def read_precision(session, path: Path) -> str:
    """The file's ``precision`` metadata: "fp32" (``maskwatch export``, or absent) or "int8" (``maskwatch
    quantize``)."""
    raw = session.get_modelmeta().custom_metadata_map.get("precision", '"fp32"')
    try:
        precision = json.loads(raw)
    except ValueError:
        precision = None
    if precision not in ("fp32", "int8"):
        raise WeightsError(f"weights file {path} has an unknown precision {str(raw)[:20]!r} in its metadata")
    return precision


# --- box decoding in numpy (as maskwatch.models.retinaface does in torch), NMS by OpenCV; priors: models.prep
def decode_boxes(loc: np.ndarray, priors: np.ndarray, variances: Sequence[float]) -> np.ndarray:
    """Normalised ``xyxy`` boxes from predicted offsets ``loc`` (N, 4) relative to ``priors`` (N, 4)."""
    centre = priors[:, :2] + loc[:, :2] * variances[0] * priors[:, 2:]
    wh = priors[:, 2:] * np.exp(loc[:, 2:] * variances[1])
    return np.concatenate([centre - wh / 2, centre + wh / 2], axis=-1)


def nms(boxes: np.ndarray, scores: np.ndarray, iou: float, limit: int | None = None) -> np.ndarray:
    """Indices of the boxes greedy NMS keeps, best first (a box overlapping a kept one by IoU > ``iou`` goes), at
    most ``limit``: OpenCV's ``cv2.dnn.NMSBoxes`` on ``xyxy`` boxes."""
    if len(boxes) == 0:
        return np.zeros(0, np.int64)
    xywh = np.concatenate([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], axis=1).astype(np.float64)
    ranked = scores.astype(np.float64) - float(scores.min()) + 1.0  # OpenCV keeps scores above a threshold >= 0
    keep = cv2.dnn.NMSBoxes(xywh.tolist(), ranked.tolist(), 0.0, float(iou))
    return np.asarray(keep, np.int64).reshape(-1)[:limit]


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax in float32."""
    shifted = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return (shifted / shifted.sum(axis=-1, keepdims=True)).astype(np.float32)


# --- facades
class OnnxRetinaFaceDetector:
    """RetinaFace-MobileNet0.25 from an exported ``detector.onnx``: the :class:`~maskwatch.models.base.Detector`
    steps of RetinaFaceDetector (resize, run, decode, threshold, NMS, back to the frame) without torch.

    ``input_size`` None: the size in the file's metadata (the one the weights were trained at). ``precision`` is
    the file's ("fp32", or "int8" for a file from ``maskwatch quantize``).
    """

    def __init__(
        self,
        weights: str | Path,
        *,
        input_size: int | None = None,
        score_threshold: float = 0.5,
        nms_iou: float = 0.4,
        max_faces: int = 200,
        pre_nms_top_k: int = 2000,
        threads: int = 1,
        opened: tuple[Any, Path] | None = None,
    ) -> None:
        self.session, path = opened if opened is not None else open_session(weights, threads)
        self.meta = read_metadata(self.session, path, DETECTOR_KEYS, ARCH)
        self.precision = read_precision(self.session, path)
        try:
            self.input_size = int(input_size or self.meta["input_size"])
            self.min_sizes = tuple(tuple(int(v) for v in level) for level in self.meta["min_sizes"])
            self.steps = tuple(int(s) for s in self.meta["steps"])
            self.variances = (float(self.meta["variances"][0]), float(self.meta["variances"][1]))
        except (TypeError, ValueError, IndexError):
            raise WeightsError(f"weights file {path} has malformed maskwatch metadata") from None
        if len(self.min_sizes) != len(self.steps):
            raise WeightsError(f"weights file {path} has {len(self.min_sizes)} anchor levels for {len(self.steps)}")
        if self.input_size < 32:
            raise ValueError(f"input_size must be at least 32, got {self.input_size}")
        self.input_name = self.session.get_inputs()[0].name
        self.score_threshold = float(score_threshold)
        self.nms_iou = float(nms_iou)
        self.max_faces = int(max_faces)
        self.pre_nms_top_k = int(pre_nms_top_k)
        self._priors: dict[tuple[int, int], np.ndarray] = {}
        logger.debug("loaded ONNX {} detector {} (input {})", self.precision, path, self.input_size)

    def priors(self, height: int, width: int) -> np.ndarray:
        key = (height, width)
        if key not in self._priors:
            self._priors[key] = prior_boxes(height, width, self.min_sizes, self.steps)
        return self._priors[key]

    def preprocess(self, image_bgr: np.ndarray) -> tuple[np.ndarray, Resized]:
        """Resize so the longest side is ``input_size`` (keeping aspect); return (1, 3, h, w) float32 raw BGR."""
        resized, box = resize_longest_side(image_bgr, self.input_size)
        return resized.transpose(2, 0, 1)[None].astype(np.float32), box

    def postprocess(
        self, loc: np.ndarray, logits: np.ndarray, box: Resized, frame_hw: tuple[int, int]
    ) -> FaceDetections:
        """Decode one image's outputs (P, 4) and (P, 2), threshold, NMS, and map boxes to frame pixels (clipped)."""
        nh, nw = box.size_hw
        scores = softmax(logits)[:, 1]
        idx = np.flatnonzero(scores >= self.score_threshold)
        if len(idx) == 0:
            return FaceDetections.empty()
        if len(idx) > self.pre_nms_top_k:
            idx = idx[np.argpartition(-scores[idx], self.pre_nms_top_k - 1)[: self.pre_nms_top_k]]
        boxes = decode_boxes(loc[idx], self.priors(nh, nw)[idx], self.variances)
        boxes = boxes * np.array([nw, nh, nw, nh], dtype=np.float32) / box.scale
        scores = scores[idx]
        order = nms(boxes, scores, self.nms_iou, self.max_faces)
        boxes, scores = boxes[order], scores[order]
        fh, fw = frame_hw
        boxes[:, [0, 2]] = boxes[:, [0, 2]].clip(0, fw)
        boxes[:, [1, 3]] = boxes[:, [1, 3]].clip(0, fh)
        valid = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
        return FaceDetections(xyxy=boxes[valid], det_score=scores[valid])

    def detect(self, image_bgr: np.ndarray) -> FaceDetections:
        """Faces of one BGR uint8 frame, boxes in the frame's pixels, classes undecided."""
        x, box = self.preprocess(image_bgr)
        loc, logits = self.session.run(["loc", "logits"], {self.input_name: x})
        return self.postprocess(loc[0], logits[0], box, image_bgr.shape[:2])

    def detect_batch(self, images_bgr: list[np.ndarray]) -> list[FaceDetections]:
        """:meth:`detect` for several frames, one by one (the exported graph takes one frame)."""
        return [self.detect(image) for image in images_bgr]


class OnnxMaskClassifier:
    """The mask classifier from an exported ``classifier.onnx``: the :class:`~maskwatch.models.base.Classifier`
    steps of MaskClassifier (crop resize, one batch, softmax) without torch; ``precision`` is the file's."""

    def __init__(self, weights: str | Path, *, threads: int = 1) -> None:
        self.session, path = open_session(weights, threads)
        self.meta = read_metadata(self.session, path, CLASSIFIER_KEYS, "mask_classifier_mnv1_025")
        self.precision = read_precision(self.session, path)
        names = self.meta["class_names"]
        names = tuple(names) if isinstance(names, list) else names
        if names != CLASS_NAMES:
            raise WeightsError(f"weights file {path} has classes {names}, expected {CLASS_NAMES}")
        try:
            self.input_size = int(self.meta["input_size"])
        except (TypeError, ValueError):
            bad = repr(self.meta["input_size"])[:40]
            raise WeightsError(f"weights file {path} has an invalid input_size {bad}") from None
        self.input_name = self.session.get_inputs()[0].name
        logger.debug("loaded ONNX {} classifier {} (input {})", self.precision, path, self.input_size)

    def classify(self, crops_bgr: list[np.ndarray]) -> np.ndarray:
        """(N, 3) softmax probabilities for N BGR uint8 crops of any sizes, run as one batch."""
        if len(crops_bgr) == 0:
            return np.zeros((0, len(CLASS_NAMES)), np.float32)
        (logits,) = self.session.run(None, {self.input_name: crops_to_batch(crops_bgr, self.input_size)})
        return softmax(logits)
