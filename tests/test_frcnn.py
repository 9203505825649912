"""The original project's Faster R-CNN option: a training step from scratch (no download) and loading the result."""

from pathlib import Path

import cv2
import numpy as np
import pytest

from maskwatch.models.detector import load_detector
from maskwatch.train.frcnn import train


@pytest.mark.slow
def test_frcnn_trains_a_step_and_loads_as_detector(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # checkpoints go to ./runs/
    (tmp_path / "images").mkdir()
    (tmp_path / "annotations").mkdir()
    for i in range(2):
        cv2.imwrite(
            str(tmp_path / "images" / f"s{i}.png"), np.random.default_rng(i).integers(0, 255, (96, 128, 3), np.uint8)
        )
        (tmp_path / "annotations" / f"s{i}.xml").write_text(
            f"<annotation><filename>s{i}.png</filename><object><name>without_mask</name><bndbox><xmin>10</xmin>"
            "<ymin>10</ymin><xmax>50</xmax><ymax>60</ymax></bndbox></object></annotation>"
        )
    out = train(tmp_path, None, epochs=1, out=tmp_path / "frcnn.pt", batch_size=2, pretrained=False, input_size=320)
    assert (tmp_path / "runs" / "fasterrcnn_mobilenet_v3_large_fpn" / "last.pt").is_file()
    detector = load_detector(out, score_threshold=0.01)
    assert detector.model.transform.min_size == (320,) and detector.model.transform.max_size == 320  # from meta
    faces = detector.detect(np.zeros((96, 128, 3), np.uint8))
    assert faces.xyxy.shape[1] == 4 and len(faces.det_score) == len(faces)
    assert Path(out).is_file()
