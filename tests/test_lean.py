"""The lean install: ``run`` works where torch and torchvision are not installed, and the commands that need them
say how to install them in one line (a stand-in ``torch`` package that cannot be imported plays the missing one)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from tests.conftest import write_video
from tests.helpers import ROOT

MISSING = 'raise ModuleNotFoundError("No module named {name!r}", name={name!r})\n'


@pytest.fixture
def no_torch_env(tmp_path: Path) -> dict[str, str]:
    """An environment in which ``import torch`` / ``import torchvision`` fail as on a lean install."""
    shadow = tmp_path / "shadow"
    for name in ("torch", "torchvision"):
        (shadow / name).mkdir(parents=True)
        (shadow / name / "__init__.py").write_text(MISSING.format(name=name))
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(shadow), str(ROOT)])}


def _maskwatch(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "maskwatch", *args], capture_output=True, text=True, timeout=120,
                          cwd=ROOT, env=env)  # fmt: skip


def test_the_stand_in_hides_torch(no_torch_env: dict[str, str]) -> None:
    done = subprocess.run([sys.executable, "-c", "import torch"], capture_output=True, text=True, env=no_torch_env)
    assert done.returncode != 0 and "No module named 'torch'" in done.stderr


def test_run_needs_no_torch(no_torch_env: dict[str, str], tmp_path: Path) -> None:
    image, out = tmp_path / "in.png", tmp_path / "out.png"
    cv2.imwrite(str(image), np.full((240, 320, 3), 120, np.uint8))
    done = _maskwatch(no_torch_env, "run", "--source", str(image), "--output", str(out), "--engine", "onnx")
    assert done.returncode == 0, done.stderr[-2000:]
    assert cv2.imread(str(out)).shape == (240, 320, 3)


@pytest.mark.parametrize(
    "argv",
    [
        ["train", "detector", "--data", "nowhere", "--epochs", "1"],
        ["run", "--source", "x.png", "--engine", "torch", "--precision", "fp32"],
    ],
)
def test_commands_that_need_torch_say_how_to_install_it(no_torch_env: dict[str, str], tmp_path: Path, argv) -> None:
    if "x.png" in argv:
        cv2.imwrite(str(tmp_path / "x.png"), np.full((64, 64, 3), 120, np.uint8))
        argv = [str(tmp_path / a) if a == "x.png" else a for a in argv]
    done = _maskwatch(no_torch_env, *argv)
    assert done.returncode != 0
    assert "Traceback" not in done.stderr, done.stderr[-2000:]
    assert "pip install 'maskwatch[train]'" in done.stderr, done.stderr[-2000:]


BATCH_TASKS = """
import sys
from pathlib import Path

from maskwatch.commands.batch.chunks import Chunk
from maskwatch.commands.batch.tasks import analyse_task, finish_task, stitch_task

video, out = sys.argv[1], sys.argv[2]
part = analyse_task(video, out, "clip", Chunk(index=0, start=0, stop=None, warm=0), None, None)
done = finish_task(video, out, "clip", stitch_task(video, out, "clip", [part]), 0.0)
print(done["frames"])
"""


def test_batch_tasks_need_no_torch(no_torch_env: dict[str, str], tmp_path: Path) -> None:
    """The work ``maskwatch batch`` hands its Ray workers (analyse, stitch, finish) runs on the lean install."""
    video, out = tmp_path / "clip.mp4", tmp_path / "out"
    out.mkdir()
    write_video(video, frames=8)
    done = subprocess.run([sys.executable, "-c", BATCH_TASKS, str(video), str(out)], capture_output=True, text=True,
                          timeout=120, cwd=ROOT, env=no_torch_env)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split()[-1] == "8"
    assert (out / "clip.annotated.mp4").stat().st_size > 0 and (out / "clip.done.json").exists()


@pytest.mark.parametrize(
    "argv",
    [
        ["eval", "--data", "no-such-dataset", "--plots", "plots"],
        ["soak", "--video", "no-such-video.mp4", "--minutes", "1", "--out", "soak-out"],
    ],
)
def test_a_missing_plotting_package_is_named_before_the_work(tmp_path: Path, argv: list[str]) -> None:
    """``eval --plots`` and ``soak`` draw at the end: without matplotlib they say so at once, not after the work."""
    shadow = tmp_path / "shadow" / "matplotlib"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text(MISSING.format(name="matplotlib"))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(shadow.parent), str(ROOT)])}
    done = subprocess.run([sys.executable, "-m", "maskwatch", *argv], capture_output=True, text=True, timeout=120,
                          cwd=tmp_path, env=env)  # fmt: skip
    assert done.returncode == 1, done.stderr[-2000:]
    assert "Traceback" not in done.stderr
    assert "pip install 'maskwatch[train]' (matplotlib" in done.stderr, done.stderr[-2000:]
