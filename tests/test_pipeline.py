import numpy as np

from maskwatch.monitor.pipeline import FacePipeline
from maskwatch.types import UNDECIDED, FaceDetections, Frame


class TwoFaces:
    def detect(self, image_bgr):
        return FaceDetections(xyxy=[[0, 0, 10, 10], [20, 20, 40, 40]], det_score=[0.9, 0.8])


class FixedProbs:
    def __init__(self):
        self.batches = []

    def classify(self, crops_bgr):
        self.batches.append([c.shape for c in crops_bgr])
        return np.array([[0.2, 0.7, 0.1], [0.4, 0.35, 0.25]], np.float32)[: len(crops_bgr)]


def test_pipeline_classifies_all_faces_in_one_batch_with_margin():
    classifier = FixedProbs()
    pipeline = FacePipeline(TwoFaces(), classifier, crop_margin=0.5, min_confidence=0.5)
    result = pipeline(Frame(np.zeros((50, 60, 3), np.uint8), index=3, timestamp_s=0.1))
    assert len(classifier.batches) == 1
    assert classifier.batches[0] == [(15, 15, 3), (40, 40, 3)]  # margin clipped at the border; 20 px + 2 x 10
    assert result.faces.class_id.tolist() == [1, UNDECIDED]  # second face is below min_confidence
    assert result.faces.label(0) == "without_mask" and result.faces.label(1) is None
    assert set(result.timings_ms) == {"detect_ms", "classify_ms"}


def test_pipeline_skips_classifier_without_faces():
    class NoFaces:
        def detect(self, image_bgr):
            return FaceDetections.empty()

    classifier = FixedProbs()
    result = FacePipeline(NoFaces(), classifier)(Frame(np.zeros((5, 5, 3), np.uint8), 0, 0.0))
    assert len(result.faces) == 0 and classifier.batches == []


def test_warmup_runs_both_models_once():
    classifier = FixedProbs()
    FacePipeline(TwoFaces(), classifier).warmup((64, 48))
    assert classifier.batches == [[(12, 16, 3)]]
