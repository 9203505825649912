"""Messy inputs as people have them: file names that are not UTF-8, a damaged stretch in a recording, photos
with other names, odd ``--source`` values, a recording served over HTTP, two runs writing one output.

Each case records one row of the reliability table. Command-line cases are ``maskwatch run`` processes forked
from a helper that has already imported maskwatch (see :class:`~tests.reliability.test_bad_input.ForkedCli`).
"""

from __future__ import annotations

import functools
import http.server
import os
import re
import threading
from pathlib import Path

import cv2
import numpy as np
import pytest

from tests.conftest import write_video
from tests.reliability.test_bad_input import ForkedCli, user_error_problems

AREA = "messy input"
FP32 = ("--precision", "fp32", "--no-progress")
LATIN1 = os.fsdecode(b"caf\xe9")
"""``café`` as a Latin-1 name on a UTF-8 system (Python holds it with a surrogate escape)."""


@pytest.fixture(scope="module")
def cli(tmp_path_factory):
    forked = ForkedCli(tmp_path_factory.mktemp("cli"))
    yield forked
    forked.close()


def _jpeg(value: int = 120, size_wh: tuple[int, int] = (80, 60)) -> bytes:
    image = np.full((size_wh[1], size_wh[0], 3), value, np.uint8)
    cv2.circle(image, (size_wh[0] // 2, size_wh[1] // 2), 15, (200, 200, 255), -1)
    return cv2.imencode(".jpg", image)[1].tobytes()


def _frames(path: Path | str) -> int:
    cap = cv2.VideoCapture(str(path))
    n = 0
    while cap.isOpened() and cap.read()[0]:
        n += 1
    cap.release()
    return n


def _problems(run, fragments: tuple[str, ...] = ()) -> list[str]:
    problems = [] if run.returncode == 0 else [f"exit {run.returncode}"]
    problems += ["traceback printed"] if "Traceback" in run.stderr else []
    return problems + [f"no {f!r} in the log" for f in fragments if f not in run.stderr]


def _row(record, case: str, expected: str, observed: str, problems: list[str]) -> None:
    if problems:
        observed += "; PROBLEMS: " + ", ".join(problems)
    record(AREA, case, expected, observed, not problems)


def test_latin1_names_are_read_and_written(cli, tmp_path, record):
    folder = tmp_path / "photos"
    folder.mkdir()
    for name, value in (("a.jpg", 60), (f"{LATIN1}.jpg", 120), ("z.png", 200)):
        (folder / name).write_bytes(
            _jpeg(value)
            if name.endswith(".jpg")
            else cv2.imencode(".png", np.full((60, 80, 3), value, np.uint8))[1].tobytes()
        )
    out_folder = tmp_path / "annotated"
    runs = {"folder": cli("run", "--source", str(folder), "--output", str(out_folder), *FP32)}
    runs["image"] = cli(
        "run", "--source", str(folder / f"{LATIN1}.jpg"), "--output", str(tmp_path / f"{LATIN1} out.jpg"), *FP32
    )
    clip = write_video(tmp_path / "clip.mp4", frames=8)
    os.rename(clip, tmp_path / f"{LATIN1}.mp4")
    out_video = tmp_path / f"{LATIN1} out.mp4"
    runs["video"] = cli("run", "--source", str(tmp_path / f"{LATIN1}.mp4"), "--output", str(out_video), *FP32)
    written = sorted(os.listdir(os.fsencode(out_folder))) if out_folder.is_dir() else []
    problems = [f"{k}: {p}" for k, r in runs.items() for p in _problems(r)]
    if written != [b"a.jpg", b"caf\xe9.jpg", b"z.png"]:
        problems.append(f"folder output {written}")
    image = (
        cv2.imdecode(np.fromfile(tmp_path / f"{LATIN1} out.jpg", np.uint8), 1)
        if (tmp_path / f"{LATIN1} out.jpg").exists()
        else None
    )
    if image is None or image.shape != (60, 80, 3):
        problems.append("no readable output image")
    frames = _frames(out_video.rename(tmp_path / "renamed.mp4")) if out_video.exists() else 0
    if frames != 8:
        problems.append(f"output video has {frames} of 8 frames")
    observed = ", ".join(f"{k}: exit {r.returncode}" for k, r in runs.items()) + f"; folder wrote {len(written)} of 3"
    expected = "caf\\xe9 as --source (image, video), in a folder and as --output: read and written, exit 0"
    _row(record, "Latin-1 (non-UTF-8) file names", expected, observed, problems)
    assert not problems, [r.stderr[-1500:] for r in runs.values()]
