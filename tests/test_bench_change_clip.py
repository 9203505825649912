"""The benchmark tool renders a person whose face changes label into two label spells that meet at the change frame
(tools/bench_cases.py, tools/make_video_bench.py; a synthetic scene and faces, no ../shared)."""

from __future__ import annotations

import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from maskwatch.commands.eval_video.truth import read_clip
from maskwatch.data.voc import AnnotatedImage

TOOLS = Path(__file__).resolve().parents[1] / "tools"


@pytest.fixture
def tools(monkeypatch):
    monkeypatch.syspath_prepend(str(TOOLS))
    import bench_cases
    import make_video_bench

    yield make_video_bench, bench_cases
    for name in ("bench_cases", "make_video_bench"):
        sys.modules.pop(name, None)


def _sprite(mvb, colour: tuple[int, int, int], label: str):
    bgr = np.zeros((60, 50, 3), np.uint8)
    bgr[:] = colour
    return mvb.Sprite(bgr, np.ones((60, 50), np.float32), (10.0, 10.0, 40.0, 50.0), label)


def test_a_face_swapped_at_a_known_time_gives_two_spells(tmp_path: Path, tools) -> None:
    mvb, cases = tools
    scene_path = tmp_path / "scene.png"
    cv2.imwrite(str(scene_path), np.full((120, 160, 3), 90, np.uint8))
    scene = AnnotatedImage(scene_path, np.zeros((0, 4), np.float32), np.zeros(0, np.int64), (160, 120))
    bare, masked = _sprite(mvb, (40, 160, 220), "without_mask"), _sprite(mvb, (200, 200, 200), "with_mask")
    walker = mvb._walk(1, bare, 0.0, 2.0, (0.3, 0.5), (0.7, 0.5), (30, 30))
    walker.pose = cases.changes_at(bare, masked, 1.0)
    spec = mvb.ClipSpec("change", 2.0, [scene], [mvb.Shot(0, 0, [(0, 0.5, 0.5, 1.0)])], [walker], size_wh=(160, 120))
    spec.fps = 10.0
    assert mvb.render_clip(spec, tmp_path / "change") == 20
    truth = read_clip(tmp_path / "change")
    spells = [(s.person, s.first, s.last, s.label) for s in truth.spells]
    assert spells == [(1, 1, 10, "without_mask"), (1, 11, 20, "with_mask")]  # frame 11 is t = 1.0 s
