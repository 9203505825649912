"""Builds the right face detector for a weights file: the file says which architecture it holds."""

from __future__ import annotations

from pathlib import Path

from maskwatch.errors import WeightsError
from maskwatch.models.base import Detector
from maskwatch.models.manifest import verify
from maskwatch.models.registry import arch_of_raw, backend, check_input_size, load_class
from maskwatch.models.weights import load_checked


def identify(weights: str | Path) -> tuple[str, dict]:
    """(arch, meta) of a maskwatch model file or of a known raw pretrained state_dict."""
    payload = load_checked(weights)
    if not isinstance(payload, dict):
        raise WeightsError(f"weights file {weights} does not hold a model")
    if "arch" in payload and "state_dict" in payload:
        return str(payload["arch"]), dict(payload.get("meta") or {})
    arch = arch_of_raw([str(k).removeprefix("module.") for k in payload])
    if arch is not None:
        return arch, {}
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
    chosen = backend(arch, path)
    try:
        size = int(input_size or meta.get("input_size") or chosen.input_size)
    except (TypeError, ValueError):
        bad = repr(meta.get("input_size"))[:40]
        raise WeightsError(f"weights file {path} has an invalid input_size {bad}") from None
    check_input_size(input_size, meta.get("input_size") or chosen.input_size, path)
    common = {"score_threshold": score_threshold, "nms_iou": nms_iou, "max_faces": max_faces, "device": device}
    return load_class(chosen.torch_detector)(path, input_size=size, **common)
