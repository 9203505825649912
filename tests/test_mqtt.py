"""The MQTT output against a real mosquitto broker on a free loopback port: order and QoS, retained state and
availability, the last will, Home Assistant discovery, a broker down at start or restarted mid-run, a wrong
password, and a bounded close."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
from loguru import logger

from maskwatch.outputs.mqtt_topics import parse_mqtt_url, topic_key
from maskwatch.types import Event
from tests.helpers import ROOT
from tests.mqtt_broker import MOSQUITTO, MOSQUITTO_PASSWD, Broker, Subscriber, free_port

pytest.importorskip("paho.mqtt.client", reason="paho-mqtt is not installed (pip install 'maskwatch[mqtt]')")
NO_BROKER = "the mosquitto binary is missing (apt-get install mosquitto)"
needs_broker = pytest.mark.skipif(
    MOSQUITTO is None, reason="the mosquitto binary is missing (apt-get install mosquitto)"
)

from maskwatch.outputs.mqtt import MqttOutput, SourceNumbers  # noqa: E402


def event(kind: str, frame: int, track: int = 1, label: str | None = "without_mask", source: str = "door") -> Event:
    return Event(
        event=kind, ts="2026-12-07T21:00:00.000Z", source=source, frame=frame, track_id=track, label=label,
        confidence=0.9, box=[1.0, 2.0, 3.0, 4.0],
    )  # fmt: skip


@pytest.fixture
def logs():
    lines: list[str] = []
    sink = logger.add(lambda m: lines.append(str(m)), level="DEBUG", format="{level} {message}")
    yield lines
    logger.remove(sink)


@pytest.fixture
def broker(tmp_path):
    if MOSQUITTO is None:
        pytest.skip(NO_BROKER)
    b = Broker(tmp_path).start()
    yield b
    b.stop()


@pytest.fixture
def closing():
    """Outputs and subscribers made by a test, closed at its end whatever happens."""
    made: list = []
    yield made.append
    for thing in reversed(made):
        thing.close()


def frames_of(messages) -> list[int]:
    return [json.loads(m.payload)["frame"] for m in messages]


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("mqtt://127.0.0.1:1884", {"host": "127.0.0.1", "port": 1884}),
        ("mqtt://broker", {"host": "broker", "port": 1883}),
        ("mqtts://u:p%40ss@broker/shop/door", {"host": "broker", "port": 8883, "prefix": "shop/door", "username": "u",
                                               "password": "p@ss", "tls": {}}),
        ("http://broker:1883", ValueError),
        ("mqtt://user:secret@:1883", ValueError),
        ("mqtt://user:secret@broker:notaport", ValueError),
    ],
)  # fmt: skip
def test_parse_mqtt_url(url, expected):
    if expected is ValueError:
        with pytest.raises(ValueError) as info:
            parse_mqtt_url(url)
        assert "secret" not in str(info.value)
    else:
        assert parse_mqtt_url(url) == expected


def test_topic_key_is_one_clean_level():
    assert topic_key("rtsp://user:pw@cam:554/live") == "cam-554-live"
    assert topic_key("/videos/shop/entrance.mp4") == "entrance"
    assert topic_key("0") == "camera0"
    assert topic_key("front door #2") == "front_door_2"


@needs_broker
def test_events_arrive_in_order_with_qos1(broker, closing):
    sub = Subscriber(broker.port, "maskwatch/door/event")
    closing(sub)
    out = MqttOutput("127.0.0.1", broker.port, sources=["door"])
    closing(out)
    for i in range(30):
        out.send(event("alert" if i % 3 == 0 else "update", i, track=i))
    got = sub.wait("maskwatch/door/event", 30)
    assert frames_of(got) == list(range(30))
    assert all(m.qos == 1 and not m.retain for m in got)
    assert json.loads(got[0].payload) == event("alert", 0, track=0).to_json()


@needs_broker
def test_retained_state_availability_and_offline_on_close(broker, closing):
    numbers = {"door": SourceNumbers(people_in_view=3, people_total=5, compliance=0.75, fps=14.5, alerts=2)}
    out = MqttOutput("127.0.0.1", broker.port, sources=["door"], numbers=lambda: numbers, state_interval_s=0.1)
    out.send(event("alert", 5, track=7))
    deadline = time.monotonic() + 5
    while (out.pending or not out.connected) and time.monotonic() < deadline:
        time.sleep(0.02)
    time.sleep(0.3)
    late = Subscriber(broker.port, "maskwatch/door/state", "maskwatch/door/availability")  # retained: sees them
    closing(late)
    state = late.wait("maskwatch/door/state")[-1]
    assert state.retain
    assert json.loads(state.payload) == {
        "source": "door", "people_in_view": 3, "people_total": 5, "unmasked_in_view": 1, "compliance": 0.75,
        "fps": 14.5, "alerts": 2,
    }  # fmt: skip
    online = late.wait("maskwatch/door/availability")
    assert online[-1].payload == b"online" and online[-1].retain
    out.send(event("end", 9, track=7))  # the person left: nobody unmasked in view
    for _ in range(100):
        if json.loads(late.on("maskwatch/door/state")[-1].payload)["unmasked_in_view"] == 0:
            break
        time.sleep(0.05)
    assert json.loads(late.on("maskwatch/door/state")[-1].payload)["unmasked_in_view"] == 0
    out.close()
    assert late.wait("maskwatch/door/availability", 2)[-1].payload == b"offline"


@needs_broker
def test_last_will_when_the_publisher_is_killed(broker, closing):
    sub = Subscriber(broker.port, "maskwatch/door/availability")
    closing(sub)
    script = (
        "import sys, time\n"
        "from maskwatch.outputs.mqtt import MqttOutput\n"
        f"out = MqttOutput('127.0.0.1', {broker.port}, sources=['door'])\n"
        "while not out.connected: time.sleep(0.02)\n"
        "print('ready', flush=True)\n"
        "time.sleep(60)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, cwd=ROOT, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        assert sub.wait("maskwatch/door/availability")[-1].payload == b"online"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=5)
    finally:
        if proc.poll() is None:
            proc.kill()
    got = sub.wait("maskwatch/door/availability", 2, timeout=5)
    assert [m.payload for m in got] == [b"online", b"offline"]


@needs_broker
def test_home_assistant_discovery_messages(broker, closing):
    sub = Subscriber(broker.port, "homeassistant/#")
    closing(sub)
    out = MqttOutput("127.0.0.1", broker.port, prefix="shop", sources=["front door"])
    closing(out)
    sensors = sub.wait("homeassistant/sensor/shop_front_door/compliance/config")
    door = sub.wait("homeassistant/binary_sensor/shop_front_door/unmasked_at_door/config")
    time.sleep(0.2)
    assert len([m for m in sub.messages if m.topic.endswith("/config")]) == 6 and sensors and door
    late = Subscriber(broker.port, "homeassistant/#")  # retained: a Home Assistant started later gets them too
    closing(late)
    late.wait("homeassistant/binary_sensor/shop_front_door/unmasked_at_door/config")
    time.sleep(0.2)
    configs = [m for m in late.messages if m.topic.endswith("/config")]
    assert len(configs) == 6
    ids = set()
    for m in configs:
        assert m.retain
        config = json.loads(m.payload)
        assert {"name", "unique_id", "state_topic", "value_template", "availability", "device"} <= set(config)
        assert config["state_topic"] == "shop/front_door/state"
        assert {"topic": "shop/front_door/availability"} in config["availability"]
        assert config["device"]["identifiers"] == ["shop_front_door"]
        ids.add(config["unique_id"])
    assert len(ids) == 6
    assert json.loads(door[0].payload)["name"] == "Unmasked person at the door"


@needs_broker
def test_broker_down_at_start_then_started_alert_arrives(tmp_path, closing, logs):
    broker = Broker(tmp_path)  # not started yet
    out = MqttOutput("127.0.0.1", broker.port, sources=["door"], start_timeout_s=3)  # as a run makes it
    closing(out)
    t = time.monotonic()
    out.send(event("alert", 1))
    assert time.monotonic() - t < 0.05  # send never waits for the broker
    time.sleep(0.4)
    broker.start()
    try:
        sub = Subscriber(broker.port, "maskwatch/door/event")
        closing(sub)
        assert frames_of(sub.wait("maskwatch/door/event", 1, timeout=15)) == [1]
    finally:
        out.close()
        broker.stop()
    unreachable = [line for line in logs if "cannot reach the broker" in line]
    assert len(unreachable) == 1 and "retrying" in unreachable[0]


@needs_broker
def test_broker_restarted_mid_run_loses_no_alert_and_keeps_order(broker, closing):
    sub = Subscriber(broker.port, "maskwatch/door/event")
    out = MqttOutput("127.0.0.1", broker.port, sources=["door"])
    closing(out)
    for i in range(5):
        out.send(event("alert", i, track=i))
    assert frames_of(sub.wait("maskwatch/door/event", 5)) == list(range(5))
    sub.close()
    broker.stop()
    for i in range(5, 15):  # while the broker is away
        out.send(event("alert" if i % 2 else "update", i, track=i))
    time.sleep(0.3)
    broker.start()
    sub2 = Subscriber(broker.port, "maskwatch/door/event")  # before the output's next retry (1 s or more)
    closing(sub2)
    got = sub2.wait("maskwatch/door/event", 10, timeout=20)
    assert frames_of(got) == list(range(5, 15))


@needs_broker
@pytest.mark.skipif(MOSQUITTO_PASSWD is None, reason="mosquitto_passwd is missing")
def test_password_right_and_wrong(tmp_path, closing, logs):
    broker = Broker(tmp_path, passwords={"shop": "s3cret-pw"}).start()
    try:
        sub = Subscriber(broker.port, "maskwatch/door/event", username="shop", password="s3cret-pw")
        closing(sub)
        good = MqttOutput("127.0.0.1", broker.port, sources=["door"], username="shop", password="s3cret-pw")
        closing(good)
        good.send(event("alert", 1))
        assert frames_of(sub.wait("maskwatch/door/event")) == [1]
        bad = MqttOutput("127.0.0.1", broker.port, sources=["door"], username="shop", password="wr0ng-pw")
        bad.send(event("alert", 2))
        time.sleep(2.5)  # a few refused attempts
        t = time.monotonic()
        bad.close(timeout_s=0.5)
        assert time.monotonic() - t < 4
        assert frames_of(sub.on("maskwatch/door/event")) == [1]
    finally:
        broker.stop()
    refused = [line for line in logs if "refused the connection" in line]
    assert len(refused) == 1 and "username / mqtt.password" in refused[0] and "***@" in refused[0]
    assert not any("s3cret-pw" in line or "wr0ng-pw" in line for line in logs)


@needs_broker
@pytest.mark.skipif(MOSQUITTO_PASSWD is None, reason="mosquitto_passwd is missing")
def test_a_refusal_at_start_is_a_config_error_and_leaves_no_thread(tmp_path, logs):
    import threading

    from maskwatch.errors import ConfigError

    broker = Broker(tmp_path, passwords={"shop": "s3cret-pw"}).start()
    try:
        with pytest.raises(ConfigError, match=r"refused the connection: .*check mqtt.username / mqtt.password"):
            MqttOutput("127.0.0.1", broker.port, username="shop", password="wr0ng-pw", start_timeout_s=5)
        deadline = time.monotonic() + 3
        while any(t.name == "maskwatch-mqtt" for t in threading.enumerate()) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert not any(t.name == "maskwatch-mqtt" for t in threading.enumerate())
    finally:
        broker.stop()
    assert not [line for line in logs if "retrying" in line]  # the error is the one line, no warning before it


@needs_broker
@pytest.mark.skipif(MOSQUITTO_PASSWD is None, reason="mosquitto_passwd is missing")
@pytest.mark.parametrize("user", ["shop:wr0ng-pw@", "", "intruder:s3cret-pw@"], ids=["wrong", "none", "unknown"])
def test_a_run_the_broker_refuses_stops_at_start_with_one_line(tmp_path, user):
    from tests.helpers import maskwatch

    broker = Broker(tmp_path, passwords={"shop": "s3cret-pw"}).start()
    events, history = tmp_path / "events.jsonl", tmp_path / "h.db"
    try:
        url = f"mqtt://{user}127.0.0.1:{broker.port}"
        done = maskwatch("run", "--source", "demo", "--no-progress", "--events", str(events), "--history", str(history),
                         "--mqtt", url)  # fmt: skip
    finally:
        broker.stop()
    assert done.returncode == 1, done.stderr
    err = done.stderr.strip().splitlines()
    assert len(err) == 1 and "refused the connection" in err[0] and "mqtt.username / mqtt.password" in err[0], err
    assert "pw" not in done.stderr  # neither password is shown
    assert not events.exists() and not history.exists()  # refused before any output was opened


def test_close_is_bounded_with_a_dead_broker(closing, logs):
    out = MqttOutput("127.0.0.1", free_port(), sources=["door"], buffer_size=10)
    for i in range(25):  # more than the buffer: updates go first, the alerts stay
        out.send(event("alert" if i % 5 == 0 else "update", i))
    assert out.pending == 10
    assert sum(m.alert for m in out._queue) == 5
    t = time.monotonic()
    out.close(timeout_s=0.5)
    assert time.monotonic() - t < 4
    assert out.stats.dropped == 25
    assert any("not delivered before close" in line for line in logs)


def test_run_without_paho_names_the_extra(monkeypatch, capsys):
    from maskwatch.cli import main

    for name in ("paho", "paho.mqtt", "paho.mqtt.client"):
        monkeypatch.setitem(sys.modules, name, None)
    assert main(["run", "--source", "demo", "--mqtt", "mqtt://127.0.0.1:1", "--no-progress"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "pip install 'maskwatch[mqtt]'" in err[0]  # before any work: nothing else logged


def test_run_with_a_bad_mqtt_url_is_one_line(capsys):
    from maskwatch.cli import main

    assert main(["run", "--source", "demo", "--mqtt", "mqtt://shop:hunter2@:1883", "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--mqtt must look like" in err[0] and "hunter2" not in err[0]


@needs_broker
def test_run_demo_publishes_its_alert_state_and_discovery(broker, closing):
    """``maskwatch run --source demo --mqtt URL``: the demo's unmasked walker alerts on maskwatch/demo/event."""
    from tests.helpers import maskwatch

    sub = Subscriber(broker.port, "shop/demo/#", "homeassistant/binary_sensor/#")
    closing(sub)
    done = maskwatch("run", "--source", "demo", "--mqtt", f"mqtt://127.0.0.1:{broker.port}/shop", "--no-progress")
    assert done.returncode == 0, done.stderr
    assert [m.payload for m in sub.wait("shop/demo/availability", 2)] == [b"online", b"offline"]  # the last message
    events = [json.loads(m.payload) for m in sub.on("shop/demo/event")]
    assert [e["event"] for e in events].count("alert") == 1 and events[-1]["event"] == "end"
    states = [json.loads(m.payload) for m in sub.on("shop/demo/state")]
    assert max(s["unmasked_in_view"] for s in states) == 1 and states[-1]["alerts"] == 1
    assert sub.on("homeassistant/binary_sensor/shop_demo/unmasked_at_door/config")
    assert "mqtt: connected to mqtt://127.0.0.1" in done.stderr


def test_a_missing_tls_file_is_a_config_error(tmp_path):
    from maskwatch.errors import ConfigError
    from maskwatch.outputs.mqtt import MqttTls

    with pytest.raises(ConfigError, match="mqtt.tls"):
        MqttOutput("127.0.0.1", free_port(), sources=["door"], tls=MqttTls(ca_file=str(tmp_path / "missing.pem")))
