"""Builds the right face detector for a weights file: the file says which architecture it holds."""

from __future__ import annotations

from pathlib import Path

from maskwatch.errors import WeightsError
from maskwatch.models.base import Detector
from maskwatch.models.weights import load_checked, verify

DEFAULT_INPUT_SIZE = {"ultralight_rfb": 480, "ultralight_slim": 480, "retinaface_mnet025": 640}
"""Input size (longest side) used when neither the config nor the model file gives one."""


def identify(weights: str | Path) -> tuple[str, dict]:
    """(arch, meta) of a maskwatch model file or of a known raw pretrained state_dict."""
    payload = load_checked(weights)
    if not isinstance(payload, dict):
        raise WeightsError(f"weights file {weights} does not hold a model")
    if "arch" in payload and "state_dict" in payload:
        return str(payload["arch"]), dict(payload.get("meta") or {})
    keys = [str(k).removeprefix("module.") for k in payload]
    if any(k.startswith("ClassHead.") for k in keys):
        return "retinaface_mnet025", {}
    if any(k.startswith("classification_headers.") for k in keys):
        return ("ultralight_rfb" if any(".branch0." in k for k in keys) else "ultralight_slim"), {}
    raise WeightsError(f"weights file {weights} is not a face detector maskwatch knows")


def load_detector(
    weights: str | Path,
    *,
    input_size: int | None = None,
    score_threshold: float = 0.5,
    nms_iou: float = 0.4,
    max_faces: int = 200,
    device: str = "cpu",
) -> Detector:
    """Verify ``weights``, pick the architecture it holds and return its :class:`Detector` facade.

    ``input_size`` None means the size the model was trained at (from the file), else the arch default.
    """
    path = verify(weights)
    arch, meta = identify(path)
    try:
        size = int(input_size or meta.get("input_size") or DEFAULT_INPUT_SIZE.get(arch, 640))
    except (TypeError, ValueError):
        bad = repr(meta.get("input_size"))[:40]
        raise WeightsError(f"weights file {path} has an invalid input_size {bad}") from None
    common = {"score_threshold": score_threshold, "nms_iou": nms_iou, "max_faces": max_faces, "device": device}
    if arch.startswith("ultralight_"):
        from maskwatch.models.ultralight import UltraLightDetector

        return UltraLightDetector(path, input_size=size, **common)
    if arch == "retinaface_mnet025":
        from maskwatch.models.retinaface import RetinaFaceDetector

        return RetinaFaceDetector(path, input_size=size, **common)
    if arch.startswith("fasterrcnn_"):
        from maskwatch.models.frcnn import FasterRCNNDetector

        return FasterRCNNDetector(path, **common)
    raise WeightsError(f"weights file {path} holds a {arch!r} model, which is not a face detector")
