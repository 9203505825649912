"""``run``'s outputs: checked before any model loads, then built per source (video, images, window) or shared by
every source (detections, event outputs, web view). One source and several take the same checks and wiring."""

from __future__ import annotations

import argparse
import contextlib
from collections.abc import Callable, Sequence
from pathlib import Path

from maskwatch.capture.base import Source
from maskwatch.commands.options import report_prefix
from maskwatch.config import Config
from maskwatch.errors import OutputError, UsageError
from maskwatch.media import VIDEO_SUFFIXES
from maskwatch.outputs.background import BackgroundSink
from maskwatch.outputs.sinks import JsonLinesSink, Sink, VideoSink, WindowSink, check_writable
from maskwatch.runner.lane import Lane
from maskwatch.runner.status import RunStatus
from maskwatch.wiring.outputs import (
    build_clip_sink,
    build_event_outputs,
    build_output_sink,
    build_video_sink,
    build_web_view,
)


def check_outputs(args: argparse.Namespace, inputs: tuple[Path, ...], *, names: Sequence[str] | None) -> None:
    """Fail early (one line) on two outputs naming one file, an output that cannot be written or would overwrite an
    input; with several sources (``names``), ``--output`` must be a folder (one video per source)."""
    many = names is not None
    check_distinct(output_files(args, names))
    for path in (args.detections, args.events):
        if path is not None:
            check_writable(path, inputs)
    if many and args.output is not None:
        out = args.output
        if out.suffix.lower() in VIDEO_SUFFIXES or (out.exists() and not out.is_dir()):
            raise OutputError(f"--output {out} must be a folder with several sources (one video per source)")
        check_writable(out, inputs)
    prefix = report_prefix(args)
    if prefix is not None:
        check_writable(prefix.with_name(prefix.name + ".report.json"), inputs)


def check_clips_notify(cfg: Config) -> None:
    """Before any model loads, one line when: the clips folder cannot be made or written, apprise is not installed,
    or a notify URL is one it cannot use."""
    from maskwatch.outputs.clips import open_clip_folder
    from maskwatch.outputs.notify import load_apprise

    if cfg.clips.dir is not None:
        open_clip_folder(Path(cfg.clips.dir))
    if cfg.notify:
        load_apprise(cfg.notify)


def output_files(args: argparse.Namespace, names: Sequence[str] | None) -> list[tuple[str, Path]]:
    """(what, path) of every file or folder a run will write: ``--output``, ``--detections``, ``--events`` and the
    report's files (one set per source of ``names``, when several)."""
    from maskwatch.outputs.report import report_paths

    given = (("--output", args.output), ("--detections", args.detections), ("--events", args.events))
    files = [(flag, path) for flag, path in given if path is not None]
    prefix = report_prefix(args)
    if prefix is not None:
        what = "--report" if args.report is not None else "the report"
        prefixes = [prefix.with_name(f"{prefix.name}.{name}") for name in names] if names is not None else [prefix]
        files += [(f"{what} ({path.name})", path) for p in prefixes for path in report_paths(p)]
    return files


def check_distinct(files: Sequence[tuple[str, Path]]) -> None:
    """Refuse two outputs naming one file (after resolving ``..`` and links): one would destroy the other."""
    seen: dict[Path, str] = {}
    for what, path in files:
        key = path.resolve()
        if key in seen:
            raise UsageError(f"{seen[key]} and {what} name the same file ({path}): give each output its own path")
        seen[key] = what


def output_sinks(cfg: Config, args: argparse.Namespace, sources: Sequence[Source], *, many: bool) -> list[Sink | None]:
    """Each source's ``--output`` sink, not yet entered (None without ``--output``): one source writes the video or
    images named; several write ``OUTPUT/<source>.mp4`` each."""
    out = args.output
    if out is None:
        return [None for _ in sources]
    if many:
        out.mkdir(exist_ok=True)
        return [build_video_sink(cfg, out / f"{source.name}.mp4", source.fps) for source in sources]
    return [build_output_sink(cfg, out, sources[0])]


def wire_sinks(
    cfg: Config,
    args: argparse.Namespace,
    lanes: Sequence[Lane],
    outputs: Sequence[Sink | None],
    stack: contextlib.ExitStack,
    *,
    tracking: bool,
    many: bool,
    view_status: Callable[[], RunStatus],
    bind: tuple[str, int] | None,
):
    """Enter every sink on ``stack``: each lane's output and window, and the shared detections, web view and event
    outputs (one fan-out). Returns the shared sinks."""
    for lane, output in zip(lanes, outputs, strict=True):
        if output is not None:
            if not many and isinstance(output, VideoSink):  # encode on a second core, beside the next detection
                output = BackgroundSink(output, name=str(args.output))
            lane.sinks.append(output)
            stack.callback(output.close)
    if cfg.clips.dir is not None and tracking:  # alert clips: after the lane's own output, on their own thread
        for lane in lanes:
            lane.sinks.append(stack.enter_context(build_clip_sink(cfg, lane.source, lane.name)))
    shared: list[Sink] = []
    if args.detections is not None:
        shared.append(stack.enter_context(JsonLinesSink(args.detections)))
    view = None
    if bind is not None:
        names = [lane.name for lane in lanes] if many else None
        view = stack.enter_context(build_web_view(cfg, bind, status=view_status, sources=names).start())
    sources = [lane.name for lane in lanes]
    events = build_event_outputs(
        cfg, args.events, tracking=tracking, per_source=many, view=view, status=view_status, sources=sources
    )
    if events is not None:  # before the view: the view's frame then comes with its events already listed
        shared.append(stack.enter_context(events))
    if view is not None:
        shared.append(view)
    if args.show:
        for lane in lanes:
            lane.sinks.append(stack.enter_context(WindowSink(f"maskwatch: {lane.name}")))
    return shared
