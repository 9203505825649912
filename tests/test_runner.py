import json
import threading
import time

import numpy as np
import pytest

from maskwatch.capture.sources import open_source
from maskwatch.monitor.pipeline import FacePipeline
from maskwatch.outputs.render import OverlayRenderer
from maskwatch.outputs.sinks import JsonLinesSink, Sink, VideoSink
from maskwatch.runner.single import run
from maskwatch.types import FaceDetections, Frame, FrameResult
from tests.conftest import FakeClassifier, FakeDetector, count_frames, write_video
from tests.test_capture import FastLiveSource


def _pipeline(**kw) -> FacePipeline:
    return FacePipeline(FakeDetector(**kw), FakeClassifier(), crop_margin=0.1)


def test_file_to_video_keeps_every_frame_size_and_fps(tmp_path):
    src_path = write_video(tmp_path / "in.mp4", frames=25, size_wh=(160, 120), fps=12.0)
    source = open_source(str(src_path))
    out = tmp_path / "out.mp4"
    with VideoSink(out, fps=source.fps) as video, JsonLinesSink(tmp_path / "d.jsonl") as jsonl:
        stats = run(source, _pipeline(), [video, jsonl], OverlayRenderer(), queue_size=2, progress=False)
    assert stats.frames == 25 and stats.dropped == 0
    n, size, fps = count_frames(out)
    assert (n, size) == (25, (160, 120))
    assert fps == pytest.approx(12.0, abs=0.01)
    records = [json.loads(line) for line in (tmp_path / "d.jsonl").read_text().splitlines()]
    assert [r["frame"] for r in records] == list(range(25))
    face = records[0]["faces"][0]
    assert face["label"] == "without_mask" and face["score"] == pytest.approx(0.8)
    assert face["box"][0] < face["box"][2] and face["det_score"] == pytest.approx(0.9)


def test_renderer_draws_class_colour_around_face():
    image = np.zeros((100, 100, 3), np.uint8)
    faces = FaceDetections(xyxy=[[20, 30, 60, 80]], det_score=[0.9], class_id=[1], class_prob=[[0.1, 0.8, 0.1]])
    out = OverlayRenderer(hud=False).annotate(FrameResult(Frame(image, 0, 0.0), faces))
    assert image.sum() == 0  # input untouched
    assert tuple(out[55, 20]) == (0, 0, 230)  # left edge of the box is red (BGR) for without_mask
    assert tuple(out[55, 40]) == (0, 0, 0)  # inside untouched


def test_stage_error_ends_run_quickly_and_joins_producer(tmp_path):
    source = open_source(str(write_video(tmp_path / "in.mp4", frames=60)))
    before = threading.active_count()
    start = time.monotonic()
    with pytest.raises(RuntimeError, match="detector exploded"), VideoSink(tmp_path / "o.mp4", fps=10) as video:
        run(source, _pipeline(fail_at=5), [video], OverlayRenderer(), queue_size=1, progress=False)
    assert time.monotonic() - start < 5
    assert threading.active_count() == before
    n, _, _ = count_frames(tmp_path / "o.mp4")
    assert n == 5  # what was processed before the failure is in a playable file


def test_sink_error_propagates(tmp_path):
    class BrokenSink(Sink):
        def write(self, result, annotated):
            raise OSError("disk full")

        def close(self):
            pass

    source = open_source(str(write_video(tmp_path / "in.mp4", frames=10)))
    with pytest.raises(OSError, match="disk full"):
        run(source, _pipeline(), [BrokenSink()], OverlayRenderer(), progress=False)


def test_live_source_drops_and_stays_fresh():
    """A camera far faster than the consumer: frames are dropped and what is shown stays recent."""
    delay = 0.02
    camera = FastLiveSource(n=300, period_s=0.001)
    stop = threading.Event()
    camera.on_end = stop.set  # the camera is "unplugged" by the user after 300 frames
    stats = run(camera, _pipeline(delay_s=delay), [], None, stop=stop, live_queue_size=2, progress=False)
    assert stats.dropped > 100
    assert stats.frames + stats.dropped == 300
    ages = stats.age_percentiles()
    # a shown frame waited at most for the queue (2 frames) plus its own processing: about 3 x delay
    assert ages["median_ms"] < 6 * delay * 1e3


def test_stop_event_drains_and_finishes(tmp_path):
    source = open_source(str(write_video(tmp_path / "in.mp4", frames=200)))
    stop = threading.Event()
    timer = threading.Timer(0.3, stop.set)
    timer.start()
    with VideoSink(tmp_path / "o.mp4", fps=10) as video:
        stats = run(source, _pipeline(delay_s=0.01), [video], OverlayRenderer(), stop=stop, progress=False)
    assert stats.stopped_early and 0 < stats.frames < 200
    n, _, _ = count_frames(tmp_path / "o.mp4")
    assert n == stats.frames


class _CountingRenderer(OverlayRenderer):
    def __init__(self) -> None:
        super().__init__(hud=False)
        self.drawn = 0

    def draw(self, overlay, image):
        self.drawn += 1
        return super().draw(overlay, image)


class _LazySink(Sink):
    """A lazy sink that keeps the pictures it is handed and draws none."""

    lazy = True

    def __init__(self) -> None:
        self.pictures: list = []

    def write_picture(self, result, picture) -> None:
        self.pictures.append(picture)


def test_frames_are_drawn_once_for_the_sinks_that_take_pixels_and_never_for_lazy_ones_alone(tmp_path):
    src = write_video(tmp_path / "in.mp4", frames=12, size_wh=(160, 120))
    renderer, lazy = _CountingRenderer(), _LazySink()
    run(open_source(str(src)), _pipeline(), [lazy], renderer, queue_size=2, progress=False)
    assert len(lazy.pictures) == 12 and renderer.drawn == 0  # no one asked for pixels
    lazy.pictures[3].annotated()
    lazy.pictures[3].annotated()
    assert renderer.drawn == 1  # drawn when first asked, then kept
    renderer, lazy = _CountingRenderer(), _LazySink()
    with VideoSink(tmp_path / "out.mp4", fps=10) as video:
        run(open_source(str(src)), _pipeline(), [video, lazy], renderer, queue_size=2, progress=False)
    assert renderer.drawn == 12 and all(p.is_drawn for p in lazy.pictures)  # the video's drawing, shared
