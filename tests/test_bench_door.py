"""``maskwatch bench door``: the config it runs with is valid and turns every feature on; a run of it measures both
variants and its door run really wrote what the features write."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from maskwatch.commands.bench.door import JsonEndpoint, door_config, door_lines
from maskwatch.config import load_config
from tests.helpers import maskwatch


@pytest.mark.parametrize("mqtt_port", [None, 1883])
def test_the_door_config_turns_every_feature_on(tmp_path: Path, mqtt_port: int | None) -> None:
    cfg = load_config(door_config(tmp_path, http_port=8089, notify_url="json://127.0.0.1:9/x", mqtt_port=mqtt_port))
    assert cfg.zones and cfg.lines and cfg.alarm.command == "cat"
    assert cfg.history.path == str(tmp_path / "door.db") and cfg.clips.dir == str(tmp_path / "clips")
    assert cfg.notify == ["json://127.0.0.1:9/x"] and cfg.http.bind == "127.0.0.1:8089" and cfg.http.token
    assert (cfg.mqtt.host is not None) == (mqtt_port is not None)


def test_the_endpoint_counts_what_is_posted() -> None:
    import urllib.request

    with JsonEndpoint() as endpoint:
        url = endpoint.url.replace("json://", "http://")
        for _ in range(2):
            urllib.request.urlopen(urllib.request.Request(url, data=b'{"title": "t"}', method="POST"), timeout=5)
        assert endpoint.received == 2


def test_the_summary_says_when_the_goal_is_missed() -> None:
    result = {
        "video": "demo.mp4", "repeats": 5, "mqtt": False, "fps": {"plain": 50.0, "door": 45.0}, "ratio": 0.9,
        "goal_ratio": 0.95, "wall_s": {"plain": 2.0, "door": 2.5}, "cpu_s": {"plain": 3.0, "door": 3.6},
        "door_outputs": [{"notifications": 1, "clips": 1, "history_people": 2}],
    }  # fmt: skip
    text = "\n".join(door_lines(result))
    assert "ratio 0.900 (NOT within the goal of 0.95)" in text and "without MQTT" in text
    assert "within the goal" in "\n".join(door_lines(result | {"ratio": 0.97}))


def test_a_missing_video_is_one_line() -> None:
    done = maskwatch("bench", "door", "--video", "/nonexistent/clip.mp4")
    err = done.stderr.strip().splitlines()
    assert done.returncode == 2 and len(err) == 1 and "--video /nonexistent/clip.mp4 does not exist" in err[0]


@pytest.mark.slow
def test_bench_door_on_the_demo_once(tmp_path: Path) -> None:
    out = tmp_path / "door.json"
    done = maskwatch("bench", "door", "--repeats", "1", "--json", str(out), timeout=300)
    assert done.returncode == 0, done.stderr
    result = json.loads(out.read_text())
    assert result["fps"]["plain"] > 0 and result["fps"]["door"] > 0 and result["ratio"] > 0
    assert len(result["runs"]["fps"]["plain"]) == len(result["runs"]["fps"]["door"]) == 1
    assert result["mqtt"] == (shutil.which("mosquitto") is not None or Path("/usr/sbin/mosquitto").exists())
    (made,) = result["door_outputs"]
    assert made == {"notifications": 1, "clips": 1, "history_people": 2}  # the demo's one alert, its two people
    assert "ratio" in done.stdout
