"""The ``run`` command: open the source, build the stages and sinks from the config, run, report."""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

from loguru import logger

from maskwatch.config import Config
from maskwatch.errors import ConfigError, OutputError
from maskwatch.web import is_loopback

EXIT_OK = 0
EXIT_SIGNAL = {signal.SIGINT: 130, signal.SIGTERM: 143}


@contextlib.contextmanager
def stop_on_signals(stop: threading.Event) -> Iterator[dict]:
    """SIGINT/SIGTERM set ``stop`` (the run drains and finalizes); a second signal aborts at once."""
    received: dict = {}

    def handler(signum, _frame):
        if stop.is_set() and received:
            raise KeyboardInterrupt
        received["signal"] = signum
        stop.set()
        # loguru is not re-entrant: log from another thread, which waits if this one was inside a log call
        message = f"{signal.Signals(signum).name} received: stopping after the frames in flight"
        threading.Thread(target=logger.warning, args=(message,), name="maskwatch-signal", daemon=True).start()

    if threading.current_thread() is not threading.main_thread():  # e.g. inside a worker: signals are not ours
        yield received
        return
    previous = {s: signal.signal(s, handler) for s in EXIT_SIGNAL}
    try:
        yield received
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


def parse_bind(text: str) -> tuple[str, int]:
    """``HOST:PORT``, ``[v6]:PORT``, ``:PORT`` or ``PORT`` (host 127.0.0.1) → (host, port)."""
    text = text.strip()
    host, port = "127.0.0.1", text
    if text.startswith("["):
        host, _, port = text[1:].partition("]")
        port = port.removeprefix(":")
    elif ":" in text:
        host, _, port = text.rpartition(":")
        host = host or "127.0.0.1"
    if not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ConfigError(f"--http must be HOST:PORT (e.g. 127.0.0.1:8080), got '{text}'")
    return host, int(port)


def _output_sink(out: Path, source, cfg: Config):
    from maskwatch.capture import ImageFilesSource, RealtimeFileSource, VideoFileSource
    from maskwatch.sinks import IMAGE_SUFFIXES, VIDEO_SUFFIXES, ImageSink, VideoSink, check_writable

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


def _overrides(args: argparse.Namespace) -> dict:
    return {
        "runtime.device": args.device,
        "runtime.precision": args.precision,
        "render.blur_faces": True if args.blur_faces else None,
        "alerts.snapshots": True if args.snapshots else None,
        "alerts.webhook": args.webhook,
        "http.bind": args.http,
        "http.token": args.http_token or os.environ.get("MASKWATCH_HTTP_TOKEN") or None,
        "tracking.detect_every": args.detect_every,
        "tracking.enabled": False if args.no_track else None,
    }


def report_prefix(args: argparse.Namespace) -> Path | None:
    """Where the end-of-run report goes: ``--report``, else next to the video output, else next to the events."""
    from maskwatch.sinks import VIDEO_SUFFIXES

    if args.report is not None:
        return args.report
    if args.output is not None and args.output.suffix.lower() in VIDEO_SUFFIXES:
        return args.output.with_suffix("")
    if args.events is not None:
        return args.events.with_suffix("")
    return None


def run_command(args: argparse.Namespace, setup_logging) -> int:
    """Everything ``maskwatch run`` does; user errors raise :class:`~maskwatch.errors.MaskwatchError`."""
    from maskwatch.capture import ImageFilesSource, open_source
    from maskwatch.config import load_config
    from maskwatch.runner import RunStats, run
    from maskwatch.sinks import JsonLinesSink, WindowSink, check_writable

    cfg = load_config(args.config, _overrides(args))
    if args.log_level is None:
        setup_logging(cfg.logging.level)
    bind = parse_bind(cfg.http.bind) if cfg.http.bind else None
    if bind is not None and not is_loopback(bind[0]) and not cfg.http.token:
        raise ConfigError(f"--http on {bind[0]} serves beyond this machine: set --http-token (or MASKWATCH_HTTP_TOKEN)")
    if args.source is None:
        if not cfg.sources:
            raise ConfigError("nothing to watch: give --source, or a config (--config) with a sources: list")
        from maskwatch.multi_command import run_many_command

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
            build_monitor,
            build_pipeline,
            build_renderer,
        )

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
            event_outputs, webhook = event_sinks(cfg, args.events, stack, tracking=monitor is not None)
            sinks += event_outputs
            if bind is not None:
                from maskwatch.web import WebView

                view = WebView(
                    bind[0],
                    bind[1],
                    token=cfg.http.token,
                    status=lambda: _status(source, stats, monitor),
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
    _log_done(source, stats)
    if monitor is not None and prefix is not None:
        _write_report(prefix, source, stats, monitor)
    if received.get("signal") is not None and not source.is_live:
        logger.warning(f"interrupted: {stats.frames} frames processed and written; outputs finalized")
        return EXIT_SIGNAL[received["signal"]]
    return EXIT_OK


def event_sinks(cfg: Config, events: Path | None, stack: contextlib.ExitStack, *, tracking: bool, per_source=False):
    """The event outputs of a run: the ``--events`` log and the webhook (fed by the log, or directly without one).

    Returns (sinks, webhook or None); both are closed by ``stack``. ``per_source`` names alert snapshots
    ``<source>_<track>_<frame>.jpg`` (several sources share the log).
    """
    a = cfg.alerts
    sinks: list = []
    webhook = None
    if a.webhook:
        from maskwatch.webhook import Webhook

        webhook = stack.enter_context(Webhook(a.webhook, timeout_s=a.webhook_timeout_s, retries=a.webhook_retries))
    if events is not None:
        from maskwatch.events import EventLog

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
        sinks.append(_EventForwarder(webhook.send))
    return sinks, webhook


def close_webhook(webhook) -> None:
    """Deliver what the webhook still holds (bounded by its timeouts) and log what it did."""
    if webhook is None:
        return
    webhook.close()
    w = webhook.stats
    logger.info(f"webhook: {w.sent} sent ({w.retries} retries), {w.failed} failed, {w.dropped} dropped")


class _EventForwarder:
    """A sink that hands each event to a callable (the webhook when there is no events file)."""

    data_only = True
    takes_events = True

    def __init__(self, send) -> None:
        self.send = send

    def write(self, result, annotated) -> None:
        for event in result.events:
            self.send(event.to_json())

    def close(self) -> None:
        pass


def _status(source, stats, monitor) -> dict:
    """The live status dict of the HTTP view and /metrics."""
    import time

    status = {
        "source": source.name,
        "live": source.is_live,
        "uptime_s": round(time.monotonic() - stats.started, 1),
        "frames": stats.frames,
        "dropped": stats.dropped,
        "fps": round(stats.fps_now, 2),
        "stage_ms": {k: round(v, 2) for k, v in stats.stage_ms.items()},
        "outages": getattr(source, "outages", 0),
        "connected": getattr(source, "connected", True),
    }
    if monitor is not None:
        status.update(monitor.snapshot())
    return status


def _log_done(source, stats) -> None:
    counts = ", ".join(f"{k}={v}" for k, v in stats.counts.items())
    line = f"done: {stats.frames} frames in {stats.wall_s:.1f} s ({stats.fps:.1f} fps), {stats.faces} faces ({counts})"
    if source.is_live:
        ages = stats.age_percentiles()
        line += f", {stats.dropped} frames dropped"
        if ages:
            line += f", frame age median {ages['median_ms']:.0f} ms, p99 {ages['p99_ms']:.0f} ms"
        if getattr(source, "outages", 0):
            line += f", {source.outages} outage(s), {source.downtime_s:.0f} s down"
    logger.info(line)
    skipped = getattr(source, "skipped", [])
    if skipped:
        logger.warning(f"{len(skipped)} unreadable image(s) skipped")


def _write_report(prefix: Path, source, stats, monitor) -> None:
    from maskwatch.report import write_report

    summary = {
        "frames": stats.frames,
        "wall_s": round(stats.wall_s, 2),
        "fps": round(stats.fps, 2),
        "dropped": stats.dropped,
        "detect_every": monitor.stride.every,
        "stage_ms": {k: round(v, 2) for k, v in stats.stage_ms.items()},
    }
    try:
        paths = write_report(
            prefix,
            source=source.name,
            summary=summary,
            people=list(monitor.people),
            timeline=monitor.timeline,
            events=[e.to_json() for e in monitor.events],
        )
    except OSError as exc:
        raise OutputError(f"cannot write the report {prefix}.report.*: {exc.strerror}") from None
    logger.info(f"report: {', '.join(str(p) for p in paths)}")
