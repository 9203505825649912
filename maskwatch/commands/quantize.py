"""``maskwatch quantize``: write the int8 ONNX models (detector_int8.onnx, classifier_int8.onnx) from the fp32 ones.

Static QDQ quantization with ONNX Runtime (:mod:`maskwatch.models.onnx_quant`), calibrated on a fixed subset of the
training split: the detector on whole images prepared as the ONNX engine prepares frames, the classifier on the
annotated faces of those images cut as ``run`` cuts them. The fp32 sources are ``.onnx`` files (from ``maskwatch
export``) or ``.pt`` model files, exported first. The written files are added to the output folder's SHA256SUMS.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from loguru import logger

from maskwatch.errors import ConfigError, MaskwatchError, OutputError
from maskwatch.models.onnx_quant import QuantizeError, Recipe

DETECTOR_FILE = "detector_int8.onnx"
CLASSIFIER_FILE = "classifier_int8.onnx"

DETECTOR_RECIPE = Recipe(
    calibrate="minmax", activations="u8", weights="s8", per_channel=True, reduce_range=True, exclude=("early_backbone",)
)
"""The shipped detector recipe, chosen by measurement (weights/README.md): MinMax calibration, uint8 activations,
per-channel int8 weights in 7 bits (``reduce_range``: no int16 saturation on AVX2 CPUs without VNNI), and the first
four backbone blocks kept in fp32 (quantized, they cost 3-4 points of mAP and ran no faster)."""
CLASSIFIER_RECIPE = Recipe(calibrate="entropy", activations="u8", weights="s8", per_channel=True, reduce_range=False)
"""The shipped classifier recipe: entropy (KL) calibration, uint8 activations, per-channel int8 weights in the full 8
bits. For the 112-px classifier MinMax ranges, stretched by rare large activations, cost 2 points of val mAP against
fp32 (0.764 vs 0.783, all of it in the 20-face incorrect class); entropy calibration matches fp32 (0.784).
``reduce_range`` moved the probabilities of a real unmasked face toward "mask" with the previous classifier
(mean P(without_mask) on the nomask clip 0.35 vs 0.46 for fp32). See weights/README.md."""


def calibration_scenes(data: str | Path, split: str | Path | None, n: int) -> list:
    """``n`` annotated scenes spread evenly over the (sorted) split: a fixed, reproducible subset."""
    from maskwatch.data.voc import read_voc

    scenes = sorted(read_voc(data, split), key=lambda s: s.image_path.name)
    if not scenes:
        raise ConfigError(f"no annotated images for calibration in {data}")
    step = max(1, len(scenes) // n)
    return scenes[::step][:n]


def read_images(scenes: list) -> list:
    """The scenes' images, upright as ``run`` and ``eval`` read them."""
    from maskwatch.capture.images import read_image

    images = []
    for scene in scenes:
        image = read_image(scene.image_path)
        if image is None:
            raise ConfigError(f"cannot read calibration image {scene.image_path}")
        images.append(image)
    return images


def fp32_onnx(weights: str | Path, role: str, tmp: Path) -> Path:
    """The fp32 ONNX file for ``weights``: itself if it is an ``.onnx`` file, else ``weights`` (a .pt model file)
    exported into ``tmp``."""
    from maskwatch.models.manifest import resolve_weights

    path = resolve_weights(weights)
    if path.suffix.lower() == ".onnx":
        return path
    from maskwatch.commands.export import export_classifier_file, export_detector_file

    logger.info(f"exporting {path.name} to ONNX first")
    export = export_detector_file if role == "detector" else export_classifier_file
    return export(path, tmp / role)


def quantize_files(
    data: str | Path,
    split: str | Path | None,
    out_dir: str | Path,
    *,
    n_images: int = 64,
    detector_weights: str | Path = "detector.onnx",
    classifier_weights: str | Path = "classifier.onnx",
    detector_recipe: Recipe = DETECTOR_RECIPE,
    classifier_recipe: Recipe = CLASSIFIER_RECIPE,
) -> dict[str, Path]:
    """Calibrate on ``n_images`` training scenes (and the faces in them) and write both int8 ONNX files to
    ``out_dir``, listed in its SHA256SUMS. Returns ``{"detector": path, "classifier": path}``."""
    from maskwatch.models.manifest import sha256_of, write_manifest_entry
    from maskwatch.models.onnx_engine import OnnxMaskClassifier
    from maskwatch.models.onnx_quant import classifier_inputs, detector_inputs, quantize_onnx
    from maskwatch.models.registry import load_onnx_detector
    from maskwatch.monitor.crop import DEFAULT_CROP_MARGIN

    out = Path(out_dir).expanduser()
    scenes = calibration_scenes(data, split, n_images)
    images = read_images(scenes)
    with tempfile.TemporaryDirectory(prefix="maskwatch-quantize-") as tmp:
        det_src = fp32_onnx(detector_weights, "detector", Path(tmp))
        cls_src = fp32_onnx(classifier_weights, "classifier", Path(tmp))
        detector = load_onnx_detector(det_src)  # verified against SHA256SUMS; prepares frames as at run time
        classifier = OnnxMaskClassifier(cls_src)
        for model, src in ((detector, det_src), (classifier, cls_src)):
            if model.precision != "fp32":
                raise QuantizeError(f"{src} is already an int8 model file; quantize the fp32 one")
        det_inputs = detector_inputs(detector, images)
        cls_inputs = classifier_inputs(
            images, [s.xyxy for s in scenes], classifier.input_size, float(DEFAULT_CROP_MARGIN)
        )
        if not cls_inputs:
            raise ConfigError(f"the {len(scenes)} calibration images have no annotated faces")
        n_crops = sum(len(batch) for batch in cls_inputs)
        logger.info(f"calibrating on {len(det_inputs)} images and {n_crops} face crops")
        paths = {"detector": out / DETECTOR_FILE, "classifier": out / CLASSIFIER_FILE}
        jobs = (
            ("detector", det_src, det_inputs, detector_recipe, {"images": len(det_inputs)}),
            ("classifier", cls_src, cls_inputs, classifier_recipe, {"images": len(cls_inputs), "crops": n_crops}),
        )
        for role, src, inputs, recipe, counts in jobs:
            extra = {
                "source": src.name,
                "source_sha256": sha256_of(src),
                "calibration": {**counts, "split": str(split)},
            }
            try:
                quantize_onnx(src, paths[role], inputs, recipe, extra_meta=extra)
            except MaskwatchError:
                raise
            except Exception as exc:  # onnxruntime's quantizer raises plain exceptions with long messages
                message = str(exc).splitlines()[0][:160] if str(exc) else ""
                raise QuantizeError(f"cannot quantize {src.name}: {type(exc).__name__}: {message}") from exc
            try:
                write_manifest_entry(paths[role])
            except OSError as exc:
                raise OutputError(f"cannot update {out / 'SHA256SUMS'}: {exc.strerror or exc}") from exc
    return paths
