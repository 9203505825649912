"""ONNX (fp32) export of the face detector and the mask classifier, with a ``models.json`` describing how to use them.

Exporter: torch's TorchScript-based exporter (``torch.onnx.export(..., dynamo=False)``). In torch 2.14 it exports
RetinaFace with dynamic height and width in about a second, needs only the ``onnx`` package, and its graphs match
torch to float rounding; the newer ``torch.export``-based exporter gives the same numbers but takes ~20x longer and
also needs ``onnxscript``. Models are exported in eval mode (BatchNorm folded into the convs, no Dropout), with
fixed example inputs, so the same weights always give the same file.

Both graphs take raw BGR pixel values (0..255) as float32 NCHW; the mean (and the classifier's std and channel flip)
are inside the graph. Each file carries what decoding it needs as JSON values in its ``metadata_props`` (see
:func:`detector_metadata`, :func:`classifier_metadata`): maskwatch's ONNX engine reads them from there. ``models.json``
describes the same for a user without maskwatch, and ``SHA256SUMS`` lists the files so they load verified.
"""

from __future__ import annotations

import json
import tempfile
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from maskwatch import __version__
from maskwatch.errors import MaskwatchError, OutputError, WeightsError
from maskwatch.models import classifier as clf
from maskwatch.models import retinaface as rf
from maskwatch.models.detector import identify
from maskwatch.models.manifest import MANIFEST_NAME, verify, write_manifest_entry
from maskwatch.models.onnx_engine import require as _require
from maskwatch.models.registry import backend, exportable_detectors
from maskwatch.monitor.crop import DEFAULT_CROP_MARGIN
from maskwatch.types import CLASS_NAMES

OPSET = 17
"""ONNX opset of the exported graphs (runs on onnxruntime >= 1.14 and OpenCV's DNN module)."""

DETECTOR_FILE = "detector.onnx"
CLASSIFIER_FILE = "classifier.onnx"
SIDECAR_FILE = "models.json"
FORMAT = "maskwatch-onnx/1"
DETECTOR_OUTPUTS = ("loc", "logits", "landmarks")


def _writable_dir(folder: str | Path) -> Path:
    """Create ``folder`` if needed and check a file can be written there; :class:`OutputError` if not."""
    folder = Path(folder).expanduser()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".maskwatch-write-test-"):
            pass
    except OSError as exc:
        raise OutputError(f"cannot write to output folder {folder}: {exc.strerror or exc}") from exc
    return folder


def _export(
    module: nn.Module,
    example: torch.Tensor,
    path: str | Path,
    input_name: str,
    output_names: Sequence[str],
    dynamic_axes: dict[str, dict[int, str]],
    opset: int,
    metadata: Mapping[str, object],
) -> Path:
    """Trace ``module`` in eval mode on ``example`` and write an ONNX file at ``path`` (atomically), with
    ``metadata`` as JSON-encoded ``metadata_props``."""
    onnx = _require("onnx")
    path = Path(path)
    _writable_dir(path.parent)
    tmp = path.with_name(path.name + ".tmp")
    was_training = module.training
    module.eval()
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # dynamo=False is deprecated, still supported in 2.x
            torch.onnx.export(
                module,
                (example,),
                str(tmp),
                dynamo=False,
                export_params=True,
                opset_version=opset,
                do_constant_folding=True,
                training=torch.onnx.TrainingMode.EVAL,
                input_names=[input_name],
                output_names=list(output_names),
                dynamic_axes=dynamic_axes,
            )
        graph = onnx.load(str(tmp))
        onnx.helper.set_model_props(graph, {key: json.dumps(value) for key, value in metadata.items()})
        onnx.save(graph, str(tmp))
        tmp.replace(path)
    except OSError as exc:
        raise OutputError(f"cannot write ONNX file {path}: {exc.strerror or exc}") from exc
    finally:
        module.train(was_training)
        tmp.unlink(missing_ok=True)
    return path


def detector_metadata(min_sizes: Sequence[Sequence[int]] | None = None, input_size: int | None = None) -> dict:
    """What decoding the detector graph needs (``metadata_props`` of detector.onnx): the anchors the weights were
    trained with (default :data:`~maskwatch.models.retinaface.MIN_SIZES`), steps, variances and input size."""
    return {
        "format": FORMAT,
        "arch": rf.ARCH,
        "input_size": int(input_size or backend(rf.ARCH).input_size),
        "min_sizes": [[int(v) for v in level] for level in (min_sizes or rf.MIN_SIZES)],
        "steps": list(rf.STEPS),
        "variances": list(rf.VARIANCES),
    }


def classifier_metadata(input_size: int) -> dict:
    """What running the classifier graph needs (``metadata_props`` of classifier.onnx): crop size, class names."""
    return {"format": FORMAT, "arch": clf.ARCH, "input_size": int(input_size), "class_names": list(CLASS_NAMES)}


def export_detector(
    model: nn.Module,
    path: str | Path,
    opset: int = OPSET,
    example_hw: tuple[int, int] = (480, 640),
    metadata: Mapping[str, object] | None = None,
) -> Path:
    """Write RetinaFace as ONNX: input ``image`` float32 (1, 3, H, W), H and W dynamic; outputs loc/logits/landmarks.

    ``metadata``: :func:`detector_metadata` of the weights (default: the published anchors).
    """
    example = torch.arange(3 * example_hw[0] * example_hw[1], dtype=torch.float32).remainder(256)
    priors = {1: "priors"}
    return _export(
        model,
        example.reshape(1, 3, *example_hw),
        path,
        "image",
        DETECTOR_OUTPUTS,
        {"image": {2: "height", 3: "width"}, **dict.fromkeys(DETECTOR_OUTPUTS, priors)},
        opset,
        detector_metadata() if metadata is None else metadata,
    )


def export_classifier(net: nn.Module, path: str | Path, input_size: int, opset: int = OPSET) -> Path:
    """Write the classifier as ONNX: input ``crops`` float32 (N, 3, S, S), N dynamic; output ``logits`` (N, C)."""
    example = torch.arange(2 * 3 * input_size * input_size, dtype=torch.float32).remainder(256)
    return _export(
        net,
        example.reshape(2, 3, input_size, input_size),
        path,
        "crops",
        ("logits",),
        {"crops": {0: "batch"}, "logits": {0: "batch"}},
        opset,
        classifier_metadata(input_size),
    )


def _fp32_model_meta(weights: str | Path, archs: Sequence[str], role: str) -> tuple[Path, str, dict]:
    """Verify a model file and check it holds an fp32 model of one of ``archs``; return (path, arch, meta)."""
    path = verify(weights)
    arch, meta = identify(path)
    if arch not in archs:
        raise WeightsError(f"weights file {path} holds a {arch!r} model; ONNX export supports {role} {list(archs)}")
    if meta.get("precision", "fp32") != "fp32":
        raise WeightsError(f"weights file {path} is a {meta['precision']} model; ONNX export takes the fp32 weights")
    return path, arch, meta


def _detector_card(meta: dict, source: Path) -> dict:
    min_sizes = [list(level) for level in (meta.get("min_sizes") or rf.MIN_SIZES)]
    return {
        "file": DETECTOR_FILE,
        "arch": rf.ARCH,
        "weights": source.name,
        "input": {"name": "image", "shape": [1, 3, "height", "width"], "dtype": "float32"},
        "preprocessing": (
            "raw BGR pixels 0..255 as float32 NCHW; resize so the longest side is input_size (aspect kept, "
            f"no padding); the BGR mean {list(rf.BGR_MEAN)} is subtracted inside the graph"
        ),
        "outputs": {
            "loc": [1, "priors", 4],
            "logits": [1, "priors", 2],
            "landmarks": [1, "priors", 10],
        },
        "input_size": int(meta.get("input_size") or backend(rf.ARCH).input_size),
        "min_sizes": min_sizes,
        "steps": list(rf.STEPS),
        "variances": list(rf.VARIANCES),
        "decoding": (
            "priors level by level (steps), then cells row-major over ceil(H/step) x ceil(W/step), then the "
            "level's min_sizes, each (cx, cy, w, h) = ((j+0.5)*step/W, (i+0.5)*step/H, size/W, size/H); "
            "centre = prior_cxcy + loc[:2]*variances[0]*prior_wh, wh = prior_wh*exp(loc[2:]*variances[1]), "
            "normalised to the input (multiply by W, H); score = softmax(logits)[1] (face); then NMS. "
            "landmarks are not trained by maskwatch (the fine-tuning data has none)"
        ),
        "defaults": {"score_threshold": 0.5, "nms_iou": 0.4},
    }


def _classifier_card(input_size: int, source: Path) -> dict:
    return {
        "file": CLASSIFIER_FILE,
        "arch": clf.ARCH,
        "weights": source.name,
        "input": {"name": "crops", "shape": ["batch", 3, input_size, input_size], "dtype": "float32"},
        "preprocessing": (
            f"face box widened by {DEFAULT_CROP_MARGIN} of its width/height per side and clipped to the frame, "
            f"resized to {input_size}x{input_size} (aspect not kept), raw BGR pixels 0..255 as float32 NCHW; "
            "the ImageNet mean/std and the BGR->RGB flip are inside the graph"
        ),
        "outputs": {"logits": ["batch", len(CLASS_NAMES)]},
        "postprocessing": "softmax over logits; class id = argmax",
        "class_names": list(CLASS_NAMES),
    }


def export_detector_file(weights: str | Path, out_dir: str | Path, opset: int = OPSET) -> Path:
    """Export one fp32 detector model file (verified) as ``out_dir``/detector.onnx, listed in the folder's
    ``SHA256SUMS``; return its path."""
    _require("onnx")
    out = _writable_dir(out_dir)
    det_path, _, _ = _fp32_model_meta(weights, exportable_detectors(), "detectors")
    detector, det_meta = rf.load_retinaface(det_path)
    card = _detector_card(det_meta, det_path)
    meta = detector_metadata(card["min_sizes"], card["input_size"])
    path = export_detector(detector, out / DETECTOR_FILE, opset=opset, metadata=meta)
    write_manifest_entry(path)
    return path


def export_classifier_file(weights: str | Path, out_dir: str | Path, opset: int = OPSET) -> Path:
    """Export one fp32 classifier model file (verified) as ``out_dir``/classifier.onnx, listed in the folder's
    ``SHA256SUMS``; return its path."""
    _require("onnx")
    out = _writable_dir(out_dir)
    cls_path, _, _ = _fp32_model_meta(weights, (clf.ARCH,), "classifiers")
    classifier = clf.MaskClassifier(cls_path)
    path = export_classifier(classifier.net, out / CLASSIFIER_FILE, classifier.input_size, opset=opset)
    write_manifest_entry(path)
    return path


def export_all(
    out_dir: str | Path,
    detector_weights: str | Path = "detector.pt",
    classifier_weights: str | Path = "classifier.pt",
    opset: int = OPSET,
) -> list[Path]:
    """Export the fp32 detector and classifier to ``out_dir`` with a ``models.json``, and list both in the folder's
    ``SHA256SUMS`` (so the ONNX engine loads them verified); return the written paths."""
    _require("onnx")
    out = _writable_dir(out_dir)
    det_path, _, _ = _fp32_model_meta(detector_weights, exportable_detectors(), "detectors")
    cls_path, _, _ = _fp32_model_meta(classifier_weights, (clf.ARCH,), "classifiers")
    detector, det_meta = rf.load_retinaface(det_path)
    classifier = clf.MaskClassifier(cls_path)

    det_card = _detector_card(det_meta, det_path)
    written = [
        export_detector(
            detector,
            out / DETECTOR_FILE,
            opset=opset,
            metadata=detector_metadata(det_card["min_sizes"], det_card["input_size"]),
        ),
        export_classifier(classifier.net, out / CLASSIFIER_FILE, classifier.input_size, opset=opset),
    ]
    card = {
        "format": FORMAT,
        "maskwatch_version": __version__,
        "opset": opset,
        "detector": det_card,
        "classifier": _classifier_card(classifier.input_size, cls_path),
    }
    sidecar = out / SIDECAR_FILE
    try:
        sidecar.write_text(json.dumps(card, indent=2) + "\n")
        for path in written:
            write_manifest_entry(path)
    except OSError as exc:
        raise OutputError(f"cannot write {sidecar} or {out / MANIFEST_NAME}: {exc.strerror or exc}") from exc
    return [*written, sidecar, out / MANIFEST_NAME]


def verify_onnx(path: str | Path, torch_module: nn.Module, example: torch.Tensor) -> float:
    """Max abs difference between onnxruntime's and torch's outputs (eval mode) for one ``example`` input."""
    ort = _require("onnxruntime")
    options = ort.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    x = example.detach().float().cpu()
    ours = session.run(None, {session.get_inputs()[0].name: x.numpy()})

    was_training = torch_module.training
    torch_module.eval()
    try:
        with torch.no_grad():
            ref = torch_module(x)
    finally:
        torch_module.train(was_training)
    refs = [ref] if isinstance(ref, torch.Tensor) else list(ref)
    if len(refs) != len(ours):
        raise MaskwatchError(f"{path} gives {len(ours)} outputs, the torch module {len(refs)}")
    diff = 0.0
    for name, got, want in zip([o.name for o in session.get_outputs()], ours, refs, strict=True):
        want_np = want.detach().float().cpu().numpy()
        if got.shape != want_np.shape:
            raise MaskwatchError(f"{path} output {name!r} has shape {got.shape}, torch gives {want_np.shape}")
        diff = max(diff, float(np.abs(got - want_np).max(initial=0.0)))
    return diff
