"""Rendered clips of the video benchmark shot as a phone films a street: portrait 360x640, hand-held.

Imported by ``tools/make_video_bench.py`` (which renders them; ``--only r14_fast_profile r15_small_crowd_360``
builds just these). Two cases the landscape clips do not cover:

- ``r14_fast_profile``: an unmasked dancer (face 25-35 px) crossing the frame in 1.5 s, back and forth, whose head
  turns to profile part of the time; a masked man walks through the dancer's path; a masked woman stands.
- ``r15_small_crowd_360``: seven masked pedestrians with faces of 10-20 px and one unmasked one of about 20 px.

And two landscape clips of a change of mask state at a known frame (:func:`change_specs`): ``r16_mask_on`` and
``r17_mask_off``. The val split holds one man photographed with and without a mask in the same clothes and rooms;
his face is swapped from one photograph to the other at a known time while he walks on (as if he put the mask on,
or took it off, at once), so the truth's new label spell starts on the frame of the swap.

A profile is approximated from the person's own frontal sprite (val faces annotated in profile are few, small and
of other people): the head is taken as a vertical cylinder and turned about its axis (:func:`turned`), which
narrows the face, moves its centre towards the turn and hides the far cheek; the truth box is the visible face.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import cv2
import numpy as np
from make_video_bench import ClipSpec, Library, Shot, Sprite, Walker, _walk, make_sprite

from maskwatch.data.voc import AnnotatedImage

PORTRAIT_WH = (360, 640)
FACE_HALF_ANGLE = math.radians(70)
"""Half the arc of the head cylinder the face spans (its edges are at +-70 degrees from the nose)."""
PROFILE_YAW = 55.0
"""How far the dancer's head turns (degrees). Chosen so that the shipped detector finds the turned face at 30 px
about as often as the val split's real near-profile faces (boxes narrower than 0.65 of their height) scaled to
30 px: 7 of 11 of those, against 8 of 16 placings of this head at 55 degrees (12 at 50, 4 at 65, 16 frontal)."""


def turned(sprite: Sprite, yaw_deg: float) -> Sprite:
    """``sprite`` with the head turned by ``yaw_deg`` (positive: the nose moves to the image's right).

    The head is a vertical cylinder whose radius puts the face's edges at :data:`FACE_HALF_ANGLE`; an output
    column at ``u`` from the axis shows the surface point at angle ``asin(u / r) - yaw``. Where that point is turned
    out of view, the back of the head shows: the head's edge column, darkened like hair. Columns beyond the head
    are shifted to stay continuous. The face box
    becomes the visible arc of the face.
    """
    if abs(yaw_deg) < 0.5:
        return sprite
    yaw = math.radians(yaw_deg)
    x1, y1, x2, y2 = sprite.face
    axis = (x1 + x2) / 2
    r = (x2 - x1) / 2 / math.sin(FACE_HALF_ANGLE)
    h, w = sprite.bgr.shape[:2]
    u = np.arange(w, dtype=np.float32) - axis
    angle = np.arcsin(np.clip(u / r, -1.0, 1.0)) - yaw
    src = r * np.sin(np.clip(angle, -math.pi / 2, math.pi / 2))
    behind = np.where(np.abs(u) <= r, np.clip((np.abs(angle) - math.pi / 2) / 0.35, 0.0, 1.0), 0.0)
    right_edge = r * math.sin(min(max(math.pi / 2 - yaw, -math.pi / 2), math.pi / 2))
    left_edge = r * math.sin(min(max(-math.pi / 2 - yaw, -math.pi / 2), math.pi / 2))
    src = np.where(u > r, u - r + right_edge, src)
    src = np.where(u < -r, u + r + left_edge, src)
    map_x = np.repeat((src + axis)[None, :], h, axis=0).astype(np.float32)
    map_y = np.repeat(np.arange(h, dtype=np.float32)[:, None], w, axis=1)
    bgr = cv2.remap(sprite.bgr, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    alpha = cv2.remap(sprite.alpha, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
    bgr = (bgr * (1.0 - 0.7 * behind[None, :, None])).astype(np.uint8)  # the back of the head: dark hair
    lo = r * math.sin(max(-FACE_HALF_ANGLE + yaw, -math.pi / 2))
    hi = r * math.sin(min(FACE_HALF_ANGLE + yaw, math.pi / 2))
    return Sprite(bgr, alpha, (axis + lo, y1, axis + hi, y2), sprite.label)


def head_turns(keys: list[tuple[float, float]]) -> Callable[[Sprite, float], Sprite]:
    """A walker's pose: the head turned by the yaw of keyframes ``(t_s, yaw_deg)`` (linear between them)."""
    times = [k[0] for k in keys]
    yaws = [k[1] for k in keys]
    return lambda sprite, t: turned(sprite, float(np.interp(t, times, yaws)))


def scene_named(lib: Library, stem: str) -> AnnotatedImage:
    """The val scene whose image is ``stem`` (these clips need a street in the portrait window)."""
    return next(item for item in lib.items if item.image_path.stem == stem)


def crowd_sprites(lib: Library, label: str, picks: list[int]) -> list[Sprite]:
    """Faces of ``label`` cut from val scenes of three or more faces (different people, unlike the selfie series
    that many large faces come from): the ``picks``-th unused ones, largest first."""
    choices = [f for f in lib.sprites[label] if len(f[0].xyxy) >= 3 and (str(f[0].image_path), f[1]) not in lib.used]
    chosen = [choices[k] for k in picks]
    for item, j in chosen:
        lib.used.add((str(item.image_path), j))
    return [make_sprite(item, j) for item, j in chosen]


def in_view(scene: AnnotatedImage, cx: float, cy: float, zoom: float) -> Callable[[float, float], tuple[float, float]]:
    """Frame fractions -> scene fractions, for a portrait camera at ``(cx, cy, zoom)`` on ``scene``."""
    w, h = scene.size_wh
    scale = max(PORTRAIT_WH[0] / w, PORTRAIT_WH[1] / h) * zoom
    fw, fh = PORTRAIT_WH[0] / (w * scale), PORTRAIT_WH[1] / (h * scale)
    return lambda x, y: (cx + (x - 0.5) * fw, cy + (y - 0.5) * fh)


def _dance(view, t0: float, t1: float, cross_s: float, y: float, face_h: float):
    """Keyframes of someone crossing the frame (x 0.06 to 0.94) in ``cross_s``, back and forth, bouncing."""
    keys, t, k = [], t0, 0
    while t <= t1:
        x, bounce = (0.06 if k % 2 == 0 else 0.94), 0.02 * math.sin(2.3 * k)
        keys.append((t, *view(x, y + bounce), face_h * (1 + 0.08 * math.sin(1.7 * k))))
        keys.append((t + 0.25, *view(x, y), face_h))  # a beat at each end before turning back
        t, k = t + 0.25 + cross_s, k + 1
    return keys


def fast_profile(lib: Library) -> ClipSpec:
    """``r14_fast_profile`` (see the module docstring)."""
    scene = scene_named(lib, "maksssksksss199")
    view = in_view(scene, 0.5, 0.55, 1.1)
    y = PROFILE_YAW  # turned towards the right for 2.2-4.6 s, the left for 7.0-9.4 s, turning in 0.4 s
    profile = head_turns([(0, 0), (2.2, 0), (2.6, y), (4.2, y), (4.6, 0), (7.0, 0), (7.4, -y), (9.0, -y), (9.4, 0)])
    dancer = Walker(1, lib.sprite("without_mask", skip=2), 0, [_dance(view, 0.3, 11.5, 1.5, 0.37, 27)], pose=profile)
    man, woman = lib.sprite("with_mask"), crowd_sprites(lib, "with_mask", [0])[0]
    return ClipSpec(
        "r14_fast_profile",
        12,
        [scene],
        [Shot(0, 0, [(0, 0.47, 0.55, 1.1), (6, 0.53, 0.52, 1.15), (12, 0.5, 0.55, 1.1)], shake_px=5.0)],
        [
            dancer,
            _walk(2, man, 2.5, 8.5, view(1.05, 0.4), view(-0.05, 0.36), (30, 31), phase=1.2),
            _walk(3, woman, 0, 12, view(0.36, 0.34), view(0.36, 0.34), (24, 24), phase=2.1),
        ],
        size_wh=PORTRAIT_WH,
    )


def small_crowd(lib: Library) -> ClipSpec:
    """``r15_small_crowd_360`` (see the module docstring)."""
    scene = scene_named(lib, "maksssksksss199")  # people far down the street have faces of this size
    view = in_view(scene, 0.6, 0.5, 1.0)
    lanes = [  # (t0, t1, frame x0, x1, face_h at start and end)
        (0.0, 9.0, -0.05, 1.05, 11, 12),
        (0.5, 11.0, 1.05, -0.05, 14, 15),
        (1.5, 12.5, 0.80, 0.30, 10, 16),
        (2.0, 9.0, -0.05, 1.05, 18, 19),
        (3.0, 13.5, 1.05, 0.05, 12, 13),
        (4.5, 11.0, -0.05, 0.90, 16, 16),
        (6.0, 14.0, 0.60, 0.45, 20, 11),
        (2.5, 13.5, 1.05, -0.05, 20, 21),  # the unmasked one
    ]
    sprites = [*crowd_sprites(lib, "with_mask", [0, 3, 8, 9, 12, 15, 17]), lib.sprite("without_mask", skip=1)]
    head_y = lambda face_h: 0.62 - 0.0095 * face_h  # noqa: E731  (the camera is above head height: nearer is higher)
    people = [
        _walk(pid, sp, t0, t1, view(x0, head_y(h0)), view(x1, head_y(h1)), (h0, h1), phase=0.9 * pid)
        for pid, sp, (t0, t1, x0, x1, h0, h1) in zip(range(1, 9), sprites, lanes, strict=True)
    ]
    return ClipSpec(
        "r15_small_crowd_360",
        14,
        [scene],
        [Shot(0, 0, [(0, 0.58, 0.5, 1.0), (14, 0.62, 0.5, 1.0)], shake_px=3.0)],
        people,
        size_wh=PORTRAIT_WH,
    )


CHANGE_AT_S = 5.0
"""When the man of the mask-change clips puts the mask on or takes it off (the first frame drawn with the new face)."""
SAME_MAN = {
    "without_mask": [("maksssksksss528", 0), ("maksssksksss218", 0)],
    "with_mask": [("maksssksksss546", 0), ("maksssksksss380", 0)],
}
"""The same man in the val split without and with a mask: (image stem, face index); pairs at the same index wear
the same clothes in the same room (a grey T-shirt; a striped shirt)."""


def face_named(lib: Library, stem: str, index: int) -> Sprite:
    """Face ``index`` of the val scene ``stem`` (shared with other clips: each clip is scored alone)."""
    return make_sprite(scene_named(lib, stem), index)


def changes_at(before: Sprite, after: Sprite, t_change: float) -> Callable[[Sprite, float], Sprite]:
    """A walker's pose: face ``before`` until ``t_change`` s, ``after`` from then on."""
    return lambda sprite, t: before if t < t_change else after


def change_specs(lib: Library) -> list[ClipSpec]:
    """``r16_mask_on`` (no mask, then a mask from :data:`CHANGE_AT_S`) and ``r17_mask_off`` (the reverse): one man
    walking slowly across a still camera's view, with a masked passer-by in ``r16``."""
    bare = [face_named(lib, *f) for f in SAME_MAN["without_mask"]]
    masked = [face_named(lib, *f) for f in SAME_MAN["with_mask"]]
    still = [Shot(0, 0, [(0, 0.5, 0.5, 1.0)])]
    on = _walk(1, bare[0], 0.3, 9.7, (0.12, 0.5), (0.85, 0.55), (72, 76))
    on.pose = changes_at(bare[0], masked[0], CHANGE_AT_S)
    off = _walk(1, masked[1], 0.3, 9.7, (0.88, 0.52), (0.15, 0.5), (74, 70), phase=0.8)
    off.pose = changes_at(masked[1], bare[1], CHANGE_AT_S)
    passer = _walk(
        2, crowd_sprites(lib, "with_mask", [2])[0], 5.5, 9.8, (1.05, 0.4), (-0.05, 0.45), (50, 55), phase=1.7
    )
    return [
        ClipSpec("r16_mask_on", 10, [lib.scene(59, max_faces=2)], still, [on, passer]),
        ClipSpec("r17_mask_off", 10, [lib.scene(67, max_faces=2)], still, [off]),
    ]


def portrait_specs(lib: Library) -> list[ClipSpec]:
    """The portrait street clips; they pick their faces after the landscape clips, so those keep theirs."""
    return [fast_profile(lib), small_crowd(lib)]
