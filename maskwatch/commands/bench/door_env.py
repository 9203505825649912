"""What ``maskwatch bench door`` runs its ``maskwatch run`` processes against: a local JSON endpoint for the
notifications, a local mosquitto, a reader of the door display's event stream, and the timing of one process."""

from __future__ import annotations

import contextlib
import getpass
import json
import os
import shutil
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

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
    """Run ``maskwatch ARGS``; (wall seconds, CPU seconds of the process and the children it waited for, stderr)."""
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


def history_people(path: Path) -> int:
    """How many people the history at ``path`` holds."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return int(conn.execute("SELECT count(*) FROM people").fetchone()[0])
    finally:
        conn.close()
