"""The one builder that maps a validated :class:`~maskwatch.config.Config` to objects."""

from __future__ import annotations

import torch

from maskwatch.config import Config
from maskwatch.errors import ConfigError
from maskwatch.pipeline import FacePipeline
from maskwatch.render import OverlayRenderer


def check_runtime(cfg: Config) -> None:
    """Apply thread settings and fail early on an unavailable device or precision."""
    if cfg.runtime.device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device cuda was requested but no CUDA GPU is available (use --device cpu)")
    if cfg.runtime.precision == "int8":
        raise ConfigError("int8 models are not shipped yet; use --precision fp32")
    if cfg.runtime.threads:
        torch.set_num_threads(cfg.runtime.threads)


def build_pipeline(cfg: Config) -> FacePipeline:
    """Load the detector and classifier named in ``cfg`` (weights verified) and wire the pipeline."""
    from maskwatch.models.classifier import MaskClassifier
    from maskwatch.models.detector import load_detector

    check_runtime(cfg)
    det = cfg.detector
    detector = load_detector(
        det.weights,
        input_size=det.input_size,
        score_threshold=det.score_threshold,
        nms_iou=det.nms_iou,
        max_faces=det.max_faces,
        device=cfg.runtime.device,
    )
    classifier = MaskClassifier(weights=cfg.classifier.weights, device=cfg.runtime.device)
    return FacePipeline(
        detector, classifier, crop_margin=cfg.classifier.crop_margin, min_confidence=cfg.classifier.min_confidence
    )


def build_renderer(cfg: Config) -> OverlayRenderer:
    r = cfg.render
    return OverlayRenderer(colors=dict(r.colors), thickness=r.thickness, font_scale=r.font_scale, hud=r.hud)
