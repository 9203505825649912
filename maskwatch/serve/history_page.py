"""The HTTP view's history pages: ``/history`` (per-day and per-hour charts as inline SVG, with their numbers; no
script, no external file) and ``/history.json`` (the report of ``maskwatch report --json``). Both read the history
file through their own read-only connection, so they never wait on the run's writer."""

from __future__ import annotations

import html
import json
import time
from collections.abc import Callable
from datetime import date, timedelta, tzinfo
from pathlib import Path
from urllib.parse import urlencode

from maskwatch.errors import OutputError
from maskwatch.history.digest import percent, timeline
from maskwatch.history.query import By, history_report, local, parse_when
from maskwatch.serve.page import CSP
from maskwatch.serve.routes import HTML, Reply, Request

GREEN, RED, GREY, INK, GRID = "#3fb950", "#e5484d", "#8b949e", "#e6e6e6", "#2c3039"
STYLE = """body{margin:0;font:14px system-ui,sans-serif;background:#16181d;color:#e6e6e6}
header{padding:10px 16px;background:#20232b;display:flex;gap:12px;align-items:baseline}
h1{margin:0;font-size:20px} header span{color:#9aa4b2} nav{margin-left:auto;display:flex;gap:12px}
a{color:#9ecbff} main{padding:16px;max-width:1100px} h2{font-size:15px;margin:18px 0 6px}
section{background:#1d2027;border-radius:4px;padding:8px 12px;margin-bottom:16px}
table{border-collapse:collapse;font-size:13px;margin-top:6px} td,th{padding:2px 8px;text-align:right}
th{color:#9aa4b2;font-weight:600} td:first-child,th:first-child{text-align:left} tr.total td{font-weight:600}
.legend span{margin-right:14px} .sw{display:inline-block;width:10px;height:10px;margin-right:4px}
.bad{color:#ff8a8e}"""


def svg_chart(series: list[tuple[str, dict | None]], *, width: int = 1000, height: int = 260) -> str:
    """Stacked bars of the people first seen per period (compliant, unmasked, undecided), the compliance % as a
    line below them, and the alerts of a period above its bar, as one inline SVG."""
    n = max(len(series), 1)
    left, right, top, mid, bottom = 40, 10, 16, int(height * 0.62), height - 22
    bar_w = (width - left - right) / n
    rows = [r or {} for _, r in series]
    peak = max([1] + [r.get("people", 0) for r in rows])
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" role="img" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" font-size="10" fill="{INK}">'
    ]
    for value in sorted({0, peak // 2, peak}):
        y = mid - (mid - top) * value / peak
        out.append(f'<line x1="{left}" x2="{width - right}" y1="{y:.1f}" y2="{y:.1f}" stroke="{GRID}"/>')
        out.append(f'<text x="{left - 4}" y="{y + 3:.1f}" text-anchor="end">{value}</text>')
    low_top = mid + 14
    for pct in (0, 50, 100):
        y = bottom - (bottom - low_top) * pct / 100
        out.append(f'<line x1="{left}" x2="{width - right}" y1="{y:.1f}" y2="{y:.1f}" stroke="{GRID}"/>')
        out.append(f'<text x="{left - 4}" y="{y + 3:.1f}" text-anchor="end">{pct}%</text>')
    points: list[str] = []
    runs: list[list[str]] = []
    every = max(1, n // 12)
    for i, ((label, _), r) in enumerate(zip(series, rows, strict=True)):
        x = left + i * bar_w
        base = mid
        people, decided, unmasked = r.get("people", 0), r.get("decided", 0), r.get("unmasked", 0)
        parts = (
            (decided - unmasked, GREEN, "compliant"),
            (unmasked, RED, "unmasked"),
            (people - decided, GREY, "undecided"),
        )
        for count, color, name in parts:
            if count > 0:
                h = (mid - top) * count / peak
                tip = f"<title>{html.escape(label)}: {count} {name}</title>"
                out.append(
                    f'<rect x="{x + 1:.1f}" y="{base - h:.1f}" width="{max(bar_w - 2, 1):.1f}" height="{h:.1f}" '
                    f'fill="{color}">{tip}</rect>'
                )
                base -= h
        if r.get("alerts"):
            out.append(
                f'<text x="{x + bar_w / 2:.1f}" y="{base - 3:.1f}" text-anchor="middle" fill="{RED}">'
                f"!{r['alerts']}</text>"
            )
        if r.get("compliance") is not None:
            points.append(f"{x + bar_w / 2:.1f},{bottom - (bottom - low_top) * r['compliance']:.1f}")
        elif points:  # no one decided here: the line breaks
            runs.append(points)
            points = []
        if i % every == 0:
            short = label[11:16] if len(label) > 10 else label[5:]
            out.append(f'<text x="{x + 1:.1f}" y="{height - 6}">{html.escape(short)}</text>')
    for run in [*runs, points] if points else runs:
        out.append(f'<polyline points="{" ".join(run)}" fill="none" stroke="{GREEN}" stroke-width="2"/>')
        out += [f'<circle cx="{p.split(",")[0]}" cy="{p.split(",")[1]}" r="2.5" fill="{GREEN}"/>' for p in run]
    out.append("</svg>")
    return "".join(out)


def table(report: dict) -> str:
    names = (report["by"], "entries", "people", "unmasked", "alerts", "compliance")
    head = "<tr>" + "".join(f"<th>{name}</th>" for name in names) + "</tr>"
    body = []
    for p in [*report["periods"], report["total"]]:
        cls = ' class="total"' if p["period"] == "total" else ""
        bad = ' class="bad"' if p["unmasked"] else ""
        cells = (
            f"<td>{html.escape(p['period'])}</td><td>{p['entries']}</td><td>{p['people']}</td>"
            f"<td{bad}>{p['unmasked']}</td><td>{p['alerts']}</td><td>{percent(p['compliance'])}</td>"
        )
        body.append(f"<tr{cls}>{cells}</tr>")
    return f"<table>{head}{''.join(body)}</table>"


class HistoryPages:
    """The two pages over the history at ``path``; ``tz`` (None: local) and ``clock`` are replaceable in tests."""

    def __init__(self, path: Path, *, days: int = 30, tz: tzinfo | None = None, clock: Callable[[], float] = time.time):
        self.path, self.days, self.tz, self.clock = Path(path), days, tz, clock

    def mount(self, view) -> None:
        """Add ``/history`` and ``/history.json`` to a :class:`~maskwatch.serve.web.WebView`."""
        view.add_route("/history", self.page)
        view.add_route("/history.json", self.json)

    def _report(self, since: float, until: float, by: By) -> dict:
        from maskwatch.history.db import connect

        conn = connect(self.path, readonly=True, busy_timeout_s=2.0)
        try:
            return history_report(conn, since=since, until=until, by=by, tz=self.tz, path=self.path, now=self.clock())
        finally:
            conn.close()

    def _day(self, request: Request) -> date:
        text = request.arg("day")
        return date.fromisoformat(text) if text else local(self.clock(), self.tz).date()

    def json(self, request: Request) -> Reply:
        """``/history.json?by=hour|day&since=DATE&until=DATE`` (default: the last ``days`` days by day)."""
        try:
            by = request.arg("by", "day")
            if by not in ("hour", "day"):
                raise ValueError(f"by must be hour or day, not {by!r}")
            now = self.clock()
            since_text, until_text = request.arg("since"), request.arg("until")
            since = parse_when(since_text, tz=self.tz) if since_text else now - self.days * 86400.0
            until = parse_when(until_text, end=True, tz=self.tz) if until_text else now
            report = self._report(since, until, by)  # type: ignore[arg-type]
        except ValueError as exc:
            return Reply(json.dumps({"error": str(exc)}).encode(), "application/json", 400)
        except OutputError as exc:
            return Reply(json.dumps({"error": str(exc)}).encode(), "application/json", 503)
        return Reply(json.dumps(report).encode(), "application/json")

    def page(self, request: Request) -> Reply:
        """``/history?day=YYYY-MM-DD``: the last ``days`` days by day, and that day (default today) by hour."""
        try:
            day = self._day(request)
        except ValueError:
            return Reply(b"day must be YYYY-MM-DD\n", code=400)
        start = parse_when(day.isoformat(), tz=self.tz)
        end = parse_when(day.isoformat(), end=True, tz=self.tz)
        month_start = parse_when((day - timedelta(days=self.days - 1)).isoformat(), tz=self.tz)
        try:
            days, hours = self._report(month_start, end, "day"), self._report(start, end, "hour")
        except OutputError as exc:
            return self._document(f"<section><p>{html.escape(str(exc))}</p></section>", 503)

        def link(**query: str) -> str:  # relative: the login cookie goes with it, never a token in a URL
            return html.escape("?" + urlencode(query))

        nav = (
            f'<a href="{link(day=(day - timedelta(days=1)).isoformat())}">&larr; {day - timedelta(days=1)}</a>'
            f'<a href="{link(day=(day + timedelta(days=1)).isoformat())}">{day + timedelta(days=1)} &rarr;</a>'
            f'<a href="history.json{link(by="hour", since=str(day), until=str(day))}">JSON</a>'
        )
        legend = (
            f'<p class="legend"><span><i class="sw" style="background:{GREEN}"></i>compliant</span>'
            f'<span><i class="sw" style="background:{RED}"></i>unmasked</span>'
            f'<span><i class="sw" style="background:{GREY}"></i>undecided</span>'
            f"<span>! alerts</span><span>line: compliance %</span></p>"
        )
        note = (
            f"<p>Entries: {html.escape(days['entries_are'])}. People are counted in the period they were first seen. "
            f"Compliance: {html.escape(days['compliance_is'])}. Times: {html.escape(days['timezone'])}.</p>"
        )
        body = (
            f"<h2>Per day, {self.days} days to {day}</h2><section>{legend}"
            f"{svg_chart(timeline(days, month_start, end, 'day', self.tz))}{table(days)}</section>"
            f"<h2>Per hour, {day}</h2><section>{svg_chart(timeline(hours, start, end, 'hour', self.tz))}"
            f"{table(hours)}</section>{note}"
        )
        return self._document(body, 200, nav)

    def _document(self, body: str, code: int, nav: str = "") -> Reply:
        stamp = f"{local(self.clock(), self.tz):%Y-%m-%d %H:%M}"
        doc = (
            f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>maskwatch history</title>'
            f"<style>{STYLE}</style></head><body><header><h1>History</h1><span>{html.escape(self.path.name)}, "
            f'as of {stamp}</span><nav><a href="./">live view</a>{nav}</nav></header><main>{body}</main>'
            f"</body></html>"
        )
        return Reply(doc.encode(), HTML, code, {"Content-Security-Policy": CSP})
