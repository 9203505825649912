"""The interfaces of the two model stages. Tests pass fakes that merely have these methods."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np

from maskwatch.types import FaceDetections


@runtime_checkable
class Detector(Protocol):
    """Finds faces in a BGR uint8 frame of any size.

    A detector that subclasses ``Detector`` gets ``precision`` "fp32" and a ``detect_batch`` that detects one frame
    at a time; one that can run a real batch (a GPU) overrides it.
    """

    score_threshold: float
    """Faces scoring below this are dropped (the monitor lowers it to the tracker's low score)."""
    precision: str = "fp32"

    def detect(self, image_bgr: np.ndarray) -> FaceDetections:
        """Return boxes in the frame's pixel coordinates with detector scores (classes undecided)."""
        ...

    def detect_batch(self, images_bgr: list[np.ndarray]) -> list[FaceDetections]:
        """:meth:`detect` for several frames, results in order."""
        return [self.detect(image) for image in images_bgr]


@runtime_checkable
class Classifier(Protocol):
    """Classifies face crops into ``maskwatch.types.CLASS_NAMES``."""

    def classify(self, crops_bgr: list[np.ndarray]) -> np.ndarray:
        """Return (N, C) class probabilities for N BGR uint8 crops of any sizes, in one batch."""
        ...
