"""End-of-run report: a JSON summary, a Markdown digest and a compliance chart, each written atomically."""

from __future__ import annotations

import json
import os
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

import numpy as np
from loguru import logger

from maskwatch.errors import OutputError
from maskwatch.media import scrub_url
from maskwatch.monitor.records import COMPLIANCE, PersonRecord, TimelinePoint, compliance, masked_share
from maskwatch.types import CLASS_NAMES, UNDECIDED_COLOR, UNDECIDED_KEY, MaskClass

MAX_TIMELINE_POINTS = 2000
MAX_MD_ALERTS = 100


def report_paths(prefix: Path) -> tuple[Path, Path, Path]:
    """The files a report at ``prefix`` writes: ``{prefix}.report.json``, ``.report.md`` and ``.compliance.png``."""
    name = prefix.name
    return (
        prefix.with_name(name + ".report.json"),
        prefix.with_name(name + ".report.md"),
        prefix.with_name(name + ".compliance.png"),
    )


def write_report(
    prefix: Path,
    *,
    source: str,
    summary: dict,
    people: list[PersonRecord],
    timeline: list[TimelinePoint],
    events: list[dict],
    crossings: dict[str, dict[str, dict[str, int]]] | None = None,
) -> list[Path]:
    """Write ``{prefix}.report.json``, ``{prefix}.report.md`` and ``{prefix}.compliance.png``; return their paths.

    ``summary`` is copied as is (frames, processing_fps, wall_s, dropped...). Alert times on the chart come from an
    event's ``t_s`` if present, else ``frame / summary["source_fps"]`` (the video's frame rate, where known).
    ``crossings`` (``{line: {"in": {label: n}, "out": {label: n}}}``, None without counting lines) adds them.
    """
    prefix = Path(prefix)
    source = scrub_url(source)
    report = build_report(
        source=source, summary=summary, people=people, timeline=timeline, events=events, crossings=crossings
    )
    json_path, md_path, png_path = report_paths(prefix)
    try:
        prefix.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot create report folder {prefix.parent}: {exc}") from exc
    text = json.dumps(report, indent=2, ensure_ascii=False, default=str) + "\n"
    _atomic_write(json_path, lambda tmp: tmp.write_text(text, encoding="utf-8", errors="backslashreplace"))
    markdown = render_markdown(report, events)
    _atomic_write(md_path, lambda tmp: tmp.write_text(markdown, encoding="utf-8", errors="backslashreplace"))
    alert_times = _alert_times(events, summary.get("source_fps"))
    _atomic_write(png_path, lambda tmp: _plot(tmp, source, timeline, alert_times))
    return [json_path, md_path, png_path]


def build_report(
    *,
    source: str,
    summary: dict,
    people: list[PersonRecord],
    timeline: list[TimelinePoint],
    events: list[dict],
    crossings: dict[str, dict[str, dict[str, int]]] | None = None,
) -> dict:
    """The JSON report as a dict (see :func:`write_report`); with ``crossings``, a ``lines`` entry per counting
    line: ``{"in": n, "out": n, "in_by_label": {...}, "out_by_label": {...}}``."""
    labels = Counter(p.label if p.label in CLASS_NAMES else None for p in people)
    counts = {name: labels.get(name, 0) for name in CLASS_NAMES}
    by_type = Counter(str(e.get("event")) for e in events)
    by_label = Counter(e.get("label") or "undecided" for e in events)
    return {
        "source": source,
        "summary": dict(summary),
        "people": {
            "total": len(people),
            **counts,
            "undecided": labels.get(None, 0),
            "unmasked": sum(1 for p in people if p.unmasked),
        },
        "compliance": _round(compliance(sum(counts.values()), sum(1 for p in people if p.unmasked))),
        "alerts": sum(p.alerts for p in people),
        "events": {"count": len(events), "by_type": dict(by_type), "by_label": dict(by_label)},
        "tracks": [asdict(p) for p in people],
        "timeline": [_timeline_json(p) for p in downsample(timeline, MAX_TIMELINE_POINTS)],
    } | ({"lines": _lines_json(crossings)} if crossings is not None else {})


def _lines_json(crossings: dict[str, dict[str, dict[str, int]]]) -> dict:
    return {
        name: {
            "in": sum(ways.get("in", {}).values()),
            "out": sum(ways.get("out", {}).values()),
            "in_by_label": dict(ways.get("in", {})),
            "out_by_label": dict(ways.get("out", {})),
        }
        for name, ways in crossings.items()
    }


def downsample(points: list, limit: int) -> list:
    """At most ``limit`` points evenly spread over ``points``, keeping the first and the last."""
    if len(points) <= limit:
        return list(points)
    keep = np.unique(np.linspace(0, len(points) - 1, limit).round().astype(int))
    return [points[i] for i in keep]


def render_markdown(report: dict, events: list[dict]) -> str:
    """A short human summary of ``report`` and a table of its alert events."""
    people, summary = report["people"], report["summary"]
    lines = [f"# maskwatch report: {report['source']}", ""]
    frames = summary.get("frames")
    if frames is not None:
        fps = summary.get("processing_fps")
        speed = f", processed at {_fmt(fps)} frames/s (maskwatch's speed)" if isinstance(fps, int | float) else ""
        lines.append(f"- Frames: {frames}{speed}")
    listed = ("frames", "processing_fps", "partial", "partial_reason")
    extra = {k: v for k, v in summary.items() if k not in listed}
    if extra:
        lines.append("- Run: " + ", ".join(f"{k} {_fmt(v)}" for k, v in extra.items()))
    if summary.get("partial"):
        lines.append(f"- Partial report: {summary.get('partial_reason') or 'the run did not cover its whole input'}")
    split = ", ".join(f"{c.description} {people[c.key]}" for c in MaskClass)
    lines.append(f"- People: {people['total']} ({split}, undecided {people['undecided']})")
    lines.append(f"- Unmasked at some point (no mask, or worn incorrectly): {people['unmasked']}")
    share = report["compliance"]
    lines.append(f"- Compliance: {'n/a' if share is None else f'{share * 100:.1f} %'} ({COMPLIANCE})")
    lines.append(f"- Alerts: {report['alerts']}")
    for name, line in report.get("lines", {}).items():
        ways = [f"{line[w]} {w} ({_by_label(line[f'{w}_by_label'])})" for w in ("in", "out")]
        lines.append(f"- Line {name}: {', '.join(ways)}")
    alerts = [e for e in events if e.get("event") == "alert"]
    lines += ["", "## Alerts", ""]
    if not alerts:
        lines.append("No alerts.")
    else:
        lines += ["| time | track | label | confidence |", "|---|---|---|---|"]
        for e in alerts[:MAX_MD_ALERTS]:
            when = f"{float(e['t_s']):.1f} s" if e.get("t_s") is not None else str(e.get("ts", ""))
            label = e.get("label")
            shown = _description(label)
            conf = e.get("confidence")
            conf_text = f"{float(conf):.2f}" if isinstance(conf, int | float) else ""
            cells = [when, str(e.get("track_id", "")), str(shown), conf_text]
            lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
        if len(alerts) > MAX_MD_ALERTS:
            lines += ["", f"… and {len(alerts) - MAX_MD_ALERTS} more"]
    return "\n".join(lines) + "\n"


def _by_label(counts: dict[str, int]) -> str:
    """``mask 2, no mask 1`` (readable names), ``none`` when empty."""
    return ", ".join(f"{_description(label)} {n}" for label, n in counts.items()) or "none"


def _timeline_json(p: TimelinePoint) -> dict:
    return {
        "t_s": round(float(p.t_s), 3),
        "in_view": p.in_view,
        "with_mask": p.with_mask,
        "without_mask": p.without_mask,
        "incorrect": p.incorrect,
        "undecided": p.undecided,
        "compliance": _round(masked_share(p.with_mask, p.without_mask, p.incorrect)),
    }


def _description(label: str | None) -> str:
    """The readable name of a class name (``mask worn incorrectly``), ``undecided`` for None."""
    if not label:
        return UNDECIDED_KEY
    try:
        return MaskClass.from_key(label).description
    except KeyError:
        return label


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


def _fmt(value: object) -> str:
    return f"{value:.1f}" if isinstance(value, float) else str(value)


def _alert_times(events: list[dict], fps: object) -> list[float]:
    """Seconds into the source of each alert event, where it can be told."""
    times = []
    for e in events:
        if e.get("event") != "alert":
            continue
        if e.get("t_s") is not None:
            times.append(float(e["t_s"]))
        elif isinstance(fps, int | float) and fps > 0 and e.get("frame") is not None:
            times.append(float(e["frame"]) / float(fps))
    return times


def _atomic_write(path: Path, write: Callable[[Path], object]) -> None:
    """Call ``write`` on a temporary file next to ``path`` and move it into place."""
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        write(tmp)
        os.replace(tmp, path)
    except OSError as exc:
        raise OutputError(f"cannot write report {path}: {exc}") from exc
    finally:
        tmp.unlink(missing_ok=True)


def _binned_compliance(timeline: list[TimelinePoint]) -> tuple[np.ndarray, np.ndarray]:
    """Compliance % per time bin of max(1 s, duration / 200), NaN where nobody was decided."""
    t = np.array([p.t_s for p in timeline], np.float64)
    ok = np.array([p.with_mask for p in timeline], np.float64)
    decided = ok + np.array([p.without_mask + p.incorrect for p in timeline], np.float64)
    start, duration = float(t.min()), float(t.max() - t.min())
    width = max(1.0, duration / 200.0)
    n_bins = int(duration // width) + 1
    idx = np.minimum(((t - start) / width).astype(int), n_bins - 1)
    ok_sum = np.bincount(idx, weights=ok, minlength=n_bins)
    decided_sum = np.bincount(idx, weights=decided, minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        share = np.where(decided_sum > 0, 100.0 * ok_sum / decided_sum, np.nan)
    centers = start + (np.arange(n_bins) + 0.5) * width
    return centers, share


def _plot(path: Path, source: str, timeline: list[TimelinePoint], alert_times: list[float]) -> None:
    """Two panels sharing time: people in view stacked by label, and compliance % with alert markers."""
    import cv2

    from maskwatch.outputs.chart import compliance_chart

    points = sorted(timeline, key=lambda p: p.t_s)
    t = np.array([p.t_s for p in points], np.float64)
    counts = np.array([[p.with_mask, p.without_mask, p.incorrect, p.undecided] for p in points], np.float64).T
    centers, share = _binned_compliance(points) if points else (np.zeros(0), np.zeros(0))
    image = compliance_chart(
        f"maskwatch: {Path(source).name or source}".encode("ascii", "replace").decode(),  # OpenCV draws ASCII
        t,
        counts.reshape(4, -1),
        (*(c.display for c in MaskClass), UNDECIDED_KEY),
        [*(c.color for c in MaskClass), UNDECIDED_COLOR],
        centers,
        share,
        alert_times,
        MaskClass.WITHOUT_MASK.color,
    )
    ok, data = cv2.imencode(".png", image)
    if not ok:
        raise OSError("PNG encoding failed")
    path.write_bytes(data.tobytes())


def partial_reason(source, stats) -> str | None:
    """Why a run's report covers only part of its input, or None when it covers all of it.

    ``interrupted``: a file (or ``--realtime`` file) stopped before its end (SIGINT/SIGTERM, the window closed); a
    camera or stream has no end, so a signal is how its run ends and its report is whole.
    ``truncated input (N of M frames)``: the file ended before the frame count its header announces.
    ``N frames lost to damage``: a damaged stretch of the file was skipped (the frames after it were processed).
    """
    reasons = []
    if stats.stopped_early and source.finite:
        reasons.append("interrupted")
    if source.truncated:
        reasons.append(f"truncated input ({stats.frames + stats.dropped} of {source.frame_count} frames)")
    if source.frames_lost:
        reasons.append(f"{source.frames_lost} frames lost to damage")
    return "; ".join(reasons) or None


def write_run_report(prefix: Path, source, stats, monitor) -> None:
    """Write the end-of-run report of a tracked run (``monitor``) next to ``prefix``.

    Its summary says ``partial`` (and ``partial_reason``, None when whole): see :func:`partial_reason`.
    """
    reason = partial_reason(source, stats)
    summary = {
        "frames": stats.frames,
        "wall_s": round(stats.wall_s, 2),
        "processing_fps": round(stats.fps, 2),
        "dropped": stats.dropped,
        "detect_every": monitor.stride.every,
        "stage_ms": {k: round(v, 2) for k, v in stats.stage_ms.items()},
        "partial": reason is not None,
        "partial_reason": reason,
    }
    if monitor.zones is not None:  # the people numbers count only those seen in these zones
        summary["zones"] = [f"{zone.name} ({zone.mode})" for zone in monitor.zones.zones]
    try:
        paths = write_report(
            prefix,
            source=source.name,
            summary=summary,
            people=list(monitor.people),
            timeline=monitor.timeline,
            events=[e.to_json() for e in monitor.events],
            crossings=monitor.lines.by_label() if monitor.lines is not None else None,
        )
    except OSError as exc:
        raise OutputError(f"cannot write the report {prefix}.report.*: {exc.strerror}") from None
    logger.info(f"report: {', '.join(str(p) for p in paths)}")
