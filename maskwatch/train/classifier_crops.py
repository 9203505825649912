"""Training and validation crops of the mask classifier (see :mod:`maskwatch.train.classifier`).

Training crops are cut on the fly from the VOC scenes' boxes with :func:`maskwatch.monitor.crop.crop_face`, after
jittering each box the way detector boxes wobble (scale, shift, aspect), so training sees what the pipeline
will feed. A folder of ready-made crops (``with_mask/``, ``without_mask/``) can be mixed in; those are
re-cropped, rescaled and degraded at random so that their crop style (tight vs. loose, sharp vs. small)
does not give the class away. The rare ``mask_weared_incorrect`` class is oversampled (:func:`sample_weights`).
Validation uses the val split's boxes cut with the pipeline's margin and no jitter.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from maskwatch.data.voc import AnnotatedImage
from maskwatch.errors import MaskwatchError
from maskwatch.media import IMAGE_SUFFIXES
from maskwatch.models.classifier import resize_crop
from maskwatch.monitor.crop import DEFAULT_CROP_MARGIN, crop_face
from maskwatch.types import CLASS_NAMES

NOT_A_FACE = -1
"""Label of a crop that holds no face (background, a detector false alarm): trained towards equal probabilities."""
EXTRA_CLASS_FOLDERS = {"with_mask": 0, "without_mask": 1, "mask_weared_incorrect": 2}
MIN_TRAIN_BOX_SIDE = 4.0
"""Boxes smaller than this (pixels) carry no usable face and are left out of training (not of validation)."""


@dataclass(frozen=True)
class Recipe:
    """Sampling, augmentation and optimisation settings (stored in the model file's meta)."""

    voc_class_share: tuple[float, float, float] = (0.45, 0.35, 0.20)
    extra_share: float = 0.3
    negative_share: float = 0.3
    negatives_per_scene: int = 2
    detector_faces: bool = True
    samples_per_epoch: int = 6400
    lr: float = 2e-3
    weight_decay: float = 1e-2
    warmup_steps: int = 100
    label_smoothing: float = 0.1
    jitter_scale: tuple[float, float] = (0.85, 1.4)
    jitter_shift: float = 0.15
    jitter_aspect: float = 0.15
    margin: float = DEFAULT_CROP_MARGIN


def box4(box: Sequence[float] | np.ndarray) -> tuple[float, float, float, float]:
    """A box (x1, y1, x2, y2) as four plain floats."""
    x1, y1, x2, y2 = (float(v) for v in box)
    return x1, y1, x2, y2


@dataclass(frozen=True)
class Sample:
    """One training crop: a scene box (``box`` set) or a whole extra crop (``box`` None).

    ``label`` is a class index or :data:`NOT_A_FACE`; ``jitter`` is False for boxes a detector drew (they carry
    its real error already)."""

    path: Path
    label: int
    box: tuple[float, float, float, float] | None = None
    jitter: bool = True


def scan_extra_crops(folder: Path) -> list[Sample]:
    """Crops in ``folder/<class name>/`` sub-folders, sorted by path."""
    samples = []
    for name, label in EXTRA_CLASS_FOLDERS.items():
        sub = folder / name
        if sub.is_dir():
            files = sorted(p for p in sub.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
            samples += [Sample(p, label) for p in files]
    if not samples:
        raise MaskwatchError(f"extra crops folder {folder} has no images in {'/, '.join(EXTRA_CLASS_FOLDERS)}/")
    return samples


def voc_samples(scenes: list[AnnotatedImage], min_side: float) -> list[Sample]:
    out = []
    for scene in scenes:
        for box, label in zip(scene.xyxy, scene.class_id, strict=True):
            if min(box[2] - box[0], box[3] - box[1]) >= min_side:
                out.append(Sample(scene.image_path, int(label), box4(box)))
    return out


class ImageCache:
    """Decoded images kept in memory (single-process loading); extra crops are stored at most ``max_side`` px."""

    def __init__(self) -> None:
        self._images: dict[tuple[Path, int], np.ndarray] = {}

    def get(self, path: Path, max_side: int = 0) -> np.ndarray:
        key = (path, max_side)
        if key not in self._images:
            image = cv2.imread(str(path), cv2.IMREAD_COLOR)
            if image is None:
                raise MaskwatchError(f"cannot read image {path}")
            scale = max_side / max(image.shape[:2]) if max_side else 1.0
            if scale < 1.0:
                image = cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
            self._images[key] = image
        return self._images[key]


def jitter_box(box: tuple[float, float, float, float], rng: np.random.Generator, recipe: Recipe) -> np.ndarray:
    """Scale, shift and stretch a box the way a detector's box differs from the annotation."""
    x0, y0, x1, y1 = box
    w, h = max(x1 - x0, 1.0), max(y1 - y0, 1.0)
    cx = (x0 + x1) / 2 + rng.uniform(-recipe.jitter_shift, recipe.jitter_shift) * w
    cy = (y0 + y1) / 2 + rng.uniform(-recipe.jitter_shift, recipe.jitter_shift) * h
    scale = rng.uniform(*recipe.jitter_scale)
    aspect = math.exp(rng.uniform(-1, 1) * math.log1p(recipe.jitter_aspect))
    nw, nh = w * scale * math.sqrt(aspect), h * scale / math.sqrt(aspect)
    return np.array([cx - nw / 2, cy - nh / 2, cx + nw / 2, cy + nh / 2], np.float32)


def recrop_extra(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A random 70-100% window of a ready-made crop, so tight and loose crop styles overlap across classes."""
    h, w = image.shape[:2]
    fw, fh = rng.uniform(0.7, 1.0), rng.uniform(0.7, 1.0)
    cw, ch = max(1, round(w * fw)), max(1, round(h * fh))
    x0, y0 = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
    return image[y0 : y0 + ch, x0 : x0 + cw]


def augment(crop: np.ndarray, rng: np.random.Generator, downscale_p: float) -> np.ndarray:
    """Flip, small rotation, small-face downscale, blur, colour and JPEG noise on a BGR uint8 crop."""
    if rng.random() < 0.5:
        crop = crop[:, ::-1]
    crop = np.ascontiguousarray(crop)
    h, w = crop.shape[:2]
    if rng.random() < 0.3 and min(h, w) >= 4:
        rot = cv2.getRotationMatrix2D((w / 2, h / 2), rng.uniform(-12, 12), 1.0)
        crop = cv2.warpAffine(crop, rot, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT101)
    if rng.random() < downscale_p and min(h, w) > 12:
        side = rng.uniform(10, min(48, min(h, w)))
        f = side / min(h, w)
        crop = cv2.resize(crop, (max(1, round(w * f)), max(1, round(h * f))), interpolation=cv2.INTER_AREA)
    if rng.random() < 0.15:
        crop = cv2.GaussianBlur(crop, (3, 3), rng.uniform(0.3, 1.2))
    img = crop.astype(np.float32)
    if rng.random() < 0.8:
        hsv = cv2.cvtColor(crop, cv2.COLOR_BGR2HSV).astype(np.float32)
        hsv[..., 0] = (hsv[..., 0] + rng.uniform(-6, 6)) % 180
        hsv[..., 1] *= rng.uniform(0.6, 1.4)
        img = cv2.cvtColor(np.clip(hsv, 0, 255).astype(np.uint8), cv2.COLOR_HSV2BGR).astype(np.float32)
        img = (img - img.mean()) * rng.uniform(0.7, 1.3) + img.mean() * rng.uniform(0.7, 1.3)
    if rng.random() < 0.05:
        img[:] = cv2.cvtColor(
            cv2.cvtColor(np.clip(img, 0, 255).astype(np.uint8), cv2.COLOR_BGR2GRAY), cv2.COLOR_GRAY2BGR
        )
    out = np.clip(img, 0, 255).astype(np.uint8)
    if rng.random() < 0.2:
        ok, buf = cv2.imencode(".jpg", out, [cv2.IMWRITE_JPEG_QUALITY, int(rng.integers(30, 90))])
        decoded = cv2.imdecode(buf, cv2.IMREAD_COLOR) if ok else None
        if decoded is not None:
            out = decoded.astype(np.uint8)
    return out


class TrainCrops(Dataset):
    """Jittered, augmented face crops as (3, S, S) raw BGR float tensors with class labels."""

    def __init__(self, samples: list[Sample], input_size: int, recipe: Recipe, seed: int) -> None:
        self.samples, self.input_size, self.recipe, self.seed = samples, input_size, recipe, seed
        self.cache = ImageCache()
        self.rng = np.random.default_rng(seed)

    def set_epoch(self, epoch: int) -> None:
        self.rng = np.random.default_rng([self.seed, epoch])

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        sample, rng = self.samples[index], self.rng
        if sample.box is not None:
            image = self.cache.get(sample.path)
            box = jitter_box(sample.box, rng, self.recipe) if sample.jitter else sample.box
            crop = crop_face(image, box, self.recipe.margin)
            crop = augment(crop, rng, downscale_p=0.2)
        else:
            crop = recrop_extra(self.cache.get(sample.path, max_side=160), rng)
            crop = augment(crop, rng, downscale_p=0.6)
        x = torch.from_numpy(resize_crop(crop, self.input_size)).permute(2, 0, 1).float()
        return x, sample.label


def val_tensors(scenes: list[AnnotatedImage], input_size: int, margin: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Every val box cut with the pipeline's margin, no jitter: (N, 3, S, S) inputs and (N,) labels."""
    xs, ys = [], []
    for scene in scenes:
        image = cv2.imread(str(scene.image_path), cv2.IMREAD_COLOR)
        if image is None:
            raise MaskwatchError(f"cannot read image {scene.image_path}")
        for box, label in zip(scene.xyxy, scene.class_id, strict=True):
            xs.append(resize_crop(crop_face(image, box, margin), input_size))
            ys.append(int(label))
    if not xs:
        return torch.zeros(0, 3, input_size, input_size), torch.zeros(0, dtype=torch.long)
    return torch.from_numpy(np.stack(xs)).permute(0, 3, 1, 2).float(), torch.tensor(ys, dtype=torch.long)


def sample_weights(samples: list[Sample], n_extra: int, recipe: Recipe) -> torch.Tensor:
    """Per-sample draw weights: "not a face" crops at ``negative_share`` and extra crops at ``extra_share`` in
    total, the rest to the scene faces with their classes at ``voc_class_share``."""
    labels = np.array([s.label for s in samples])
    is_extra = np.array([s.box is None for s in samples])
    weights = np.zeros(len(samples))
    negative = labels == NOT_A_FACE
    neg_share = recipe.negative_share if negative.any() else 0.0
    if negative.any():
        weights[negative] = neg_share / negative.sum()
    voc_share = 1.0 - (recipe.extra_share if n_extra else 0.0) - neg_share
    present = [k for k in range(len(CLASS_NAMES)) if np.any((labels == k) & ~is_extra)]
    total_share = sum(recipe.voc_class_share[k] for k in present)
    for k in present:
        sel = (labels == k) & ~is_extra
        weights[sel] = voc_share * recipe.voc_class_share[k] / total_share / sel.sum()
    if n_extra:
        extra_labels = sorted(set(labels[is_extra]))
        for k in extra_labels:
            sel = (labels == k) & is_extra
            weights[sel] = recipe.extra_share / len(extra_labels) / sel.sum()
    return torch.from_numpy(weights)


def non_face_tensors(scenes: list[AnnotatedImage], input_size: int, margin: float, per_scene: int = 2, seed: int = 1):
    """Background boxes of ``scenes`` (no face in them) cut like faces: (N, 3, S, S) inputs for the non-face check."""
    from maskwatch.data.negatives import background_boxes

    rng = np.random.default_rng(seed)
    xs = []
    for scene in scenes:
        boxes = background_boxes(scene.size_wh, scene.xyxy, per_scene, rng)
        if not len(boxes):
            continue
        image = cv2.imread(str(scene.image_path), cv2.IMREAD_COLOR)
        if image is None:
            raise MaskwatchError(f"cannot read image {scene.image_path}")
        xs += [resize_crop(crop_face(image, box, margin), input_size) for box in boxes]
    if not xs:
        return torch.zeros(0, 3, input_size, input_size)
    return torch.from_numpy(np.stack(xs)).permute(0, 3, 1, 2).float()
