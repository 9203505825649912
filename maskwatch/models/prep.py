"""Image preparation shared by both engines (torch and ONNX Runtime), in numpy and OpenCV only.

The detector's resize (longest side to the input size, aspect kept, no padding) and the classifier's crop resize live
here once, so the torch facades, the ONNX engine and training prepare pixels with the same calls.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np


@dataclass
class Resized:
    """How a frame was resized (aspect kept, no padding) for the network: ``scale`` = input px per frame px."""

    scale: float
    size_hw: tuple[int, int]


def resize_longest_side(image_bgr: np.ndarray, input_size: int) -> tuple[np.ndarray, Resized]:
    """Resize an HxWx3 frame so its longest side is ``input_size`` (area filter when shrinking); the frame itself
    when no resize is needed."""
    if image_bgr.ndim != 3 or image_bgr.shape[2] != 3:
        raise ValueError(f"expected an HxWx3 BGR image, got shape {image_bgr.shape}")
    h, w = image_bgr.shape[:2]
    scale = input_size / max(h, w)
    nh, nw = max(1, round(h * scale)), max(1, round(w * scale))
    interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    resized = cv2.resize(image_bgr, (nw, nh), interpolation=interp) if (nh, nw) != (h, w) else image_bgr
    return np.ascontiguousarray(resized), Resized(scale=scale, size_hw=(nh, nw))


def resize_crop(crop_bgr: np.ndarray, size: int) -> np.ndarray:
    """Plain (aspect-changing) resize of a BGR crop to ``size`` x ``size``; the same call in training and inference."""
    if crop_bgr.ndim == 2:
        crop_bgr = cv2.cvtColor(crop_bgr, cv2.COLOR_GRAY2BGR)
    elif crop_bgr.shape[2] == 4:
        crop_bgr = cv2.cvtColor(crop_bgr, cv2.COLOR_BGRA2BGR)
    h, w = crop_bgr.shape[:2]
    if h == 0 or w == 0:
        raise ValueError(f"cannot classify an empty crop of size {w}x{h}")
    interpolation = cv2.INTER_AREA if (w > size and h > size) else cv2.INTER_LINEAR
    return cv2.resize(crop_bgr, (size, size), interpolation=interpolation)


def crops_to_batch(crops_bgr: list[np.ndarray], size: int) -> np.ndarray:
    """Resized uint8 BGR crops as the classifier's (N, 3, size, size) float32 input (raw 0..255 pixels)."""
    batch = np.stack([resize_crop(c, size) for c in crops_bgr])
    return np.ascontiguousarray(batch.transpose(0, 3, 1, 2), dtype=np.float32)


def prior_boxes(height: int, width: int, min_sizes: Sequence[Sequence[int]], steps: Sequence[int]) -> np.ndarray:
    """Anchors (P, 4) float32 as normalised (cx, cy, w, h): level by level, row-major cells, then the level's sizes."""
    chunks = []
    for sizes, step in zip(min_sizes, steps, strict=True):
        fh, fw = math.ceil(height / step), math.ceil(width / step)
        cy, cx = np.meshgrid(
            (np.arange(fh, dtype=np.float32) + 0.5) * step / height,
            (np.arange(fw, dtype=np.float32) + 0.5) * step / width,
            indexing="ij",
        )
        centres = np.stack([cx, cy], axis=-1).reshape(-1, 1, 2)
        centres = np.broadcast_to(centres, (centres.shape[0], len(sizes), 2))
        wh = np.array([[s / width, s / height] for s in sizes], dtype=np.float32)
        wh = np.broadcast_to(wh, (centres.shape[0], len(sizes), 2))
        chunks.append(np.concatenate([centres, wh], axis=-1).reshape(-1, 4))
    return np.concatenate(chunks, axis=0)
