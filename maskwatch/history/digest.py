"""The daily and weekly report files: Markdown and a PNG chart (drawn with OpenCV, as the end-of-run report's),
written atomically into the reports folder."""

from __future__ import annotations

import os
import sqlite3
import uuid
from datetime import timedelta, tzinfo
from pathlib import Path

import cv2
import numpy as np

from maskwatch.history.query import By, history_report, period_label, period_start
from maskwatch.history.schedule import ReportJob
from maskwatch.outputs.chart import FONT, INK, WHITE, Panel
from maskwatch.types import UNDECIDED_COLOR, MaskClass


def percent(share: float | None) -> str:
    return "n/a" if share is None else f"{share * 100:.1f} %"


def timeline(report: dict, t0: float, t1: float, by: By, tz: tzinfo | None) -> list[tuple[str, dict | None]]:
    """Every period from ``t0`` to ``t1`` in order, with the report's row for it (None when nothing happened)."""
    rows = {p["period"]: p for p in report["periods"]}
    out: list[tuple[str, dict | None]] = []
    step = timedelta(hours=1) if by == "hour" else timedelta(days=1)
    at = period_start(t0, by, tz)
    while at.timestamp() < t1 and len(out) < 5000:
        label = period_label(at, by)
        out.append((label, rows.get(label)))
        naive = at.replace(tzinfo=None) + step  # wall-clock steps: a day is a day across daylight saving
        at = naive.replace(tzinfo=tz) if tz is not None else naive.astimezone()
        at = period_start(at.timestamp(), by, tz)
    return out


def period_chart(title: str, series: list[tuple[str, dict | None]], size: tuple[int, int] = (1000, 600)) -> np.ndarray:
    """Top: people first seen per period, stacked (compliant, unmasked, undecided); bottom: compliance %, with the
    alerts of each period written under its bar."""
    w, h = size
    canvas = np.full((h, w, 3), WHITE, np.uint8)
    cv2.putText(canvas, title.encode("ascii", "replace").decode(), (60, 28), FONT, 0.6, INK, 1, cv2.LINE_AA)
    n = max(len(series), 1)
    rows = [r or {} for _, r in series]
    ok = np.array([r.get("decided", 0) - r.get("unmasked", 0) for r in rows], np.float64)
    bad = np.array([r.get("unmasked", 0) for r in rows], np.float64)
    undecided = np.array([r.get("people", 0) - r.get("decided", 0) for r in rows], np.float64)
    share = np.array([np.nan if r.get("compliance") is None else 100 * r["compliance"] for r in rows], np.float64)
    peak = max(1.0, float((ok + bad + undecided).max()) if len(rows) else 1.0)
    top = Panel(canvas, (60, 60, w - 20, int(h * 0.55)), (0, n), (0, peak * 1.1))
    bottom = Panel(canvas, (60, int(h * 0.55) + 40, w - 20, h - 40), (0, n), (-5, 105))
    for panel, name, ticks in (
        (top, "people first seen", np.unique(np.linspace(0, peak, min(int(peak), 4) + 1).round())),
        (bottom, "compliance %", np.array([0, 25, 50, 75, 100])),
    ):
        for value in ticks:
            y = int(panel.py(value))
            cv2.line(canvas, (panel.x0, y), (panel.x1, y), (225, 225, 225), 1)
            cv2.putText(canvas, f"{value:g}", (panel.x0 - 42, y + 5), FONT, 0.4, INK, 1, cv2.LINE_AA)
        cv2.rectangle(canvas, (panel.x0, panel.y0), (panel.x1, panel.y1), INK, 1)
        cv2.putText(canvas, name, (panel.x0 + 4, panel.y0 - 6), FONT, 0.45, INK, 1, cv2.LINE_AA)
    colors = [MaskClass.WITH_MASK.color, MaskClass.WITHOUT_MASK.color, UNDECIDED_COLOR]
    if len(rows):
        top.stack(np.arange(n, dtype=np.float64), np.stack([ok, bad, undecided]) * 1.0, colors)
        bottom.line(np.arange(n) + 0.5, share, MaskClass.WITH_MASK.color)
    every = max(1, n // 8)
    for i, (label, row) in enumerate(series):
        if i % every == 0:
            short = label[11:16] if len(label) > 10 else label[5:]
            cv2.putText(canvas, short, (int(top.px(i)) + 2, bottom.y1 + 16), FONT, 0.4, INK, 1, cv2.LINE_AA)
        if row and row.get("alerts"):
            cv2.putText(
                canvas,
                f"!{row['alerts']}",
                (int(top.px(i)) + 2, top.y1 + 14),
                FONT,
                0.35,
                MaskClass.WITHOUT_MASK.color,
                1,
                cv2.LINE_AA,
            )
    x = top.x0 + 8
    for name, color in zip(("compliant", "unmasked", "undecided"), colors, strict=True):
        cv2.rectangle(canvas, (x, top.y0 + 8), (x + 14, top.y0 + 20), color, -1)
        cv2.putText(canvas, name, (x + 18, top.y0 + 19), FONT, 0.4, INK, 1, cv2.LINE_AA)
        x += 30 + cv2.getTextSize(name, FONT, 0.4, 1)[0][0]
    return canvas


def digest_markdown(report: dict, title: str) -> str:
    """The report as Markdown: totals, then a table of its periods."""
    total = report["total"]
    lines = [f"# {title}", ""]
    lines.append(
        f"- Period: {report['since'][:16].replace('T', ' ')} to {report['until'][:16].replace('T', ' ')}, "
        f"{report['timezone']}"
    )
    lines.append(f"- Entries ({report['entries_are']}): {total['entries']}")
    lines.append(f"- People first seen: {total['people']} (decided {total['decided']})")
    lines.append(f"- Unmasked at some point (no mask, or worn incorrectly): {total['unmasked']}")
    lines.append(f"- Compliance: {percent(total['compliance'])} ({report['compliance_is']})")
    lines.append(f"- Alerts: {total['alerts']}")
    lines += ["", f"## By {report['by']}", ""]
    if not report["periods"]:
        lines.append("Nobody was seen.")
    else:
        lines += [
            f"| {report['by']} | entries | people | unmasked | alerts | compliance |",
            "|---|---|---|---|---|---|",
        ]
        for p in report["periods"]:
            cells = (p["period"], p["entries"], p["people"], p["unmasked"], p["alerts"], percent(p["compliance"]))
            lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    return "\n".join(lines) + "\n"


def atomic_write(path: Path, data: bytes) -> None:
    """Write ``data`` to a temporary file beside ``path`` and move it into place (a reader never sees half)."""
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_digest(conn: sqlite3.Connection, job: ReportJob, folder: Path, tz: tzinfo | None) -> list[Path]:
    """Write ``{kind}-{date}.md`` and ``.png`` for ``job`` into ``folder``; return their paths."""
    by: By = "hour" if job.kind == "daily" else "day"
    report = history_report(conn, since=job.start, until=job.end, by=by, tz=tz, now=job.end)
    title = f"maskwatch {job.kind} report: {job.day.isoformat()}"
    folder.mkdir(parents=True, exist_ok=True)
    md, png = folder / f"{job.stem}.md", folder / f"{job.stem}.png"
    text = digest_markdown(report, title)
    atomic_write(md, text.encode("utf-8"))
    image = period_chart(f"{title} ({report['timezone']})", timeline(report, job.start, job.end, by, tz))
    ok, data = cv2.imencode(".png", image)
    if ok:
        atomic_write(png, data.tobytes())
    return [md, png]
