"""Bad input through ``maskwatch run``: one clear ERROR line and exit 1, never a traceback or a partial output.

Inputs the pipeline can handle (odd image formats, a corrupt image in a folder, an 8K frame) must be processed.
Every case is a real ``maskwatch`` process with its own stdout, stderr and exit status. To keep the suite fast,
:class:`ForkedCli` forks each one from a helper that has already imported maskwatch (torch, OpenCV: ~4 s a
process otherwise) and runs ``python -m maskwatch``'s code in it; one case checks that a plain subprocess agrees.
Runs that reach the models use ``--precision fp32``: loading the int8 models costs ~9 s and is not under test.
"""

from __future__ import annotations

import hashlib
import json
import re
import socket
import subprocess
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pytest

from tests.conftest import write_video

ROOT = Path(__file__).resolve().parents[2]
AREA = "bad input"

_SERVER = r"""
import json, os, runpy, sys, time, traceback
import maskwatch.commands.run, maskwatch.wiring, maskwatch.cli, maskwatch.capture.sources
import maskwatch.outputs.sinks, maskwatch.runner.single
import maskwatch.models.classifier, maskwatch.models.detector, maskwatch.models.retinaface  # torchvision: ~3 s
import maskwatch.commands.quantize, maskwatch.monitor.monitor, maskwatch.outputs.events, maskwatch.outputs.report
reply = os.fdopen(os.dup(1), "w")
for line in sys.stdin:
    job = json.loads(line)
    start = time.monotonic()
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            os.close(reply.fileno())
            for fd, name, flags in ((0, os.devnull, os.O_RDONLY), (1, job["stdout"], 0), (2, job["stderr"], 0)):
                target = os.open(name, flags or os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
                os.dup2(target, fd)
                os.close(target)
            os.chdir(job["cwd"])
            sys.argv = ["maskwatch", *job["argv"]]
            runpy.run_module("maskwatch", run_name="__main__", alter_sys=True)
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (exc.code is not None)
            if isinstance(exc.code, str):
                print(exc.code, file=sys.stderr)
        except BaseException:
            traceback.print_exc()
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
    timed_out = False
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        if time.monotonic() - start > job["timeout"]:
            os.kill(pid, 9)
            _, status = os.waitpid(pid, 0)
            timed_out = True
            break
        time.sleep(0.01)
    rc = 124 if timed_out else os.waitstatus_to_exitcode(status)
    reply.write(json.dumps({"rc": rc, "wall_s": time.monotonic() - start}) + "\n")
    reply.flush()
"""


@dataclass
class Run:
    """One finished ``maskwatch`` command."""

    args: list[str]
    returncode: int
    stdout: str
    stderr: str
    wall_s: float

    @property
    def error_lines(self) -> list[str]:
        return [line for line in self.stderr.splitlines() if "ERROR" in line]

    def message(self, tmp: Path | None = None) -> str:
        """The ERROR line without its timestamp (``<tmp>`` for the test folder), or '' when there is none."""
        lines = self.error_lines
        text = re.sub(r"^.*?ERROR\s+", "", lines[0]) if lines else ""
        return text.replace(str(tmp), "<tmp>") if tmp is not None else text


class ForkedCli:
    """Runs ``maskwatch`` commands, each in a process forked from a helper that has already imported maskwatch.

    The helper only imports (no torch op runs, one thread), so forking it is safe; each child redirects its
    stdio to files, runs ``python -m maskwatch``'s code, prints a traceback on an uncaught exception (as the
    interpreter would) and exits with the command's status. A command running past ``timeout`` is killed (124).
    """

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.count = 0
        self.proc = subprocess.Popen(
            [sys.executable, "-c", _SERVER], cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )

    def __call__(self, *args: str, timeout: float = 120.0, cwd: Path = ROOT) -> Run:
        self.count += 1
        out, err = self.workdir / f"{self.count}.out", self.workdir / f"{self.count}.err"
        job = {"argv": list(args), "stdout": str(out), "stderr": str(err), "cwd": str(cwd), "timeout": timeout}
        self.proc.stdin.write(json.dumps(job) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"the maskwatch fork helper exited ({self.proc.poll()})")
        reply = json.loads(line)
        return Run(list(args), reply["rc"], out.read_text(), err.read_text(), reply["wall_s"])

    def close(self) -> None:
        """Stop the helper (it is idle between commands, so nothing is lost)."""
        self.proc.kill()
        self.proc.wait()
        self.proc.stdin.close()
        self.proc.stdout.close()


@pytest.fixture(scope="module")
def cli(tmp_path_factory):
    forked = ForkedCli(tmp_path_factory.mktemp("cli"))
    yield forked
    forked.close()


def user_error_problems(run: Run, fragments: tuple[str, ...]) -> list[str]:
    """What is wrong with ``run`` as a user error: exit 1, one ERROR line holding every fragment, no traceback,
    no OpenCV log lines around it."""
    problems = []
    if run.returncode != 1:
        problems.append(f"exit {run.returncode}, expected 1")
    if "Traceback" in run.stderr:
        problems.append("traceback printed")
    if len(run.error_lines) != 1:
        problems.append(f"{len(run.error_lines)} ERROR lines")
    if re.search(r"^\[\s*(ERROR|WARN)", run.stderr, re.MULTILINE):
        problems.append("OpenCV log lines printed")
    problems += [f"no {f!r} in the error" for f in fragments if run.error_lines and f not in run.error_lines[0]]
    return problems


def snapshot(folder: Path) -> dict[Path, str]:
    """sha256 of every file under ``folder``."""
    return {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.rglob("*") if p.is_file()}


def leftovers(before: dict[Path, str], folder: Path) -> list[str]:
    """Files under ``folder`` that a failed run created with content or changed (an input overwritten)."""
    after = snapshot(folder)
    new = [p.name for p in after if p not in before and p.stat().st_size > 0]
    changed = [p.name for p in after if p in before and after[p] != before[p]]
    return [f"left {n}" for n in new] + [f"changed {n}" for n in changed]


# --- inputs


def tiny_video(tmp: Path) -> Path:
    return write_video(tmp / "in.mp4", frames=6, size_wh=(160, 120), fps=10.0)


def zero_frame_video(tmp: Path) -> Path:
    path = tmp / "empty.mp4"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10.0, (160, 120))
    writer.release()
    return path


def config(tmp: Path, text: str) -> Path:
    path = tmp / "bad.yaml"
    path.write_text(text)
    return path


def _empty_folder(tmp: Path) -> list[str]:
    folder = tmp / "no_images"
    folder.mkdir()
    (folder / "notes.txt").write_text("not an image\n")
    return ["--source", str(folder), "--output", str(tmp / "out")]


def _text_as_mp4(tmp: Path) -> list[str]:
    (tmp / "notes.mp4").write_text("this is text, not a video\n")
    return ["--source", str(tmp / "notes.mp4"), "--output", str(tmp / "out.mp4")]


def _image_onto_itself(tmp: Path) -> list[str]:
    cv2.imwrite(str(tmp / "photo.png"), np.full((60, 80, 3), 90, np.uint8))
    return ["--source", str(tmp / "photo.png"), "--output", str(tmp / "photo.png")]


def _with_config(text: str) -> Callable[[Path], list[str]]:
    return lambda t: ["--source", str(tiny_video(t)), "--output", str(t / "out.mp4"), "--config", str(config(t, text))]


ERROR_CASES = [
    # (case, expected message, make args in tmp, fragments of the one ERROR line)
    (
        "missing file",
        "source not found, naming it",
        lambda t: ["--source", str(t / "missing.mp4"), "--output", str(t / "out.mp4")],
        ("source not found", "missing.mp4"),
    ),
    ("folder with no images", "folder contains no images", _empty_folder, ("contains no images", "no_images")),
    ("text file named .mp4", "no readable frames", _text_as_mp4, ("has no readable frames", "notes.mp4")),
    (
        "zero-frame video (writer opened and released)",
        "no readable frames",
        lambda t: ["--source", str(zero_frame_video(t)), "--output", str(t / "out.mp4")],
        ("has no readable frames", "empty.mp4"),
    ),
    (
        "webcam index that does not exist (--source 7)",
        "cannot open camera 7 (and no OpenCV noise lines)",
        lambda t: ["--source", "7", "--output", str(t / "out.mp4")],
        ("cannot open camera 7",),
    ),
    ("malformed YAML config", "not valid YAML, with the line", _with_config("detector: [oops\n"), ("not valid YAML",)),
    (
        "unknown config key",
        "unknown key named",
        _with_config("detector:\n  colour: red\n"),
        ("unknown config key 'detector.colour'",),
    ),
    (
        "wrong type (score_threshold: high)",
        "key named, float expected",
        _with_config("detector:\n  score_threshold: high\n"),
        ("detector.score_threshold", "number"),
    ),
    (
        "out-of-range threshold (score_threshold: 1.5)",
        "key named, bound given",
        _with_config("detector:\n  score_threshold: 1.5\n"),
        ("detector.score_threshold", "less than 1"),
    ),
    (
        "output in a missing folder",
        "output folder does not exist",
        lambda t: ["--source", str(tiny_video(t)), "--output", str(t / "nodir" / "out.mp4")],
        ("output folder does not exist", "nodir"),
    ),
    (
        "output in a folder nobody can write (/proc, even as root)",
        "output folder not writable, before models load",
        lambda t: ["--source", str(tiny_video(t)), "--output", "/proc/maskwatch-out.mp4"],
        ("output folder is not writable", "/proc"),
    ),
    (
        "output would overwrite the input video",
        "refused, input untouched",
        lambda t: ["--source", str(tiny_video(t)), "--output", str(t / "in.mp4")],
        ("would overwrite the input",),
    ),
    ("output would overwrite the input image", "refused, input untouched", _image_onto_itself, ("would overwrite",)),
    (
        "--events pointing at the input",
        "refused, input untouched",
        lambda t: ["--source", str(tiny_video(t)), "--events", str(t / "in.mp4")],
        ("would overwrite the input",),
    ),
    (
        "--detections pointing at the input",
        "refused, input untouched",
        lambda t: ["--source", str(tiny_video(t)), "--detections", str(t / "in.mp4")],
        ("would overwrite the input",),
    ),
]


@pytest.mark.parametrize(("case", "expected", "make", "fragments"), ERROR_CASES, ids=[c[0] for c in ERROR_CASES])
def test_bad_input_is_one_clear_error(cli, tmp_path, record, case, expected, make, fragments):
    args = make(tmp_path)
    if "/proc/maskwatch-out.mp4" in args and not Path("/proc/self").is_dir():
        pytest.skip("no /proc here: no folder that even root cannot write to")
    before = snapshot(tmp_path)
    run = cli("run", *args, "--no-progress")
    problems = user_error_problems(run, fragments) + leftovers(before, tmp_path)
    if Path("/proc/maskwatch-out.mp4").exists():
        problems.append("/proc/maskwatch-out.mp4 exists")
    observed = f"exit {run.returncode} in {run.wall_s:.1f} s: {run.message(tmp_path)!r}; no output left"
    if problems:
        observed += "; PROBLEMS: " + ", ".join(problems)
    record(AREA, case, f"exit 1, one ERROR line: {expected}; no output left", observed, not problems)
    assert not problems, run.stderr


def test_forked_runs_match_a_plain_subprocess(cli, tmp_path, record):
    """The fork helper is faithful: the same command as ``python -m maskwatch`` gives the same status and line."""
    args = ["run", "--source", str(tmp_path / "missing.mp4")]
    plain = subprocess.run([sys.executable, "-m", "maskwatch", *args], capture_output=True, text=True, cwd=ROOT)
    forked = cli(*args)
    plain_run = Run(args, plain.returncode, plain.stdout, plain.stderr, 0.0)
    ok = plain.returncode == forked.returncode == 1 and plain_run.message() == forked.message()
    ok = ok and len(plain_run.error_lines) == len(forked.error_lines) == 1
    observed = (
        f"plain: exit {plain.returncode} {plain_run.message(tmp_path)!r}; "
        f"forked: exit {forked.returncode} {forked.message(tmp_path)!r}"
    )
    record(AREA, "test harness: forked run vs plain subprocess", "same exit status and ERROR line", observed, ok)
    assert ok


class SilentServer:
    """A TCP listener that accepts connections and never answers (a stream that hangs)."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.conns: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                self.conns.append(self.sock.accept()[0])
            except OSError:
                return

    def close(self) -> None:
        self.sock.close()
        for c in self.conns:
            c.close()


@pytest.mark.parametrize("kind", ["refused", "silent"])
def test_unreachable_stream_fails_in_bounded_time_without_the_password(cli, tmp_path, record, kind):
    open_timeout_s = 2.0
    server = SilentServer() if kind == "silent" else None
    port = server.port if server else 9
    url = f"rtsp://user:hunter2@127.0.0.1:{port}/x"
    cfg = config(tmp_path, f"capture:\n  open_timeout_s: {open_timeout_s}\n")
    try:
        run = cli("run", "--source", url, "--output", str(tmp_path / "out.mp4"), "--config", str(cfg), timeout=60)
    finally:
        if server:
            server.close()
    problems = user_error_problems(run, ("cannot open stream", f"rtsp://***@127.0.0.1:{port}/x"))
    if "hunter2" in run.stdout + run.stderr:
        problems.append("password printed")
    if run.wall_s > open_timeout_s + 15:
        problems.append(f"took {run.wall_s:.1f} s")
    if (tmp_path / "out.mp4").exists():
        problems.append("out.mp4 left")
    what = "connection refused (port 9)" if kind == "refused" else "server accepts and never answers"
    observed = f"exit {run.returncode} in {run.wall_s:.1f} s: {run.message()!r}; password not in stdout/stderr"
    if problems:
        observed += "; PROBLEMS: " + ", ".join(problems)
    expected = f"exit 1 within open_timeout_s ({open_timeout_s:.0f} s) + 15 s, credentials shown as ***"
    record(AREA, f"unreachable RTSP URL with credentials: {what}", expected, observed, not problems)
    assert not problems, run.stderr


def _full_video(path: Path, fourcc: str, frames: int = 20) -> Path:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), 10.0, (160, 120))
    for i in range(frames):
        image = np.full((120, 160, 3), 30, np.uint8)
        cv2.rectangle(image, (10 + 5 * i, 30), (50 + 5 * i, 80), (220, 220, 220), -1)
        writer.write(image)
    writer.release()
    return path


@pytest.mark.parametrize(("suffix", "fourcc"), [(".mp4", "mp4v"), (".avi", "MJPG")])
def test_truncated_video_processes_what_decodes_or_fails_clearly(cli, tmp_path, record, suffix, fourcc):
    data = _full_video(tmp_path / f"full{suffix}", fourcc).read_bytes()
    cut = tmp_path / f"cut{suffix}"
    cut.write_bytes(data[: int(len(data) * 0.4)])
    decodable = _frames(cut)
    out = tmp_path / "out.mp4"
    run = cli("run", "--source", str(cut), "--output", str(out), "--precision", "fp32", "--no-progress")
    if decodable == 0:
        problems = user_error_problems(run, ("has no readable frames", cut.name))
        if out.exists():
            problems.append("out.mp4 left")
        observed = f"0 of 20 frames decodable; exit {run.returncode}: {run.message(tmp_path)!r}; no output"
    else:
        written = _frames(out)
        warned = [line for line in run.stderr.splitlines() if "WARNING" in line and "ended after" in line]
        problems = [] if run.returncode == 0 and written == decodable else [f"exit {run.returncode}, {written} written"]
        problems += [] if warned else ["no warning that the video ended early"]
        warning = re.sub(r"^.*?WARNING\s+", "", warned[0]).replace(str(tmp_path), "<tmp>") if warned else ""
        observed = f"{decodable} of 20 frames decodable; exit {run.returncode}, {written} written; warning {warning!r}"
    if "Traceback" in run.stderr:
        problems.append("traceback printed")
    if problems:
        observed += "; PROBLEMS: " + ", ".join(problems)
    expected = (
        "some frames decode: all of them written, a warning, exit 0; none decode: one ERROR line, exit 1, no output"
    )
    record(AREA, f"{suffix} ({fourcc}) truncated to 40 % of its bytes", expected, observed, not problems)
    assert not problems, run.stderr


def _frames(path: Path) -> int:
    cap = cv2.VideoCapture(str(path))
    n = 0
    while cap.isOpened() and cap.read()[0]:
        n += 1
    cap.release()
    return n


IMAGE_CASES = [
    # (case, file name, image)
    ("1x1 image", "dot.png", np.full((1, 1, 3), 128, np.uint8)),
    ("grayscale PNG", "gray.png", np.tile(np.arange(120, dtype=np.uint8), (90, 1))),
    ("RGBA PNG", "rgba.png", np.dstack([np.full((90, 120, 3), 100, np.uint8), np.full((90, 120), 50, np.uint8)])),
    ("16-bit PNG", "deep.png", np.full((90, 120, 3), 40000, np.uint16) + np.arange(120, dtype=np.uint16)[:, None]),
    ("8K frame (7680x4320 JPEG)", "8k.jpg", None),
]


def _eight_k() -> np.ndarray:
    image = np.zeros((4320, 7680, 3), np.uint8)
    image[:, :, 1] = np.linspace(0, 255, 7680, dtype=np.uint8)[None, :]
    cv2.circle(image, (3840, 2160), 600, (200, 180, 160), -1)
    return image


@pytest.mark.parametrize(("case", "name", "image"), IMAGE_CASES, ids=[c[0] for c in IMAGE_CASES])
def test_odd_images_are_processed(cli, tmp_path, record, case, name, image):
    image = _eight_k() if image is None else image
    src = tmp_path / name
    assert cv2.imwrite(str(src), image)
    out = tmp_path / f"out{src.suffix}"
    run = cli("run", "--source", str(src), "--output", str(out), "--precision", "fp32", "--no-progress")
    result = cv2.imread(str(out), cv2.IMREAD_UNCHANGED) if out.exists() else None
    h, w = image.shape[:2]
    problems = [] if run.returncode == 0 else [f"exit {run.returncode}: {run.message(tmp_path)!r}"]
    if "Traceback" in run.stderr:
        problems.append("traceback printed")
    if result is None:
        problems.append("no output image")
        got = "none"
    else:
        got = f"{result.shape[1]}x{result.shape[0]}x{result.shape[2] if result.ndim == 3 else 1} {result.dtype}"
        if result.shape != (h, w, 3) or result.dtype != np.uint8:
            problems.append(f"output {got}")
    src_desc = f"{w}x{h}x{image.shape[2] if image.ndim == 3 else 1} {image.dtype}"
    done = re.search(r"done: \d+ frames in ([\d.]+) s", run.stderr)
    took = f"{done.group(1)} s processing, " if done else ""
    observed = f"exit {run.returncode}: {src_desc} -> {got}; {took}{run.wall_s:.1f} s with fp32 model load"
    if problems:
        observed += "; PROBLEMS: " + ", ".join(problems)
    record(AREA, case, "exit 0, a 3-channel 8-bit output of the same size", observed, not problems)
    assert not problems, run.stderr


def test_corrupt_image_in_a_folder_is_skipped_with_a_warning(cli, tmp_path, record):
    src = tmp_path / "photos"
    src.mkdir()
    cv2.imwrite(str(src / "a.jpg"), np.full((60, 80, 3), 70, np.uint8))
    good = cv2.imencode(".jpg", np.full((60, 80, 3), 150, np.uint8))[1].tobytes()
    (src / "b_corrupt.jpg").write_bytes(good[:30])
    cv2.imwrite(str(src / "c.png"), np.full((60, 80, 3), 200, np.uint8))
    out, dets = tmp_path / "annotated", tmp_path / "d.jsonl"
    run = cli("run", "--source", str(src), "--output", str(out), "--detections", str(dets), "--precision", "fp32")
    written = sorted(p.name for p in out.iterdir()) if out.is_dir() else []
    records = [json.loads(line)["source"] for line in dets.read_text().splitlines()] if dets.exists() else []
    warnings = [line for line in run.stderr.splitlines() if "WARNING" in line and "b_corrupt.jpg" in line]
    problems = [] if run.returncode == 0 else [f"exit {run.returncode}"]
    if "Traceback" in run.stderr or run.error_lines:
        problems.append("error or traceback printed")
    if not warnings:
        problems.append("no warning naming b_corrupt.jpg")
    if written != ["a.jpg", "c.png"] or records != ["a.jpg", "c.png"]:
        problems.append(f"written {written}, detections {records}")
    warning = re.sub(r"^.*?WARNING\s+", "", warnings[0]).replace(str(tmp_path), "<tmp>") if warnings else ""
    observed = f"exit {run.returncode}; warning {warning!r}; written {written}; detections for {records}"
    if problems:
        observed += "; PROBLEMS: " + ", ".join(problems)
    expected = "a warning naming the corrupt image, the others written, exit 0"
    record(AREA, "folder with one corrupt image among good ones", expected, observed, not problems)
    assert not problems, run.stderr
