"""Bad model files through ``maskwatch run``: each is refused with one short ERROR line naming the file.

A ``--config`` points ``detector.weights`` / ``classifier.weights`` (engine torch, precision fp32) or
``detector.onnx_int8_weights`` (precision int8, run by ONNX Runtime) at a crafted file in tmp_path, listed in its
own ``SHA256SUMS`` where the case needs the checksum to pass so that the load itself is what fails.
Commands run through the fork helper of test_bad_input.
"""

from __future__ import annotations

import builtins
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import torchvision

from maskwatch.models.manifest import WEIGHTS_DIRS, sha256_of, write_manifest_entry
from maskwatch.models.weights import load_checked, save_model_file
from tests.reliability.test_bad_input import ForkedCli, snapshot, user_error_problems

AREA = "model files"
SHIPPED = WEIGHTS_DIRS[0]
MAX_LINE = 300


@pytest.fixture(scope="module")
def cli(tmp_path_factory):
    forked = ForkedCli(tmp_path_factory.mktemp("cli"))
    yield forked
    forked.close()


class RunsShell:
    """Pickles as a call to ``os.system`` (a model file that would run a command when unpickled)."""

    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self):
        return (os.system, (self.command,))


class RunsPython:
    """Pickles as a call to ``builtins.exec``."""

    def __init__(self, code: str) -> None:
        self.code = code

    def __reduce__(self):
        return (builtins.exec, (self.code,))


def listed(path: Path) -> Path:
    """Add ``path`` with its real sha256 to its folder's SHA256SUMS."""
    write_manifest_entry(path)
    return path


def _missing(t: Path) -> Path:
    return t / "nope.pt"


def _truncated(t: Path) -> Path:
    data = (SHIPPED / "detector.pt").read_bytes()
    (t / "detector.pt").write_bytes(data[: int(len(data) * 0.4)])
    return listed(t / "detector.pt")


def _truncated_int8(t: Path) -> Path:
    data = (SHIPPED / "detector_int8.onnx").read_bytes()
    (t / "detector_int8.onnx").write_bytes(data[: len(data) // 2])
    return listed(t / "detector_int8.onnx")


def _old_torch_int8(t: Path) -> Path:
    save_model_file(t / "detector_int8.pt", "retinaface_mnet025", {}, {"precision": "int8"})
    return listed(t / "detector_int8.pt")


def _mismatch(t: Path) -> Path:
    shutil.copy(SHIPPED / "detector.pt", t / "detector.pt")
    (t / "SHA256SUMS").write_text(f"{sha256_of(SHIPPED / 'classifier.pt')}  detector.pt\n")
    return t / "detector.pt"


def _unlisted(t: Path) -> Path:
    shutil.copy(SHIPPED / "detector.pt", t / "detector.pt")
    return t / "detector.pt"


def _shell_pickle(t: Path) -> Path:
    payload = {"arch": "retinaface_mnet025", "state_dict": {"x": RunsShell(f"touch {t / 'MARKER'}")}, "meta": {}}
    torch.save(payload, t / "evil.pt")
    return listed(t / "evil.pt")


def _exec_pickle(t: Path) -> Path:
    torch.save(RunsPython(f"open({str(t / 'MARKER')!r}, 'w').close()"), t / "evil.pt")
    return listed(t / "evil.pt")


def _copy(name: str) -> Callable[[Path], Path]:
    def make(t: Path) -> Path:
        shutil.copy(SHIPPED / name, t / name)
        return listed(t / name)

    return make


def _torchvision_state(t: Path) -> Path:
    torch.save(torchvision.models.squeezenet1_1(weights=None).state_dict(), t / "squeezenet.pt")
    return listed(t / "squeezenet.pt")


def _retinaface_wrong_head(t: Path) -> Path:
    from maskwatch.models.retinaface import RetinaFace

    state = RetinaFace().state_dict()
    state["ClassHead.0.conv1x1.weight"] = torch.zeros(6, 64, 1, 1)
    torch.save(state, t / "retinaface_6class.pth")
    return listed(t / "retinaface_6class.pth")


def _two_class_classifier(t: Path) -> Path:
    from maskwatch.models.classifier import ARCH, MaskClassifierNet

    save_model_file(t / "two_class.pt", ARCH, MaskClassifierNet(2).state_dict(), {"class_names": ["mask", "face"]})
    return t / "two_class.pt"


def _malformed_meta(t: Path) -> Path:
    state = load_checked(SHIPPED / "detector.pt")["state_dict"]
    save_model_file(t / "odd_meta.pt", "retinaface_mnet025", state, {"input_size": "big"})
    return t / "odd_meta.pt"


CASES = [
    # (case, config key, make the file in tmp, fragments of the ERROR line, expected)
    ("missing weights file", "detector.weights", _missing, ("not found", "nope.pt"), "not found, naming it"),
    (
        "truncated detector.pt (40 %) listed with its own sha256",
        "detector.weights",
        _truncated,
        ("corrupt or truncated", "detector.pt"),
        "corrupt or truncated, no zip/pickle internals",
    ),
    (
        "sha256 mismatch (manifest lists another hash)",
        "detector.weights",
        _mismatch,
        ("corrupt or modified", "sha256", "detector.pt"),
        "refused before loading: checksum mismatch",
    ),
    (
        "pickle calling os.system, correctly listed",
        "detector.weights",
        _shell_pickle,
        ("refers to code", "evil.pt"),
        "refused by weights_only; MARKER not created",
    ),
    (
        "pickle calling builtins.exec, correctly listed",
        "classifier.weights",
        _exec_pickle,
        ("refers to code", "evil.pt"),
        "refused by weights_only; MARKER not created",
    ),
    (
        "weights file with no SHA256SUMS entry",
        "detector.weights",
        _unlisted,
        ("no sha256 entry", "detector.pt"),
        "refused: not in the manifest",
    ),
    (
        "classifier.pt given as detector.weights",
        "detector.weights",
        _copy("classifier.pt"),
        ("classifier.pt", "not a face detector"),
        "wrong model named in one line",
    ),
    (
        "detector.pt given as classifier.weights",
        "classifier.weights",
        _copy("detector.pt"),
        ("detector.pt", "retinaface_mnet025", "expected 'mask_classifier_mnv1_025'"),
        "wrong model named in one line",
    ),
    (
        "torchvision squeezenet state_dict as detector.weights",
        "detector.weights",
        _torchvision_state,
        ("squeezenet.pt", "not a face detector"),
        "unknown architecture named in one line, no state_dict dump",
    ),
    (
        "torchvision squeezenet state_dict as classifier.weights",
        "classifier.weights",
        _torchvision_state,
        ("squeezenet.pt", "not a maskwatch model file"),
        "not a maskwatch model file, no state_dict dump",
    ),
    (
        "RetinaFace state_dict with a 6-class head",
        "detector.weights",
        _retinaface_wrong_head,
        ("retinaface_6class.pth", "does not fit RetinaFace", "wrong-shape"),
        "shape mismatch counted in one line, no state_dict dump",
    ),
    (
        "classifier file trained for 2 other classes",
        "classifier.weights",
        _two_class_classifier,
        ("two_class.pt", "has classes"),
        "the class mismatch named in one line",
    ),
    (
        "detector file with a malformed meta (input_size: 'big')",
        "detector.weights",
        _malformed_meta,
        ("odd_meta.pt", "invalid input_size"),
        "the bad field named in one line",
    ),
    (
        "int8: truncated detector_int8.onnx as detector.onnx_int8_weights",
        "detector.onnx_int8_weights",
        _truncated_int8,
        ("corrupt or truncated", "detector_int8.onnx"),
        "corrupt or truncated, at precision int8",
    ),
    (
        "int8: the fp32 detector.onnx as detector.onnx_int8_weights",
        "detector.onnx_int8_weights",
        _copy("detector.onnx"),
        ("needs a int8 detector file", "detector.onnx"),
        "the precision mismatch named",
    ),
    (
        "a retired torch int8 file as detector.weights",
        "detector.weights",
        _old_torch_int8,
        ("torch int8 model file", "detector_int8.pt"),
        "refused in one line, pointing at the onnx engine",
    ),
]


@pytest.mark.parametrize(("case", "key", "make", "fragments", "expected"), CASES, ids=[c[0] for c in CASES])
def test_bad_model_file_is_refused_in_one_line(cli, tmp_path, record, case, key, make, fragments, expected):
    models = tmp_path / "models"
    models.mkdir()
    weights = make(models)
    section, name = key.split(".")
    precision = "int8" if name == "onnx_int8_weights" else "fp32"
    engine = "onnx" if name.startswith("onnx") else "torch"  # the .pt files are the torch engine's
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"runtime:\n  engine: {engine}\n  precision: {precision}\n{section}:\n  {name}: {weights}\n")
    image = tmp_path / "in.png"
    cv2.imwrite(str(image), np.full((60, 80, 3), 90, np.uint8))
    out = tmp_path / "out.png"
    before = snapshot(models)
    run = cli("run", "--source", str(image), "--output", str(out), "--config", str(cfg), "--no-progress")
    problems = user_error_problems(run, fragments)
    line = run.error_lines[0] if run.error_lines else ""
    if len(line) >= MAX_LINE:
        problems.append(f"ERROR line {len(line)} characters")
    if (models / "MARKER").exists():
        problems.append("MARKER created: the pickle ran")
    if out.exists() or snapshot(models) != before:
        problems.append("output written or model files changed")
    observed = f"exit {run.returncode} in {run.wall_s:.1f} s, {len(line)} chars: {run.message(tmp_path)!r}"
    if make in (_shell_pickle, _exec_pickle):
        observed += "; no MARKER file"
    if problems:
        observed += "; PROBLEMS: " + ", ".join(problems)
    expected_text = f"exit 1, one ERROR line < {MAX_LINE} chars naming the file: {expected}"
    record(AREA, f"{case} ({key})", expected_text, observed, not problems)
    assert not problems, run.stderr
