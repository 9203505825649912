"""The report's compliance chart (OpenCV): stacked people counts, compliance line, alert lines, empty case."""

from __future__ import annotations

import numpy as np

from maskwatch.outputs.chart import compliance_chart

GREEN, RED, ORANGE, GREY = (44, 160, 44), (40, 39, 214), (14, 127, 255), (158, 158, 158)


def _pixels(image: np.ndarray, color) -> int:
    return int(np.all(image == np.array(color, np.uint8), axis=-1).sum())


def test_chart_draws_each_label_in_proportion_and_marks_alerts() -> None:
    t = np.arange(10, dtype=np.float64)
    counts = np.array([[2] * 10, [1] * 5 + [0] * 5, [0] * 10, [0] * 10], np.float64)  # mask, no mask, ...
    image = compliance_chart("t", t, counts, ("mask", "no mask", "incorrect", "undecided"),
                             [GREEN, RED, ORANGE, GREY], t, np.full(10, 80.0), [3.0], RED)  # fmt: skip
    assert image.shape == (600, 1000, 3)
    top = image[60:330]
    green, red = _pixels(top, GREEN), _pixels(top, RED)
    assert green > 0 and red > 0
    assert 3.0 < green / red < 5.5  # 2 people for the whole time vs 1 person for half of it: about 4x the area
    assert _pixels(top, ORANGE) < 200  # the legend swatch only
    column = int(60 + 3.0 / 9.0 * (1000 - 20 - 60))  # the alert's dashed line crosses both panels
    assert _pixels(image[:, column - 1 : column + 2], RED) > 100


def test_chart_without_people_says_so() -> None:
    empty = compliance_chart("t", np.zeros(0), np.zeros((4, 0)), ("a", "b", "c", "d"), [GREEN, RED, ORANGE, GREY],
                             np.zeros(0), np.zeros(0), [], RED)  # fmt: skip
    assert _pixels(empty, GREEN) == 0 and _pixels(empty, RED) == 0
    assert (empty < 100).any()  # the axes and the "no people seen" note are drawn
