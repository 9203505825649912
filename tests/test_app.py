"""The ``run`` command's monitoring options: --events, --http, --report, checked as a user would see them."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from maskwatch.errors import ConfigError
from maskwatch.serve.bind import parse_bind
from maskwatch.serve.web import is_loopback
from tests.test_cli import assert_user_error, maskwatch


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("127.0.0.1:8080", ("127.0.0.1", 8080)),
        (":9000", ("127.0.0.1", 9000)),
        ("9000", ("127.0.0.1", 9000)),
        ("0.0.0.0:80", ("0.0.0.0", 80)),
        ("[::1]:8080", ("::1", 8080)),
        ("localhost:0", ("localhost", 0)),
    ],
)
def test_parse_bind(text, expected):
    assert parse_bind(text) == expected


@pytest.mark.parametrize("text", ["host:", "host:http", "1.2.3.4:70000", ""])
def test_parse_bind_rejects_bad_values(text):
    with pytest.raises(ConfigError, match="HOST:PORT"):
        parse_bind(text)


def test_loopback_hosts():
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost") and is_loopback("127.1.2.3")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.5") and not is_loopback("example.com")


@pytest.mark.parametrize(
    ("extra", "fragments"),
    [
        (["--http", "0.0.0.0:8080"], ["serves beyond this machine", "--http-token"]),
        (["--http", "nonsense:port"], ["HOST:PORT"]),
        (["--detect-every", "0"], ["--detect-every must be at least 1"]),
        (["--webhook", "ftp://example.com/x"], ["webhook"]),
    ],
)
def test_monitoring_user_errors(video, extra, fragments):
    assert_user_error(maskwatch("run", "--source", str(video), *extra), *fragments)


def test_events_need_tracking(tmp_path):
    image = tmp_path / "a.png"
    cv2.imwrite(str(image), np.zeros((64, 64, 3), np.uint8))
    proc = maskwatch("run", "--source", str(image), "--events", str(tmp_path / "e.jsonl"))
    assert_user_error(proc, "--events needs a video")
    proc = maskwatch("run", "--source", str(image), "--no-track", "--events", str(tmp_path / "e.jsonl"))
    assert_user_error(proc, "--events needs a video")


def test_run_with_events_writes_report_next_to_the_output(tmp_path, video):
    out = tmp_path / "annotated.mp4"
    events = tmp_path / "events.jsonl"
    proc = maskwatch(
        "run", "--source", str(video), "--output", str(out), "--events", str(events), "--blur-faces", "--no-progress"
    )
    assert proc.returncode == 0, proc.stderr
    assert events.exists()  # synthetic squares are no faces: an empty log, but there
    report = json.loads((tmp_path / "annotated.report.json").read_text())
    assert report["summary"]["frames"] == 12 and report["people"]["total"] == 0
    assert (tmp_path / "annotated.report.md").exists()
    png = cv2.imread(str(tmp_path / "annotated.compliance.png"))
    assert png is not None and png.shape[0] > 100
    # --report puts it elsewhere (in an existing folder, like every output)
    (tmp_path / "r").mkdir()
    proc = maskwatch("run", "--source", str(video), "--report", str(tmp_path / "r" / "x"), "--no-progress")
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "r" / "x.report.json").exists()


def test_report_prefix_never_shares_a_report_between_outputs(tmp_path):
    import argparse

    from maskwatch.commands.options import report_prefix

    def prefix(output=None, events=None, report=None):
        return report_prefix(argparse.Namespace(output=output, events=events, report=report))

    assert prefix(output=tmp_path / "out.mp4") == tmp_path / "out"  # the usual case: out.report.json
    assert prefix(output=tmp_path / "out.MP4") == tmp_path / "out"
    others = [prefix(output=tmp_path / f"out{suffix}") for suffix in (".mkv", ".avi", ".mov")]
    assert others == [tmp_path / "out.mkv", tmp_path / "out.avi", tmp_path / "out.mov"]  # out.mkv.report.json …
    assert len({tmp_path / "out", *others}) == 4
    assert prefix(output=tmp_path / "out.mkv", report=tmp_path / "r") == tmp_path / "r"  # --report as given
    assert prefix(events=tmp_path / "events.jsonl") == tmp_path / "events"
    assert prefix(output=tmp_path / "frames", events=tmp_path / "e.jsonl") == tmp_path / "e"  # images: the events'
    assert prefix() is None
