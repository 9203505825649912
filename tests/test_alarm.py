"""The alarm: a sound through a player, a GPIO output (gpiozero's MockFactory), a command; its checks at start."""

from __future__ import annotations

import json
import math
import os
import struct
import subprocess
import sys
import threading
import time
import wave
from pathlib import Path

import numpy as np
import pytest

import maskwatch.outputs.alarm as alarm_module
from maskwatch.config import Config
from maskwatch.errors import ConfigError
from maskwatch.outputs.alarm import Alarm, Command, Relay, Sound, check_wav, find_player, open_output, program_words
from maskwatch.runner.faults import fault_counts, reset_faults
from maskwatch.types import Event, FaceDetections, Frame, FrameResult
from maskwatch.wiring.outputs import build_alarm, build_event_outputs

REPO = Path(__file__).resolve().parents[1]
IMAGE = np.zeros((48, 64, 3), np.uint8)


def event(kind: str = "alert", track: int = 1) -> Event:
    return Event(kind, "2026-12-07T10:00:00Z", "door", 12, track, "without_mask", 0.91, [1, 2, 30, 40])  # type: ignore[arg-type]


def write_wav(path: Path, seconds: float = 0.1) -> Path:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        n = int(8000 * seconds)
        w.writeframes(b"".join(struct.pack("<h", int(3000 * math.sin(i / 5))) for i in range(n)))
    return path


def script(path: Path, body: str) -> Path:
    """An executable shell script standing in for the user's player or command."""
    path.write_text("#!/bin/sh\n" + body + "\n")
    path.chmod(0o755)
    return path


def wait_for(condition, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


@pytest.fixture(autouse=True)
def _faults():
    reset_faults()
    yield
    reset_faults()


# --- checks at start ------------------------------------------------------------------------------------------------


def test_sound_file_checks(tmp_path: Path) -> None:
    assert check_wav(write_wav(tmp_path / "ok.wav")) == tmp_path / "ok.wav"
    (tmp_path / "song.mp3").write_bytes(b"ID3\x03\x00" + bytes(100))
    (tmp_path / "short.wav").write_bytes(b"RIFF")
    cases = {
        tmp_path / "missing.wav": "no such file",
        tmp_path / "song.mp3": "not a WAV file",
        tmp_path / "short.wav": "not a WAV file",
        tmp_path: "cannot read it",  # a folder: unreadable as a file (root reads any file, so no chmod case)
    }
    for path, reason in cases.items():
        with pytest.raises(ConfigError, match=f"alarm.sound {path}: {reason}"):
            check_wav(path)


def test_player_and_command_checks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    player = script(tmp_path / "play", "exit 0")
    assert find_player(f"{player} --quiet") == [str(player), "--quiet"]
    with pytest.raises(ConfigError, match="alarm.player: the program 'no-such-player' is not on the PATH"):
        find_player("no-such-player -q")
    with pytest.raises(ConfigError, match=r"alarm.command: the program '/nope/x' is not an executable file"):
        program_words("/nope/x --flag", "alarm.command")
    with pytest.raises(ConfigError, match="alarm.command is empty"):
        program_words("  ", "alarm.command")
    with pytest.raises(ConfigError, match="No closing quotation"):
        program_words("notify 'unclosed", "alarm.command")
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(ConfigError, match="none of aplay, paplay, ffplay is on the PATH"):
        find_player(None)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    script(bin_dir / "ffplay", "exit 0")
    monkeypatch.setenv("PATH", str(bin_dir))
    assert find_player(None) == ["ffplay", "-nodisp", "-autoexit"]


def alarm_config(**fields) -> Config:
    return Config.model_validate({"alarm": fields})


def run_cli(tmp_path: Path, config: str) -> subprocess.CompletedProcess:
    (tmp_path / "c.yaml").write_text(config)
    command = [sys.executable, "-m", "maskwatch", "run", "--source", "demo", "--config", str(tmp_path / "c.yaml")]
    return subprocess.run(command, capture_output=True, text=True, timeout=120, cwd=tmp_path, check=False)


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ("alarm:\n  sound: nothere.wav\n", "alarm.sound nothere.wav: no such file"),
        ("alarm:\n  command: no-such-program --x\n", "alarm.command: the program 'no-such-program' is not on the PATH"),
        ("alarm:\n  gpio_pin: '17'\n", "alarm.gpio_pin 17: cannot use it as an output: "),
    ],
)
def test_cli_refuses_a_bad_alarm_in_one_line(tmp_path: Path, config: str, message: str) -> None:
    if "gpio" in config and _has_gpio():
        pytest.skip("this machine has GPIO: pin 17 may be usable")
    done = run_cli(tmp_path, config)
    errors = [line for line in done.stderr.splitlines() if "ERROR" in line]
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr[-2000:]
    assert len(errors) == 1 and message in errors[0], done.stderr[-2000:]


def _has_gpio() -> bool:
    return (
        Path("/dev/gpiochip0").exists() or Path("/sys/class/gpio").exists() and any(Path("/sys/class/gpio").iterdir())
    )


# --- the sound ------------------------------------------------------------------------------------------------------


def test_sound_plays_without_blocking_and_drops_while_playing(tmp_path: Path) -> None:
    wav, gate, log = write_wav(tmp_path / "a.wav"), tmp_path / "gate", tmp_path / "played.log"
    # the player logs its file, then plays until the test opens the gate
    player = script(tmp_path / "player", f'echo "$1" >> {log}; while [ ! -e {gate} ]; do sleep 0.02; done')
    alarm = Alarm(sound=Sound(wav, str(player)))
    try:
        alarm.send(event(), IMAGE)  # returns while the player still plays (it waits for the gate)
        assert wait_for(lambda: log.exists()) and alarm.sound.playing
        alarm.send(event(track=2), IMAGE)
        alarm.send(event(track=3), IMAGE)
        alarm.send(event("update"), IMAGE)  # not an alert: nothing
        assert alarm.sound.played == 1 and alarm.sound.dropped == 2
        gate.touch()
        assert wait_for(lambda: not alarm.sound.playing)
        alarm.send(event(track=4), IMAGE)
        assert wait_for(lambda: len(log.read_text().splitlines()) == 2)
        assert log.read_text().splitlines() == [str(wav), str(wav)]
    finally:
        gate.touch()
        alarm.close()
    assert fault_counts() == {}


def test_a_failing_player_is_a_fault_and_the_run_goes_on(tmp_path: Path) -> None:
    player = script(tmp_path / "player", "echo 'no soundcards found' >&2; exit 3")
    sound = Sound(write_wav(tmp_path / "a.wav"), str(player))
    sound.play()
    assert wait_for(lambda: fault_counts().get("alarm.sound") == 1)
    player.unlink()  # the player disappears: starting it fails
    sound.play()
    assert wait_for(lambda: fault_counts().get("alarm.sound") == 2)
    sound.close()


# --- the GPIO output ------------------------------------------------------------------------------------------------


@pytest.fixture
def mock_pins():
    from gpiozero import Device
    from gpiozero.pins.mock import MockFactory

    old = Device.pin_factory
    Device.pin_factory = MockFactory()
    yield Device.pin_factory
    Device.pin_factory.reset()
    Device.pin_factory = old


def on_periods(pin) -> list[float]:
    """Seconds the mock pin spent high, per period (its state log holds the time since the previous change)."""
    periods, high = [], None
    for record in pin.states[1:]:
        if record.state:
            high = 0.0
        elif high is not None:
            periods.append(record.timestamp)
            high = None
    return periods


def test_gpio_output_on_at_alert_and_off_hold_s_after_the_last(mock_pins) -> None:
    relay = Relay(open_output("GPIO17", active_high=True), hold_s=0.4)
    alarm = Alarm(relay=relay)
    pin = mock_pins.pin(17)
    try:
        assert pin.state == 0
        alarm.send(event("update"), IMAGE)
        assert pin.state == 0  # only alerts switch
        alarm.send(event(), IMAGE)
        assert pin.state == 1
        time.sleep(0.2)
        alarm.send(event(track=2), IMAGE)  # a second alert extends the hold
        assert pin.state == 1
        assert wait_for(lambda: pin.state == 0)
        assert len(on_periods(pin)) == 1 and on_periods(pin)[0] >= 0.2 + 0.4  # one period, from first to last + hold
        alarm.send(event(track=3), IMAGE)
        assert pin.state == 1
    finally:
        alarm.close()
    assert pin.state == 0 and relay.device.closed


def test_gpio_active_low(mock_pins) -> None:
    relay = Relay(open_output("17", active_high=False), hold_s=10)
    pin = mock_pins.pin(17)
    assert pin.state == 1  # off is high
    relay.trigger()
    assert pin.state == 0
    relay.close()
    assert pin.state == 1


def test_gpio_checks(mock_pins, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigError, match="alarm.gpio_pin GPIO99: cannot use it as an output: GPIO99 is not a valid"):
        open_output("GPIO99", True)
    monkeypatch.setitem(sys.modules, "gpiozero", None)  # not installed
    with pytest.raises(ConfigError, match=r"alarm.gpio_pin 17 needs gpiozero.*pip install 'maskwatch\[gpio\]'"):
        open_output("17", True)


def test_gpio_without_gpio_names_the_pin_and_reason(monkeypatch: pytest.MonkeyPatch) -> None:
    if _has_gpio():
        pytest.skip("this machine has GPIO")
    from gpiozero import Device

    monkeypatch.setattr(Device, "pin_factory", None)
    monkeypatch.delenv("GPIOZERO_PIN_FACTORY", raising=False)
    with pytest.raises(ConfigError, match=r"alarm.gpio_pin 17: cannot use it as an output: Unable to load any") as e:
        open_output("17", True)
    assert "\n" not in str(e.value)


# --- the command ----------------------------------------------------------------------------------------------------


def test_command_gets_the_event_on_stdin(tmp_path: Path) -> None:
    out = tmp_path / "alerts.jsonl"
    command = Command(program_words(f"{script(tmp_path / 'append', f'cat >> {out}')} --from-test", "cmd"))
    alarm = Alarm(command=command)
    for kind, track in (("alert", 1), ("end", 1), ("alert", 2), ("cross", 3)):
        alarm.send(event(kind, track), IMAGE)
    alarm.close()  # runs what is queued first
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert records == [event("alert", 1).to_json(), event("alert", 2).to_json()]
    assert fault_counts() == {}


def test_command_timeout_failure_and_full_queue_are_faults(tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    slow = Command([str(script(tmp_path / "slow", "sleep 30"))], timeout_s=0.3)
    slow.submit(event())
    assert wait_for(lambda: fault_counts().get("alarm.command") == 1)  # killed after 0.3 s
    failing = Command([str(script(tmp_path / "fail", "echo boom >&2; exit 4"))])
    failing.submit(event())
    assert wait_for(lambda: fault_counts().get("alarm.command") == 2)
    busy = Command([str(script(tmp_path / "busy", f"while [ ! -e {gate} ]; do sleep 0.02; done"))], queue_size=1)
    for track in range(4):  # one runs, one waits, the rest are dropped; submit never blocks
        busy.submit(event(track=track))
    assert fault_counts()["alarm.command"] >= 3
    gate.touch()
    for command in (slow, failing, busy):
        command.close()


def test_close_is_bounded_with_a_hung_command(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(alarm_module, "GIVE_UP_S", 0.5)
    hung = Command([str(script(tmp_path / "hung", "sleep 60"))], timeout_s=3600)
    hung.submit(event())
    hung.submit(event(track=2))
    assert wait_for(lambda: hung._proc is not None)
    closer = threading.Thread(target=hung.close, daemon=True)
    closer.start()
    closer.join(timeout=20)
    assert not closer.is_alive()
    assert wait_for(lambda: hung._proc.poll() is not None)  # the command was killed
    assert fault_counts()["alarm.command"] == 1
    hung.close()  # idempotent


# --- wiring ---------------------------------------------------------------------------------------------------------


def test_wired_as_an_event_output(tmp_path: Path) -> None:
    assert build_alarm(Config()) is None
    out = tmp_path / "out.jsonl"
    cfg = alarm_config(command=f"{script(tmp_path / 'append', f'cat >> {out}')}", command_timeout_s=5)
    outputs = build_event_outputs(cfg, None, tracking=True)
    assert outputs is not None and [type(o).__name__ for o in outputs.outputs] == ["Alarm"]
    with outputs:
        frame = Frame(IMAGE, 12, 0.5, name="door")
        outputs.write(FrameResult(frame, FaceDetections.empty(), events=[event()]), IMAGE)
    assert json.loads(out.read_text()) == event().to_json()


def test_demo_run_with_alarm_command_and_player(tmp_path: Path) -> None:
    """The demo clip end to end: every alert of the events log reaches the command, and the player runs."""
    out, played = tmp_path / "alarm.jsonl", tmp_path / "played.log"
    append = script(tmp_path / "append", f"cat >> {out}")
    player = script(tmp_path / "player", f'echo "$1" >> {played}')
    wav = write_wav(tmp_path / "beep.wav")
    config = f"alarm:\n  command: {append}\n  sound: {wav}\n  player: {player}\n"
    (tmp_path / "c.yaml").write_text(config)
    command = [sys.executable, "-m", "maskwatch", "run", "--source", "demo", "--config", str(tmp_path / "c.yaml")]
    command += ["--events", str(tmp_path / "events.jsonl"), "--no-progress"]
    done = subprocess.run(
        command, capture_output=True, text=True, timeout=300, cwd=tmp_path, check=False, env=os.environ
    )
    assert done.returncode == 0, done.stderr[-2000:]
    alerts = [e for e in map(json.loads, (tmp_path / "events.jsonl").read_text().splitlines()) if e["event"] == "alert"]
    assert alerts and [json.loads(line) for line in out.read_text().splitlines()] == alerts
    assert played.read_text().splitlines()[0] == str(wav)
