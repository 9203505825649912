"""``maskwatch run --config cams.yaml`` without ``--source``: open every configured source, build the shared
pipeline, one Monitor per source and the shared sinks, and run them with :func:`maskwatch.runner.lanes.run_sources`."""

from __future__ import annotations

import threading
import time

from loguru import logger

from maskwatch.build import (
    build_event_outputs,
    build_monitor,
    build_pipeline,
    build_renderer,
    build_sources,
    build_video_sink,
    build_web_view,
    inference_workers,
    lanes_settings,
    runtime_label,
    source_files,
    tracking_enabled,
)
from maskwatch.outputs.sinks import Sink
from maskwatch.runner.lanes import Lane, run_sources, status


def run_many_command(args, cfg, bind: tuple[str, int] | None) -> int:
    """``maskwatch run --config cams.yaml`` without ``--source``: every configured source in this process."""
    import contextlib

    from maskwatch.commands.options import report_prefix
    from maskwatch.errors import OutputError
    from maskwatch.media import EXIT_OK, EXIT_SIGNAL, VIDEO_SUFFIXES
    from maskwatch.outputs.report import write_run_report
    from maskwatch.outputs.sinks import JsonLinesSink, check_writable
    from maskwatch.outputs.webhook import close_webhook
    from maskwatch.runner.signals import stop_on_signals

    tracking = tracking_enabled(cfg)
    if args.events is not None and not tracking:
        raise OutputError("--events needs tracking on (not --no-track)")
    files = source_files(cfg)
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
    sources = build_sources(cfg, realtime=args.realtime)
    stop = threading.Event()
    try:
        pipeline = build_pipeline(cfg)  # the models: only once inputs are checked
        workers = inference_workers(cfg, len(sources), show=args.show)
        pipeline.warmup()
        lanes = []
        share = -(-len(sources) // workers)  # sources per worker
        for source in sources:
            # a worker serves `share` sources: each may take 1/share of its frame interval before the detector strides
            fps = source.fps * share if source.is_live else source.fps
            monitor = build_monitor(
                cfg, pipeline, source_name=source.name, fps=fps, live=source.is_live, frame_count=source.frame_count
            )
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
                    video = build_video_sink(cfg, out_dir / f"{lane.name}.mp4", lane.source.fps)
                    lane.sinks.append(stack.enter_context(video))
            if args.show:
                from maskwatch.outputs.sinks import WindowSink

                for lane in lanes:
                    lane.sinks.append(stack.enter_context(WindowSink(f"maskwatch: {lane.name}")))
            started = time.monotonic()
            if bind is not None:
                view = build_web_view(
                    cfg, bind, status=lambda: status(lanes, started), sources=[lane.name for lane in lanes]
                )
                shared.append(stack.enter_context(view.start()))
            received = stack.enter_context(stop_on_signals(stop))
            logger.info(
                f"running {len(lanes)} sources ({', '.join(lane.name for lane in lanes)}; {runtime_label(cfg)}"
                f"{', tracking' if tracking else ''}): one shared pipeline, "
                f"{workers} inference thread(s)"
            )
            run_sources(
                lanes,
                shared,
                build_renderer(cfg),
                stop=stop,
                workers=workers,
                **lanes_settings(cfg),
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
