"""Static int8 quantization of maskwatch's ONNX files with ONNX Runtime (QDQ format, per-channel weights).

:func:`quantize_onnx` turns an fp32 ``detector.onnx`` / ``classifier.onnx`` (from ``maskwatch export``) into an int8
QDQ file that the ONNX engine runs with ONNX Runtime's int8 kernels. Calibration feeds exactly what the facades feed
at run time: :func:`detector_inputs` uses :meth:`OnnxRetinaFaceDetector.preprocess` on whole images, and
:func:`classifier_inputs` cuts face crops from annotated boxes with :func:`~maskwatch.monitor.crop.crop_face` and
batches them per image with :func:`~maskwatch.models.prep.crops_to_batch`, as ``run`` does per frame. The int8 file
keeps the fp32 file's maskwatch ``metadata_props`` and adds ``precision: "int8"`` and the recipe used.

Only numpy, onnx and onnxruntime are needed (no torch).
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from maskwatch.errors import MaskwatchError, OutputError
from maskwatch.models.onnx_engine import require

CALIB_METHODS = ("minmax", "entropy", "percentile")
QTYPES = ("u8", "s8")
EXCLUDE_PRESETS = ("first_conv", "early_backbone", "heads", "landmarks")
"""Node groups that :class:`Recipe` can keep in fp32: the first conv; the detector's first four backbone blocks
(``stage1.0``-``stage1.3``: the stride-2 and stride-4 layers at the highest resolution); its output head convs (class,
box and landmark heads, or only the landmark head, which maskwatch does not use). ``match:TEXT`` also keeps every
node whose name contains TEXT."""
EARLY_BACKBONE = tuple(f"/body/stage1/stage1.{i}/" for i in range(4))


class QuantizeError(MaskwatchError):
    """A model could not be quantized (one line)."""


@dataclass(frozen=True)
class Recipe:
    """How a file is quantized: ``calibrate`` method, activation / weight types, per-channel weights, 7-bit
    ``reduce_range`` (for CPUs without VNNI), node groups kept in fp32 (:data:`EXCLUDE_PRESETS`), percentile."""

    calibrate: str = "minmax"
    activations: str = "u8"
    weights: str = "s8"
    per_channel: bool = True
    reduce_range: bool = False
    exclude: tuple[str, ...] = field(default_factory=tuple)
    percentile: float = 99.999
    preprocess: bool = True

    def __post_init__(self) -> None:
        if self.calibrate not in CALIB_METHODS:
            raise QuantizeError(f"calibration method must be one of {', '.join(CALIB_METHODS)}, not {self.calibrate}")
        for value in (self.activations, self.weights):
            if value not in QTYPES:
                raise QuantizeError(f"quantized types must be one of {', '.join(QTYPES)}, not {value}")
        for group in self.exclude:
            if group not in EXCLUDE_PRESETS and not group.startswith("match:"):
                raise QuantizeError(
                    f"nodes to keep in fp32 must be among {', '.join(EXCLUDE_PRESETS)} or 'match:TEXT', not {group}"
                )

    def as_meta(self) -> dict:
        """The recipe as a JSON-able dict (stored in the int8 file's metadata)."""
        return {**asdict(self), "exclude": list(self.exclude), "format": "QDQ"}


class ArrayReader:
    """An onnxruntime ``CalibrationDataReader`` over a list of arrays for one input; supports the strided
    (``set_range``) calibration that keeps the histogram methods' memory bounded."""

    def __init__(self, input_name: str, arrays: Sequence[np.ndarray]) -> None:
        self.input_name = input_name
        self.arrays = list(arrays)
        self.set_range(0, len(self.arrays))

    def __len__(self) -> int:
        return len(self.arrays)

    def set_range(self, start_index: int, end_index: int) -> None:
        self._items = iter(self.arrays[start_index:end_index])

    def get_next(self) -> dict | None:
        item = next(self._items, None)
        return None if item is None else {self.input_name: item}

    def rewind(self) -> None:
        self.set_range(0, len(self.arrays))


def detector_inputs(detector, images_bgr: Iterable[np.ndarray]) -> list[np.ndarray]:
    """The detector graph's inputs for ``images_bgr``, prepared by the facade's own ``preprocess``."""
    return [detector.preprocess(image)[0] for image in images_bgr]


def classifier_inputs(
    images_bgr: Iterable[np.ndarray], boxes: Iterable[np.ndarray], input_size: int, margin: float
) -> list[np.ndarray]:
    """One classifier batch per image: its faces (``boxes``, xyxy pixels) cut with ``margin`` as ``run`` cuts them."""
    from maskwatch.models.prep import crops_to_batch
    from maskwatch.monitor.crop import crop_face

    batches = []
    for image, xyxy in zip(images_bgr, boxes, strict=True):
        crops = [crop_face(image, box, margin) for box in np.asarray(xyxy).reshape(-1, 4)]
        if crops:
            batches.append(crops_to_batch(crops, input_size))
    return batches


def _strides(n: int, most: int = 16) -> int:
    """The largest divisor of ``n`` not above ``most``: calibration runs in chunks of that many inputs."""
    return next(d for d in range(min(n, most), 0, -1) if n % d == 0)


def _excluded_nodes(model, groups: Sequence[str]) -> list[str]:
    """Names of the nodes of ``model`` (an onnx ModelProto) in the preset ``groups``."""
    convs = [n for n in model.graph.node if n.op_type in ("Conv", "Gemm", "MatMul")]
    names: list[str] = []
    if "first_conv" in groups and convs:
        names.append(convs[0].name)
    if "early_backbone" in groups:
        names += [n.name for n in model.graph.node if any(part in n.name for part in EARLY_BACKBONE)]
    if "heads" in groups:
        names += [n.name for n in convs if "Head" in n.name]
    if "landmarks" in groups:
        names += [n.name for n in convs if "LandmarkHead" in n.name]
    for text in (g.removeprefix("match:") for g in groups if g.startswith("match:")):
        names += [n.name for n in model.graph.node if text in n.name]
    return sorted(set(names))


def maskwatch_metadata(model) -> dict[str, str]:
    """A model's ``metadata_props`` as a dict of raw (JSON-encoded) strings."""
    return {p.key: p.value for p in model.metadata_props}


def quantize_onnx(
    fp32_path: str | Path,
    out_path: str | Path,
    inputs: Sequence[np.ndarray],
    recipe: Recipe | None = None,
    extra_meta: dict | None = None,
) -> Path:
    """Write an int8 QDQ copy of the ONNX file ``fp32_path`` at ``out_path`` (atomically), calibrated on ``inputs``
    (arrays for the graph's single input); return ``out_path``.

    The fp32 file's ``metadata_props`` are kept; ``precision`` ("int8"), ``quantization`` (the recipe) and
    ``extra_meta`` are added (JSON-encoded).
    """
    onnx = require("onnx")
    require("onnxruntime")
    from onnxruntime import quantization as q
    from onnxruntime.quantization.shape_inference import quant_pre_process

    recipe = recipe or Recipe()
    if not inputs:
        raise QuantizeError(f"no calibration data for {Path(fp32_path).name}")
    fp32_path, out_path = Path(fp32_path), Path(out_path)
    source = onnx.load(str(fp32_path), load_external_data=False)
    props = maskwatch_metadata(source)
    if json.loads(props.get("precision", '"fp32"')) != "fp32":
        raise QuantizeError(f"{fp32_path} is already a quantized model; quantize the fp32 file")
    input_name = source.graph.input[0].name
    types = {"u8": q.QuantType.QUInt8, "s8": q.QuantType.QInt8}
    methods = {
        "minmax": q.CalibrationMethod.MinMax,
        "entropy": q.CalibrationMethod.Entropy,
        "percentile": q.CalibrationMethod.Percentile,
    }
    try:
        out_path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot write to {out_path.parent}: {exc.strerror or exc}") from exc
    with tempfile.TemporaryDirectory(prefix="maskwatch-quant-") as tmp:
        model_in = fp32_path
        if recipe.preprocess:  # shape inference + graph optimisation, as ORT recommends before quantizing
            model_in = Path(tmp) / "pre.onnx"
            quant_pre_process(str(fp32_path), str(model_in), skip_symbolic_shape=True)
        exclude = _excluded_nodes(onnx.load(str(model_in)), recipe.exclude)
        reader = ArrayReader(input_name, inputs)
        extra = {
            "ActivationSymmetric": recipe.activations == "s8",
            "WeightSymmetric": True,
            # chunks bound the memory calibration holds; the histogram methods take one input at a time (images of
            # different sizes cannot share a chunk there)
            "CalibStridedMinMax": _strides(len(reader)) if recipe.calibrate == "minmax" else 1,
            "CalibPercentile": recipe.percentile,
        }
        quantized = Path(tmp) / "int8.onnx"
        q.quantize_static(
            str(model_in),
            str(quantized),
            reader,
            quant_format=q.QuantFormat.QDQ,
            per_channel=recipe.per_channel,
            reduce_range=recipe.reduce_range,
            activation_type=types[recipe.activations],
            weight_type=types[recipe.weights],
            calibrate_method=methods[recipe.calibrate],
            nodes_to_exclude=exclude,
            extra_options=extra,
        )
        meta = {
            **props,
            "precision": json.dumps("int8"),
            "quantization": json.dumps({**recipe.as_meta(), "calibration_inputs": len(inputs), "kept_fp32": exclude}),
            **{key: json.dumps(value) for key, value in (extra_meta or {}).items()},
        }
        _save_with_metadata(quantized, out_path, meta)
    return out_path


def _save_with_metadata(model_path: Path, out_path: Path, meta: dict[str, str]) -> None:
    """Write the ONNX model at ``model_path`` to ``out_path`` (atomically) with exactly ``meta`` as its
    ``metadata_props``."""
    onnx = require("onnx")
    model = onnx.load(str(model_path))
    del model.metadata_props[:]
    onnx.helper.set_model_props(model, meta)
    part = out_path.with_name(out_path.name + ".tmp")
    try:
        onnx.save(model, str(part))
        part.replace(out_path)
    except OSError as exc:
        raise OutputError(f"cannot write {out_path}: {exc.strerror or exc}") from exc
    finally:
        part.unlink(missing_ok=True)
