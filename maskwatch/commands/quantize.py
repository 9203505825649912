"""``maskwatch quantize``: calibrate (and optionally fine-tune with QAT) both models and write their int8 files.

The quantization recipe itself and the loading of int8 files live in :mod:`maskwatch.models.int8`.
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Sequence
from pathlib import Path

import torch
from loguru import logger
from torch import nn

from maskwatch.errors import ConfigError
from maskwatch.models.fuse import fusion_groups
from maskwatch.models.int8 import (
    QCONFIG_BACKEND,
    convert,
    quantize,
    save_int8,
    use_engine,
    without_inplace,
)
from maskwatch.models.weights import sha256_of


def qat_finetune_detector(
    model: nn.Module,
    scenes: list,
    min_sizes: Sequence[Sequence[int]],
    epochs: int,
    lr: float = 1e-4,
    seed: int = 0,
) -> nn.Module:
    """Quantization-aware fine-tuning of a float RetinaFace; returns the converted int8 model.

    Fake-quant (the shipped x86 recipe, 7-bit activations) is trained with the detector's own augmentation and
    loss for ``epochs`` passes over ``scenes`` at a small learning rate; BatchNorm statistics are frozen after
    the first epoch and the observers for the last one, so the last epoch fine-tunes against fixed quantizers.
    """
    import math
    import random

    import numpy as np

    from maskwatch.train.detector import Settings, load_images, lr_schedule, prior_boxes, train_one_epoch

    torch.manual_seed(seed)
    np.random.seed(seed)
    rng = random.Random(seed)
    use_engine()
    qat = without_inplace(copy.deepcopy(model).cpu().train())
    qat = torch.ao.quantization.fuse_modules_qat(qat, fusion_groups(qat))
    qat.qconfig = torch.ao.quantization.get_default_qat_qconfig(QCONFIG_BACKEND)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.ao.quantization.prepare_qat(qat, inplace=True)
    # no close-up zooms here: QAT with them (25 % of samples) taught the int8 net to box blurred background
    # blobs as large faces (a score-0.8 box beside the face in 43 of 69 sampled frames of nomask.mp4)
    settings = Settings(lr=lr, seed=seed, warmup_steps=20, closeup_prob=0.0)
    items = [sc for sc in scenes if len(sc.xyxy)]
    images = load_images(items)
    priors = prior_boxes(settings.crop_size, settings.crop_size, min_sizes)
    optimizer = torch.optim.SGD(qat.parameters(), lr=lr, momentum=settings.momentum, weight_decay=settings.weight_decay)
    total = max(1, epochs * math.ceil(len(items) / settings.batch_size))
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_schedule(settings.warmup_steps, total))
    for epoch in range(epochs):
        if epoch >= 1:
            qat.apply(torch.ao.nn.intrinsic.qat.freeze_bn_stats)
        if epoch >= 1 and epoch == epochs - 1:
            qat.apply(torch.ao.quantization.disable_observer)
        loss = train_one_epoch(
            qat, images, items, optimizer, scheduler, priors, settings, rng, torch.device("cpu"), epoch
        )
        logger.info(f"QAT epoch {epoch + 1}/{epochs}: loss {loss:.4f}")
    return convert(qat.eval())


def source_digest(path: str | Path) -> str:
    """sha256 of the float model file an int8 file was made from (stored in its meta)."""
    return sha256_of(Path(path))


# --- calibration data and the `maskwatch quantize` program
def calibration_scenes(data: str | Path, split: str | Path | None, n: int) -> list:
    """``n`` annotated scenes spread evenly over the (sorted) split: a fixed, reproducible subset."""
    from maskwatch.data.voc import read_voc

    scenes = sorted(read_voc(data, split), key=lambda s: s.image_path.name)
    if not scenes:
        raise ConfigError(f"no annotated images for calibration in {data}")
    step = max(1, len(scenes) // n)
    return scenes[::step][:n]


def quantize_files(
    data: str | Path,
    split: str | Path | None,
    out_dir: str | Path,
    *,
    n_images: int = 64,
    qat_epochs: int = 0,
    qat_split: str | Path | None = None,
    detector_weights: str | Path = "detector.pt",
    classifier_weights: str | Path = "classifier.pt",
) -> dict[str, Path]:
    """Calibrate on ``n_images`` training scenes (and the faces in them) and write both int8 model files.

    Returns ``{"detector": path, "classifier": path}``; each file's meta names its float source and sha256.
    """
    import cv2

    from maskwatch.models.classifier import ARCH as CLS_ARCH
    from maskwatch.models.classifier import MaskClassifier, crops_to_tensor
    from maskwatch.models.detector import load_detector
    from maskwatch.models.retinaface import ARCH as DET_ARCH
    from maskwatch.models.retinaface import RetinaFaceDetector
    from maskwatch.models.weights import verify
    from maskwatch.monitor.crop import DEFAULT_CROP_MARGIN, crop_face

    engine = use_engine()
    det_path, cls_path = verify(detector_weights), verify(classifier_weights)
    detector = load_detector(det_path)
    if not isinstance(detector, RetinaFaceDetector) or detector.precision != "fp32":
        raise ConfigError(f"{det_path} is not a float RetinaFace model file; only those can be quantized")
    classifier = MaskClassifier(cls_path)
    if classifier.precision != "fp32":
        raise ConfigError(f"{cls_path} is already an int8 model file")

    scenes = calibration_scenes(data, split, n_images)
    images, crops = [], []
    for scene in scenes:
        image = cv2.imread(str(scene.image_path), cv2.IMREAD_COLOR)
        if image is None:
            raise ConfigError(f"cannot read calibration image {scene.image_path}")
        images.append(detector.preprocess(image)[0].float())
        margin = float(classifier.meta.get("crop_margin", DEFAULT_CROP_MARGIN))
        crops += [crop_face(image, box, margin) for box in scene.xyxy]
    if not crops:
        raise ConfigError(f"the {len(scenes)} calibration images have no annotated faces")
    crop_batches = [crops_to_tensor(crops[i : i + 32], classifier.input_size) for i in range(0, len(crops), 32)]
    logger.info(f"calibrating on {len(images)} images and {len(crops)} face crops (engine {engine})")

    out_dir = Path(out_dir)
    common = {"engine_calibrated": engine, "calibration": {"images": len(images), "crops": len(crops)}}
    if qat_epochs > 0:
        from maskwatch.data.voc import read_voc

        logger.info(f"quantization-aware fine-tuning of the detector: {qat_epochs} epochs")
        train_scenes = read_voc(data, qat_split or split)
        det_q = qat_finetune_detector(detector.model, train_scenes, detector.min_sizes, qat_epochs)
        common["qat"] = {"epochs": qat_epochs, "lr": 1e-4, "images": len(train_scenes)}
    else:
        det_q = quantize(detector.model, images)
    det_meta = {**detector.meta, **common, "source": det_path.name, "source_sha256": source_digest(det_path)}
    det_meta.pop("history", None)
    cls_q = quantize(classifier.net, crop_batches)
    cls_meta = {**classifier.meta, **common, "source": cls_path.name, "source_sha256": source_digest(cls_path)}
    cls_meta.pop("history", None)
    paths = {"detector": out_dir / "detector_int8.pt", "classifier": out_dir / "classifier_int8.pt"}
    save_int8(paths["detector"], DET_ARCH, det_q, det_meta)
    save_int8(paths["classifier"], CLS_ARCH, cls_q, cls_meta)
    return paths
