import json

import cv2
import numpy as np
import pytest

from maskwatch.errors import OutputError
from maskwatch.monitor.records import PersonRecord, TimelinePoint, compliance, masked_share
from maskwatch.outputs.report import downsample, write_report
from maskwatch.types import MaskClass


def _people() -> list[PersonRecord]:
    return [
        PersonRecord(1, 0.0, 4.0, 40, "with_mask", False, 0),
        PersonRecord(2, 1.0, 6.0, 50, "with_mask", True, 1),
        PersonRecord(3, 2.0, 9.5, 70, "without_mask", True, 2),
        PersonRecord(4, 3.0, 5.0, 20, "mask_weared_incorrect", True, 1),
        PersonRecord(5, 8.0, 8.2, 2, None, False, 0),
    ]


def _timeline(n: int = 100, dt: float = 0.1) -> list[TimelinePoint]:
    points = []
    for i in range(n):
        w, wo, inc, und = (i // 10) % 3, (i // 25) % 2, 1 if 30 <= i < 50 else 0, 1 if i % 7 == 0 else 0
        points.append(TimelinePoint(i * dt, w + wo + inc + und, w, wo, inc, und))
    return points


def _events() -> list[dict]:
    events = []
    for i, (kind, label) in enumerate(
        [("alert", "without_mask"), ("alert", "without_mask"), ("alert", "mask_weared_incorrect")]
        + [("alert", "with_mask"), ("label_change", "with_mask"), ("track_end", None)]
    ):
        events.append(
            {
                "event": kind,
                "ts": f"2024-01-01T00:00:0{i}Z",
                "source": "cam",
                "frame": 10 * i,
                "track_id": i + 1,
                "label": label,
                "confidence": 0.9 - i / 100,
                "box": [1.0, 2.0, 3.0, 4.0],
            }
        )
    return events


def test_compliance_counts_people_never_seen_unmasked():
    assert compliance(decided=0, unmasked=0) is None
    assert compliance(decided=5, unmasked=4) == pytest.approx(0.2)  # not 100 % because the last labels are masks
    assert compliance(decided=4, unmasked=0) == 1.0


def test_masked_share_at_one_moment():
    assert masked_share(0, 0, 0) is None
    assert masked_share(3, 1, 0) == pytest.approx(0.75)
    assert masked_share(0, 2, 2) == 0.0


def test_downsample_keeps_ends_and_bound():
    points = list(range(5000))
    out = downsample(points, 2000)
    assert len(out) == 2000 and out[0] == 0 and out[-1] == 4999 and out == sorted(out)
    assert downsample(points[:10], 2000) == points[:10]


def test_write_report_values(tmp_path):
    prefix = tmp_path / "out" / "annotated"
    summary = {"frames": 950, "processing_fps": 10.0, "wall_s": 97.25, "dropped": 3}
    paths = write_report(
        prefix,
        source="rtsp://admin:pw@cam/x",
        summary=summary,
        people=_people(),
        timeline=_timeline(),
        events=_events(),
    )
    names = [p.name for p in paths]
    assert names == ["annotated.report.json", "annotated.report.md", "annotated.compliance.png"]
    assert all(p.parent == prefix.parent and p.is_file() for p in paths)
    assert sorted(p.name for p in prefix.parent.iterdir()) == sorted(names)  # no temp files left

    report = json.loads(paths[0].read_text())
    assert report["source"] == "rtsp://***@cam/x"
    assert report["summary"] == summary
    assert report["people"] == {
        "total": 5,
        "with_mask": 2,
        "without_mask": 1,
        "mask_weared_incorrect": 1,
        "undecided": 1,
        "unmasked": 3,
    }
    # 4 people decided, 3 of them seen unmasked (one of those ends with a mask on): 1 of 4 compliant
    assert report["compliance"] == pytest.approx(0.25)
    assert report["alerts"] == 4
    assert report["events"]["count"] == 6
    assert report["events"]["by_type"] == {"alert": 4, "label_change": 1, "track_end": 1}
    assert report["events"]["by_label"] == {
        "without_mask": 2,
        "mask_weared_incorrect": 1,
        "with_mask": 2,
        "undecided": 1,
    }
    assert report["tracks"][2] == {
        "track_id": 3,
        "first_s": 2.0,
        "last_s": 9.5,
        "frames": 70,
        "label": "without_mask",
        "unmasked": True,
        "alerts": 2,
    }
    timeline = report["timeline"]
    assert len(timeline) == 100
    assert set(timeline[0]) == {"t_s", "in_view", "with_mask", "without_mask", "incorrect", "undecided", "compliance"}
    assert timeline[0]["compliance"] is None  # only an undecided person in view at t=0
    assert timeline[12] == {
        "t_s": 1.2,
        "in_view": 1,
        "with_mask": 1,
        "without_mask": 0,
        "incorrect": 0,
        "undecided": 0,
        "compliance": 1.0,
    }

    md = paths[1].read_text()
    assert "rtsp://***@cam/x" in md and "pw" not in md
    assert "Frames: 950, processed at 10.0 frames/s (maskwatch's speed)" in md
    assert "People: 5" in md and "mask 2" in md and "no mask 1" in md and "mask worn incorrectly 1" in md
    assert "mask_weared_incorrect" not in md
    assert "Unmasked at some point (no mask, or worn incorrectly): 3" in md
    assert "Compliance: 25.0 % (people never seen without a mask" in md and "Alerts: 4" in md
    table = [line for line in md.splitlines() if line.startswith("| ")]
    assert len(table) == 1 + 4  # header + one row per alert
    assert "| 2024-01-01T00:00:00Z | 1 | no mask | 0.90 |" in md

    image = cv2.imread(str(paths[2]))
    assert image is not None and image.shape[0] >= 300 and image.shape[1] >= 500
    assert image.std() > 10  # something was drawn
    # the stacked areas use the label colours (green for with_mask, red for without_mask)
    assert np.any(np.all(np.abs(image.astype(int) - MaskClass.WITH_MASK.color) < 8, axis=2))
    assert np.any(np.all(np.abs(image.astype(int) - MaskClass.WITHOUT_MASK.color) < 8, axis=2))


def test_long_timeline_is_downsampled_and_many_alerts_truncated(tmp_path):
    events = [
        {"event": "alert", "ts": "t", "frame": i, "track_id": i, "label": "without_mask", "confidence": 0.8}
        for i in range(130)
    ]
    paths = write_report(
        tmp_path / "r",
        source="video.mp4",
        summary={"frames": 5000, "source_fps": 25.0},
        people=[],
        timeline=_timeline(n=5000, dt=0.04),
        events=events,
    )
    report = json.loads(paths[0].read_text())
    assert len(report["timeline"]) == 2000
    assert report["timeline"][-1]["t_s"] == pytest.approx(4999 * 0.04)
    assert report["events"]["count"] == 130 and report["compliance"] is None
    md = paths[1].read_text()
    assert len([line for line in md.splitlines() if line.startswith("| ")]) == 1 + 100
    assert "… and 30 more" in md
    assert cv2.imread(str(paths[2])) is not None


def test_empty_inputs(tmp_path):
    paths = write_report(tmp_path / "empty", source="cam0", summary={}, people=[], timeline=[], events=[])
    report = json.loads(paths[0].read_text())
    assert report["people"]["total"] == 0 and report["compliance"] is None and report["alerts"] == 0
    assert report["events"] == {"count": 0, "by_type": {}, "by_label": {}}
    assert report["tracks"] == [] and report["timeline"] == []
    md = paths[1].read_text()
    assert "Compliance: n/a" in md and "No alerts." in md
    image = cv2.imread(str(paths[2]))
    assert image is not None and image.std() > 1
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in paths)


def test_single_point_timeline(tmp_path):
    timeline = [TimelinePoint(3.0, 2, 1, 1, 0, 0)]
    paths = write_report(tmp_path / "one", source="x", summary={}, people=[], timeline=timeline, events=[])
    assert json.loads(paths[0].read_text())["timeline"][0]["compliance"] == 0.5
    assert cv2.imread(str(paths[2])) is not None


def test_unwritable_destination_is_an_output_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(OutputError, match="report"):
        write_report(blocker / "sub" / "r", source="x", summary={}, people=[], timeline=[], events=[])


class _Source:
    """What :func:`write_run_report` reads of a source."""

    frames_lost = 0

    def __init__(self, *, finite: bool = True, truncated: bool = False, frame_count: int | None = 400) -> None:
        self.name, self.finite, self.truncated, self.frame_count = "in.mp4", finite, truncated, frame_count


@pytest.mark.parametrize(
    ("source", "stopped_early", "reason"),
    [
        (_Source(), False, None),
        (_Source(), True, "interrupted"),  # SIGINT/SIGTERM (or the window closed) before the file's end
        (_Source(truncated=True), False, "truncated input (37 of 400 frames)"),
        (_Source(finite=False, frame_count=None), True, None),  # a camera: a signal is how its run ends
    ],
    ids=["complete", "interrupted", "truncated", "live"],
)
def test_run_report_says_whether_it_is_partial(tmp_path, source, stopped_early, reason):
    from maskwatch.monitor.monitor import Monitor
    from maskwatch.monitor.pipeline import FacePipeline
    from maskwatch.monitor.track import FaceTracker
    from maskwatch.outputs.report import write_run_report
    from maskwatch.runner.single import RunStats
    from tests.conftest import FakeClassifier, FakeDetector

    monitor = Monitor(FacePipeline(FakeDetector(), FakeClassifier()), FaceTracker())
    stats = RunStats(frames=37, wall_s=3.7, stopped_early=stopped_early)
    write_run_report(tmp_path / "out", source, stats, monitor)
    summary = json.loads((tmp_path / "out.report.json").read_text())["summary"]
    assert {"frames", "wall_s", "processing_fps", "dropped", "detect_every", "stage_ms"} <= set(summary)
    assert summary["frames"] == 37
    assert summary["partial"] is (reason is not None) and summary["partial_reason"] == reason
    md = (tmp_path / "out.report.md").read_text()
    partial_lines = [line for line in md.splitlines() if "artial" in line]
    assert partial_lines == ([] if reason is None else [f"- Partial report: {reason}"]), md
