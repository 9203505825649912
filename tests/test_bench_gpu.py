"""``maskwatch bench --device``: per-model latency by batch, end-to-end fps and the CPU's video I/O ceilings."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from maskwatch.commands.bench.device import device_bench, device_lines
from maskwatch.config import Config
from tests.conftest import write_video


def test_device_bench_on_the_cpu_reports_every_number(tmp_path):
    video = write_video(tmp_path / "v.mp4", frames=12, size_wh=(160, 120))
    result = device_bench(
        Config(), video, device="cpu", sizes=((160, 120),), batches=(1, 2), frames=8, runs=2, repeats=2
    )
    entry = result["sizes"]["160x120"]
    assert set(entry["detector_ms"]) == {1, 2} and entry["best_batch"] in (1, 2)
    assert all(entry[k][b]["runs"] == 2 for k in ("detector_ms", "classifier_ms") for b in (1, 2))
    assert result["repeats"] == 2
    assert entry["decode_fps"] > 0 and entry["encode_fps"] > 0
    assert entry["end_to_end_fps"]["batch_1"] > 0 and entry["end_to_end_fps"]["best"] > 0
    assert entry["bound_by"] in ("decode (CPU)", "encode (CPU)", "models (batched)")
    assert "bound by" in device_lines(result)[2]


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message of a machine without a GPU")
def test_bench_on_cuda_without_a_gpu_is_one_clear_line():
    proc = subprocess.run(
        [sys.executable, "-m", "maskwatch", "bench", "--device", "cuda"], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert "no CUDA GPU is available" in proc.stderr


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_device_bench_on_cuda(tmp_path):
    video = write_video(tmp_path / "v.mp4", frames=12, size_wh=(320, 240))
    result = device_bench(Config(), video, device="cuda", sizes=((320, 240),), batches=(1, 4), frames=8, runs=3)
    assert result["sizes"]["320x240"]["end_to_end_fps"]["best"] > 0
