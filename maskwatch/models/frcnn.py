"""The original project's architecture: torchvision Faster R-CNN as a one-class face detector.

Supported for comparison and for users who want it; maskwatch ships the much faster RetinaFace instead.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from loguru import logger

from maskwatch.errors import WeightsError
from maskwatch.models.base import Detector
from maskwatch.models.weights import load_checked, load_state_dict_strict
from maskwatch.types import FaceDetections

ARCHS = ("fasterrcnn_resnet50_fpn", "fasterrcnn_mobilenet_v3_large_fpn")


DEFAULT_INPUT_SIZE = 640
"""Side images are resized to (shorter side, capped at the longer side), as maskwatch's own detector sees them;
torchvision's default (800 / 1333) would upscale these scenes about 2.8x in pixels."""


def build_frcnn(
    arch: str, pretrained: bool = True, num_classes: int = 2, input_size: int = DEFAULT_INPUT_SIZE
) -> torch.nn.Module:
    """A torchvision Faster R-CNN with a ``num_classes`` head (background + face) at ``input_size`` px.

    With ``pretrained`` the COCO weights are fetched through torchvision (cached in ``$TORCH_HOME``);
    when that fails (no network) the ImageNet backbone is tried, then random init, each with a warning.
    """
    import torchvision.models.detection as det
    from torchvision.models.detection.faster_rcnn import FastRCNNPredictor

    if arch not in ARCHS:
        raise ValueError(f"unknown Faster R-CNN arch {arch!r}; choose one of {', '.join(ARCHS)}")
    builder = getattr(det, arch)
    attempts = [{"weights": "DEFAULT"}, {"weights": None, "weights_backbone": "DEFAULT"}] if pretrained else []
    attempts.append({"weights": None, "weights_backbone": None})
    model = None
    for kwargs in attempts:
        try:
            model = builder(**kwargs, min_size=input_size, max_size=input_size)
            break
        except Exception as exc:  # no network or no cache: fall back to the next starting point
            logger.warning(f"{arch} with {kwargs} unavailable ({type(exc).__name__}); falling back")
    if kwargs.get("weights_backbone") is None and kwargs.get("weights") is None:
        logger.warning(f"{arch} starts from random weights (from scratch)")
    in_features = model.roi_heads.box_predictor.cls_score.in_features
    model.roi_heads.box_predictor = FastRCNNPredictor(in_features, num_classes)
    return model


class FasterRCNNDetector(Detector):
    """``Detector`` facade over a trained Faster R-CNN face model file."""

    def __init__(
        self,
        weights: str | Path,
        score_threshold: float = 0.5,
        nms_iou: float = 0.5,
        max_faces: int = 200,
        device: str = "cpu",
    ) -> None:
        payload = load_checked(weights)
        arch = payload.get("arch") if isinstance(payload, dict) else None
        if arch not in ARCHS or "state_dict" not in payload:
            raise WeightsError(f"weights file {weights} holds a {arch!r} model, not a Faster R-CNN")
        meta = payload.get("meta", {})
        self.model = build_frcnn(arch, pretrained=False, input_size=int(meta.get("input_size", 800)))
        load_state_dict_strict(self.model, payload["state_dict"], weights)
        self.model.roi_heads.nms_thresh = nms_iou
        self.model.roi_heads.score_thresh = min(score_threshold, 0.05)
        self.model.eval().to(device)
        self.device = torch.device(device)
        self.score_threshold = score_threshold
        self.max_faces = max_faces
        self.meta = meta

    @torch.inference_mode()
    def detect(self, image_bgr: np.ndarray) -> FaceDetections:
        rgb = torch.from_numpy(np.ascontiguousarray(image_bgr[:, :, ::-1])).permute(2, 0, 1).float() / 255.0
        out = self.model([rgb.to(self.device)])[0]
        keep = out["scores"] >= self.score_threshold
        boxes, scores = out["boxes"][keep][: self.max_faces], out["scores"][keep][: self.max_faces]
        return FaceDetections(xyxy=boxes.cpu().numpy(), det_score=scores.cpu().numpy())
