"""The report's compliance chart, drawn with OpenCV: people in view stacked by label over time, and compliance %
with the alerts marked. No plotting library: a run's start-up and install stay small."""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

WHITE, INK, GRID = (255, 255, 255), (40, 40, 40), (225, 225, 225)
FONT = cv2.FONT_HERSHEY_SIMPLEX


class Panel:
    """A plotting area inside ``canvas``: data coordinates -> pixels."""

    def __init__(self, canvas: np.ndarray, box: tuple[int, int, int, int], x_range, y_range) -> None:
        self.canvas, (self.x0, self.y0, self.x1, self.y1) = canvas, box
        self.xr, self.yr = (float(x_range[0]), float(x_range[1])), (float(y_range[0]), float(y_range[1]))

    def px(self, x: np.ndarray | float) -> np.ndarray:
        span = (self.xr[1] - self.xr[0]) or 1.0
        return np.round(self.x0 + (np.asarray(x, np.float64) - self.xr[0]) / span * (self.x1 - self.x0)).astype(int)

    def py(self, y: np.ndarray | float) -> np.ndarray:
        span = (self.yr[1] - self.yr[0]) or 1.0
        return np.round(self.y1 - (np.asarray(y, np.float64) - self.yr[0]) / span * (self.y1 - self.y0)).astype(int)

    def frame(self, y_label: str, y_ticks: Sequence[float]) -> None:
        """Grid lines and labels at ``y_ticks``, five time ticks, and the border."""
        for value in y_ticks:
            y = int(self.py(value))
            cv2.line(self.canvas, (self.x0, y), (self.x1, y), GRID, 1)
            cv2.putText(self.canvas, f"{value:g}", (self.x0 - 42, y + 5), FONT, 0.4, INK, 1, cv2.LINE_AA)
        for value in np.linspace(*self.xr, 5):
            x = int(self.px(value))
            cv2.line(self.canvas, (x, self.y0), (x, self.y1), GRID, 1)
            cv2.putText(self.canvas, f"{value:.0f}", (x - 10, self.y1 + 16), FONT, 0.4, INK, 1, cv2.LINE_AA)
        cv2.rectangle(self.canvas, (self.x0, self.y0), (self.x1, self.y1), INK, 1)
        cv2.putText(self.canvas, y_label, (self.x0 + 4, self.y0 - 6), FONT, 0.45, INK, 1, cv2.LINE_AA)

    def stack(self, t: np.ndarray, layers: np.ndarray, colors: Sequence[tuple[int, int, int]]) -> None:
        """Stacked step areas: ``layers`` (K, N) counts at times ``t`` (N), each held until the next time."""
        base = np.zeros(len(t))
        edges = np.append(t, t[-1] + (t[-1] - t[-2] if len(t) > 1 else 1.0))
        xs = self.px(edges)
        for layer, color in zip(layers, colors, strict=True):
            top = base + layer
            y_top, y_base = self.py(top), self.py(base)
            for i in np.flatnonzero(layer > 0):
                cv2.rectangle(self.canvas, (int(xs[i]), int(y_top[i])), (int(xs[i + 1]), int(y_base[i])), color, -1)
            base = top

    def line(self, x: np.ndarray, y: np.ndarray, color: tuple[int, int, int]) -> None:
        """A polyline through the finite points, broken where ``y`` is NaN."""
        ok = np.isfinite(y)
        points = np.stack([self.px(x), self.py(np.where(ok, y, 0))], axis=1)
        run: list[np.ndarray] = []
        for point, good in zip(points, ok, strict=True):
            if good:
                run.append(point)
            elif run:
                self._polyline(run, color)
                run = []
        if run:
            self._polyline(run, color)

    def _polyline(self, run: list[np.ndarray], color: tuple[int, int, int]) -> None:
        pts = np.array(run, np.int32).reshape(-1, 1, 2)
        cv2.polylines(self.canvas, [pts], False, color, 2, cv2.LINE_AA)
        if len(run) < 60:
            for p in run:
                cv2.circle(self.canvas, (int(p[0]), int(p[1])), 3, color, -1, cv2.LINE_AA)

    def vline(self, x: float, color: tuple[int, int, int]) -> None:
        """A dashed vertical line at time ``x``."""
        px = int(self.px(x))
        for y in range(self.y0, self.y1, 8):
            cv2.line(self.canvas, (px, y), (px, min(y + 4, self.y1)), color, 1)

    def note(self, text: str) -> None:
        size = cv2.getTextSize(text, FONT, 0.7, 1)[0]
        at = ((self.x0 + self.x1 - size[0]) // 2, (self.y0 + self.y1 + size[1]) // 2)
        cv2.putText(self.canvas, text, at, FONT, 0.7, INK, 1, cv2.LINE_AA)


def compliance_chart(
    title: str,
    t: np.ndarray,
    counts: np.ndarray,
    names: Sequence[str],
    colors: Sequence[tuple[int, int, int]],
    centers: np.ndarray,
    share: np.ndarray,
    alert_times: Sequence[float],
    alert_color: tuple[int, int, int],
    size: tuple[int, int] = (1000, 600),
) -> np.ndarray:
    """The chart as a BGR image: ``counts`` (K, N) people per label at times ``t`` (N) in the top panel, compliance
    ``share`` (%) at ``centers`` below, ``alert_times`` as dashed lines in both; "no people seen" when empty."""
    w, h = size
    canvas = np.full((h, w, 3), WHITE, np.uint8)
    cv2.putText(canvas, title, (60, 28), FONT, 0.6, INK, 1, cv2.LINE_AA)
    empty = len(t) == 0 or counts.size == 0 or counts.sum(axis=0).max() == 0
    start = float(t.min()) if len(t) else 0.0
    x_range = (start, float(t.max()) if len(t) and t.max() > start else start + 1.0)
    peak = 1.0 if empty else float(counts.sum(axis=0).max())
    top = Panel(canvas, (60, 60, w - 20, int(h * 0.55)), x_range, (0, peak * 1.1))
    bottom = Panel(canvas, (60, int(h * 0.55) + 40, w - 20, h - 40), x_range, (-5, 105))
    top.frame("people in view", np.unique(np.linspace(0, peak, min(int(peak), 4) + 1).round()).tolist())
    bottom.frame("compliance %", (0, 25, 50, 75, 100))
    cv2.putText(canvas, "time in source (s)", (w // 2 - 60, h - 8), FONT, 0.45, INK, 1, cv2.LINE_AA)
    if empty:
        top.note("no people seen")
        bottom.note("no people seen")
    else:
        top.stack(t, counts, colors)
        bottom.line(centers, share, colors[0])
        x = top.x0 + 8
        for name, color in zip(names, colors, strict=True):  # the legend
            cv2.rectangle(canvas, (x, top.y0 + 8), (x + 14, top.y0 + 20), color, -1)
            cv2.putText(canvas, name, (x + 18, top.y0 + 19), FONT, 0.4, INK, 1, cv2.LINE_AA)
            x += 30 + cv2.getTextSize(name, FONT, 0.4, 1)[0][0]
    for when in alert_times:
        top.vline(when, alert_color)
        bottom.vline(when, alert_color)
    return canvas
