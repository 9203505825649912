"""The face-detector backends maskwatch knows, in one table: loading, ONNX and defaults are asked here.

A backend is one architecture, named by the ``arch`` its model files store. Its code lives in one module and is
imported only when a model of that architecture is loaded, so the lean install (no torch) never imports a torch
backend. A new detector is that module plus one :func:`register` line below; ``train``, ``run``, ``bench``,
``export`` and ``quantize`` find it through :func:`backend` / :func:`load_onnx_detector`.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import import_module
from pathlib import Path
from typing import Any

from maskwatch.errors import ConfigError, WeightsError


@dataclass(frozen=True)
class DetectorBackend:
    """One detector architecture.

    ``torch_detector`` and ``onnx_detector`` are ``"module:Class"`` of its :class:`~maskwatch.models.base.Detector`
    facades: the torch one takes a model file (``weights, *, input_size, score_threshold, nms_iou, max_faces,
    device``), the ONNX Runtime one an exported file (``weights, *, input_size, score_threshold, nms_iou, max_faces,
    threads``); None where the backend has no ONNX path (it cannot be exported, quantized or run on the lean install).
    """

    arch: str
    input_size: int
    """Input size (longest side) when neither the config nor the model file gives one."""
    torch_detector: str
    onnx_detector: str | None = None
    raw_key_prefix: str | None = None
    """The key prefix that marks a raw pretrained ``state_dict`` of this architecture (no maskwatch wrapper)."""
    shipped: bool = False
    """Whether maskwatch ships a model of this architecture."""

    @property
    def exportable(self) -> bool:
        """Whether ``maskwatch export`` / ``quantize`` can make ONNX files of it."""
        return self.onnx_detector is not None


_BACKENDS: dict[str, DetectorBackend] = {}


def register(backend: DetectorBackend) -> DetectorBackend:
    """Add ``backend`` to the table (its ``arch`` must be new)."""
    if backend.arch in _BACKENDS:
        raise ValueError(f"detector backend {backend.arch!r} is registered twice")
    _BACKENDS[backend.arch] = backend
    return backend


def backends() -> list[DetectorBackend]:
    """Every registered backend, in registration order."""
    return list(_BACKENDS.values())


def exportable_detectors() -> list[str]:
    """The architectures ``export`` and ``quantize`` can make ONNX files of."""
    return [b.arch for b in _BACKENDS.values() if b.exportable]


def backend(arch: str, path: str | Path | None = None) -> DetectorBackend:
    """The backend of ``arch``; a :class:`WeightsError` naming the file (``path``) when there is none."""
    try:
        return _BACKENDS[arch]
    except KeyError:
        where = f"weights file {path} holds" if path is not None else "there is"
        known = ", ".join(_BACKENDS)
        raise WeightsError(
            f"{where} a {str(arch)[:40]!r} model, not a face detector maskwatch knows ({known})"
        ) from None


def arch_of_raw(keys: list[str]) -> str | None:
    """The architecture of a raw pretrained ``state_dict`` with these keys, if a backend recognises it."""
    for b in _BACKENDS.values():
        if b.raw_key_prefix is not None and any(k.startswith(b.raw_key_prefix) for k in keys):
            return b.arch
    return None


def load_class(spec: str) -> Any:
    """The object named by ``"module:Name"`` (the module is imported now)."""
    module, _, name = spec.partition(":")
    return getattr(import_module(module), name)


def check_input_size(requested: int | None, trained: object, path: str | Path) -> None:
    """Refuse a detection size above the one the model was trained at (``trained``, from its file): the detector
    has never seen faces that large, and measured at 960 and 1280 px it boxed background shapes as faces and its
    labels flipped. Smaller sizes (faster, for small CPUs) are allowed."""
    try:
        trained = int(str(trained))
    except ValueError:
        return  # a malformed value is reported where the file's metadata is read
    if requested is not None and int(requested) > trained:
        raise ConfigError(
            f"detector.input_size {requested} is larger than the {trained} px that {Path(path).name} was trained at "
            f"(larger sizes box background shapes as faces): use {trained} or less, or null for the trained size"
        )


def load_onnx_detector(weights: str | Path, *, threads: int = 1, **kwargs: Any) -> Any:
    """The ONNX Runtime facade of an exported detector file, of the backend its metadata names (``arch``)."""
    from maskwatch.models.onnx_engine import open_session, read_arch

    opened = open_session(weights, threads)
    arch = read_arch(*opened)
    chosen = backend(arch, opened[1])
    if chosen.onnx_detector is None:
        raise WeightsError(f"weights file {opened[1]} holds a {arch!r} detector, which has no ONNX Runtime backend")
    trained = opened[0].get_modelmeta().custom_metadata_map.get("input_size") or chosen.input_size
    check_input_size(kwargs.get("input_size"), trained, opened[1])
    return load_class(chosen.onnx_detector)(weights, threads=threads, opened=opened, **kwargs)


register(
    DetectorBackend(
        arch="retinaface_mnet025",
        input_size=640,
        torch_detector="maskwatch.models.retinaface:RetinaFaceDetector",
        onnx_detector="maskwatch.models.onnx_engine:OnnxRetinaFaceDetector",
        raw_key_prefix="ClassHead.",
        shipped=True,
    )
)
for _arch in ("fasterrcnn_resnet50_fpn", "fasterrcnn_mobilenet_v3_large_fpn"):  # the seed's, for train and bench
    register(DetectorBackend(arch=_arch, input_size=640, torch_detector="maskwatch.train.frcnn:FasterRCNNDetector"))
