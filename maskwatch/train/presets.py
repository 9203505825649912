"""Named augmentation presets of the trainers, chosen with ``maskwatch train --preset NAME``.

Each kind of trainer has its own frozen dataclass; ``"default"`` is the recipe the shipped model was trained with.
The mask classifier's preset is its :class:`maskwatch.train.classifier_crops.Recipe`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, is_dataclass

from maskwatch.errors import MaskwatchError


@dataclass(frozen=True)
class RetinaFacePreset:
    """Augmentation of :func:`maskwatch.train.detector.augment` (RetinaFace)."""

    scale_jitter: tuple[float, float] = (0.6, 1.4)
    """Range of the random factor on the inference scale (longest side to the input size)."""
    closeup_prob: float = 0.25
    """Probability of a close-up: one face (at least ``closeup_min_face`` px) zoomed in to fill the crop."""
    closeup_fill: tuple[float, float] = (0.3, 0.95)
    """Range of the share of the crop's side that the close-up face fills."""
    closeup_min_face: float = 12.0
    flip_prob: float = 0.5
    photometric: bool = True
    """Random brightness, contrast, saturation and hue."""
    unmasked_weight: float = 1.0
    """How much more often a scene with an unmasked face is drawn (1: every scene once per epoch)."""
    small_face_matches: int = 0
    """At least this many anchors per face in training (S3FD's scale compensation; 0: IoU threshold + best)."""
    blank_prob: float = 0.0
    """Probability that a training crop is replaced by an empty frame (a flat, mostly dark colour with noise and a
    soft gradient: a covered lens, a night scene, a fade), which must give no face."""


PRESETS: dict[str, dict[str, object]] = {
    "retinaface": {
        "default": RetinaFacePreset(small_face_matches=5, blank_prob=0.05),
        "v1": RetinaFacePreset(),
        "closeup": RetinaFacePreset(closeup_prob=0.5, closeup_fill=(0.4, 0.95)),
        "wide": RetinaFacePreset(closeup_prob=0.0),
        "unmasked": RetinaFacePreset(unmasked_weight=3.0),
        "small": RetinaFacePreset(small_face_matches=5, blank_prob=0.05),
        "anchors-iou": RetinaFacePreset(blank_prob=0.05),
        "plain": RetinaFacePreset(scale_jitter=(0.8, 1.25), closeup_prob=0.0, photometric=False),
    },
}
"""Presets by trainer kind and name. RetinaFace's ``default`` is the shipped detector's recipe (the same as
``small``); ``v1`` the previous one (no scale compensation, no empty frames). ``closeup``: more faces filling the
frame, as at a shop entrance; ``wide``: no close-ups (small faces in scenes, as in CCTV); ``unmasked``: scenes with
an unmasked face drawn three times as often (the faces that raise alerts, and the ones found least often);
``small``: at least 5 anchors per face in training, so that small faces get as many training signals as large
ones, and 5 % empty frames (a detector trained to find faint faces otherwise also finds one in a black frame);
``anchors-iou``: the empty frames of ``small`` with plain IoU anchor matching (no scale compensation);
``plain``: mild geometry and no colour changes, for debugging."""


def _kinds() -> dict[str, dict[str, object]]:
    from maskwatch.train.classifier_crops import Recipe  # imported late: it pulls in the crop pipeline

    previous = Recipe(negative_share=0.0, detector_faces=False)  # no not-a-face crops, no detector-cut faces
    return {**PRESETS, "classifier": {"default": Recipe(), "faces-only": previous}}


def get_preset(kind: str, name: str) -> object:
    """The preset ``name`` of trainer ``kind`` (``retinaface`` or ``classifier``)."""
    kinds = _kinds() if kind == "classifier" else PRESETS
    if kind not in kinds:
        known = ", ".join([*PRESETS, "classifier"])
        raise MaskwatchError(f"no augmentation presets for trainer {kind!r}; known: {known}")
    if name not in kinds[kind]:
        raise MaskwatchError(f"unknown {kind} preset {name!r}; choose one of: {', '.join(kinds[kind])}")
    return kinds[kind][name]


def retinaface_preset(name: str) -> RetinaFacePreset:
    """The RetinaFace trainer's preset ``name`` (:func:`get_preset` with its type)."""
    preset = get_preset("retinaface", name)
    if not isinstance(preset, RetinaFacePreset):
        raise TypeError(f"retinaface preset {name!r} is a {type(preset).__name__}")
    return preset


def as_plain(preset: object) -> dict:
    """The preset's fields as plain values (tuples as lists), for checkpoints and model files."""
    if not is_dataclass(preset) or isinstance(preset, type):
        raise TypeError(f"not a preset: {preset!r}")
    return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(preset).items()}
