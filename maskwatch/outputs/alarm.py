"""The alarm at the door: on each ``alert`` event a sound, a switched output (a relay, a light) and/or a command.

:class:`Alarm` is an :class:`~maskwatch.outputs.events.EventSink`; other events are ignored. Nothing it does
blocks the pipeline: the player runs as its own process (one at a time; an alert while it plays plays nothing
more), the output is switched off by a timer thread ``hold_s`` after the last alert, and the command runs on a
worker thread from a bounded queue, killed after its timeout. Every part checks what it needs when it is made
(one :class:`~maskwatch.errors.ConfigError` line); a failure at run time is a counted fault
(:func:`~maskwatch.runner.faults.record_fault`), and the run goes on.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import shlex
import shutil
import signal
import subprocess
import threading
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from maskwatch.errors import ConfigError
from maskwatch.runner.faults import record_fault
from maskwatch.types import Event

DEFAULT_PLAYERS: tuple[tuple[str, ...], ...] = (("aplay", "-q"), ("paplay",), ("ffplay", "-nodisp", "-autoexit"))
"""Players tried in order when ``alarm.player`` is not set (the WAV file is appended)."""
MAX_PLAY_S = 60.0  # a player still running after this long is stopped
GIVE_UP_S = 5.0  # what close() waits for a running player or pending commands


def kill(proc: subprocess.Popen, *, reap: bool = True) -> None:
    """Stop ``proc`` and what it started (its process group: a shell script's children hold its pipes); ``reap``:
    collect it (only from the thread that owns its pipes)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    if reap:
        with contextlib.suppress(subprocess.TimeoutExpired, OSError, ValueError):
            proc.communicate(timeout=1.0)


def check_wav(path: str | Path) -> Path:
    """``path`` when it is a readable WAV file (RIFF/WAVE header), else a ConfigError naming the problem."""
    path = Path(path).expanduser()
    try:
        with path.open("rb") as f:
            head = f.read(12)
    except FileNotFoundError:
        raise ConfigError(f"alarm.sound {path}: no such file") from None
    except OSError as exc:
        raise ConfigError(f"alarm.sound {path}: cannot read it ({exc.strerror or exc})") from None
    if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
        raise ConfigError(f"alarm.sound {path}: not a WAV file (it must start with a RIFF/WAVE header)")
    return path


def program_words(command: str, what: str) -> list[str]:
    """``command`` split into words (no shell), its program found on the PATH (or given as an executable path)."""
    try:
        words = shlex.split(command)
    except ValueError as exc:
        raise ConfigError(f"{what} {command!r}: {exc}") from None
    if not words:
        raise ConfigError(f"{what} is empty")
    found = shutil.which(words[0])
    if found is None:
        where = "is not an executable file" if os.sep in words[0] else "is not on the PATH"
        raise ConfigError(f"{what}: the program {words[0]!r} {where}")
    return words


def find_player(player: str | None) -> list[str]:
    """The player's words: ``player`` checked, or the first of aplay, paplay, ffplay found on the PATH."""
    if player is not None:
        return program_words(player, "alarm.player")
    for words in DEFAULT_PLAYERS:
        if shutil.which(words[0]) is not None:
            return list(words)
    names = ", ".join(words[0] for words in DEFAULT_PLAYERS)
    raise ConfigError(f"alarm.sound needs a player: none of {names} is on the PATH (or set alarm.player)")


class Sound:
    """Plays ``path`` with ``player`` (the file appended), at most one at a time; alerts while it plays are dropped."""

    def __init__(self, path: str | Path, player: str | None = None) -> None:
        self.path = check_wav(path)
        self.argv = [*find_player(player), str(self.path)]
        self.played = self.dropped = 0
        self._proc: subprocess.Popen | None = None
        self._lock = threading.Lock()

    @property
    def playing(self) -> bool:
        with self._lock:
            return self._proc is not None and self._proc.poll() is None

    def play(self) -> None:
        """Start the player unless one is playing; returns at once."""
        with self._lock:
            if self._proc is not None and self._proc.poll() is None:
                self.dropped += 1
                return
            try:
                proc = subprocess.Popen(
                    self.argv,
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.PIPE,
                    start_new_session=True,  # its own process group: stopped with whatever it started
                )
            except OSError as exc:
                record_fault("alarm.sound", f"cannot start {self.argv[0]}: {exc.strerror or exc}")
                return
            self._proc = proc
            self.played += 1
        threading.Thread(target=self._reap, args=(proc,), name="maskwatch-alarm-sound", daemon=True).start()

    def _reap(self, proc: subprocess.Popen) -> None:
        """Wait for the player (stopped after MAX_PLAY_S); a failure is a fault naming its last words."""
        try:
            _, err = proc.communicate(timeout=MAX_PLAY_S)
        except subprocess.TimeoutExpired:
            kill(proc)
            record_fault("alarm.sound", f"{self.argv[0]} still playing after {MAX_PLAY_S:.0f} s: stopped")
            return
        if proc.returncode > 0:  # negative: stopped by a signal (close), not a failure
            tail = err.decode(errors="replace").strip().splitlines()[-1:] if err else []
            record_fault("alarm.sound", f"{self.argv[0]} exited {proc.returncode}" + (f": {tail[0]}" if tail else ""))

    def close(self) -> None:
        """Let a playing sound finish for up to GIVE_UP_S, then stop it. Idempotent."""
        with self._lock:
            proc = self._proc
        if proc is None:
            return
        try:
            proc.wait(timeout=GIVE_UP_S)
        except subprocess.TimeoutExpired:
            kill(proc, reap=False)  # its reaper thread collects it


def open_output(pin: str, active_high: bool) -> Any:
    """A gpiozero ``DigitalOutputDevice`` on ``pin``, off; ConfigError naming the pin and why it cannot be had."""
    try:
        from gpiozero import DigitalOutputDevice  # type: ignore[import-untyped]
    except ModuleNotFoundError:
        raise ConfigError(
            f"alarm.gpio_pin {pin} needs gpiozero, which is not installed: pip install 'maskwatch[gpio]'"
        ) from None
    with warnings.catch_warnings(record=True) as fallbacks:  # gpiozero warns per pin library it cannot load
        warnings.simplefilter("always")
        try:
            return DigitalOutputDevice(pin, active_high=active_high, initial_value=False)
        except Exception as exc:  # gpiozero's errors: no pin factory (no GPIO here), an invalid pin, a pin in use
            tried = "; ".join(str(w.message) for w in fallbacks)
            reason = f"{exc}" + (f" ({tried})" if tried and "pin factory" in str(exc) else "")
            raise ConfigError(f"alarm.gpio_pin {pin}: cannot use it as an output: {reason}") from None


class Relay:
    """A digital output switched on at an alert and off ``hold_s`` after the last one (a timer thread)."""

    def __init__(self, device: Any, hold_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.device, self.hold_s, self.clock = device, float(hold_s), clock
        self._off_at: float | None = None
        self._cond = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._timer, name="maskwatch-alarm-gpio", daemon=True)
        self._thread.start()

    def trigger(self) -> None:
        with self._cond:
            if self._closed:
                return
            self._off_at = self.clock() + self.hold_s
            self._cond.notify_all()
            try:
                self.device.on()
            except Exception as exc:  # a pin that failed under us: the run goes on
                record_fault("alarm.gpio", f"cannot switch the output on: {exc}")

    def _timer(self) -> None:
        with self._cond:
            while not self._closed:
                if self._off_at is None:
                    self._cond.wait()
                    continue
                left = self._off_at - self.clock()
                if left > 0:
                    self._cond.wait(left)
                    continue
                self._off_at = None
                try:
                    self.device.off()
                except Exception as exc:  # a pin that failed under us: the run goes on
                    record_fault("alarm.gpio", f"cannot switch the output off: {exc}")

    def close(self) -> None:
        """Switch off and release the pin. Idempotent."""
        with self._cond:
            if self._closed:
                return
            self._closed = True
            self._cond.notify_all()
        self._thread.join(timeout=1.0)
        try:
            self.device.off()
        finally:
            self.device.close()


class Command:
    """Runs ``argv`` (no shell) once per alert with the event's JSON on stdin, from a worker thread and a bounded
    queue (an alert beyond ``queue_size`` waiting is dropped and counted); each run is killed after ``timeout_s``."""

    def __init__(self, argv: Sequence[str], timeout_s: float = 10.0, queue_size: int = 16) -> None:
        self.argv, self.timeout_s = list(argv), float(timeout_s)
        self.runs = 0
        self._queue: queue.Queue[bytes | None] = queue.Queue(maxsize=queue_size)
        self._proc: subprocess.Popen | None = None
        self._closed = self._stop = False
        self._thread = threading.Thread(target=self._work, name="maskwatch-alarm-command", daemon=True)
        self._thread.start()

    def submit(self, event: Event) -> None:
        try:
            self._queue.put_nowait(json.dumps(event.to_json()).encode() + b"\n")
        except queue.Full:
            record_fault(
                "alarm.command", f"{self.argv[0]} is behind: {self._queue.maxsize} alerts waiting, one dropped"
            )

    def _work(self) -> None:
        while (payload := self._queue.get()) is not None and not self._stop:
            self._run(payload)

    def _run(self, payload: bytes) -> None:
        name = self.argv[0]
        try:
            self._proc = proc = subprocess.Popen(
                self.argv,
                stdin=subprocess.PIPE,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                start_new_session=True,
            )
        except OSError as exc:
            record_fault("alarm.command", f"cannot start {name}: {exc.strerror or exc}")
            return
        try:
            _, err = proc.communicate(payload, timeout=self.timeout_s)
        except subprocess.TimeoutExpired:
            kill(proc)
            record_fault("alarm.command", f"{name} killed after {self.timeout_s:g} s")
            return
        finally:
            self.runs += 1
        if proc.returncode != 0 and not self._stop:  # stopped by close(): counted there
            tail = err.decode(errors="replace").strip().splitlines()[-1:] if err else []
            record_fault("alarm.command", f"{name} exited {proc.returncode}" + (f": {tail[0]}" if tail else ""))

    def close(self) -> None:
        """Run what is queued for up to GIVE_UP_S in all, then kill the running command. Idempotent."""
        if self._closed:
            return
        self._closed = True
        deadline = time.monotonic() + GIVE_UP_S
        with contextlib.suppress(queue.Full):
            self._queue.put(None, timeout=GIVE_UP_S)
        self._thread.join(timeout=max(0.0, deadline - time.monotonic()))
        if self._thread.is_alive():
            self._stop = True
            left = self._queue.qsize()
            if self._proc is not None and self._proc.poll() is None:
                kill(self._proc, reap=False)  # the worker collects it
            record_fault("alarm.command", f"{self.argv[0]} still busy at the end: stopped, {left} alerts not run")


class Alarm:
    """The ``alarm`` section as one event output: each ``alert`` plays the sound, switches the output on and runs
    the command (whichever are set)."""

    def __init__(self, *, sound: Sound | None = None, relay: Relay | None = None, command: Command | None = None):
        self.parts = [p for p in (sound, relay, command) if p is not None]
        self.sound, self.relay, self.command = sound, relay, command
        self.alerts = 0
        self._closed = False

    def send(self, event: Event, image: np.ndarray) -> None:
        if event.event != "alert" or self._closed:
            return
        self.alerts += 1
        if self.relay is not None:
            self.relay.trigger()
        if self.sound is not None:
            self.sound.play()
        if self.command is not None:
            self.command.submit(event)

    def close(self) -> None:
        """Close every part, each even when an earlier one fails. Idempotent."""
        if self._closed:
            return
        self._closed = True
        failure: BaseException | None = None
        for part in self.parts:
            try:
                part.close()
            except Exception as exc:
                failure = failure or exc
        if failure is not None:
            raise failure
