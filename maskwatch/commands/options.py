"""Command-line options shared by the commands: ``run``'s config overrides, the report prefix, and printing a
measurement with its ``--json`` file."""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Iterable
from pathlib import Path

from loguru import logger


def overrides(args: argparse.Namespace) -> dict:
    """The config keys set by ``run``'s flags (None: not given, the config decides)."""
    return {
        "runtime.device": args.device,
        "runtime.precision": args.precision,
        "runtime.engine": args.engine,
        "render.blur_faces": True if args.blur_faces else None,
        "alerts.snapshots": True if args.snapshots else None,
        "alerts.webhook": args.webhook,
        "http.bind": args.http,
        "http.token": args.http_token or os.environ.get("MASKWATCH_HTTP_TOKEN") or None,
        "tracking.detect_every": args.detect_every,
        "tracking.enabled": False if args.no_track else None,
        "history.path": str(args.history) if args.history is not None else None,
        "clips.dir": str(args.clips) if args.clips is not None else None,
        "notify": args.notify,
        "zones": zone_override(args.zone),
    } | mqtt_overrides(args.mqtt)


def zone_override(text: str | None) -> list[dict] | None:
    """``--zone "x1,y1 x2,y2 ..."`` as the top-level ``zones`` list (one watch zone named ``zone``)."""
    if text is None:
        return None
    from maskwatch.config.door import parse_points
    from maskwatch.errors import UsageError

    try:
        return [{"name": "zone", "polygon": parse_points(text), "mode": "watch"}]
    except ValueError as exc:
        raise UsageError(f"--zone: {exc}") from None


def mqtt_overrides(url: str | None) -> dict:
    """``--mqtt URL`` as ``mqtt.*`` config keys (host, port, prefix, username, password, tls for mqtts://)."""
    if url is None:
        return {}
    from maskwatch.errors import UsageError
    from maskwatch.outputs.mqtt_topics import parse_mqtt_url

    try:
        keys = parse_mqtt_url(url)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    return {f"mqtt.{key}": value for key, value in keys.items()}


def report_prefix(args: argparse.Namespace) -> Path | None:
    """Where the end-of-run report goes: ``--report`` as given, else next to the video output, else next to the
    events.

    An ``.mp4`` output drops its suffix (``out.mp4`` → ``out.report.json``); any other video keeps it
    (``out.mkv`` → ``out.mkv.report.json``), so outputs that differ only in their suffix never share a report.
    """
    from maskwatch.media import VIDEO_SUFFIXES

    if args.report is not None:
        return args.report
    if args.output is not None and args.output.suffix.lower() in VIDEO_SUFFIXES:
        return args.output.with_suffix("") if args.output.suffix.lower() == ".mp4" else args.output
    if args.events is not None:
        return args.events.with_suffix("")
    return None


def emit(lines: Iterable[str], result: dict, json_path: Path | None) -> int:
    """Print a measurement's summary ``lines`` and write ``result`` to ``json_path`` (``--json``) when given; exit 0."""
    for line in lines:
        print(line)
    if json_path is not None:
        json_path.write_text(json.dumps(result, indent=2) + "\n")
        logger.info(f"wrote {json_path}")
    return 0
