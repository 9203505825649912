"""``maskwatch run --config cams.yaml`` without ``--source``: open every configured source, build the shared
pipeline, one Monitor per source and the shared sinks, and run them with :func:`maskwatch.runner.lanes.run_sources`."""

from __future__ import annotations

import threading
import time

from loguru import logger

from maskwatch.errors import SourceError
from maskwatch.outputs.sinks import Sink
from maskwatch.runner.lanes import Lane, NamedSource, run_sources, status


def open_sources(entries, cfg, *, realtime: bool = False) -> list[NamedSource]:
    """Open every ``sources:`` entry (a :class:`~maskwatch.config.SourceConfig`); the first failure is one error
    naming the source, after closing the ones already open. Images and folders are refused (not live)."""
    from maskwatch.capture.sources import ImageFilesSource, open_source

    opened: list[NamedSource] = []
    try:
        for entry in entries:
            try:
                source = open_source(
                    entry.source,
                    open_timeout_s=cfg.capture.open_timeout_s,
                    realtime=realtime,
                    reconnect=cfg.capture.reconnect,
                    stall_s=cfg.capture.read_timeout_s,
                    max_backoff_s=cfg.capture.max_backoff_s,
                )
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


def inference_workers(n_sources: int, torch_threads: int, *, show: bool = False) -> int:
    """Threads that run the shared models: one per core, at most one per source (one with ``--show``: the window
    must be drawn from one thread). Unless ``runtime.threads`` is set, torch then gets cores / workers threads
    each: more oversubscribe the CPU (on 2 cores busy with other work, 2 torch threads took 0.8 s a frame where
    1 took 40-60 ms; see tools/bench_multicam.py and the README's "Many cameras")."""
    import os

    import torch

    cores = os.cpu_count() or 1
    workers = 1 if show else max(1, min(cores, n_sources))
    if torch_threads == 0:
        torch.set_num_threads(max(1, cores // workers))
    return workers


def run_many_command(args, cfg, bind: tuple[str, int] | None) -> int:
    """``maskwatch run --config cams.yaml`` without ``--source``: every configured source in this process."""
    import contextlib
    from pathlib import Path

    from maskwatch.commands.options import report_prefix
    from maskwatch.errors import OutputError
    from maskwatch.media import EXIT_OK, EXIT_SIGNAL, VIDEO_SUFFIXES
    from maskwatch.outputs.report import write_run_report
    from maskwatch.outputs.sinks import JsonLinesSink, VideoSink, check_writable
    from maskwatch.outputs.webhook import close_webhook
    from maskwatch.runner.signals import stop_on_signals

    tracking = cfg.tracking.enabled
    if args.events is not None and not tracking:
        raise OutputError("--events needs tracking on (not --no-track)")
    files = tuple(Path(e.source) for e in cfg.sources if not (e.source.isdigit() or "://" in e.source))
    for path in (args.detections, args.events):
        if path is not None:
            check_writable(path, files)
    out_dir = args.output
    if out_dir is not None:
        if out_dir.suffix.lower() in VIDEO_SUFFIXES or (out_dir.exists() and not out_dir.is_dir()):
            raise OutputError(f"--output {out_dir} must be a folder with several sources (one video per source)")
        check_writable(out_dir, files)
    prefix = report_prefix(args)
    if prefix is not None:
        check_writable(prefix.with_name(prefix.name + ".report.json"), files)
    sources = open_sources(cfg.sources, cfg, realtime=args.realtime)
    stop = threading.Event()
    try:
        from maskwatch.build import (  # torch: only once inputs are checked
            build_event_outputs,
            build_monitor,
            build_pipeline,
            build_renderer,
        )

        pipeline = build_pipeline(cfg)
        workers = inference_workers(len(sources), cfg.runtime.threads, show=args.show)
        pipeline.warmup()
        lanes = []
        share = -(-len(sources) // workers)  # sources per worker
        for source in sources:
            # a worker serves `share` sources: each may take 1/share of its frame interval before the detector strides
            fps = source.fps * share if source.is_live else source.fps
            monitor = build_monitor(cfg, pipeline, source_name=source.name, fps=fps, live=source.is_live)
            lanes.append(Lane(source.name, source, monitor if tracking else pipeline))
        with contextlib.ExitStack() as stack:
            shared: list[Sink] = []
            if args.detections is not None:
                shared.append(stack.enter_context(JsonLinesSink(args.detections)))
            event_outputs, webhook = build_event_outputs(cfg, args.events, stack, tracking=tracking, per_source=True)
            shared += event_outputs
            if out_dir is not None:
                out_dir.mkdir(exist_ok=True)
                for lane in lanes:
                    video = VideoSink(out_dir / f"{lane.name}.mp4", fps=lane.source.fps, fourcc=cfg.output.fourcc)
                    lane.sinks.append(stack.enter_context(video))
            if args.show:
                from maskwatch.outputs.sinks import WindowSink

                for lane in lanes:
                    lane.sinks.append(stack.enter_context(WindowSink(f"maskwatch: {lane.name}")))
            started = time.monotonic()
            if bind is not None:
                from maskwatch.serve.web import WebView

                view = WebView(
                    bind[0],
                    bind[1],
                    token=cfg.http.token,
                    status=lambda: status(lanes, started),
                    max_stream_fps=cfg.http.max_stream_fps,
                    sources=[lane.name for lane in lanes],
                )
                shared.append(stack.enter_context(view.start()))
            received = stack.enter_context(stop_on_signals(stop))
            logger.info(
                f"running {len(lanes)} sources ({', '.join(lane.name for lane in lanes)}; {cfg.runtime.device}, "
                f"{cfg.runtime.precision}{', tracking' if tracking else ''}): one shared pipeline, "
                f"{workers} inference thread(s)"
            )
            run_sources(
                lanes,
                shared,
                build_renderer(cfg),
                stop=stop,
                workers=workers,
                queue_size=cfg.capture.queue_size,
                read_timeout_s=cfg.capture.read_timeout_s,
                status_interval_s=cfg.logging.status_interval_s,
                summary_interval_s=cfg.logging.summary_interval_s,
            )
            close_webhook(webhook)
    finally:
        stop.set()
        for source in sources:
            source.close()
    for lane in lanes:
        s = lane.stats
        logger.info(
            f"{lane.name}: done, {s.frames} frames in {s.wall_s:.1f} s ({s.fps:.1f} fps), {s.dropped} dropped, "
            f"{s.faces} faces"
        )
        if tracking and prefix is not None:
            write_run_report(prefix.with_name(f"{prefix.name}.{lane.name}"), lane.source, s, lane.process)
    if received.get("signal") is not None and any(not source.is_live for source in sources):
        logger.warning("interrupted: the frames processed were written; outputs finalized")
        return EXIT_SIGNAL[received["signal"]]
    return EXIT_OK
