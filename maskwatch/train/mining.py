"""Crops for the classifier cut the way ``run`` cuts them: by a face detector, with its false alarms.

The detector runs over the training scenes once. Its boxes that match an annotated face (IoU >= 0.5) become
training faces of that face's class, with the detector's own box error; its boxes on no face become "not a
face" samples (label :data:`NOT_A_FACE`), trained towards equal class probabilities, so that a false alarm is
shown with low confidence instead of a confident "mask". Random background boxes sized like the scene's faces
are added as "not a face" too (:func:`maskwatch.data.negatives.background_boxes`).
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
from loguru import logger
from tqdm import tqdm

from maskwatch.data.negatives import background_boxes, expand, is_background
from maskwatch.data.voc import AnnotatedImage
from maskwatch.errors import MaskwatchError
from maskwatch.metrics import box_iou
from maskwatch.monitor.crop import DEFAULT_CROP_MARGIN
from maskwatch.train.classifier_crops import NOT_A_FACE, Sample, box4


def detector_samples(
    scenes: list[AnnotatedImage], detector_weights: Path, score_threshold: float = 0.3, min_side: float = 8.0
) -> tuple[list[Sample], list[Sample]]:
    """(faces, false alarms) as samples: detector boxes matched to a face take its label; boxes on no face
    (covering at most a fifth of any face) are false alarms. Boxes between the two are left out."""
    from maskwatch.models.retinaface import RetinaFaceDetector

    detector = RetinaFaceDetector(detector_weights, score_threshold=score_threshold)
    faces, false_alarms = [], []
    for scene in tqdm(scenes, desc="mining", leave=False):
        image = cv2.imread(str(scene.image_path), cv2.IMREAD_COLOR)
        if image is None:
            raise MaskwatchError(f"cannot read image {scene.image_path}")
        boxes = detector.detect(image).xyxy
        boxes = boxes[np.minimum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]) >= min_side]
        iou = box_iou(boxes, scene.xyxy) if len(scene.xyxy) else np.zeros((len(boxes), 0))
        for i, box in enumerate(boxes):
            as_tuple = box4(box)
            if iou.shape[1] and iou[i].max() >= 0.5:
                label = int(scene.class_id[int(iou[i].argmax())])
                faces.append(Sample(scene.image_path, label, as_tuple, jitter=False))
            elif is_background(expand(box, DEFAULT_CROP_MARGIN), scene.xyxy):
                false_alarms.append(Sample(scene.image_path, NOT_A_FACE, as_tuple, jitter=False))
    logger.info(f"mined {len(faces)} detector-cut faces and {len(false_alarms)} false alarms from {len(scenes)} scenes")
    return faces, false_alarms


def background_samples(scenes: list[AnnotatedImage], per_scene: int, seed: int) -> list[Sample]:
    """``per_scene`` random non-face boxes of each scene as "not a face" samples (deterministic for ``seed``)."""
    rng = np.random.default_rng(seed)
    out = []
    for scene in scenes:
        for box in background_boxes(scene.size_wh, scene.xyxy, per_scene, rng):
            out.append(Sample(scene.image_path, NOT_A_FACE, box4(box)))
    return out
