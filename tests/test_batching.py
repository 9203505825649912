"""Frames batched when the consumer is behind (the CUDA path): same results as one frame at a time, in order."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from maskwatch.capture.sources import VideoFileSource
from maskwatch.config import Config
from maskwatch.models.retinaface import RetinaFaceDetector
from maskwatch.monitor.pipeline import FacePipeline
from maskwatch.outputs.sinks import Sink
from maskwatch.runner.single import run
from maskwatch.types import Frame
from maskwatch.wiring import batch_frames, build_monitor
from tests.conftest import FakeClassifier, FakeDetector, write_video


def _frames(n: int, size_hw=(120, 160), seed: int = 0) -> list[Frame]:
    rng = np.random.default_rng(seed)
    return [
        Frame(image=rng.integers(0, 255, (*size_hw, 3), dtype=np.uint8), index=i, timestamp_s=i / 10) for i in range(n)
    ]


def _same(a, b) -> None:
    np.testing.assert_allclose(a.xyxy, b.xyxy, atol=1e-3)
    np.testing.assert_allclose(a.det_score, b.det_score, atol=1e-5)
    np.testing.assert_array_equal(a.class_id, b.class_id)
    np.testing.assert_array_equal(a.track_id, b.track_id)


def test_detector_batch_equals_one_by_one():
    torch.manual_seed(0)
    detector = RetinaFaceDetector.random_init(input_size=160, score_threshold=0.3)
    images = [f.image for f in _frames(3)] + [_frames(1, (90, 200), seed=1)[0].image]  # a size of its own
    for one, batched in zip([detector.detect(i) for i in images], detector.detect_batch(images), strict=True):
        assert len(one) > 0
        _same(one, batched)


def test_pipeline_batch_equals_one_by_one():
    pipeline = FacePipeline(FakeDetector(), FakeClassifier())
    frames = _frames(4)
    for f in frames[::2]:
        f.image[20:60, 30:80] = 240  # a bright "face" on some frames, none on the others
    for one, batched in zip([pipeline(f) for f in frames], pipeline.process_batch(frames), strict=True):
        assert batched.frame is one.frame
        _same(one.faces, batched.faces)
        np.testing.assert_allclose(one.faces.class_prob, batched.faces.class_prob)


def test_monitor_batch_tracks_like_one_by_one(tmp_path):
    video = write_video(tmp_path / "v.mp4", frames=30)
    cfg = Config()
    cfg.tracking.detect_every = 2

    def monitor():
        return build_monitor(cfg, FacePipeline(FakeDetector(), FakeClassifier()), source_name="v", fps=10, live=False)

    source = VideoFileSource(video)
    frames = []
    while (item := source.read()) is not None:
        frames.append(Frame(image=item[0], index=len(frames), timestamp_s=len(frames) / 10))
    one, batched = monitor(), monitor()
    a = [one(f) for f in frames]
    b = [r for i in range(0, len(frames), 4) for r in batched.process_batch(frames[i : i + 4])]
    assert [r.detected for r in a] == [r.detected for r in b]
    for x, y in zip(a, b, strict=True):
        _same(x.faces, y.faces)
    assert [e.to_json()["event"] for e in one.events] == [e.to_json()["event"] for e in batched.events]


class _Recording(FacePipeline):
    def __init__(self) -> None:
        super().__init__(FakeDetector(delay_s=0.02), FakeClassifier())
        self.batches: list[int] = []

    def process_batch(self, frames):
        self.batches.append(len(frames))
        return super().process_batch(frames)


def test_runner_batches_the_waiting_frames_and_keeps_their_order(tmp_path):
    video = write_video(tmp_path / "v.mp4", frames=40)
    pipeline = _Recording()
    seen = []

    class Collect(Sink):
        data_only = True

        def write(self, result, annotated):
            seen.append((result.frame_index, len(result.faces)))

        def close(self):
            pass

    stats = run(VideoFileSource(video), pipeline, [Collect()], progress=False, batch_frames=4)
    assert [i for i, _ in seen] == list(range(40)) and stats.frames == 40
    assert pipeline.batches and max(pipeline.batches) <= 4  # the slow consumer fell behind: batches were made
    reference = [len(FacePipeline(FakeDetector(), FakeClassifier())(f).faces) for f in _video_frames(video)]
    assert [n for _, n in seen] == reference


def _video_frames(video) -> list[Frame]:
    source = VideoFileSource(video)
    frames = []
    while (item := source.read()) is not None:
        frames.append(Frame(image=item[0], index=len(frames), timestamp_s=0.0))
    return frames


def test_batch_size_defaults_by_device():
    cfg = Config()
    assert batch_frames(cfg) == 1
    cfg.runtime.device = "cuda"
    assert batch_frames(cfg) == 8
    cfg.runtime.batch_frames = 3
    assert batch_frames(cfg) == 3


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_detector_batch_matches_cpu():
    torch.manual_seed(0)
    net_cpu = RetinaFaceDetector.random_init(input_size=160, score_threshold=0.3)
    net_gpu = RetinaFaceDetector(model=net_cpu.model, input_size=160, score_threshold=0.3, device="cuda")
    images = [f.image for f in _frames(8)]
    for a, b in zip(net_cpu.detect_batch(images), net_gpu.detect_batch(images), strict=True):
        np.testing.assert_allclose(a.xyxy, b.xyxy, atol=0.5)
