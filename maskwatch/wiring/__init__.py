"""The wiring: the one place that maps a validated :class:`~maskwatch.config.Config` to objects and plain settings.

Commands read the config only through these builders: here the engine, models, pipeline, tracker, monitor, sources
and the keyword arguments of the runners; in :mod:`maskwatch.wiring.outputs` the renderer, sinks, event outputs and
the web view. Heavy modules (torch, the models, the web server) are imported by the builders that need them, so
a command can check its inputs before any of them loads.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from loguru import logger

from maskwatch.config import Config, RuntimeConfig, SourceConfig
from maskwatch.errors import ConfigError, SourceError
from maskwatch.media import is_live_spec
from maskwatch.monitor.pipeline import FacePipeline

if TYPE_CHECKING:
    from maskwatch.capture.base import Source
    from maskwatch.models.base import Classifier, Detector
    from maskwatch.monitor.lines import CountingLine
    from maskwatch.monitor.timebase import FrameRules
    from maskwatch.monitor.zones import ZoneSet
    from maskwatch.runner.lanes import NamedSource


def effective_precision(cfg: Config) -> str:
    """The precision the models will run at: int8 runs on ONNX Runtime on the CPU, so CUDA runs fp32."""
    if cfg.runtime.precision == "int8" and cfg.runtime.device == "cuda":
        return "fp32"
    return cfg.runtime.precision


def effective_engine(cfg: Config) -> str:
    """The engine the models will run on: ``runtime.engine``, except that int8 on the CPU always runs on ONNX Runtime
    (the torch engine runs fp32 only, on the CPU or CUDA)."""
    cpu = cfg.runtime.device == "cpu"
    if cfg.runtime.engine == "onnx" or (cpu and (cfg.runtime.engine == "auto" or cfg.runtime.precision == "int8")):
        return "onnx"
    return "torch"


def configured_precision(cfg: Config) -> str:
    """``runtime.precision`` as configured (see :func:`effective_precision` for the one the models run at)."""
    return cfg.runtime.precision


def onnx_threads(cfg: Config) -> int:
    """Intra-op threads of each ONNX Runtime session: ``runtime.threads``, 0 meaning one."""
    return cfg.runtime.threads or 1


def with_runtime(
    cfg: Config, *, device: str | None = None, precision: str | None = None, engine: str | None = None
) -> Config:
    """A validated copy of ``cfg`` whose models run on ``device`` at ``precision`` with ``engine`` (None: as
    configured); ``cfg`` itself is left unchanged."""
    given = (("device", device), ("precision", precision), ("engine", engine))
    updates = {key: value for key, value in given if value is not None}
    runtime = RuntimeConfig.model_validate({**cfg.runtime.model_dump(), **updates})
    return cfg.model_copy(update={"runtime": runtime})


def model_files(cfg: Config) -> dict[str, dict[str, str]]:
    """The configured model files: ``{"detector": {"fp32": .pt, "onnx": fp32 .onnx, "int8": int8 .onnx},
    "classifier": {...}}`` (int8 models are ONNX files, run by the onnx engine)."""
    return {
        "detector": {
            "fp32": cfg.detector.weights,
            "onnx": cfg.detector.onnx_weights,
            "int8": cfg.detector.onnx_int8_weights,
        },
        "classifier": {
            "fp32": cfg.classifier.weights,
            "onnx": cfg.classifier.onnx_weights,
            "int8": cfg.classifier.onnx_int8_weights,
        },
    }


def detector_threshold(cfg: Config) -> float:
    """The detector's operating score threshold (``detector.score_threshold``)."""
    return cfg.detector.score_threshold


def detector_floor(cfg: Config) -> float:
    """The lowest score the detector is built to return: ``tracking.low_score`` with tracking on (such faces only
    extend existing tracks), else ``detector.score_threshold``. The pipeline itself reports faces from
    ``detector.score_threshold`` up; only a monitor asks it for weaker ones."""
    if cfg.tracking.enabled:
        return min(cfg.tracking.low_score, cfg.detector.score_threshold)
    return cfg.detector.score_threshold


def batch_frames(cfg: Config) -> int:
    """Frames the runner may detect together: ``runtime.batch_frames``, else 8 on CUDA and 1 on the CPU."""
    if cfg.runtime.batch_frames is not None:
        return cfg.runtime.batch_frames
    return 8 if cfg.runtime.device == "cuda" else 1


def check_runtime(cfg: Config) -> None:
    """Apply thread settings and fail early on an unavailable device. The ONNX engine (fp32 or int8) runs on the CPU
    only and sets its threads per session (:func:`build_onnx_models`): no torch import for it."""
    if cfg.runtime.engine == "onnx" and cfg.runtime.device != "cpu":
        raise ConfigError(f"engine onnx runs on the CPU only, not {cfg.runtime.device} (use --engine torch there)")
    if effective_engine(cfg) == "onnx":
        if cfg.runtime.engine == "torch":
            logger.debug("precision int8 runs on the ONNX Runtime engine (torch runs fp32 only)")
        return
    import torch

    if cfg.runtime.device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device cuda was requested but no CUDA GPU is available (use --device cpu)")
    if cfg.runtime.threads:
        torch.set_num_threads(cfg.runtime.threads)
    if cfg.runtime.precision == "int8":
        logger.info("int8 models run on the CPU only; using the fp32 models on cuda")


def build_pipeline(cfg: Config) -> FacePipeline:
    """Load the detector and classifier named in ``cfg`` (weights verified) for its engine and wire the pipeline."""
    check_runtime(cfg)
    detector, classifier = build_onnx_models(cfg) if effective_engine(cfg) == "onnx" else build_torch_models(cfg)
    return FacePipeline(
        detector,
        classifier,
        crop_margin=cfg.classifier.crop_margin,
        min_confidence=cfg.classifier.min_confidence,
        nested_overlap=cfg.detector.nested_overlap,
        score_threshold=cfg.detector.score_threshold,
        closeup_trigger=cfg.detector.closeup_trigger,
    )


def with_tiling(cfg: Config, detector: Detector) -> Detector:
    """``detector``, or with ``detector.tile_small_frames`` the same detector that also looks at small frames in
    tiles (:func:`maskwatch.models.tiling.small_frame_tiles`)."""
    if not cfg.detector.tile_small_frames:
        return detector
    from maskwatch.models.tiling import small_frame_tiles

    det = cfg.detector
    return small_frame_tiles(detector, nms_iou=det.nms_iou, nested_overlap=det.nested_overlap, max_faces=det.max_faces)


def build_torch_models(cfg: Config) -> tuple[Detector, Classifier]:
    """The torch detector and classifier (fp32, on ``runtime.device``); int8 runs on :func:`build_onnx_models`."""
    from maskwatch.models.classifier import MaskClassifier
    from maskwatch.models.detector import load_detector

    det = cfg.detector
    detector = load_detector(
        det.weights,
        input_size=det.input_size,
        score_threshold=detector_floor(cfg),
        nms_iou=det.nms_iou,
        max_faces=det.max_faces,
        device=cfg.runtime.device,
    )
    classifier = MaskClassifier(weights=cfg.classifier.weights, device=cfg.runtime.device)
    if detector.precision != "fp32" or classifier.precision != "fp32":
        raise ConfigError(
            f"the torch engine runs fp32 model files, but {det.weights} / {cfg.classifier.weights} are not both fp32 "
            "(int8 runs on the onnx engine: --precision int8 with the files `maskwatch quantize` writes)"
        )
    return with_tiling(cfg, detector), classifier


def build_onnx_models(cfg: Config) -> tuple[Detector, Classifier]:
    """The ONNX Runtime detector and classifier at the configured precision (``*.onnx_weights``, or
    ``*.onnx_int8_weights`` with int8), each with ``runtime.threads`` intra-op threads (0: one); torch is not
    imported. A file whose own precision is not the requested one is a :class:`ConfigError`."""
    from maskwatch.models.onnx_engine import OnnxMaskClassifier
    from maskwatch.models.registry import load_onnx_detector

    threads = onnx_threads(cfg)
    det, cls = cfg.detector, cfg.classifier
    precision = cfg.runtime.precision
    int8 = precision == "int8"
    detector = load_onnx_detector(
        det.onnx_int8_weights if int8 else det.onnx_weights,
        input_size=det.input_size,
        score_threshold=detector_floor(cfg),
        nms_iou=det.nms_iou,
        max_faces=det.max_faces,
        threads=threads,
    )
    classifier = OnnxMaskClassifier(cls.onnx_int8_weights if int8 else cls.onnx_weights, threads=threads)
    for key, model in (("detector", detector), ("classifier", classifier)):
        if model.precision != precision:
            files = getattr(cfg, key)
            name = files.onnx_int8_weights if int8 else files.onnx_weights
            how = "make it with `maskwatch quantize`" if int8 else "write it with `maskwatch export`"
            raise ConfigError(
                f"precision {precision} needs a {precision} {key} file, but {name} is {model.precision} ({how})"
            )
    return with_tiling(cfg, detector), classifier


def frame_rules_for(cfg: Config, fps: float | None) -> FrameRules:
    """The tracking counts (detect stride, hits, votes, lost frames) a source at ``fps`` uses: the configured
    ones last as long at any frame rate as at 25 fps (see :mod:`maskwatch.monitor.timebase`)."""
    from maskwatch.monitor.timebase import REFERENCE_FPS, frame_rules

    t = cfg.tracking
    return frame_rules(
        fps or REFERENCE_FPS,
        detect_every=t.detect_every,
        min_hits=t.min_hits,
        min_votes=t.min_votes,
        vote_window=t.vote_window,
        max_lost=t.max_lost,
    )


def build_tracker(cfg: Config, *, frame_count: int | None = None, fps: float | None = None):
    """A face tracker with the configured association and voting settings, its counts held in seconds at
    ``fps`` (:func:`frame_rules_for`; None: as configured).

    ``frame_count``: the input's length when it is known (a file). An input with fewer detector frames than
    ``tracking.min_hits`` (or ``min_votes``) could never confirm a person (or decide a label): for it both are
    lowered to the number of frames the detector runs on, at least 1.
    """
    from maskwatch.monitor.track import FaceTracker

    t = cfg.tracking
    rules = frame_rules_for(cfg, fps)
    min_hits, min_votes = rules.min_hits, rules.min_votes
    if frame_count is not None and frame_count > 0:
        detected = -(-frame_count // rules.detect_every)  # frames the detector runs on (files keep a fixed stride)
        min_hits, min_votes = min(min_hits, detected), min(min_votes, detected)
    return FaceTracker(
        high_score=cfg.detector.score_threshold,
        low_score=min(t.low_score, cfg.detector.score_threshold),
        new_track_score=max(t.new_track_score, cfg.detector.score_threshold),
        match_iou=t.match_iou,
        max_lost=rules.max_lost,
        min_hits=min_hits,
        vote_window=rules.vote_window,
        vote_threshold=t.vote_threshold,
        min_votes=min_votes,
        reid_max_gap_s=t.reid_max_gap_s,
        reid_similarity=t.reid_similarity,
        hold_unmoved_s=1.0 if t.static_after_s > 0 else 0.0,  # posters (no life yet) do not coast when lost
    )


def source_zones(cfg: Config, entry: SourceConfig | None = None) -> ZoneSet:
    """The zones of a ``sources:`` entry (its own, else the top-level ``zones``); of ``--source`` (None): the
    top-level ones."""
    import numpy as np

    from maskwatch.monitor.zones import Zone, ZoneSet

    zones = entry.zones if entry is not None and entry.zones is not None else cfg.zones
    return ZoneSet([Zone(z.name, np.asarray(z.polygon, np.float64), z.mode) for z in zones])


def source_lines(cfg: Config, entry: SourceConfig | None = None) -> tuple[CountingLine, ...]:
    """The counting lines of a ``sources:`` entry (its own, else the top-level ``lines``), or of ``--source``."""
    from maskwatch.monitor.lines import CountingLine

    lines = entry.lines if entry is not None and entry.lines is not None else cfg.lines
    return tuple(CountingLine(x.name, x.points[0], x.points[1], x.in_side, x.band) for x in lines)


def build_monitor(
    cfg: Config,
    pipeline: FacePipeline,
    *,
    source_name: str,
    fps: float,
    live: bool,
    frame_count: int | None = None,
    zones: ZoneSet | None = None,
    lines: Sequence[CountingLine] = (),
):
    """Wrap ``pipeline`` with tracking, the alert policy and the detection stride; ``zones`` and ``lines`` (see
    :func:`source_zones`, :func:`source_lines`) limit who counts and count crossings.

    The monitor asks the pipeline for faces down to ``tracking.low_score`` (as far as its detector was built to
    return, see :func:`detector_floor`): those only extend existing tracks. Tracked video does without the
    zoomed-out pass for close faces (``detector.closeup_trigger``): on the video benchmark it moved tracked faces'
    boxes from frame to frame and cost identity switches.
    ``frame_count`` (the source's, None when unknown) lets a very short input still count the faces it shows
    (see :func:`build_tracker`).
    """
    from maskwatch.monitor.alerts import AlertPolicy
    from maskwatch.monitor.lines import LineCounter
    from maskwatch.monitor.monitor import Monitor, StrideControl
    from maskwatch.monitor.static import LifeMeter

    t, a = cfg.tracking, cfg.alerts
    policy = AlertPolicy(
        source_name,
        alert_labels=a.labels,
        min_duration_s=a.min_duration_s,
        min_confidence=a.min_confidence,
        cooldown_s=a.cooldown_s,
        updates=a.updates,
        ends=a.ends,
    )
    every = frame_rules_for(cfg, fps).detect_every
    stride = StrideControl(
        every, auto=live and t.auto_stride, max_every=max(every, t.max_detect_every), frame_interval_s=1.0 / fps
    )
    life = LifeMeter(static_after_s=t.static_after_s) if t.static_after_s > 0 else None
    tracker = build_tracker(cfg, frame_count=frame_count, fps=fps)
    counter = LineCounter(lines, source=source_name)
    tracked = pipeline.with_closeup_trigger(0.0)  # tracks keep one box per face; the second pass moved them
    return Monitor(tracked, tracker, policy, stride, life=life, zones=zones, lines=counter)


# what a run command needs: sources, sinks, the web view, the runner's settings ----------------------------------
def log_level(cfg: Config) -> str:
    """The configured log level (``logging.level``)."""
    return cfg.logging.level


def runtime_label(cfg: Config) -> str:
    """``device, precision`` as the models run (``cpu, onnx int8`` on the ONNX engine), for a run's first log
    line."""
    precision = effective_precision(cfg)
    return f"{cfg.runtime.device}, {'onnx ' if effective_engine(cfg) == 'onnx' else ''}{precision}"


def tracking_enabled(cfg: Config) -> bool:
    """Whether videos, cameras and streams are tracked (``tracking.enabled``; images never are)."""
    return cfg.tracking.enabled


def configured_sources(cfg: Config) -> list[SourceConfig]:
    """The ``sources:`` entries a run without ``--source`` serves together (empty when none)."""
    return list(cfg.sources)


def source_files(cfg: Config) -> tuple[Path, ...]:
    """The video files among the configured sources (outputs must not overwrite them)."""
    return tuple(Path(e.source) for e in cfg.sources if not is_live_spec(e.source))


def build_source(cfg: Config, spec: str, *, realtime: bool = False) -> Source:
    """Open ``spec`` (camera index, URL, image, folder or video) with the configured timeouts and reconnection."""
    from maskwatch.capture.sources import open_source

    c = cfg.capture
    return open_source(
        spec,
        open_timeout_s=c.open_timeout_s,
        realtime=realtime,
        reconnect=c.reconnect,
        stall_s=c.read_timeout_s,
        max_backoff_s=c.max_backoff_s,
    )


def build_sources(cfg: Config, *, realtime: bool = False) -> list[NamedSource]:
    """Open every ``sources:`` entry under its name; the first failure is one error naming the source, after
    closing the ones already open. Images and folders are refused (not live)."""
    from maskwatch.capture.sources import ImageFilesSource
    from maskwatch.runner.lanes import NamedSource

    opened: list[NamedSource] = []
    try:
        for entry in cfg.sources:
            try:
                source = build_source(cfg, entry.source, realtime=realtime)
            except SourceError as exc:
                raise SourceError(f"source '{entry.name}': {exc}") from None
            opened.append(NamedSource(source, entry.name))
            if isinstance(source, ImageFilesSource):
                raise SourceError(f"source '{entry.name}' is images: sources: takes cameras, streams and videos")
    except BaseException:
        for source in opened:
            source.close()
        raise
    return opened


def inference_workers(cfg: Config, n_sources: int, *, show: bool = False) -> int:
    """Threads that run the shared models: one per core, at most one per source (one with ``--show``: the window
    must be drawn from one thread). Unless ``runtime.threads`` is set, torch then gets cores / workers threads
    each: more oversubscribe the CPU (on 2 cores busy with other work, 2 torch threads took 0.8 s a frame where
    1 took 40-60 ms; see tools/bench_multicam.py and the README's "Many cameras"). ONNX sessions keep their
    ``runtime.threads`` (0: one each)."""
    import os

    cores = os.cpu_count() or 1
    workers = 1 if show else max(1, min(cores, n_sources))
    if cfg.runtime.threads == 0 and effective_engine(cfg) == "torch":
        import torch

        torch.set_num_threads(max(1, cores // workers))
    return workers


def run_settings(cfg: Config) -> dict:
    """The keyword arguments of :func:`maskwatch.runner.lanes.run_sources` (and of
    :func:`maskwatch.runner.single.run`) that come from the config."""
    c, log = cfg.capture, cfg.logging
    return {
        "queue_size": c.queue_size,
        "live_queue_size": c.live_queue_size,
        "read_timeout_s": c.read_timeout_s,
        "status_interval_s": log.status_interval_s,
        "summary_interval_s": log.summary_interval_s,
        "batch_frames": batch_frames(cfg),
    }
