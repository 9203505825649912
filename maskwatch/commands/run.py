"""The ``run`` command: open the source, build the stages and sinks from the config, run, report."""

from __future__ import annotations

import argparse
import contextlib
import sys
import threading
from pathlib import Path

from loguru import logger

from maskwatch.build import (
    build_event_outputs,
    build_monitor,
    build_output_sink,
    build_pipeline,
    build_renderer,
    build_source,
    build_web_view,
    configured_sources,
    http_bind,
    log_level,
    run_settings,
    runtime_label,
    tracking_enabled,
)
from maskwatch.commands.options import overrides, report_prefix
from maskwatch.errors import ConfigError, OutputError
from maskwatch.media import EXIT_OK, EXIT_SIGNAL
from maskwatch.runner.signals import stop_on_signals
from maskwatch.runner.status import log_done, run_status


def run_command(args: argparse.Namespace, setup_logging) -> int:
    """Everything ``maskwatch run`` does; user errors raise :class:`~maskwatch.errors.MaskwatchError`."""
    from maskwatch.capture.sources import ImageFilesSource
    from maskwatch.config import load_config
    from maskwatch.outputs.sinks import BackgroundSink, JsonLinesSink, VideoSink, WindowSink, check_writable
    from maskwatch.runner.single import RunStats, run

    cfg = load_config(args.config, overrides(args))
    if args.log_level is None:
        setup_logging(log_level(cfg))
    bind = http_bind(cfg)
    entries = configured_sources(cfg)
    if args.source is None:
        if not entries:
            raise ConfigError("nothing to watch: give --source, or a config (--config) with a sources: list")
        from maskwatch.commands.run_many import run_many_command

        return run_many_command(args, cfg, bind)
    if entries:
        logger.info(f"--source given: the config's {len(entries)} sources are not used")
    from maskwatch.demo import resolve_source

    args.source = resolve_source(args.source)  # "demo": the clip shipped in the package
    inputs = (Path(args.source),)
    for path in (args.detections, args.events):
        if path is not None:
            check_writable(path, inputs)
    prefix = report_prefix(args)
    if prefix is not None:
        check_writable(prefix.with_name(prefix.name + ".report.json"), inputs)
    source = build_source(cfg, args.source, realtime=args.realtime)
    tracking = tracking_enabled(cfg) and not isinstance(source, ImageFilesSource)
    try:
        if args.events is not None and not tracking:
            raise OutputError("--events needs a video, camera or stream with tracking on (not images or --no-track)")
        output = build_output_sink(cfg, args.output, source) if args.output is not None else None
        from maskwatch.outputs.report import write_run_report
        from maskwatch.outputs.webhook import close_webhook

        pipeline = build_pipeline(cfg)
        pipeline.warmup()
        monitor = (
            build_monitor(
                cfg,
                pipeline,
                source_name=source.name,
                fps=source.fps,
                live=source.is_live,
                frame_count=source.frame_count,
            )
            if tracking
            else None
        )
        process = monitor if monitor is not None else pipeline
        stats = RunStats()
        stop = threading.Event()
        with contextlib.ExitStack() as stack:
            sinks = []
            if output is not None:
                if isinstance(output, VideoSink):  # encode on a second core, beside the next frame's detection
                    output = BackgroundSink(output)
                sinks.append(stack.enter_context(output))
            if args.detections is not None:
                sinks.append(stack.enter_context(JsonLinesSink(args.detections)))
            event_outputs, webhook = build_event_outputs(cfg, args.events, stack, tracking=monitor is not None)
            sinks += event_outputs
            if bind is not None:
                view = build_web_view(cfg, bind, status=lambda: run_status(source, stats, process))
                sinks.append(stack.enter_context(view.start()))
            if args.show:
                sinks.append(stack.enter_context(WindowSink(f"maskwatch: {source.name}")))
            received = stack.enter_context(stop_on_signals(stop))
            logger.info(
                f"running on {source.name} ({'live' if source.is_live else 'file'}, {runtime_label(cfg)}"
                f"{', tracking' if monitor else ''})"
            )
            run(
                source,
                process,
                sinks,
                build_renderer(cfg),
                stop=stop,
                progress=not args.no_progress and sys.stderr.isatty(),
                stats=stats,
                summary=process.summary_line,
                **run_settings(cfg),
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
