"""``maskwatch bench door``: its configs turn on each feature alone and all of them; its variants; its summary
says when the goal is missed; a run of it measures every variant and each run really wrote what its features write."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from maskwatch.commands.bench.door import FEATURES, JPEG, JsonEndpoint, _summary, door_config, door_lines, variants
from maskwatch.config import load_config
from tests.helpers import maskwatch


def _config(folder: Path, features=FEATURES, mqtt_port: int | None = 1883):
    url = "json://127.0.0.1:9/x"
    return load_config(door_config(folder, http_port=8089, notify_url=url, mqtt_port=mqtt_port, features=features))


@pytest.mark.parametrize("mqtt_port", [None, 1883])
def test_the_door_config_turns_every_feature_on(tmp_path: Path, mqtt_port: int | None) -> None:
    cfg = _config(tmp_path, mqtt_port=mqtt_port)
    assert cfg.zones and cfg.lines and cfg.alarm.command == "cat"
    assert cfg.history.path == str(tmp_path / "door.db") and cfg.clips.dir == str(tmp_path / "clips")
    assert cfg.notify == ["json://127.0.0.1:9/x"] and cfg.http.bind == "127.0.0.1:8089" and cfg.http.token
    assert (cfg.mqtt.host is not None) == (mqtt_port is not None)


def _on(cfg) -> set[str]:
    found = {
        "zone": bool(cfg.zones), "line": bool(cfg.lines), "alarm": cfg.alarm.command is not None,
        "history": cfg.history.path is not None, "clips": cfg.clips.dir is not None, "notify": bool(cfg.notify),
        "view": cfg.http.bind is not None, "mqtt": cfg.mqtt.host is not None,
    }  # fmt: skip
    return {name for name, on in found.items() if on}


@pytest.mark.parametrize("variant", variants(mqtt=True), ids=lambda v: v.name)
def test_each_variant_turns_on_its_features_and_no_other(tmp_path: Path, variant) -> None:
    cfg = _config(tmp_path, variant.features)
    assert _on(cfg) == set(variant.features) - {"display", JPEG}
    assert cfg.clips.raw_buffer_mb == (0.0 if JPEG in variant.features else 80.0)


def test_the_variants_a_baseline_the_view_each_feature_alone_and_all() -> None:
    with_mqtt = {v.name: v.features for v in variants(mqtt=True)}
    assert list(with_mqtt)[:2] == ["none", "view"] and with_mqtt["none"] == frozenset()
    assert with_mqtt["all"] == frozenset(FEATURES) and with_mqtt["display"] == {"display", "view"}
    assert with_mqtt["all but clips"] == frozenset(FEATURES) - {"clips"}
    assert with_mqtt["all, JPEG buffer"] == frozenset(FEATURES) | {JPEG}
    assert all(with_mqtt[f] == {f} for f in FEATURES if f not in ("view", "display"))
    without = {v.name: v.features for v in variants(mqtt=False)}
    assert "mqtt" not in without and "mqtt" not in without["all"]


def test_the_endpoint_counts_what_is_posted() -> None:
    import urllib.request

    with JsonEndpoint() as endpoint:
        url = endpoint.url.replace("json://", "http://")
        for _ in range(2):
            urllib.request.urlopen(urllib.request.Request(url, data=b'{"title": "t"}', method="POST"), timeout=5)
        assert endpoint.received == 2


def _result(fps: dict[str, list[float]], cpu: dict[str, list[float]]) -> dict:
    chosen = [v for v in variants(mqtt=False) if v.name in fps]
    made = [{"notifications": 1, "clips": 1, "history_people": 2}] if "all" in fps else []
    runs = {n: {"fps": fps[n], "wall_s": [2.0] * len(fps[n]), "cpu_s": cpu[n], "made": made} for n in fps}
    return _summary(Path("demo.mp4"), 3, False, chosen, runs, ((4.0, 3.0, 2.0), (5.0, 4.0, 3.0)))


def test_the_summary_takes_medians_and_says_when_the_goal_is_missed() -> None:
    fps = {"none": [50.0, 10.0, 50.0], "view": [48.0, 48.0, 90.0], "all": [45.0, 45.0, 45.0]}
    cpu = {"none": [2.0, 2.0, 9.0], "view": [2.1, 2.1, 2.1], "all": [2.5, 2.5, 2.5]}
    result = _result(fps, cpu)
    all_ = result["variants"]["all"]
    assert all_["fps_ratio_none"] == pytest.approx(0.9) and all_["fps_ratio_view"] == pytest.approx(45 / 48)
    assert all_["cpu_extra_s_none"] == pytest.approx(0.5) and all_["cpu_extra_s_view"] == pytest.approx(0.4)
    text = "\n".join(door_lines(result))
    assert "all against none: fps ratio 0.900 (NOT within the goal of 0.95)" in text and "without MQTT" in text
    assert "all against the view alone: fps ratio 0.938 (NOT within" in text and "load average 4.0 before" in text
    assert "1 notifications, 1 clips, 2 people in the history" in text
    fps["all"] = [49.0, 49.0, 49.0]
    assert "all against none: fps ratio 0.980 (within the goal" in "\n".join(door_lines(_result(fps, cpu)))


def test_a_missing_video_is_one_line() -> None:
    done = maskwatch("bench", "door", "--video", "/nonexistent/clip.mp4")
    err = done.stderr.strip().splitlines()
    assert done.returncode == 2 and len(err) == 1 and "--video /nonexistent/clip.mp4 does not exist" in err[0]


@pytest.mark.slow
def test_bench_door_on_the_demo_once(tmp_path: Path) -> None:
    out = tmp_path / "door.json"
    done = maskwatch("bench", "door", "--repeats", "1", "--json", str(out), timeout=600)
    assert done.returncode == 0, done.stderr
    result = json.loads(out.read_text())
    mqtt = shutil.which("mosquitto") is not None or Path("/usr/sbin/mosquitto").exists()
    assert result["mqtt"] == mqtt and set(result["variants"]) == {v.name for v in variants(mqtt)}
    for name, m in result["variants"].items():
        assert m["fps"] > 0 and m["cpu_s"] > 0 and len(result["runs"][name]["fps"]) == 1, name
    runs = result["runs"]
    assert runs["all"]["made"] == [{"notifications": 1, "clips": 1, "history_people": 2}]  # one alert, two people
    assert runs["notify"]["made"] == [{"notifications": 1}] and runs["clips"]["made"] == [{"clips": 1}]
    assert runs["history"]["made"] == [{"history_people": 2}] and runs["none"]["made"] == [{}]
    assert "all against the view alone" in done.stdout
