"""``maskwatch bench door``: what the shop-door features cost together, as end-to-end fps of whole ``maskwatch run``
processes on a clip (the demo by default) with none of them and with all of them on.

All of them: a watch zone and a counting line, the alarm running a command (``cat``, reading the event) on each
alert, the SQLite history, alert clips, a notification to a local JSON endpoint (Apprise's ``json://``, served
here), the HTTP view with the door display's event stream open (a client reading it, as the screen at the door
does), and MQTT to a local mosquitto when one is installed. The two variants alternate run by run, the order
flipped each round, so a load change on a shared machine hits both alike; the figures are medians. Beside the fps
(the goal: all on keeps at least 95 % of it), each run's CPU seconds (user + system, start-up included) say what the
features cost in work, which other load on the machine disturbs less than the fps. The door runs' outputs are
counted (notifications received, clips, history people), so a feature that silently did nothing shows.
"""

from __future__ import annotations

import contextlib
import getpass
import json
import os
import shutil
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from maskwatch.commands.bench.process import _fps

GOAL = 0.95
"""The features together may cost at most 5 % of the end-to-end fps."""
TOKEN = "bench-door-token"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class JsonEndpoint:
    """A local HTTP server that counts the JSON bodies POSTed to it (the notifications)."""

    def __init__(self) -> None:
        self.received = 0
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"null")
                owner.received += 1
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"json://127.0.0.1:{self.httpd.server_address[1]}/notify"
        self._thread = threading.Thread(target=self.httpd.serve_forever, name="bench-endpoint", daemon=True)

    def __enter__(self) -> JsonEndpoint:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@contextlib.contextmanager
def mosquitto(folder: Path) -> Iterator[int | None]:
    """A local anonymous mosquitto on a free loopback port (its port), or None when mosquitto is not installed."""
    binary = shutil.which("mosquitto") or next(
        (p for p in ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto") if Path(p).exists()), None
    )
    if binary is None:
        yield None
        return
    port = free_port()
    config = folder / "mosquitto.conf"
    lines = [f"listener {port} 127.0.0.1", "allow_anonymous true", "persistence false", f"user {getpass.getuser()}"]
    config.write_text("\n".join(lines) + "\n")
    proc = subprocess.Popen([binary, "-c", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                    break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("mosquitto did not start") from None
                time.sleep(0.02)
        yield port
    finally:
        proc.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(5)


def door_config(folder: Path, *, http_port: int, notify_url: str, mqtt_port: int | None) -> Path:
    """Every shop-door feature on, writing under ``folder``; the config file's path."""
    config = {
        "zones": [{"name": "door", "polygon": [[0.02, 0.02], [0.98, 0.02], [0.98, 0.98], [0.02, 0.98]]}],
        "lines": [{"name": "entrance", "points": [[0.5, 0.0], [0.5, 1.0]], "in": "right"}],
        "alarm": {"command": "cat"},
        "history": {"path": str(folder / "door.db")},
        "clips": {"dir": str(folder / "clips")},
        "notify": [notify_url],
        "http": {"bind": f"127.0.0.1:{http_port}", "token": TOKEN},
    }
    if mqtt_port is not None:
        config["mqtt"] = {"host": "127.0.0.1", "port": mqtt_port, "prefix": "bench"}
    path = folder / "door.yaml"
    path.write_text(json.dumps(config, indent=1))  # JSON is YAML
    return path


def watch_door(port: int, stop: threading.Event) -> threading.Thread:
    """A thread that opens the door display's event stream as soon as the view answers and reads it to its end."""

    def read() -> None:
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/door/events", headers={"Authorization": f"Bearer {TOKEN}"}
        )
        while not stop.is_set():
            try:
                with urllib.request.urlopen(request, timeout=5) as stream:
                    while stream.read(256):
                        pass
                return
            except OSError:
                stop.wait(0.02)

    thread = threading.Thread(target=read, name="bench-door-display", daemon=True)
    thread.start()
    return thread


def timed_run(args: list[str]) -> tuple[float, float, str]:
    """Run ``maskwatch ARGS``; (wall seconds, CPU seconds of the process and its children, stderr)."""
    start = time.perf_counter()
    with tempfile.TemporaryFile("w+") as err_file:
        proc = subprocess.Popen([sys.executable, "-m", "maskwatch", *args], stdout=subprocess.DEVNULL, stderr=err_file)
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        wall = time.perf_counter() - start
        err_file.seek(0)
        err = err_file.read()
    if proc.returncode != 0:
        raise RuntimeError(f"maskwatch {' '.join(args)} failed: {err.strip().splitlines()[-1:]}")
    return wall, usage.ru_utime + usage.ru_stime, err


def _history_people(path: Path) -> int:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return int(conn.execute("SELECT count(*) FROM people").fetchone()[0])
    finally:
        conn.close()


def door_bench(clip: Path, repeats: int = 5) -> dict:
    """fps of ``maskwatch run --source CLIP`` without and with every door feature, alternated ``repeats`` times."""
    fps: dict[str, list[float]] = {"plain": [], "door": []}
    wall: dict[str, list[float]] = {"plain": [], "door": []}
    cpu: dict[str, list[float]] = {"plain": [], "door": []}
    outputs: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="maskwatch-door-") as tmp, JsonEndpoint() as endpoint:
        folder = Path(tmp)
        with mosquitto(folder) as mqtt_port:
            base = ["run", "--source", str(clip), "--no-progress"]
            for round_ in range(repeats):
                for name in ("plain", "door") if round_ % 2 == 0 else ("door", "plain"):
                    if name == "plain":
                        seconds, cpu_s, err = timed_run(base)
                    else:
                        seconds, cpu_s, err, made = _door_run(folder / f"run{round_}", base, endpoint, mqtt_port)
                        outputs.append(made)
                    fps[name].append(_fps(err))
                    wall[name].append(seconds)
                    cpu[name].append(cpu_s)
    plain, door = statistics.median(fps["plain"]), statistics.median(fps["door"])
    return {
        "video": str(clip),
        "repeats": repeats,
        "mqtt": mqtt_port is not None,
        "fps": {"plain": plain, "door": door},
        "ratio": door / plain,
        "goal_ratio": GOAL,
        "wall_s": {name: statistics.median(v) for name, v in wall.items()},
        "cpu_s": {name: statistics.median(v) for name, v in cpu.items()},
        "runs": {"fps": fps, "wall_s": wall, "cpu_s": cpu},
        "door_outputs": outputs,
    }


def _door_run(
    folder: Path, base: list[str], endpoint: JsonEndpoint, mqtt_port: int | None
) -> tuple[float, float, str, dict]:
    """One run with every feature on, writing under ``folder``: (wall s, CPU s, stderr, what its outputs hold)."""
    folder.mkdir()
    port = free_port()
    config = door_config(folder, http_port=port, notify_url=endpoint.url, mqtt_port=mqtt_port)
    before, stop = endpoint.received, threading.Event()
    display = watch_door(port, stop)
    try:
        seconds, cpu_s, err = timed_run([*base, "--config", str(config)])
    finally:
        stop.set()
        display.join(5)
    clips = folder / "clips"
    made = {
        "notifications": endpoint.received - before,
        "clips": len(list(clips.glob("*.mp4"))) if clips.is_dir() else 0,
        "history_people": _history_people(folder / "door.db"),
    }
    return seconds, cpu_s, err, made


def door_lines(result: dict) -> list[str]:
    """The bench's summary for the terminal."""
    f = result["fps"]
    verdict = "within" if result["ratio"] >= result["goal_ratio"] else "NOT within"
    mqtt = "with MQTT" if result["mqtt"] else "without MQTT (no mosquitto here)"
    made = result["door_outputs"][-1] if result["door_outputs"] else {}
    return [
        f"door features on {Path(result['video']).name}, medians of {result['repeats']} runs each, interleaved",
        f"  ({mqtt}):",
        f"  none: {f['plain']:.1f} fps   all: {f['door']:.1f} fps   ratio {result['ratio']:.3f} "
        f"({verdict} the goal of {result['goal_ratio']:.2f})",
        f"  per run: wall none {result['wall_s']['plain']:.2f} s, all {result['wall_s']['door']:.2f} s; "
        f"CPU none {result['cpu_s']['plain']:.2f} s, all {result['cpu_s']['door']:.2f} s (start-up included)",
        f"  a door run's outputs: {made.get('notifications', 0)} notifications, {made.get('clips', 0)} clips, "
        f"{made.get('history_people', 0)} people in the history",
    ]


def door_command(args) -> int:
    """``maskwatch bench door [--video CLIP] [--repeats N] [--json FILE]``."""
    from maskwatch.commands.options import emit
    from maskwatch.errors import UsageError
    from maskwatch.outputs.sinks import check_writable

    video = args.video
    if video is None:
        from maskwatch.demo import demo_folder

        video = demo_folder() / "demo.mp4"
    if not video.is_file():
        raise UsageError(f"--video {video} does not exist")
    if args.json is not None:
        check_writable(args.json)
    result = door_bench(video, repeats=args.repeats)
    return emit(door_lines(result), result, args.json)
