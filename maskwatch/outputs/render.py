"""Overlay renderer: colour-coded face boxes with labels, a source's zones and counting lines, and a small HUD."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import cv2
import numpy as np

from maskwatch.monitor.lines import CountingLine
from maskwatch.monitor.zones import ZoneSet
from maskwatch.types import (
    NO_TRACK,
    UNDECIDED,
    UNDECIDED_KEY,
    ColorKey,
    FaceDetections,
    FrameResult,
    MaskClass,
    default_colors,
)

REFERENCE_SHORT_SIDE = 480
"""``thickness`` and ``font_scale`` are what a frame with this short side gets; others are scaled to match."""
SCALE_BOUNDS = (0.5, 5.0)
HUD_MAX_HEIGHT = 0.12
"""The HUD strip never covers more than this share of the frame height (nor more than its width)."""
MIN_FONT_SCALE = 0.25

DEFAULT_COLORS: dict[ColorKey, tuple[int, int, int]] = default_colors()
"""Box colours by class name (see :class:`~maskwatch.types.MaskClass`)."""
ZONE_COLORS = {"watch": (255, 220, 0), "ignore": (170, 90, 170)}
"""Outline colours (B, G, R) of the zones by mode: cyan for watch, muted violet for ignore."""
LINE_COLOR = (0, 230, 255)
"""Counting lines are drawn yellow, with an arrow pointing to their inside."""
DIM_TOWARD, DIM_KEEP = 100, 0.4
"""A face outside the zones is drawn in its colour mixed with grey ``DIM_TOWARD``, keeping ``DIM_KEEP`` of it."""


def dimmed(color: tuple[int, int, int]) -> tuple[int, int, int]:
    """``color`` faded toward grey: how a face that does not count (outside the zones) is drawn."""
    first, second, third = (round(DIM_KEEP * c + (1 - DIM_KEEP) * DIM_TOWARD) for c in color)
    return first, second, third


def blur_boxes(image: np.ndarray, xyxy: np.ndarray) -> np.ndarray:
    """A copy of ``image`` with every box (N, 4) pixelated and blurred beyond recognition."""
    out = image.copy()
    h, w = out.shape[:2]
    for x1, y1, x2, y2 in np.asarray(xyxy, np.float32).reshape(-1, 4):
        # grow the box a little so hair line and chin are covered too
        mx, my = 0.1 * (x2 - x1), 0.1 * (y2 - y1)
        a, b = max(int(x1 - mx), 0), max(int(y1 - my), 0)
        c, d = min(int(np.ceil(x2 + mx)), w), min(int(np.ceil(y2 + my)), h)
        if c <= a or d <= b:
            continue
        region = out[b:d, a:c]
        small = cv2.resize(region, (max((c - a) // 12, 1), max((d - b) // 12, 1)), interpolation=cv2.INTER_AREA)
        coarse = cv2.resize(small, (c - a, d - b), interpolation=cv2.INTER_NEAREST)
        k = max(((min(c - a, d - b) // 4) | 1), 3)
        out[b:d, a:c] = cv2.GaussianBlur(coarse, (k, k), 0)
    return out


class OverlayRenderer:
    """Draws a :class:`FrameResult` onto a copy of its frame.

    Green = mask, red = no mask, amber = worn incorrectly, grey = no decided label (BGR colours configurable).
    Tracked faces are labelled with their person id and decided label (``#3 ...`` while undecided); a grey face
    without an id is one no person was made of: a face that never moved (a poster, a screen), or one not
    classified. ``blur_faces`` blurs every face first.

    ``zones`` are drawn as thin outlines with their names; faces that do not count in them are drawn dimmed and
    left out of the HUD's counts. ``lines`` are drawn with an arrow to their inside and the crossings so far (from
    the ``cross`` events of the frames drawn). A renderer with zones or lines belongs to one source.
    """

    def __init__(
        self,
        colors: Mapping[ColorKey, tuple[int, int, int]] | None = None,
        thickness: int = 2,
        font_scale: float = 0.5,
        hud: bool = True,
        blur_faces: bool = False,
        zones: ZoneSet | None = None,
        lines: Sequence[CountingLine] = (),
    ) -> None:
        self.colors = {**DEFAULT_COLORS, **(colors or {})}
        self.zones = zones if zones else None
        self.lines = tuple(lines)
        self._crossings: Counter[tuple[str, str]] = Counter()  # (line, direction) -> crossings planned so far
        self.blur_faces = blur_faces
        self.thickness = thickness
        self.font_scale = font_scale
        self.hud = hud

    def style_for(self, size_wh: tuple[int, int]) -> tuple[int, float]:
        """Line thickness and font scale for a frame of ``size_wh``: the configured values at a 480-px short side,
        scaled with the frame (a 4K frame gets lines and labels that stay readable when shown on a normal screen)."""
        factor = min(max(min(size_wh) / REFERENCE_SHORT_SIDE, SCALE_BOUNDS[0]), SCALE_BOUNDS[1])
        # lines never get thinner than configured (they hide nothing); text shrinks on small frames
        return max(1, round(self.thickness * max(factor, 1.0))), max(self.font_scale * factor, MIN_FONT_SCALE)

    def plan(self, result: FrameResult, fps: float | None = None) -> Overlay:
        """What ``result`` gets drawn on its frame, fixed now (the crossings counted so far included) and drawn
        later, by :meth:`Overlay.draw`, only where a frame is shown or written. Called for every frame, in order."""
        if self.lines:
            for event in result.events:
                if event.event == "cross" and event.line is not None and event.direction is not None:
                    self._crossings[(event.line, event.direction)] += 1
        return Overlay(self, result.faces, fps, dict(self._crossings) if self.lines else {})

    def annotate(self, result: FrameResult, fps: float | None = None) -> np.ndarray:
        """Return the annotated frame; the input frame is left untouched."""
        return self.plan(result, fps).draw(result.frame.image)

    def draw(self, overlay: Overlay, image: np.ndarray) -> np.ndarray:
        """``overlay`` drawn on a copy of ``image`` (its frame). Reads only the renderer's settings: safe from any
        thread."""
        faces = overlay.faces
        canvas = blur_boxes(image, faces.xyxy) if self.blur_faces else image.copy()
        scores = faces.class_score
        h, w = canvas.shape[:2]
        thickness, font_scale = self.style_for((w, h))
        counted = self.zones.counted(faces.xyxy, (w, h)) if self.zones is not None else np.ones(len(faces), bool)
        self._zones(canvas, thickness, font_scale)
        self._lines(canvas, overlay.crossings, thickness, font_scale)
        for i in range(len(faces)):
            x1, y1, x2, y2 = (int(round(v)) for v in faces.xyxy[i])
            cid = int(faces.class_id[i])
            label = None if cid == UNDECIDED else MaskClass(cid)
            color = self.colors[label.key if label is not None else UNDECIDED_KEY]
            color = color if counted[i] else dimmed(color)
            line_width = thickness if counted[i] else max(1, thickness // 2)
            cv2.rectangle(canvas, (x1, y1), (x2, y2), color, line_width, cv2.LINE_AA)
            tid = int(faces.track_id[i])
            texts: tuple[str, ...]
            if tid != NO_TRACK and label is not None:
                texts = (f"#{tid} {label.display} {scores[i]:.0%}", f"#{tid} {label.display}", f"#{tid}")
            elif tid != NO_TRACK:
                texts = (f"#{tid} ...", f"#{tid}")
            elif label is not None:
                texts = (f"{label.display} {scores[i]:.0%}", label.display)
            else:
                texts = (f"face {faces.det_score[i]:.0%}", "face")
            self._label(canvas, texts, (x1, y1, x2, y2), color, font_scale)
        if self.hud:
            self._hud(canvas, faces, overlay.fps, font_scale, counted)
        return canvas

    def _zones(self, canvas: np.ndarray, thickness: int, scale: float) -> None:
        """Each zone's outline (thin) and its name by its top corner."""
        if self.zones is None:
            return
        h, w = canvas.shape[:2]
        for zone in self.zones.zones:
            color = ZONE_COLORS[zone.mode]
            corners = np.round(zone.points * (w - 1, h - 1)).astype(np.int32)
            cv2.polylines(canvas, [corners], True, color, max(1, thickness // 2), cv2.LINE_AA)
            top = corners[np.lexsort((corners[:, 0], corners[:, 1]))[0]]
            name = zone.name if zone.mode == "watch" else f"{zone.name} (ignored)"
            below = max(int(top[1]), round(HUD_MAX_HEIGHT * h) if self.hud else 0)  # inside, clear of the HUD
            _text(canvas, name, (int(top[0]) + 4, below + round(30 * scale)), color, scale)

    def _lines(self, canvas: np.ndarray, crossings: Mapping[tuple[str, str], int], thickness: int,
               scale: float) -> None:  # fmt: skip
        """Each counting line, an arrow from its middle to its inside, its name and crossings in / out so far."""
        if not self.lines:
            return
        h, w = canvas.shape[:2]
        for line in self.lines:
            a = np.array(line.start) * (w - 1, h - 1)
            b = np.array(line.end) * (w - 1, h - 1)
            cv2.line(canvas, _pt(a), _pt(b), LINE_COLOR, thickness, cv2.LINE_AA)
            d = b - a
            normal = np.array([d[1], -d[0]]) / max(float(np.hypot(*d)), 1e-6)  # points to the left (y down)
            inward = normal if line.in_side == "left" else -normal
            middle = (a + b) / 2
            reach = 0.05 * min(w, h)
            cv2.arrowedLine(canvas, _pt(middle), _pt(middle + reach * inward), LINE_COLOR, thickness, cv2.LINE_AA,
                            tipLength=0.35)  # fmt: skip
            ins, outs = crossings.get((line.name, "in"), 0), crossings.get((line.name, "out"), 0)
            text = f"{line.name}: in {ins} out {outs}"
            (tw, th), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, _text_weight(scale))
            away = 0.5 * reach + abs(inward[0]) * tw / 2 + abs(inward[1]) * th / 2 + 4  # on the outside, clear of it
            centre = middle - away * inward
            _text(canvas, text, (round(centre[0] - tw / 2), round(centre[1] + th / 2)), LINE_COLOR, scale)

    def _label(self, canvas: np.ndarray, texts: tuple[str, ...], box: tuple[int, int, int, int], color,
               scale: float) -> None:  # fmt: skip
        """The first of ``texts`` (longest first) that fits the frame's width, outside the box: above it, else
        below it, else on the side with more room (a face filling a tiny frame), so it covers as little as can be."""
        font = cv2.FONT_HERSHEY_SIMPLEX
        weight = _text_weight(scale)
        h, w = canvas.shape[:2]
        for text in texts:
            (tw, th), base = cv2.getTextSize(text, font, scale, weight)
            if tw + 4 <= w:
                break
        x = min(max(box[0], 0), max(w - tw - 4, 0))
        tall = th + base + 2
        if box[1] - tall >= 0:
            y = box[1] - tall
        elif box[3] + 1 + tall <= h:
            y = box[3] + 1
        else:
            y = 0 if box[1] >= h - box[3] else max(h - tall, 0)
        cv2.rectangle(canvas, (x, y), (x + tw + 4, y + tall), color, cv2.FILLED)
        luminance = 0.114 * color[0] + 0.587 * color[1] + 0.299 * color[2]
        ink = (0, 0, 0) if luminance > 140 else (255, 255, 255)
        cv2.putText(canvas, text, (x + 2, y + th + 1), font, scale, ink, weight, cv2.LINE_AA)

    def _hud(
        self, canvas: np.ndarray, faces: FaceDetections, fps: float | None, scale: float, counted: np.ndarray
    ) -> None:
        """:func:`hud_text` in a dimmed strip at the top, shrunk (or left out) so it stays a small strip."""
        text = _hud_line(faces, fps, counted)
        font = cv2.FONT_HERSHEY_SIMPLEX
        h, w = canvas.shape[:2]
        weight = _text_weight(scale)
        (tw, th), base = cv2.getTextSize(text, font, scale, weight)
        pad = max(2, round(4 * scale / 0.5))
        fit = min(1.0, (w - 2 * pad) / max(tw, 1), (HUD_MAX_HEIGHT * h - 2 * pad) / max(th + base, 1))
        if fit < 1.0:
            scale *= fit
            if scale < MIN_FONT_SCALE:  # a tiny frame: no legible HUD fits in a small strip, so none is drawn
                return
            weight = _text_weight(scale)
            (tw, th), base = cv2.getTextSize(text, font, scale, weight)
        overlay = canvas[0 : th + base + 2 * pad, 0 : tw + 2 * pad]
        overlay[:] = (overlay * 0.4).astype(np.uint8)
        cv2.putText(canvas, text, (pad, th + pad), font, scale, (255, 255, 255), weight, cv2.LINE_AA)


def hud_text(result: FrameResult, fps: float | None, counted: np.ndarray | None = None) -> str:
    """The HUD's line: maskwatch's processing speed (not the video's frame rate) and the faces per class (those
    that ``counted`` marks, all when None)."""
    return _hud_line(result.faces, fps, counted)


def _hud_line(faces: FaceDetections, fps: float | None, counted: np.ndarray | None) -> str:
    counts = (faces if counted is None else faces[counted]).counts()
    parts = [f"processing {fps:.1f} fps"] if fps else []
    return "  ".join(parts + [f"{c.display}: {counts[c.key]}" for c in MaskClass])


def _pt(xy: np.ndarray) -> tuple[int, int]:
    return int(round(float(xy[0]))), int(round(float(xy[1])))


def _text(canvas: np.ndarray, text: str, origin: tuple[int, int], color: tuple[int, int, int], scale: float) -> None:
    """``text`` at ``origin`` (its baseline's left end, kept inside the frame) in ``color`` over a dark outline."""
    font, weight = cv2.FONT_HERSHEY_SIMPLEX, _text_weight(scale)
    (tw, th), base = cv2.getTextSize(text, font, scale, weight)
    h, w = canvas.shape[:2]
    x = min(max(origin[0], 0), max(w - tw - 1, 0))
    y = min(max(origin[1], th + 1), max(h - base - 1, th + 1))
    cv2.putText(canvas, text, (x, y), font, scale, (0, 0, 0), weight + 2, cv2.LINE_AA)
    cv2.putText(canvas, text, (x, y), font, scale, color, weight, cv2.LINE_AA)


def _text_weight(scale: float) -> int:
    """Stroke width that keeps Hershey text legible as it grows (1 px up to scale 0.8)."""
    return max(1, round(scale * 1.25))


@dataclass(frozen=True)
class Overlay:
    """What one frame gets drawn on it, as its renderer planned it when the frame was processed (its faces, the
    processing speed, each line's crossings so far): drawn later onto the frame, from any thread, any number of
    times (see :class:`~maskwatch.outputs.picture.Picture`)."""

    renderer: OverlayRenderer
    faces: FaceDetections
    fps: float | None = None
    crossings: Mapping[tuple[str, str], int] = field(default_factory=dict)

    def draw(self, image: np.ndarray) -> np.ndarray:
        """This overlay on a copy of ``image`` (the frame it was planned for, or a decoded copy of it)."""
        return self.renderer.draw(self, image)
