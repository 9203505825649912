"""The ``maskwatch`` command line. User errors print one line and exit non-zero; bugs keep their traceback."""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

from loguru import logger

from maskwatch import __version__
from maskwatch.errors import MaskwatchError, OutputError

EXIT_OK, EXIT_ERROR, EXIT_USAGE = 0, 1, 2
EXIT_SIGNAL = {signal.SIGINT: 130, signal.SIGTERM: 143}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="maskwatch", description="Watch a camera or video and show who wears a mask.")
    parser.add_argument("--version", action="version", version=f"maskwatch {__version__}")
    parser.add_argument("--log-level", default=None, help="log level (default from config: INFO)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser("run", help="detect and classify faces in a camera, stream, video, image or folder")
    run.add_argument("--source", required=True, help="camera index (0), rtsp:// or http:// URL, video, image or folder")
    run.add_argument("--output", type=Path, help="annotated video (video input) or image / folder (image input)")
    run.add_argument("--show", action="store_true", help="show the annotated frames in a window (q quits)")
    run.add_argument("--detections", type=Path, help="write per-frame detections as JSON lines to this file")
    run.add_argument("--config", type=Path, help="YAML config (default: built-in defaults, see configs/default.yaml)")
    run.add_argument("--device", choices=["cpu", "cuda"], help="where the models run (default from config: cpu)")
    run.add_argument("--precision", choices=["int8", "fp32"], help="model precision (default from config)")
    run.add_argument("--no-progress", action="store_true", help="no progress bar")
    run.set_defaults(func=cmd_run)
    return parser


def _setup_logging(level: str) -> None:
    logger.remove()
    logger.add(sys.stderr, level=level, format="<green>{time:HH:mm:ss}</green> <level>{level: <7}</level> {message}")


@contextlib.contextmanager
def stop_on_signals(stop: threading.Event) -> Iterator[dict]:
    """SIGINT/SIGTERM set ``stop`` (the run drains and finalizes); a second signal aborts at once."""
    received: dict = {}

    def handler(signum, _frame):
        if stop.is_set() and received:
            raise KeyboardInterrupt
        received["signal"] = signum
        logger.warning(f"{signal.Signals(signum).name} received: stopping after the frames in flight")
        stop.set()

    previous = {s: signal.signal(s, handler) for s in EXIT_SIGNAL}
    try:
        yield received
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


def _output_sink(args: argparse.Namespace, source, cfg):
    from maskwatch.capture import ImageFilesSource, VideoFileSource
    from maskwatch.sinks import IMAGE_SUFFIXES, VIDEO_SUFFIXES, ImageSink, VideoSink, check_writable

    out: Path = args.output
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


def cmd_run(args: argparse.Namespace) -> int:
    from maskwatch.build import build_pipeline, build_renderer
    from maskwatch.capture import open_source
    from maskwatch.config import load_config
    from maskwatch.runner import run
    from maskwatch.sinks import JsonLinesSink, WindowSink, check_writable

    cfg = load_config(args.config, {"runtime.device": args.device, "runtime.precision": args.precision})
    if args.log_level is None:
        _setup_logging(cfg.logging.level)
    source = open_source(args.source, open_timeout_s=cfg.capture.open_timeout_s)
    try:
        if args.detections is not None:
            check_writable(args.detections, (Path(args.source),))
        output = _output_sink(args, source, cfg) if args.output is not None else None
        pipeline = build_pipeline(cfg)
        stop = threading.Event()
        with contextlib.ExitStack() as stack:
            sinks = []
            if output is not None:
                sinks.append(stack.enter_context(output))
            if args.detections is not None:
                sinks.append(stack.enter_context(JsonLinesSink(args.detections)))
            if args.show:
                sinks.append(stack.enter_context(WindowSink(f"maskwatch: {source.name}")))
            received = stack.enter_context(stop_on_signals(stop))
            logger.info(
                f"running on {source.name} ({'live' if source.is_live else 'file'}, {cfg.runtime.device}, "
                f"{cfg.runtime.precision})"
            )
            stats = run(
                source,
                pipeline,
                sinks,
                build_renderer(cfg),
                stop=stop,
                queue_size=cfg.capture.queue_size,
                live_queue_size=cfg.capture.live_queue_size,
                read_timeout_s=cfg.capture.read_timeout_s,
                status_interval_s=cfg.logging.status_interval_s,
                progress=not args.no_progress and sys.stderr.isatty(),
            )
    finally:
        source.close()
    counts = ", ".join(f"{k}={v}" for k, v in stats.counts.items())
    line = f"done: {stats.frames} frames in {stats.wall_s:.1f} s ({stats.fps:.1f} fps), {stats.faces} faces ({counts})"
    if source.is_live:
        ages = stats.age_percentiles()
        line += f", {stats.dropped} frames dropped"
        if ages:
            line += f", frame age median {ages['median_ms']:.0f} ms, p99 {ages['p99_ms']:.0f} ms"
    logger.info(line)
    skipped = getattr(source, "skipped", [])
    if skipped:
        logger.warning(f"{len(skipped)} unreadable image(s) skipped")
    if received.get("signal") is not None and not source.is_live:
        logger.warning(f"interrupted: {stats.frames} frames processed and written; outputs finalized")
        return EXIT_SIGNAL[received["signal"]]
    return EXIT_OK


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    _setup_logging((args.log_level or "INFO").upper())
    try:
        return args.func(args)
    except MaskwatchError as exc:
        logger.error(str(exc))
        return EXIT_ERROR
    except KeyboardInterrupt:
        logger.error("aborted")
        return EXIT_SIGNAL[signal.SIGINT]
