"""The ``run`` command: open the sources (``--source``, or every entry of the config's ``sources:``), build the
stages and sinks from the config, run them as lanes of one runner, report.

One source is the one-lane case of several: the same checks, wiring, signals, reports and exit status.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path

from loguru import logger

from maskwatch.capture.base import Source
from maskwatch.commands.options import overrides, report_prefix
from maskwatch.commands.run_outputs import check_clips_notify, check_outputs, output_sinks, wire_sinks
from maskwatch.config import Config, SourceConfig
from maskwatch.errors import ConfigError, OutputError, require
from maskwatch.media import EXIT_OK
from maskwatch.monitor.pipeline import FacePipeline
from maskwatch.runner.lane import Lane
from maskwatch.runner.signals import exit_status, stop_on_signals
from maskwatch.runner.status import log_done, view_status
from maskwatch.wiring import (
    build_monitor,
    build_pipeline,
    build_source,
    build_sources,
    configured_sources,
    inference_workers,
    log_level,
    run_settings,
    runtime_label,
    source_files,
    source_lines,
    source_zones,
    tracking_enabled,
)
from maskwatch.wiring.outputs import build_renderer, http_bind


def run_command(args: argparse.Namespace, setup_logging) -> int:
    """Everything ``maskwatch run`` does; user errors raise :class:`~maskwatch.errors.MaskwatchError`."""
    from maskwatch.config import load_config

    cfg = load_config(args.config, overrides(args))
    if args.log_level is None:
        setup_logging(log_level(cfg))
    if cfg.mqtt.host is not None:
        require("paho.mqtt.client")  # before any work: a missing extra is one line naming it
    check_clips_notify(cfg)
    bind = http_bind(cfg)
    entries = configured_sources(cfg)
    many = args.source is None
    if many and not entries:
        raise ConfigError("nothing to watch: give --source, or a config (--config) with a sources: list")
    if not many:
        from maskwatch.demo import resolve_source

        if entries:
            logger.info(f"--source given: the config's {len(entries)} sources are not used")
        args.source = resolve_source(args.source)  # "demo": the clip shipped in the package
    names = [entry.name for entry in entries] if many else None
    check_outputs(args, source_files(cfg) if many else (Path(args.source),), names=names)
    sources = (
        build_sources(cfg, realtime=args.realtime) if many else [build_source(cfg, args.source, realtime=args.realtime)]
    )
    stop = threading.Event()
    with contextlib.ExitStack() as held:  # the signal handlers stay until the reports are written
        try:
            lanes, received = _run(args, cfg, bind, sources, stop, held, many=many)
        finally:
            stop.set()
            for source in sources:
                source.close()
        return _finish(args, lanes, received, many=many)


def _run(args, cfg: Config, bind, sources: Sequence[Source], stop, held: contextlib.ExitStack, *, many: bool):
    """Build the stages and sinks, run every source to its end or ``stop``; returns the lanes and the signal seen
    (its handlers, installed once the sinks are open, stay on ``held``)."""
    from maskwatch.capture.sources import ImageFilesSource
    from maskwatch.runner.lanes import run_sources

    tracking = tracking_enabled(cfg) and not any(isinstance(s, ImageFilesSource) for s in sources)
    if args.events is not None and not tracking:
        raise OutputError("--events needs a video, camera or stream with tracking on (not images or --no-track)")
    outputs = output_sinks(cfg, args, sources, many=many)
    pipeline = build_pipeline(cfg)  # the models: only once inputs and outputs are checked
    workers = inference_workers(cfg, len(sources), show=args.show)
    pipeline.warmup()
    entries: Sequence[SourceConfig | None] = configured_sources(cfg) if many else [None]
    share = -(-len(sources) // workers)
    lanes = [
        _lane(cfg, pipeline, source, entry, tracking=tracking, share=share)
        for source, entry in zip(sources, entries, strict=True)
    ]
    started = time.monotonic()
    with contextlib.ExitStack() as stack:
        shared = wire_sinks(
            cfg,
            args,
            lanes,
            outputs,
            stack,
            tracking=tracking,
            many=many,
            view_status=lambda: view_status(lanes, started, per_source=many),
            bind=bind,
        )
        received = held.enter_context(stop_on_signals(stop))
        logger.info(_running_line(cfg, lanes, workers, tracking=tracking, many=many))
        progress = not args.no_progress and sys.stderr.isatty()
        settings = run_settings(cfg)
        run_sources(lanes, shared, build_renderer(cfg), stop=stop, workers=workers, progress=progress, **settings)
    return lanes, received


def _lane(
    cfg: Config, pipeline: FacePipeline, source: Source, entry: SourceConfig | None, *, tracking: bool, share: int
) -> Lane:
    """One source's lane: its monitor (tracking on) or the shared pipeline; ``entry``: its ``sources:`` entry
    (None for ``--source``), whose zones and lines it counts in (drawn by its own renderer)."""
    zones, lines = source_zones(cfg, entry), source_lines(cfg, entry)
    if not tracking:
        if zones or lines:
            logger.warning(f"{source.name}: zones and counting lines need tracking (a video, camera or stream)")
        return Lane(source.name, source, pipeline)
    # a worker serves `share` sources: each may take 1/share of its frame interval before the detector strides
    fps = source.fps * share if source.is_live else source.fps
    monitor = build_monitor(
        cfg,
        pipeline,
        source_name=source.name,
        fps=fps,
        live=source.is_live,
        frame_count=source.frame_count,
        zones=zones,
        lines=lines,
    )
    renderer = build_renderer(cfg, zones=zones, lines=lines) if zones or lines else None
    return Lane(source.name, source, monitor, summary=monitor.summary_line, renderer=renderer)


def _running_line(cfg: Config, lanes: Sequence[Lane], workers: int, *, tracking: bool, many: bool) -> str:
    track = ", tracking" if tracking else ""
    if not many:
        source = lanes[0].source
        return f"running on {source.name} ({'live' if source.is_live else 'file'}, {runtime_label(cfg)}{track})"
    names = ", ".join(lane.name for lane in lanes)
    return (
        f"running {len(lanes)} sources ({names}; {runtime_label(cfg)}{track}): one shared pipeline, "
        f"{workers} inference thread(s)"
    )


def _finish(args: argparse.Namespace, lanes: Sequence[Lane], received: dict, *, many: bool) -> int:
    """Log each source's closing line, write its report (tracked runs), and say how the run ended."""
    from maskwatch.monitor.monitor import Monitor
    from maskwatch.outputs.report import write_run_report

    prefix = report_prefix(args)
    for lane in lanes:
        log_done(lane.source, lane.stats, prefix=f"{lane.name}: " if many else "")
        if isinstance(lane.process, Monitor) and prefix is not None:
            path = prefix.with_name(f"{prefix.name}.{lane.name}") if many else prefix
            write_run_report(path, lane.source, lane.stats, lane.process)
    if received.get("signal") is not None and any(not lane.source.is_live for lane in lanes):
        frames = sum(lane.stats.frames for lane in lanes)
        logger.warning(f"interrupted: {frames} frames processed and written; outputs finalized")
        return exit_status(received["signal"])
    return EXIT_OK
