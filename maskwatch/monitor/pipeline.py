"""The consumer stage: detect faces, crop them, classify all crops of a frame in one batch."""

from __future__ import annotations

import copy
import time

import numpy as np

from maskwatch.metrics import suppress_nested
from maskwatch.models.base import Classifier, Detector
from maskwatch.monitor.closeup import closeup_pass
from maskwatch.monitor.crop import crop_face
from maskwatch.types import UNDECIDED, Event, FaceDetections, Frame, FrameResult


class FacePipeline:
    """Turns a :class:`Frame` into a :class:`FrameResult`; the steps are public so tools can reuse them.

    A :class:`~maskwatch.monitor.base.FrameProcessor` on its own (a run without tracking): it keeps no state, so
    ``observe``, ``finish``, ``snapshot`` and ``summary_line`` have nothing to do.

    ``score_threshold``: the faces it reports score at least this much, whatever the detector was built to return;
    a caller that wants weaker faces (the tracker extends its tracks with them) passes ``min_score``.
    """

    def __init__(
        self,
        detector: Detector,
        classifier: Classifier,
        crop_margin: float = 0.15,
        min_confidence: float = 0.0,
        nested_overlap: float = 0.0,
        score_threshold: float = 0.0,
        closeup_trigger: float = 0.0,
    ) -> None:
        self.detector = detector
        self.classifier = classifier
        self.crop_margin = crop_margin
        self.min_confidence = min_confidence
        self.nested_overlap = nested_overlap
        self.score_threshold = score_threshold
        self.closeup_trigger = closeup_trigger

    def detect(self, images: list[np.ndarray], min_score: float | None = None) -> list[FaceDetections]:
        """The detector's faces per image scoring at least ``min_score`` (None: ``score_threshold``), without a
        second box nested in a stronger box of the same face (``nested_overlap`` of the smaller box inside the
        other; 0 keeps every box). Close faces (``closeup_trigger``) are boxed on the frame zoomed out
        (:mod:`maskwatch.monitor.closeup`)."""
        found = self.detector.detect_batch(images) if len(images) > 1 else [self.detector.detect(images[0])]
        floor = self.score_threshold if min_score is None else min_score
        found = [f[f.det_score >= floor] if np.any(f.det_score < floor) else f for f in found]
        if self.closeup_trigger > 0:
            found = [
                closeup_pass(self.detector, image, f, trigger=self.closeup_trigger, min_score=floor)
                for image, f in zip(images, found, strict=True)
            ]
        if self.nested_overlap <= 0:
            return found
        return [f[suppress_nested(f.xyxy, f.det_score, self.nested_overlap)] if len(f) > 1 else f for f in found]

    def with_closeup_trigger(self, trigger: float) -> FacePipeline:
        """A pipeline sharing these models with another ``closeup_trigger`` (0: no zoomed-out pass)."""
        clone = copy.copy(self)
        clone.closeup_trigger = trigger
        return clone

    def crops(self, image: np.ndarray, faces: FaceDetections) -> list[np.ndarray]:
        """Cut every face with the configured margin, exactly as the classifier was trained."""
        return [crop_face(image, box, self.crop_margin) for box in faces.xyxy]

    def classify(self, image: np.ndarray, faces: FaceDetections) -> FaceDetections:
        """Fill class probabilities and ids; faces below ``min_confidence`` stay undecided."""
        if len(faces) == 0:
            return faces
        return self._labelled(faces, np.asarray(self.classifier.classify(self.crops(image, faces)), dtype=np.float32))

    def _labelled(self, faces: FaceDetections, prob: np.ndarray) -> FaceDetections:
        class_id = prob.argmax(axis=1)
        class_id[prob.max(axis=1) < self.min_confidence] = UNDECIDED
        return FaceDetections(xyxy=faces.xyxy, det_score=faces.det_score, class_id=class_id, class_prob=prob)

    def warmup(self, size_wh: tuple[int, int] = (640, 480)) -> None:
        """Run both models once (thread pools, caches) so the first real frame is not late."""
        w, h = size_wh
        image = np.zeros((h, w, 3), np.uint8)
        self.detector.detect(image)
        self.classifier.classify([image[: max(h // 4, 1), : max(w // 4, 1)]])

    def process_batch(self, frames: list[Frame], min_score: float | None = None) -> list[FrameResult]:
        """:meth:`__call__` for several frames: one detector pass (if the detector batches), one classifier batch.

        Each result's timings are its share of the batch's (the batch time divided by the number of frames).
        """
        if not frames:
            return []
        t0 = time.perf_counter()
        images = [f.image for f in frames]
        detections = self.detect(images, min_score)
        t1 = time.perf_counter()
        crops = [crop for image, faces in zip(images, detections, strict=True) for crop in self.crops(image, faces)]
        prob = np.asarray(self.classifier.classify(crops), dtype=np.float32) if crops else None
        t2 = time.perf_counter()
        timings = {"detect_ms": (t1 - t0) * 1e3 / len(frames), "classify_ms": (t2 - t1) * 1e3 / len(frames)}
        results, start = [], 0
        for frame, faces in zip(frames, detections, strict=True):
            if len(faces) and prob is not None:  # one crop per face: prob has a row for each
                faces, start = self._labelled(faces, prob[start : start + len(faces)]), start + len(faces)
            results.append(FrameResult(frame=frame, faces=faces, timings_ms=dict(timings)))
        return results

    def __call__(self, frame: Frame, min_score: float | None = None) -> FrameResult:
        """Detect (down to ``min_score``, None: ``score_threshold``) and classify the faces of one frame."""
        t0 = time.perf_counter()
        faces = self.detect([frame.image], min_score)[0]
        t1 = time.perf_counter()
        faces = self.classify(frame.image, faces)
        t2 = time.perf_counter()
        timings = {"detect_ms": (t1 - t0) * 1e3, "classify_ms": (t2 - t1) * 1e3}
        return FrameResult(frame=frame, faces=faces, timings_ms=timings)

    def observe(self, busy_ms: float, detected: bool) -> None:
        """Nothing to adapt: the pipeline detects on every frame."""

    def finish(self) -> list[Event]:
        """No tracks to end, so no last events."""
        return []

    def people_status(self) -> None:
        """No people counts without tracking."""
        return None

    def summary_line(self) -> str | None:
        """Nothing to summarise without tracking."""
        return None
