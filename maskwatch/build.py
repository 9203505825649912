"""The one builder that maps a validated :class:`~maskwatch.config.Config` to objects."""

from __future__ import annotations

import contextlib
from pathlib import Path

import torch
from loguru import logger

from maskwatch.config import Config
from maskwatch.errors import ConfigError
from maskwatch.monitor.pipeline import FacePipeline
from maskwatch.outputs.render import OverlayRenderer


def effective_precision(cfg: Config) -> str:
    """The precision the models will run at: int8 kernels exist for the CPU only, so CUDA runs fp32."""
    if cfg.runtime.precision == "int8" and cfg.runtime.device == "cuda":
        return "fp32"
    return cfg.runtime.precision


def batch_frames(cfg: Config) -> int:
    """Frames the runner may detect together: ``runtime.batch_frames``, else 8 on CUDA and 1 on the CPU."""
    if cfg.runtime.batch_frames is not None:
        return cfg.runtime.batch_frames
    return 8 if cfg.runtime.device == "cuda" else 1


def check_runtime(cfg: Config) -> None:
    """Apply thread and int8-engine settings and fail early on an unavailable device or precision."""
    if cfg.runtime.device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device cuda was requested but no CUDA GPU is available (use --device cpu)")
    if cfg.runtime.threads:
        torch.set_num_threads(cfg.runtime.threads)
    if cfg.runtime.precision == "int8" and cfg.runtime.device == "cuda":
        logger.info("int8 models run on the CPU only; using the fp32 models on cuda")
    elif cfg.runtime.precision == "int8":
        from maskwatch.models.int8 import use_engine

        use_engine()


def build_pipeline(cfg: Config) -> FacePipeline:
    """Load the detector and classifier named in ``cfg`` (weights verified) and wire the pipeline."""
    from maskwatch.models.classifier import MaskClassifier
    from maskwatch.models.detector import load_detector

    check_runtime(cfg)
    int8 = effective_precision(cfg) == "int8"
    det = cfg.detector
    detector = load_detector(
        det.int8_weights if int8 else det.weights,
        input_size=det.input_size,
        score_threshold=det.score_threshold,
        nms_iou=det.nms_iou,
        max_faces=det.max_faces,
        device=cfg.runtime.device,
    )
    classifier_weights = cfg.classifier.int8_weights if int8 else cfg.classifier.weights
    classifier = MaskClassifier(weights=classifier_weights, device=cfg.runtime.device)
    if int8 and not (getattr(detector, "precision", "") == "int8" and classifier.precision == "int8"):
        raise ConfigError(
            f"precision int8 needs int8 model files, but {det.int8_weights} / {classifier_weights} are not both int8 "
            "(make them with `maskwatch quantize`, or use --precision fp32)"
        )
    return FacePipeline(
        detector, classifier, crop_margin=cfg.classifier.crop_margin, min_confidence=cfg.classifier.min_confidence
    )


def build_renderer(cfg: Config) -> OverlayRenderer:
    r = cfg.render
    return OverlayRenderer(
        colors=dict(r.colors), thickness=r.thickness, font_scale=r.font_scale, hud=r.hud, blur_faces=r.blur_faces
    )


def build_tracker(cfg: Config):
    """A face tracker with the configured association and voting settings."""
    from maskwatch.monitor.track import FaceTracker

    t = cfg.tracking
    return FaceTracker(
        high_score=cfg.detector.score_threshold,
        low_score=min(t.low_score, cfg.detector.score_threshold),
        new_track_score=max(t.new_track_score, cfg.detector.score_threshold),
        match_iou=t.match_iou,
        max_lost=t.max_lost,
        min_hits=t.min_hits,
        vote_window=t.vote_window,
        vote_threshold=t.vote_threshold,
        min_votes=t.min_votes,
    )


def build_monitor(cfg: Config, pipeline: FacePipeline, *, source_name: str, fps: float, live: bool):
    """Wrap ``pipeline`` with tracking, the alert policy and the detection stride.

    The detector is set to report faces down to ``tracking.low_score``: those only extend existing tracks.
    """
    from maskwatch.monitor.monitor import Monitor, StrideControl
    from maskwatch.outputs.events import AlertPolicy

    t, a = cfg.tracking, cfg.alerts
    if hasattr(pipeline.detector, "score_threshold"):
        pipeline.detector.score_threshold = min(t.low_score, cfg.detector.score_threshold)
    policy = AlertPolicy(
        source_name,
        alert_labels=a.labels,
        min_duration_s=a.min_duration_s,
        cooldown_s=a.cooldown_s,
        updates=a.updates,
        ends=a.ends,
    )
    stride = StrideControl(
        t.detect_every, auto=live and t.auto_stride, max_every=t.max_detect_every, frame_interval_s=1.0 / fps
    )
    return Monitor(pipeline, build_tracker(cfg), policy, stride)


def build_event_outputs(
    cfg: Config, events: Path | None, stack: contextlib.ExitStack, *, tracking: bool, per_source: bool = False
):
    """The event outputs of a run: the ``--events`` log and the webhook (fed by the log, or directly without one).

    Returns (sinks, webhook or None); both are closed by ``stack``. ``per_source`` names alert snapshots
    ``<source>_<track>_<frame>.jpg`` (several sources share the log).
    """
    a = cfg.alerts
    sinks: list = []
    webhook = None
    if a.webhook:
        from maskwatch.outputs.webhook import Webhook

        webhook = stack.enter_context(Webhook(a.webhook, timeout_s=a.webhook_timeout_s, retries=a.webhook_retries))
    if events is not None:
        from maskwatch.outputs.events import EventLog

        log = EventLog(
            events,
            max_bytes=a.max_bytes,
            backups=a.backups,
            snapshots=a.snapshots,
            blur=cfg.render.blur_faces,
            crop_margin=cfg.classifier.crop_margin,
            on_event=webhook.send if webhook is not None else None,
            snapshot_prefix_source=per_source,
        )
        sinks.append(stack.enter_context(log))
    elif webhook is not None and tracking:
        from maskwatch.outputs.events import EventForwarder

        sinks.append(EventForwarder(webhook.send))
    return sinks, webhook
