"""Evaluation on synthetic ground truth with known answers, and the three dataset readers agreeing."""

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from maskwatch.commands.evaluate import confusion_matrix, report_lines, score
from maskwatch.data.formats import read_coco, read_dataset, read_yolo
from maskwatch.data.voc import AnnotatedImage, read_voc
from maskwatch.errors import MaskwatchError
from maskwatch.types import CLASS_NAMES, FaceDetections


def _gt(boxes, classes, name="a.jpg") -> AnnotatedImage:
    return AnnotatedImage(Path(name), np.asarray(boxes, np.float32).reshape(-1, 4), np.asarray(classes), (200, 200))


def _pred(boxes, classes, det=None) -> FaceDetections:
    n = len(boxes)
    prob = np.zeros((n, 3), np.float32)
    prob[np.arange(n), classes] = 1.0
    return FaceDetections(
        xyxy=boxes, det_score=det if det is not None else [0.9] * n, class_id=classes, class_prob=prob
    )


IMAGES = [
    _gt([[10, 10, 50, 50], [60, 60, 100, 100]], [0, 1], "a.jpg"),
    _gt([[10, 10, 40, 40], [100, 100, 150, 150]], [0, 2], "b.jpg"),
]


def test_perfect_predictions_score_one():
    preds = [_pred(g.xyxy, g.class_id) for g in IMAGES]
    result = score(IMAGES, preds)
    assert result.map50 == 1.0 and result.face_ap50 == 1.0
    assert result.ap50 == {"with_mask": 1.0, "without_mask": 1.0, "mask_weared_incorrect": 1.0}
    assert np.asarray(result.confusion["matrix"])[:3, :3].trace() == 4
    assert result.n_images == 2


def test_swapped_class_drops_exactly_that_ap():
    # the incorrect face is called with_mask: incorrect AP -> 0, with_mask gets one false positive ranked last
    preds = [_pred(IMAGES[0].xyxy, [0, 1]), _pred(IMAGES[1].xyxy, [0, 0], det=[0.9, 0.5])]
    result = score(IMAGES, preds)
    assert result.ap50["mask_weared_incorrect"] == 0.0
    assert result.ap50["without_mask"] == 1.0
    assert result.ap50["with_mask"] == 1.0  # the extra with_mask box ranks below both true ones
    assert result.map50 == pytest.approx(2 / 3, abs=1e-4)
    assert result.face_ap50 == 1.0  # the detector itself was perfect
    matrix = np.asarray(result.confusion["matrix"])
    assert matrix[2, 0] == 1 and matrix[2, 2] == 0


def test_missed_and_false_faces_in_confusion():
    preds = [_pred([[10, 10, 50, 50], [150, 0, 190, 40]], [0, 1]), FaceDetections.empty()]
    m = confusion_matrix(IMAGES, preds, 0.5)
    c = len(CLASS_NAMES)
    assert m[0, 0] == 1  # matched with_mask
    assert m[c, 1] == 1  # false positive without_mask
    assert m[1, c] == 1 and m[0, c] == 1 and m[2, c] == 1  # three missed faces
    result = score(IMAGES, preds)
    assert result.recall["face"] == 0.25


def test_classes_absent_from_ground_truth_are_not_averaged():
    images = [_gt([[0, 0, 20, 20]], [0])]
    result = score(images, [_pred([[0, 0, 20, 20]], [0])])
    assert list(result.ap50) == ["with_mask"] and result.map50 == 1.0


def _write_voc(root: Path, items) -> None:
    (root / "images").mkdir(parents=True)
    (root / "annotations").mkdir()
    for stem, boxes, names in items:
        cv2.imwrite(str(root / "images" / f"{stem}.png"), np.zeros((120, 160, 3), np.uint8))
        objects = "".join(
            f"<object><name>{n}</name><bndbox><xmin>{b[0]}</xmin><ymin>{b[1]}</ymin>"
            f"<xmax>{b[2]}</xmax><ymax>{b[3]}</ymax></bndbox></object>"
            for b, n in zip(boxes, names, strict=True)
        )
        (root / "annotations" / f"{stem}.xml").write_text(
            f"<annotation><filename>{stem}.png</filename><size><width>160</width><height>120</height></size>"
            f"{objects}</annotation>"
        )


ITEMS = [
    ("img0", [[10, 20, 50, 60], [80, 10, 120, 40]], ["with_mask", "without_mask"]),
    ("img1", [[0, 0, 30, 30]], ["mask_weared_incorrect"]),
]


def test_yolo_and_coco_readers_agree_with_voc(tmp_path):
    voc = tmp_path / "voc"
    _write_voc(voc, ITEMS)
    expected = read_voc(voc)

    yolo = tmp_path / "yolo"
    (yolo / "images").mkdir(parents=True)
    (yolo / "labels").mkdir()
    (yolo / "data.yaml").write_text("names: [mask, no-mask, incorrect_mask]\n")
    coco = {
        "images": [],
        "annotations": [],
        "categories": [
            {"id": 1, "name": "with_mask"},
            {"id": 2, "name": "without_mask"},
            {"id": 3, "name": "mask_weared_incorrect"},
        ],
    }
    for i, (stem, boxes, names) in enumerate(ITEMS):
        cv2.imwrite(str(yolo / "images" / f"{stem}.png"), np.zeros((120, 160, 3), np.uint8))
        lines = []
        for b, n in zip(boxes, names, strict=True):
            cls = CLASS_NAMES.index(n)
            cx, cy, w, h = (b[0] + b[2]) / 2 / 160, (b[1] + b[3]) / 2 / 120, (b[2] - b[0]) / 160, (b[3] - b[1]) / 120
            lines.append(f"{cls} {cx:.6f} {cy:.6f} {w:.6f} {h:.6f}")
            coco["annotations"].append(
                {
                    "id": len(coco["annotations"]),
                    "image_id": i,
                    "category_id": cls + 1,
                    "bbox": [b[0], b[1], b[2] - b[0], b[3] - b[1]],
                    "iscrowd": 0,
                }
            )
        (yolo / "labels" / f"{stem}.txt").write_text("\n".join(lines) + "\n")
        coco["images"].append({"id": i, "file_name": f"{stem}.png", "width": 160, "height": 120})
    (tmp_path / "coco.json").write_text(json.dumps(coco))

    for got in (read_yolo(yolo), read_coco(tmp_path / "coco.json", voc / "images"), read_dataset(yolo)):
        assert len(got) == len(expected)
        for a, b in zip(got, expected, strict=True):
            assert a.image_path.stem == b.image_path.stem
            np.testing.assert_allclose(a.xyxy, b.xyxy, atol=1e-3)
            assert a.class_id.tolist() == b.class_id.tolist()


def test_unknown_class_and_unknown_layout_are_clear(tmp_path):
    _write_voc(tmp_path / "v", [("x", [[0, 0, 5, 5]], ["cat"])])
    with pytest.raises(MaskwatchError, match="unknown class 'cat'"):
        read_voc(tmp_path / "v")
    (tmp_path / "empty").mkdir()
    with pytest.raises(MaskwatchError, match="not a recognised dataset"):
        read_dataset(tmp_path / "empty")


def test_the_printed_scores_name_classes_as_users_read_them():
    lines = report_lines(score(IMAGES, [_pred(g.xyxy, g.class_id) for g in IMAGES]))
    assert "  AP mask worn incorrectly: 1.0000" in lines
    assert not any("mask_weared_incorrect" in line for line in lines)  # the dataset's spelling stays in the JSON
