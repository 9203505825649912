"""The ``run`` command: open the source, build the stages and sinks from the config, run, report."""

from __future__ import annotations

import argparse
import contextlib
import sys
import threading
from pathlib import Path

from loguru import logger

from maskwatch.commands.options import overrides, report_prefix
from maskwatch.config import Config
from maskwatch.errors import ConfigError, OutputError
from maskwatch.media import EXIT_OK, EXIT_SIGNAL
from maskwatch.runner.signals import stop_on_signals
from maskwatch.runner.status import log_done, run_status
from maskwatch.serve.bind import is_loopback, parse_bind


def _output_sink(out: Path, source, cfg: Config):
    from maskwatch.capture.sources import ImageFilesSource, RealtimeFileSource, VideoFileSource
    from maskwatch.media import IMAGE_SUFFIXES, VIDEO_SUFFIXES
    from maskwatch.outputs.sinks import ImageSink, VideoSink, check_writable

    if isinstance(source, RealtimeFileSource):
        source = source.video
    inputs = (source.path,) if isinstance(source, VideoFileSource) else tuple(getattr(source, "paths", ()))
    if isinstance(source, ImageFilesSource):
        single = len(source.paths) == 1 and out.suffix.lower() in IMAGE_SUFFIXES
        if not single and out.suffix.lower() in IMAGE_SUFFIXES:
            raise OutputError(f"--output {out} must be a folder for a folder of images")
        if not single and out.exists() and not out.is_dir():
            raise OutputError(f"--output {out} must be a folder for a folder of images")
        check_writable(out, inputs)
        if not single and out.resolve() in {p.parent.resolve() for p in source.paths}:
            raise OutputError(f"--output {out} is the input folder; annotated images would overwrite the inputs")
        return ImageSink(out, single_file=single, jpeg_quality=cfg.output.jpeg_quality)
    if out.suffix.lower() not in VIDEO_SUFFIXES:
        raise OutputError(f"--output {out} must be a video file ({', '.join(VIDEO_SUFFIXES)})")
    check_writable(out, inputs)
    return VideoSink(out, fps=source.fps, fourcc=cfg.output.fourcc)


def run_command(args: argparse.Namespace, setup_logging) -> int:
    """Everything ``maskwatch run`` does; user errors raise :class:`~maskwatch.errors.MaskwatchError`."""
    from maskwatch.capture.sources import ImageFilesSource, open_source
    from maskwatch.config import load_config
    from maskwatch.outputs.sinks import JsonLinesSink, WindowSink, check_writable
    from maskwatch.runner.single import RunStats, run

    cfg = load_config(args.config, overrides(args))
    if args.log_level is None:
        setup_logging(cfg.logging.level)
    bind = parse_bind(cfg.http.bind) if cfg.http.bind else None
    if bind is not None and not is_loopback(bind[0]) and not cfg.http.token:
        raise ConfigError(f"--http on {bind[0]} serves beyond this machine: set --http-token (or MASKWATCH_HTTP_TOKEN)")
    if args.source is None:
        if not cfg.sources:
            raise ConfigError("nothing to watch: give --source, or a config (--config) with a sources: list")
        from maskwatch.commands.run_many import run_many_command

        return run_many_command(args, cfg, bind)
    if cfg.sources:
        logger.info(f"--source given: the config's {len(cfg.sources)} sources are not used")
    inputs = (Path(args.source),)
    for path in (args.detections, args.events):
        if path is not None:
            check_writable(path, inputs)
    prefix = report_prefix(args)
    if prefix is not None:
        check_writable(prefix.with_name(prefix.name + ".report.json"), inputs)
    source = open_source(
        args.source,
        open_timeout_s=cfg.capture.open_timeout_s,
        realtime=args.realtime,
        reconnect=cfg.capture.reconnect,
        stall_s=cfg.capture.read_timeout_s,
        max_backoff_s=cfg.capture.max_backoff_s,
    )
    tracking = cfg.tracking.enabled and not isinstance(source, ImageFilesSource)
    try:
        if args.events is not None and not tracking:
            raise OutputError("--events needs a video, camera or stream with tracking on (not images or --no-track)")
        output = _output_sink(args.output, source, cfg) if args.output is not None else None
        from maskwatch.build import (  # torch: only once inputs are checked
            batch_frames,
            build_event_outputs,
            build_monitor,
            build_pipeline,
            build_renderer,
        )
        from maskwatch.outputs.report import write_run_report
        from maskwatch.outputs.webhook import close_webhook

        pipeline = build_pipeline(cfg)
        pipeline.warmup()
        monitor = (
            build_monitor(cfg, pipeline, source_name=source.name, fps=source.fps, live=source.is_live)
            if tracking
            else None
        )
        stats = RunStats()
        stop = threading.Event()
        with contextlib.ExitStack() as stack:
            sinks = []
            if output is not None:
                sinks.append(stack.enter_context(output))
            if args.detections is not None:
                sinks.append(stack.enter_context(JsonLinesSink(args.detections)))
            event_outputs, webhook = build_event_outputs(cfg, args.events, stack, tracking=monitor is not None)
            sinks += event_outputs
            if bind is not None:
                from maskwatch.serve.web import WebView

                view = WebView(
                    bind[0],
                    bind[1],
                    token=cfg.http.token,
                    status=lambda: run_status(source, stats, monitor),
                    max_stream_fps=cfg.http.max_stream_fps,
                )
                sinks.append(stack.enter_context(view.start()))
            if args.show:
                sinks.append(stack.enter_context(WindowSink(f"maskwatch: {source.name}")))
            received = stack.enter_context(stop_on_signals(stop))
            logger.info(
                f"running on {source.name} ({'live' if source.is_live else 'file'}, {cfg.runtime.device}, "
                f"{cfg.runtime.precision}{', tracking' if monitor else ''})"
            )
            run(
                source,
                monitor if monitor is not None else pipeline,
                sinks,
                build_renderer(cfg),
                stop=stop,
                queue_size=cfg.capture.queue_size,
                live_queue_size=cfg.capture.live_queue_size,
                read_timeout_s=cfg.capture.read_timeout_s,
                status_interval_s=cfg.logging.status_interval_s,
                progress=not args.no_progress and sys.stderr.isatty(),
                stats=stats,
                summary=monitor.summary_line if monitor is not None else None,
                summary_interval_s=cfg.logging.summary_interval_s,
                batch_frames=batch_frames(cfg),
            )
            close_webhook(webhook)
    finally:
        source.close()
    log_done(source, stats)
    if monitor is not None and prefix is not None:
        write_run_report(prefix, source, stats, monitor)
    if received.get("signal") is not None and not source.is_live:
        logger.warning(f"interrupted: {stats.frames} frames processed and written; outputs finalized")
        return EXIT_SIGNAL[received["signal"]]
    return EXIT_OK


