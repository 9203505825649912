"""Which engine ``maskwatch bench`` times each precision on, and the models it loads for that."""

from __future__ import annotations

from pathlib import Path

from maskwatch.config import Config
from maskwatch.errors import MaskwatchError
from maskwatch.models.base import Classifier, Detector


def torch_installed() -> bool:
    """Whether torch and torchvision are installed (the [train] extra): the bench's torch figures need them."""
    import importlib.util

    return all(importlib.util.find_spec(name) is not None for name in ("torch", "torchvision"))


def onnx_int8_files(cfg: Config) -> tuple[Path, Path] | None:
    """The int8 ONNX detector and classifier files (``*.onnx_int8_weights``) when both exist, else None."""
    from maskwatch.models.manifest import resolve_weights

    detector, classifier = (
        resolve_weights(cfg.detector.onnx_int8_weights),
        resolve_weights(cfg.classifier.onnx_int8_weights),
    )
    return (detector, classifier) if detector.is_file() and classifier.is_file() else None


def engines(cfg: Config) -> dict[str, str | None]:
    """Which engine times each precision: fp32 on the configured engine (auto: onnx on the CPU); int8 on ONNX
    Runtime when the int8 ``.onnx`` files exist, else None (not timed)."""
    from maskwatch.wiring import effective_engine, with_runtime

    return {
        "fp32": effective_engine(with_runtime(cfg, precision="fp32")),
        "int8": "onnx" if onnx_int8_files(cfg) else None,
    }


def load_models(cfg: Config, engine: str | None, precision: str) -> tuple[Detector, Classifier]:
    """(detector, classifier) of ``engine`` at ``precision`` from the config's files, each checked to be that
    precision; ``engine`` None: nothing runs that precision here (see :func:`engines`)."""
    d = cfg.detector
    det: Detector
    cls: Classifier
    if engine is None:
        raise MaskwatchError(f"no {precision} model files to time (make the int8 ones with `maskwatch quantize`)")
    if engine == "onnx":
        from maskwatch.models.onnx_engine import OnnxMaskClassifier
        from maskwatch.models.registry import load_onnx_detector
        from maskwatch.wiring import onnx_threads

        files = onnx_int8_files(cfg) if precision == "int8" else (d.onnx_weights, cfg.classifier.onnx_weights)
        if files is None:
            raise MaskwatchError("no int8 ONNX model files to time (make them with `maskwatch quantize`)")
        threads = onnx_threads(cfg)
        det = load_onnx_detector(
            files[0],
            input_size=d.input_size,
            threads=threads,
            score_threshold=d.score_threshold,
            nms_iou=d.nms_iou,
            max_faces=d.max_faces,
        )
        cls = OnnxMaskClassifier(files[1], threads=threads)
    else:
        from maskwatch.models.classifier import MaskClassifier
        from maskwatch.models.detector import load_detector

        if precision == "int8":
            raise MaskwatchError("the torch engine runs fp32 only; int8 runs on the onnx engine")
        files = (d.weights, cfg.classifier.weights)
        det = load_detector(
            files[0],
            input_size=d.input_size,
            score_threshold=d.score_threshold,
            nms_iou=d.nms_iou,
            max_faces=d.max_faces,
        )
        cls = MaskClassifier(files[1])
    for model in (det, cls):
        if getattr(model, "precision", precision) != precision:
            name = type(model).__name__
            raise MaskwatchError(f"{name} from the config's files is {model.precision}, not {precision}")
    return det, cls
