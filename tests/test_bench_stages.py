"""``maskwatch bench --stages``: per-frame cost of decode, inference, render and encode (the batch plan's input)."""

from __future__ import annotations

from maskwatch.commands.bench.stages import stage_costs, stage_lines
from maskwatch.config import Config
from tests.conftest import write_video


def test_stage_costs_time_every_stage_on_the_video(tmp_path):
    video = write_video(tmp_path / "v.mp4", frames=12, size_wh=(160, 120))
    cfg = Config()
    cfg.runtime.precision = "fp32"
    costs = stage_costs(cfg, video, frames=8)
    assert costs["frames"] == 8 and costs["size_wh"] == [160, 120] and costs["threads"] == 1
    for stage in ("decode", "infer", "render", "encode"):
        assert costs[f"{stage}_ms"] > 0
    assert costs["out_bytes_per_frame"] > 0 and costs["in_bytes_per_frame"] > 0
    lines = stage_lines(costs)
    assert lines[0].startswith("per frame at 160x120") and "frames/s per core" in lines[-2]
