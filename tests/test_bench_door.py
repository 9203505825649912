"""``maskwatch bench door``: its configs turn on each feature alone and all of them; its variants; its summary
says when the goal is missed; a run of it measures every variant and each run really wrote what its features write."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from maskwatch.commands.bench.door import (
    FEATURES,
    JPEG,
    JsonEndpoint,
    _summary,
    comparisons,
    door_config,
    door_lines,
    variants,
)
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


def test_each_feature_is_compared_with_none_and_the_door_display_and_all_with_the_view_too() -> None:
    pairs = {(c.variant.name, c.base.name) for c in comparisons(mqtt=True)}
    alone = {(f, "none") for f in FEATURES if f != "display"}
    with_view = {(name, "view") for name in ("display", "all", "all but clips", "all, JPEG buffer")}
    assert pairs == alone | with_view | {("all", "none")}
    assert ("mqtt", "none") not in {(c.variant.name, c.base.name) for c in comparisons(mqtt=False)}


def test_the_endpoint_counts_what_is_posted() -> None:
    import urllib.request

    with JsonEndpoint() as endpoint:
        url = endpoint.url.replace("json://", "http://")
        for _ in range(2):
            urllib.request.urlopen(urllib.request.Request(url, data=b'{"title": "t"}', method="POST"), timeout=5)
        assert endpoint.received == 2


def _result(pairs: dict[str, list[tuple[float, float]]]) -> dict:
    """A summary of made-up pairs: ``{variant: [(fps ratio, extra CPU s), ...]}`` (all against the view too)."""
    chosen = [c for c in comparisons(mqtt=False) if c.key in pairs]
    made = [{"notifications": 1, "clips": 1, "history_people": 2}]
    runs = {n: {"fps": [40.0, 30.0, 20.0], "wall_s": [2.0] * 3, "cpu_s": [2.0, 2.5, 3.0], "made": made} for n in
            {"none", "view", "all"}}  # fmt: skip
    measured = {key: [{"fps_ratio": r, "cpu_extra_s": e} for r, e in values] for key, values in pairs.items()}
    return _summary(Path("demo.mp4"), 3, False, chosen, runs, measured, ((4.0, 3.0, 2.0), (5.0, 4.0, 3.0)))


def test_the_summary_takes_medians_of_the_pairs_and_says_when_the_goal_is_missed() -> None:
    result = _result({"all / none": [(0.9, 0.5), (0.5, 0.4), (1.0, 0.6)], "all / view": [(0.96, 0.3)] * 3})
    c = result["comparisons"]["all / none"]
    assert c["fps_ratio"] == pytest.approx(0.9) and c["cpu_extra_s"] == pytest.approx(0.5)
    assert c["fps_ratio_quartiles"] == pytest.approx([0.7, 0.95]) and c["base"] == "none"
    assert result["variants"]["none"]["fps"] == 30.0 and result["variants"]["all"]["cpu_s"] == 2.5
    text = "\n".join(door_lines(result))
    assert "all against none: fps ratio 0.900 (NOT within the goal of 0.95)" in text and "without MQTT" in text
    assert "all against the view alone: fps ratio 0.960 (within the goal" in text and "load average 4.0 before" in text
    assert "0.900 (0.70-0.95)" in text and "+0.50 (+0.45..+0.55)" in text
    assert "1 notifications, 1 clips, 2 people in the history" in text


def test_a_missing_video_is_one_line() -> None:
    done = maskwatch("bench", "door", "--video", "/nonexistent/clip.mp4")
    err = done.stderr.strip().splitlines()
    assert done.returncode == 2 and len(err) == 1 and "--video /nonexistent/clip.mp4 does not exist" in err[0]


def test_an_unknown_variant_is_one_line() -> None:
    done = maskwatch("bench", "door", "--only", "all", "--only", "clipz")
    err = done.stderr.strip().splitlines()
    assert done.returncode == 2 and len(err) == 1 and "--only clipz: not a variant" in err[0]


def test_only_the_comparisons_asked_for_are_run(tmp_path: Path) -> None:
    out = tmp_path / "door.json"
    done = maskwatch("bench", "door", "--repeats", "1", "--only", "zone", "--json", str(out), timeout=300)
    assert done.returncode == 0, done.stderr
    assert set(json.loads(out.read_text())["comparisons"]) == {"zone / none"}


@pytest.mark.slow
def test_bench_door_on_the_demo_once(tmp_path: Path) -> None:
    out = tmp_path / "door.json"
    done = maskwatch("bench", "door", "--repeats", "1", "--json", str(out), timeout=600)
    assert done.returncode == 0, done.stderr
    result = json.loads(out.read_text())
    mqtt = shutil.which("mosquitto") is not None or Path("/usr/sbin/mosquitto").exists()
    assert result["mqtt"] == mqtt and set(result["variants"]) == {v.name for v in variants(mqtt)}
    assert set(result["comparisons"]) == {c.key for c in comparisons(mqtt)}
    for key, c in result["comparisons"].items():
        assert c["fps_ratio"] > 0 and len(c["pairs"]) == 1, key
    for name, m in result["variants"].items():
        assert m["fps"] > 0 and m["cpu_s"] > 0, name
    assert result["variants"]["none"]["runs"] == sum(c.base.name == "none" for c in comparisons(mqtt))
    runs = result["runs"]
    assert runs["all"]["made"] == [{"notifications": 1, "clips": 1, "history_people": 2}] * 2  # 1 alert, 2 people
    assert runs["notify"]["made"] == [{"notifications": 1}] and runs["clips"]["made"] == [{"clips": 1}]
    assert runs["history"]["made"] == [{"history_people": 2}] and set(map(str, runs["none"]["made"])) == {"{}"}
    assert "all against the view alone" in done.stdout
