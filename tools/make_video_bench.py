"""Build the video benchmark of `maskwatch eval-video`: rendered clips from the annotated val scenes, plus real clips.

    python tools/make_video_bench.py [--data ../shared/data/facemask-voc] [--videos ../shared/data/videos]
                                     [--out bench-video] [--only CLIP ...] [--demo maskwatch/demo [--demo-only]]

Rendered clips: a val scene is the background, seen by a camera that pans, zooms, shakes or cuts to another scene;
its annotated faces never move in the scene, so they are the static faces (posters, screens). People are face
regions cut from other val scenes, animated across the scene (path, small changes of pose, scale and blur); their
truth boxes and labels follow from the VOC boxes; the portrait street clips are made in tools/bench_cases.py. Real
clips are ../shared/data/videos (one person each) and a concatenation of them, scored per person only (boxes
unknown). Everything is deterministic (fixed seeds). The layout is described in
maskwatch/commands/eval_video/truth.py and docs/video-benchmark.md.
"""

from __future__ import annotations

import argparse
import math
import shutil
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from maskwatch.commands.eval_video.truth import (
    MOT_PEDESTRIAN,
    MOT_STATIC_PERSON,
    PERSON,
    STATIC,
    BoxRow,
    Spell,
    write_clip,
)
from maskwatch.data.voc import AnnotatedImage, read_voc
from maskwatch.types import CLASS_NAMES

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
MIN_VISIBLE = 0.5
"""A face less visible than this (hidden, out of view) is an ignore region in gt.txt."""
STATIC_ID0 = 1000


MISSED_FACES: dict[str, list[tuple[tuple[float, float, float, float], str]]] = {
    "maksssksksss92": [
        ((31.9, 115.4, 46.6, 140.4), "without_mask"),
        ((75.6, 122.6, 96.7, 148.6), "with_mask"),
        ((160.1, 114.6, 177.5, 138.3), "with_mask"),
        ((269.1, 120.9, 279.6, 133.2), "without_mask"),
        ((255.5, 113.2, 265.7, 125.5), "with_mask"),
    ],
    "maksssksksss184": [
        ((308.9, 24.1, 323.4, 39.2), "with_mask"),
        ((278.7, 27.4, 293.7, 43.7), "with_mask"),
        ((231.9, 48.0, 252.2, 77.5), "with_mask"),
    ],
    "maksssksksss311": [((326.6, 34.5, 349.3, 56.4), "with_mask")],
}
"""Faces the VOC annotation of a scene misses (scene pixels, label by eye): found where the shipped detector kept
a track on the rendered clips that matched no truth, then checked by eye (a vest, a blurred patch and, in the demo,
the back of a head were not faces and are not here). They are static faces like the annotated ones; their labels
are not scored."""


def static_faces(item: AnnotatedImage) -> list[tuple[tuple[float, float, float, float], str]]:
    """The scene's fixed faces: its VOC boxes plus :data:`MISSED_FACES`."""
    pairs = zip(item.xyxy, item.class_id, strict=True)
    annotated = [(tuple(float(v) for v in box), CLASS_NAMES[int(c)]) for box, c in pairs]
    return annotated + MISSED_FACES.get(item.image_path.stem, [])  # type: ignore[return-value]


@dataclass
class Sprite:
    """A face region cut from a val image: BGR patch, soft alpha, the face box inside the patch, its label."""

    bgr: np.ndarray
    alpha: np.ndarray
    face: tuple[float, float, float, float]
    label: str


@dataclass
class Walker:
    """A person: visits of keyframes ``(t_s, x, y, face_h)`` (x, y in 0..1 of the scene, face_h in scene px);
    ``pose(sprite, t)``, when given, changes the face over time (a head turn: tools/bench_cases.py)."""

    pid: int
    sprite: Sprite
    scene: int
    visits: list[list[tuple[float, float, float, float]]]
    phase: float = 0.0
    pose: Callable[[Sprite, float], Sprite] | None = None

    def sprite_at(self, t: float) -> Sprite:
        """The face drawn at ``t`` (its label is the truth then: a pose may put a mask on or take it off)."""
        return self.sprite if self.pose is None else self.pose(self.sprite, t)

    def at(self, t: float) -> tuple[float, float, float] | None:
        """(x, y, face_h) at time ``t``, or None between visits."""
        for keys in self.visits:
            if keys[0][0] <= t <= keys[-1][0]:
                for a, b in zip(keys, keys[1:], strict=False):
                    if a[0] <= t <= b[0]:
                        u = (t - a[0]) / max(b[0] - a[0], 1e-6)
                        return tuple(a[i] + u * (b[i] - a[i]) for i in (1, 2, 3))  # type: ignore[return-value]
        return None


@dataclass
class Shot:
    """The camera on scene ``scene`` from ``t0``: keyframes ``(t_s, cx, cy, zoom)``, plus hand shake in pixels."""

    t0: float
    scene: int
    keys: list[tuple[float, float, float, float]]
    shake_px: float = 0.0


@dataclass
class ClipSpec:
    """What one rendered clip shows."""

    name: str
    seconds: float
    scenes: list[AnnotatedImage]
    shots: list[Shot]
    walkers: list[Walker]
    occluders: list[tuple[int, tuple[float, float, float, float]]] = field(default_factory=list)
    pictures: list[tuple[int, Sprite, float, float, float]] = field(default_factory=list)  # scene, sprite, x, y, face_h
    size_wh: tuple[int, int] = (640, 480)
    fps: float = 25.0


def _interp(keys: list[tuple[float, ...]], t: float) -> tuple[float, ...]:
    if t <= keys[0][0]:
        return keys[0][1:]
    for a, b in zip(keys, keys[1:], strict=False):
        if t <= b[0]:
            u = (t - a[0]) / max(b[0] - a[0], 1e-6)
            u = 0.5 - 0.5 * math.cos(math.pi * u)  # ease in and out, like a camera operator
            return tuple(x + u * (y - x) for x, y in zip(a[1:], b[1:], strict=True))
    return keys[-1][1:]


def make_sprite(item: AnnotatedImage, index: int, margin: float = 0.7) -> Sprite:
    """Cut face ``index`` of ``item`` with ``margin`` (of the face size) around it and a feathered ellipse alpha."""
    image = cv2.imread(str(item.image_path))
    x1, y1, x2, y2 = (float(v) for v in item.xyxy[index])
    w, h = x2 - x1, y2 - y1
    pad = int(math.ceil(max(w, h) * (margin + 0.2)))
    padded = cv2.copyMakeBorder(image, pad, pad, pad, pad, cv2.BORDER_REPLICATE)
    cx, cy = (x1 + x2) / 2 + pad, (y1 + y2) / 2 + pad
    half_w, half_h = w * (0.5 + margin), h * (0.5 + margin)
    px1, py1 = int(cx - half_w), int(cy - half_h)
    patch = padded[py1 : int(cy + half_h) + 1, px1 : int(cx + half_w) + 1].copy()
    alpha = np.zeros(patch.shape[:2], np.float32)
    center = (int(round(cx - px1)), int(round(cy - py1)))
    axes = (int(w * 0.5 * 1.45), int(h * 0.5 * 1.5))
    cv2.ellipse(alpha, center, axes, 0, 0, 360, 1.0, -1)
    alpha = cv2.GaussianBlur(alpha, (0, 0), max(w, h) * 0.08)
    face = (x1 + pad - px1, y1 + pad - py1, x2 + pad - px1, y2 + pad - py1)
    return Sprite(patch, alpha, face, CLASS_NAMES[int(item.class_id[index])])


class Renderer:
    """Renders a :class:`ClipSpec` frame by frame and records the truth rows."""

    def __init__(self, spec: ClipSpec) -> None:
        self.spec = spec
        w, h = spec.size_wh
        self.bases: list[tuple[np.ndarray, float]] = []
        for scene in spec.scenes:
            image = cv2.imread(str(scene.image_path))
            scale = max(w / image.shape[1], h / image.shape[0])
            size = (int(math.ceil(image.shape[1] * scale)), int(math.ceil(image.shape[0] * scale)))
            self.bases.append((cv2.resize(image, size, interpolation=cv2.INTER_CUBIC), scale))
        rng = np.random.default_rng(zlib.crc32(spec.name.encode()))
        self.shake_phase = rng.uniform(0, 2 * math.pi, size=6)

    def shot_at(self, t: float) -> Shot:
        return [s for s in self.spec.shots if s.t0 <= t][-1]

    def camera(self, t: float) -> tuple[int, float, float, float]:
        """(scene, scale, tx, ty): scene pixel (of the base image) -> frame pixel."""
        shot = self.shot_at(t)
        cx, cy, zoom = _interp(shot.keys, t)
        base, _ = self.bases[shot.scene]
        bh, bw = base.shape[:2]
        w, h = self.spec.size_wh
        s = max(zoom, 1.0)
        half_w, half_h = w / (2 * s), h / (2 * s)
        px = min(max(cx * bw, half_w), bw - half_w)
        py = min(max(cy * bh, half_h), bh - half_h)
        tx, ty = w / 2 - px * s, h / 2 - py * s
        if shot.shake_px > 0:
            p = self.shake_phase
            tx += shot.shake_px * (math.sin(7.1 * t + p[0]) + 0.5 * math.sin(17.3 * t + p[1]) + 0.3 * math.sin(29 * t))
            ty += shot.shake_px * (math.sin(6.3 * t + p[2]) + 0.5 * math.sin(13.7 * t + p[3]))
        return shot.scene, s, tx, ty

    def frame(self, t: float) -> tuple[np.ndarray, list[tuple[int, int, tuple, float, str, int]]]:
        """The image at ``t`` and its faces: (id, mot_class, xyxy clipped, visibility, label, kind index)."""
        w, h = self.spec.size_wh
        scene, s, tx, ty = self.camera(t)
        base, img_scale = self.bases[scene]
        m = np.float32([[s, 0, tx], [0, s, ty]])
        image = cv2.warpAffine(base, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
        owner = np.zeros((h, w), np.int32)  # draw rank of the layer on top of each pixel (0: the scene)
        faces: list[tuple[int, tuple[float, float, float, float], int]] = []  # (id, unclipped xyxy, rank)
        labels: dict[int, str] = {}
        for k, (box, label) in enumerate(static_faces(self.spec.scenes[scene])):
            x1, y1, x2, y2 = (float(v) * img_scale * s for v in box)
            faces.append((STATIC_ID0 + 100 * scene + k, (x1 + tx, y1 + ty, x2 + tx, y2 + ty), 0))
            labels[faces[-1][0]] = label
        for k, (pic_scene, sprite, x, y, face_h) in enumerate(self.spec.pictures):  # prints: fixed in the scene
            if pic_scene == scene:
                center = (x * base.shape[1] * s + tx, y * base.shape[0] * s + ty)
                box = _paste(image, sprite, center, face_h * s)
                faces.append((STATIC_ID0 + 100 * scene + 50 + k, box, 0))
                labels[faces[-1][0]] = sprite.label
        placed = []
        for walker in self.spec.walkers:
            where = walker.at(t) if walker.scene == scene else None
            if where is not None:
                placed.append((where[2], walker, where))
        placed.sort(key=lambda p: p[0])  # larger faces are nearer: drawn later
        for rank, (_, walker, (x, y, face_h)) in enumerate(placed, start=1):
            center = (x * base.shape[1] * s + tx, y * base.shape[0] * s + ty)
            box = self._draw(image, owner, rank, walker, t, center, face_h * s)
            faces.append((walker.pid, box, rank))
            labels[walker.pid] = walker.sprite_at(t).label
        for occ_scene, (ox1, oy1, ox2, oy2) in self.spec.occluders:
            if occ_scene == scene:
                bh, bw = base.shape[:2]
                p1 = (int(ox1 * bw * s + tx), int(oy1 * bh * s + ty))
                p2 = (int(ox2 * bw * s + tx), int(oy2 * bh * s + ty))
                _pillar(image, p1, p2)
                owner[max(p1[1], 0) : max(p2[1], 0), max(p1[0], 0) : max(p2[0], 0)] = 10_000
        rows = []
        for pid, box, rank in faces:
            vis = _visibility(owner, box, rank)
            clipped = (max(box[0], 0), max(box[1], 0), min(box[2], w), min(box[3], h))
            if clipped[2] - clipped[0] < 2 or clipped[3] - clipped[1] < 2:
                continue
            kind = STATIC if pid >= STATIC_ID0 else PERSON
            mot = MOT_STATIC_PERSON if kind == STATIC else MOT_PEDESTRIAN
            rows.append((pid, mot, clipped, vis, labels[pid], kind))
        return image, rows

    def _draw(self, image, owner, rank, walker: Walker, t: float, center, face_h_px: float):
        """Composite ``walker``'s face at ``center``, ``face_h_px`` tall (animated); returns its face box."""
        sp, ph = walker.sprite_at(t), walker.phase
        angle = 5.0 * math.sin(2 * math.pi * 0.35 * t + ph)
        cx, cy = center[0], center[1] + 3.0 * math.sin(2 * math.pi * 1.7 * t + ph)
        fx, fy = (sp.face[0] + sp.face[2]) / 2, (sp.face[1] + sp.face[3]) / 2
        fw, fh = sp.face[2] - sp.face[0], sp.face[3] - sp.face[1]
        k = face_h_px * (1 + 0.04 * math.sin(2 * math.pi * 0.6 * t + ph)) / fh
        a = cv2.getRotationMatrix2D((fx, fy), angle, k)
        a[0, 2] += cx - fx
        a[1, 2] += cy - fy
        w, h = self.spec.size_wh
        bgr = cv2.warpAffine(sp.bgr, a, (w, h), flags=cv2.INTER_LINEAR)
        alpha = cv2.warpAffine(sp.alpha, a, (w, h), flags=cv2.INTER_LINEAR)
        sigma = 0.4 + 1.0 * math.sin(2 * math.pi * 0.23 * t + ph) ** 2
        bgr = cv2.GaussianBlur(bgr, (0, 0), sigma)
        image[:] = (bgr * alpha[..., None] + image * (1 - alpha[..., None])).astype(np.uint8)
        owner[alpha > 0.5] = rank
        return (cx - fw * k / 2, cy - fh * k / 2, cx + fw * k / 2, cy + fh * k / 2)


def _paste(image: np.ndarray, sprite: Sprite, center, face_h_px: float) -> tuple[float, float, float, float]:
    """Composite ``sprite`` still (a print on the wall: no sway, no blur change) at ``center``; its face box."""
    fx, fy = (sprite.face[0] + sprite.face[2]) / 2, (sprite.face[1] + sprite.face[3]) / 2
    fw, fh = sprite.face[2] - sprite.face[0], sprite.face[3] - sprite.face[1]
    k = face_h_px / fh
    a = np.float64([[k, 0, center[0] - k * fx], [0, k, center[1] - k * fy]])
    h, w = image.shape[:2]
    bgr = cv2.warpAffine(sprite.bgr, a, (w, h), flags=cv2.INTER_LINEAR)
    alpha = cv2.warpAffine(np.ones(sprite.alpha.shape, np.float32), a, (w, h), flags=cv2.INTER_LINEAR)
    image[:] = (bgr * alpha[..., None] + image * (1 - alpha[..., None])).astype(np.uint8)
    return (center[0] - fw * k / 2, center[1] - fh * k / 2, center[0] + fw * k / 2, center[1] + fh * k / 2)


def _alike(sprites: list[Sprite]) -> list[Sprite]:
    """``sprites`` given the colours of the first (each Lab channel's mean and spread moved to the first's):
    people dressed and lit alike, whom a colour signature can hardly tell apart."""
    labs = [cv2.cvtColor(sp.bgr, cv2.COLOR_BGR2LAB).astype(np.float32) for sp in sprites]
    mean, std = labs[0].mean(axis=(0, 1)), labs[0].std(axis=(0, 1)) + 1e-3
    out = []
    for sp, lab in zip(sprites, labs, strict=True):
        moved = (lab - lab.mean(axis=(0, 1))) / (lab.std(axis=(0, 1)) + 1e-3) * std + mean
        bgr = cv2.cvtColor(np.clip(moved, 0, 255).astype(np.uint8), cv2.COLOR_LAB2BGR)
        out.append(Sprite(bgr, sp.alpha, sp.face, sp.label))
    return out


def _visibility(owner: np.ndarray, box: tuple[float, float, float, float], rank: int) -> float:
    """Share of ``box`` inside the frame and not covered by a layer drawn after rank ``rank``."""
    x1, y1, x2, y2 = (int(round(v)) for v in box)
    area = max(x2 - x1, 1) * max(y2 - y1, 1)
    h, w = owner.shape
    region = owner[max(y1, 0) : min(max(y2, 0), h), max(x1, 0) : min(max(x2, 0), w)]
    return float(np.sum(region <= rank)) / area if region.size else 0.0


def _pillar(image: np.ndarray, p1: tuple[int, int], p2: tuple[int, int]) -> None:
    """A shaded grey pillar (an occluder in front of everyone) between corners ``p1`` and ``p2``."""
    h, w = image.shape[:2]
    x1, y1, x2, y2 = max(p1[0], 0), max(p1[1], 0), min(p2[0], w), min(p2[1], h)
    if x2 <= x1 or y2 <= y1:
        return
    ramp = np.linspace(0.6, 1.0, x2 - x1, dtype=np.float32)[None, :, None]
    image[y1:y2, x1:x2] = (np.array([120, 125, 130], np.float32) * ramp).astype(np.uint8)


def render_clip(spec: ClipSpec, folder: Path) -> int:
    """Write ``folder/video.mp4`` and its truth; returns the number of frames."""
    folder.mkdir(parents=True, exist_ok=True)
    renderer = Renderer(spec)
    n = int(round(spec.seconds * spec.fps))
    writer = cv2.VideoWriter(str(folder / "video.mp4"), cv2.VideoWriter_fourcc(*"mp4v"), spec.fps, spec.size_wh)
    rows: list[BoxRow] = []
    spans: dict[int, list[list]] = {}  # pid -> its label spells [first, last, label, kind], a new one per change
    for i in range(n):
        image, faces = renderer.frame(i / spec.fps)
        writer.write(image)
        for pid, mot, box, vis, label, kind in faces:
            considered = kind == PERSON and vis >= MIN_VISIBLE
            rows.append(BoxRow(i + 1, pid, box, considered, mot, min(vis, 1.0)))
            if considered or kind == STATIC:
                own = spans.setdefault(pid, [])
                if not own or own[-1][2] != label:
                    own.append([i + 1, i + 1, label, kind])
                own[-1][1] = i + 1
    writer.release()
    spells = [Spell(pid, *span) for pid, own in sorted(spans.items()) for span in own]
    write_clip(
        folder,
        name=spec.name,
        video="video.mp4",
        fps=spec.fps,
        frames=n,
        size_wh=spec.size_wh,
        spells=spells,
        rows=rows,
    )
    return n


# the clips ---------------------------------------------------------------------------------------------------------
class Library:
    """The val scenes and face sprites, chosen deterministically."""

    def __init__(self, data: Path) -> None:
        self.items = read_voc(data, data / "splits" / "val.txt")
        self.sprites: dict[str, list[tuple[AnnotatedImage, int]]] = {name: [] for name in CLASS_NAMES}
        for item in self.items:
            for j, box in enumerate(item.xyxy):
                w, h = box[2] - box[0], box[3] - box[1]
                if min(w, h) >= 28 and 0.65 <= w / h <= 1.4:  # big enough, roughly frontal
                    self.sprites[CLASS_NAMES[int(item.class_id[j])]].append((item, j))
        for faces in self.sprites.values():
            faces.sort(key=lambda f: -float(f[0].xyxy[f[1]][3] - f[0].xyxy[f[1]][1]))
        self.used: set[tuple[str, int]] = set()

    def sprite(self, label: str, skip: int = 0) -> Sprite:
        """The next unused face of ``label`` (largest first)."""
        choices = [f for f in self.sprites[label] if (str(f[0].image_path), f[1]) not in self.used]
        item, j = choices[min(skip, len(choices) - 1)]
        self.used.add((str(item.image_path), j))
        return make_sprite(item, j)

    def scene(self, index: int, *, landscape=True, min_faces=1, max_faces=1000, unmasked=False) -> AnnotatedImage:
        """The ``index``-th val scene meeting the conditions (stable order: the split's)."""
        found = [
            it
            for it in self.items
            if (not landscape or it.size_wh[0] > it.size_wh[1])
            and min_faces <= len(it.xyxy) <= max_faces
            and (not unmasked or int(np.sum(it.class_id == 1)) >= 1)
        ]
        return found[index % len(found)]


def _walk(pid, sprite, t0, t1, start, end, face_h, scene=0, phase=0.0) -> Walker:
    return Walker(pid, sprite, scene, [[(t0, *start, face_h[0]), (t1, *end, face_h[1])]], phase)


def clip_specs(lib: Library) -> list[ClipSpec]:
    """The benchmark's rendered clips (each tests one thing; see docs/video-benchmark.md)."""
    still = [Shot(0, 0, [(0, 0.5, 0.5, 1.0)])]
    specs = [
        ClipSpec(
            "r01_static_cam",
            14,
            [lib.scene(3, unmasked=True)],
            still,
            [
                _walk(1, lib.sprite("without_mask"), 0.5, 9.5, (-0.1, 0.55), (1.1, 0.5), (70, 80)),
                _walk(2, lib.sprite("with_mask"), 4, 13.5, (1.1, 0.45), (-0.1, 0.5), (75, 75), phase=1.0),
            ],
        ),
        ClipSpec(
            "r02_pan_posters",
            16,
            [lib.scene(7, unmasked=True, min_faces=3)],
            [Shot(0, 0, [(0, 0.2, 0.5, 1.5), (8, 0.8, 0.5, 1.5), (16, 0.3, 0.45, 1.5)])],
            [_walk(1, lib.sprite("with_mask"), 1, 15, (0.0, 0.6), (1.0, 0.55), (45, 55))],
        ),
        ClipSpec(
            "r03_zoom",
            14,
            [lib.scene(11)],
            [Shot(0, 0, [(0, 0.5, 0.5, 1.0), (6, 0.45, 0.5, 1.8), (12, 0.5, 0.5, 1.0)])],
            [_walk(1, lib.sprite("without_mask"), 0.5, 13.5, (0.2, 0.4), (0.7, 0.6), (35, 60))],
        ),
        ClipSpec(
            "r04_shake",
            14,
            [lib.scene(15)],
            [Shot(0, 0, [(0, 0.5, 0.5, 1.25)], shake_px=6.0)],
            [
                _walk(1, lib.sprite("without_mask"), 0.5, 12, (0.15, 0.45), (0.85, 0.55), (60, 70)),
                _walk(2, lib.sprite("mask_weared_incorrect"), 2, 13.5, (0.9, 0.6), (0.2, 0.5), (65, 65), phase=2.0),
            ],
        ),
        ClipSpec(
            "r05_crossing",
            12,
            [lib.scene(19)],
            still,
            [
                _walk(1, lib.sprite("without_mask"), 0.5, 11.5, (-0.05, 0.5), (1.05, 0.5), (70, 70)),
                _walk(2, lib.sprite("with_mask"), 0.5, 11.5, (1.05, 0.52), (-0.05, 0.5), (85, 85), phase=1.5),
            ],
        ),
        ClipSpec(
            "r06_occlusion",
            14,
            [lib.scene(23)],
            still,
            [_walk(1, lib.sprite("without_mask"), 0.5, 13.5, (0.0, 0.5), (1.0, 0.5), (70, 70))],
            occluders=[(0, (0.44, 0.0, 0.58, 1.0))],
        ),
        ClipSpec(
            "r07_leave_return",
            18,
            [lib.scene(27)],
            still,
            [
                Walker(
                    1,
                    lib.sprite("without_mask"),
                    0,
                    [
                        [(0.5, 0.1, 0.5, 70), (4.5, 0.5, 0.5, 72), (6.0, 1.15, 0.5, 72)],
                        [(10.0, 1.15, 0.5, 72), (12.0, 0.6, 0.55, 75), (17.5, -0.15, 0.5, 70)],
                    ],
                )
            ],
        ),
        ClipSpec(
            "r08_cut_and_back",
            18,
            [lib.scene(31), lib.scene(35)],
            [
                Shot(0, 0, [(0, 0.45, 0.5, 1.2)]),
                Shot(6, 1, [(6, 0.5, 0.5, 1.0)]),
                Shot(10, 0, [(10, 0.5, 0.5, 1.2)]),
            ],
            [
                _walk(1, lib.sprite("without_mask"), 0.5, 17.5, (0.2, 0.5), (0.8, 0.55), (65, 70)),
                _walk(2, lib.sprite("with_mask"), 6, 10, (0.3, 0.5), (0.6, 0.5), (70, 70), scene=1),
            ],
        ),
        ClipSpec(
            "r09_group_pan",
            18,
            [lib.scene(39, min_faces=2)],
            [Shot(0, 0, [(0, 0.3, 0.5, 1.3), (9, 0.7, 0.5, 1.4), (18, 0.5, 0.5, 1.3)])],
            [
                _walk(1, lib.sprite("with_mask"), 0.5, 15, (0.0, 0.45), (1.0, 0.5), (50, 55)),
                _walk(2, lib.sprite("without_mask"), 2, 17, (1.0, 0.6), (0.0, 0.55), (55, 60), phase=0.7),
                _walk(3, lib.sprite("with_mask"), 4, 17.5, (0.2, 0.35), (0.9, 0.4), (45, 50), phase=1.9),
                _walk(4, lib.sprite("mask_weared_incorrect"), 6, 17.5, (0.8, 0.5), (0.3, 0.6), (50, 60), phase=2.6),
            ],
        ),
        ClipSpec(
            "r10_posters_only",
            10,
            [lib.scene(43, unmasked=True, min_faces=2)],
            [Shot(0, 0, [(0, 0.4, 0.5, 1.3), (5, 0.6, 0.5, 1.5), (10, 0.5, 0.5, 1.3)], shake_px=2.0)],
            [],
        ),
    ]
    from bench_cases import change_specs, portrait_specs  # it imports this module, so not at the top

    return specs + hard_specs(lib) + portrait_specs(lib) + change_specs(lib)


def hard_specs(lib: Library) -> list[ClipSpec]:
    """Clips for the cases a walking person does not test: people standing still from the first frame, a print
    of a face among people under a fixed camera, people dressed alike."""
    still = [Shot(0, 0, [(0, 0.5, 0.5, 1.0)])]
    stay = lambda pid, sprite, x, y, h, phase=0.0: _walk(pid, sprite, 0, 8, (x, y), (x, y), (h, h), phase=phase)  # noqa: E731
    alike = _alike([lib.sprite("without_mask", skip=2), lib.sprite("with_mask", skip=2)])
    return [
        ClipSpec(
            "r11_still_people",
            8,
            [lib.scene(47)],
            still,
            [
                stay(1, lib.sprite("without_mask", skip=1), 0.35, 0.5, 80),
                stay(2, lib.sprite("with_mask"), 0.7, 0.5, 75, 1.3),
            ],
        ),
        ClipSpec(
            "r12_picture_among_people",
            12,
            [lib.scene(51)],
            still,
            [
                _walk(1, lib.sprite("with_mask", skip=3), 0.5, 11.5, (-0.05, 0.55), (1.05, 0.5), (70, 75)),
                _walk(2, lib.sprite("without_mask", skip=3), 3, 11.5, (1.05, 0.6), (0.1, 0.55), (75, 75), phase=0.9),
            ],
            pictures=[(0, lib.sprite("without_mask", skip=4), 0.5, 0.3, 70)],
        ),
        ClipSpec(
            "r13_alike",
            14,
            [lib.scene(55)],
            still,
            [
                _walk(1, alike[0], 0.5, 6.5, (0.1, 0.5), (1.15, 0.5), (70, 72)),  # leaves to the right
                _walk(2, alike[1], 7.5, 13.5, (1.1, 0.52), (0.55, 0.5), (72, 72), phase=1.1),  # comes in, stops
            ],
        ),
    ]


def demo_spec(lib: Library) -> ClipSpec:
    """The short clip shipped in the package for ``maskwatch run --source demo``."""
    return ClipSpec(
        "demo",
        5,
        [lib.scene(6, min_faces=2, max_faces=4, unmasked=True)],
        [Shot(0, 0, [(0, 0.4, 0.5, 1.05), (5, 0.6, 0.5, 1.15)])],
        [
            _walk(1, lib.sprite("without_mask"), 0.2, 4.8, (0.05, 0.6), (0.75, 0.65), (55, 62)),
            _walk(2, lib.sprite("with_mask", skip=1), 0.5, 4.9, (0.95, 0.55), (0.3, 0.6), (52, 58), phase=1.0),
        ],
        size_wh=(480, 360),
        fps=15.0,
    )


# real clips -----------------------------------------------------------------------------------------------------
def _frames(path: Path) -> list[np.ndarray]:
    cap = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        frames.append(frame)
    cap.release()
    return frames


def _letterbox(image: np.ndarray, size_wh: tuple[int, int]) -> np.ndarray:
    w, h = size_wh
    scale = min(w / image.shape[1], h / image.shape[0])
    nw, nh = round(image.shape[1] * scale), round(image.shape[0] * scale)
    canvas = np.zeros((h, w, 3), np.uint8)
    x, y = (w - nw) // 2, (h - nh) // 2
    canvas[y : y + nh, x : x + nw] = cv2.resize(image, (nw, nh), interpolation=cv2.INTER_AREA)
    return canvas


def real_clips(videos: Path, out: Path, size_wh: tuple[int, int] = (640, 360), fps: float = 25.0) -> list[str]:
    """One clip per real video and a concatenation (nomask, gap, mask, gap, nomask again); boxes unknown."""
    label_of = {"mask": "with_mask", "nomask": "without_mask"}
    clips = {name: _frames(videos / f"{name}.mp4") for name in label_of}
    made = []
    for name, frames in clips.items():
        folder = out / f"v_{name}"
        folder.mkdir(parents=True, exist_ok=True)
        _write(folder / "video.mp4", [_letterbox(f, size_wh) for f in frames], fps, size_wh)
        spells = [Spell(1, 1, len(frames), label_of[name])]
        write_clip(
            folder, name=folder.name, video="video.mp4", fps=fps, frames=len(frames), size_wh=size_wh, spells=spells,
            rows=None,
        )  # fmt: skip
        made.append(folder.name)
    gap = [np.zeros((size_wh[1], size_wh[0], 3), np.uint8)] * int(3 * fps)
    parts = [("nomask", 1), ("mask", 2), ("nomask", 1)]
    frames, spells = [], []
    for n, (name, pid) in enumerate(parts):
        if n:
            frames += gap
        spells.append(Spell(pid, len(frames) + 1, len(frames) + len(clips[name]), label_of[name]))
        frames += [_letterbox(f, size_wh) for f in clips[name]]
    folder = out / "v_concat_return"
    folder.mkdir(parents=True, exist_ok=True)
    _write(folder / "video.mp4", frames, fps, size_wh)
    write_clip(
        folder, name=folder.name, video="video.mp4", fps=fps, frames=len(frames), size_wh=size_wh, spells=spells,
        rows=None,
    )  # fmt: skip
    return [*made, folder.name]


STILL_CLIPS = {  # name: (video, label, crop x0, y0, width, height in the source, output size)
    "v_still_nomask_portrait": ("nomask", "without_mask", 443, 0, 404, 720, (404, 720)),
    "v_still_nomask_landscape": ("nomask", "without_mask", 128, 0, 1024, 576, (640, 360)),
    "v_still_mask_portrait": ("mask", "with_mask", 248, 0, 227, 404, (404, 720)),
}
"""The real clips cut as a phone records a person standing still close to it: the first 3 s, cropped to the
person (portrait, or a landscape crop), from the first frame."""


def still_clips(videos: Path, out: Path, fps: float = 25.0, seconds: float = 3.0) -> list[str]:
    """The real videos as short close-up clips of a person standing still (``STILL_CLIPS``); boxes unknown."""
    made = []
    for name, (video, label, x, y, w, h, size_wh) in STILL_CLIPS.items():
        frames = [
            cv2.resize(f[y : y + h, x : x + w], size_wh, interpolation=cv2.INTER_AREA)
            for f in _frames(videos / f"{video}.mp4")[: int(seconds * fps)]
        ]
        folder = out / name
        folder.mkdir(parents=True, exist_ok=True)
        _write(folder / "video.mp4", frames, fps, size_wh)
        spells = [Spell(1, 1, len(frames), label)]
        write_clip(
            folder, name=name, video="video.mp4", fps=fps, frames=len(frames), size_wh=size_wh, spells=spells, rows=None
        )
        made.append(name)
    return made


def _write(path: Path, frames: list[np.ndarray], fps: float, size_wh: tuple[int, int]) -> None:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, size_wh)
    for frame in frames:
        writer.write(frame)
    writer.release()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=SHARED / "facemask-voc", help="Pascal VOC folder with splits/")
    parser.add_argument("--videos", type=Path, default=SHARED / "videos", help="folder of mask.mp4 and nomask.mp4")
    parser.add_argument("--out", type=Path, default=ROOT / "bench-video", help="benchmark folder (git-ignored)")
    parser.add_argument("--only", nargs="*", help="rendered clips to make (default: all, plus the real clips)")
    parser.add_argument("--demo", type=Path, help="also write the demo clip into this folder (maskwatch/demo)")
    parser.add_argument("--demo-only", action="store_true", help="write only the demo clip (with --demo)")
    args = parser.parse_args()
    lib = Library(args.data)
    specs = clip_specs(lib)
    unknown = sorted(set(args.only or []) - {spec.name for spec in specs})
    if unknown:
        parser.error(f"no rendered clip named {', '.join(unknown)} (see docs/video-benchmark.md)")
    demo = demo_spec(Library(args.data))  # its own pick of faces: the demo gets the sharpest
    for spec in specs:
        if args.demo_only or (args.only and spec.name not in args.only):
            continue
        if (args.out / spec.name).exists():
            shutil.rmtree(args.out / spec.name)
        n = render_clip(spec, args.out / spec.name)
        print(f"{spec.name}: {n} frames, {n / spec.fps:.0f} s")
    if not args.only and not args.demo_only and (args.videos / "mask.mp4").is_file():
        for name in real_clips(args.videos, args.out) + still_clips(args.videos, args.out):
            print(f"{name}: real clip, boxes unknown")
    if args.demo is not None:
        n = render_clip(demo, args.demo)
        (args.demo / "video.mp4").replace(args.demo / "demo.mp4")
        info = args.demo / "seqinfo.ini"
        info.write_text(info.read_text().replace("video=video.mp4", "video=demo.mp4"))
        size = (args.demo / "demo.mp4").stat().st_size
        print(f"demo: {n} frames, {size / 1e6:.2f} MB in {args.demo}")


if __name__ == "__main__":
    import make_video_bench  # run as the module tools/bench_cases.py imports, so both share its classes

    make_video_bench.main()
