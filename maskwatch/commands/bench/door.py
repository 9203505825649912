"""``maskwatch bench door``: what the shop-door features cost, as end-to-end fps and CPU seconds of whole
``maskwatch run`` processes on a clip (the demo by default), each feature alone and all of them together.

The features: a watch zone, a counting line, the alarm running a command (``cat``, reading the event) on each alert,
the SQLite history, alert clips, a notification to a local JSON endpoint (Apprise's ``json://``, served here), the
HTTP view, the door display's event stream open on it (a client reading it, as the screen at the door does), and MQTT
to a local mosquitto when one is installed. The variants (:func:`variants`) take turns run by run, the order rotated
and flipped each round, so a load change on a shared machine hits all alike; the figures are medians. The goal: all
of them keep at least 95 % of the fps of a run with none, and of a run with only the HTTP view (which the door
features came after). Each run's CPU seconds (user + system, start-up included) say what a feature costs in work,
which other load on the machine disturbs less than the fps. What the runs wrote is counted (notifications received,
clips, history people), so a feature that silently did nothing shows.
"""

from __future__ import annotations

import json
import os
import re
import statistics
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

from maskwatch.commands.bench.door_env import (
    TOKEN,
    JsonEndpoint,
    free_port,
    history_people,
    mosquitto,
    timed_run,
    watch_door,
)
from maskwatch.commands.bench.process import _fps

GOAL = 0.95
"""The features together may cost at most 5 % of the end-to-end fps."""
FEATURES = ("zone", "line", "alarm", "history", "clips", "notify", "view", "display", "mqtt")
"""Every feature the bench turns on; ``display`` is the door display's stream, read from the view (so it has it)."""
JPEG = "jpeg"
"""Not a feature: the clips' pre-alert buffer JPEG-encodes every frame (``clips.raw_buffer_mb: 0``), as it once did."""

_KEYS = ("fps", "wall_s", "cpu_s", "made")

__all__ = ["GOAL", "FEATURES", "TOKEN", "JsonEndpoint", "Variant", "door_bench", "door_config", "door_lines"]


@dataclass(frozen=True)
class Variant:
    """One kind of run: a name and the features it turns on."""

    name: str
    features: frozenset[str]


def variants(mqtt: bool) -> list[Variant]:
    """none, the HTTP view alone, each door feature alone (the display with the view it needs), all of them, all but
    the clips (the costliest), and all with the clips' pre-alert buffer in JPEG. Without mosquitto, no MQTT."""
    features = [f for f in FEATURES if mqtt or f != "mqtt"]
    every = frozenset(features)
    alone = [Variant(f, frozenset({f, "view"} if f == "display" else {f})) for f in features if f != "view"]
    return [
        Variant("none", frozenset()),
        Variant("view", frozenset({"view"})),
        *alone,
        Variant("all", every),
        Variant("all but clips", every - {"clips"}),
        Variant("all, JPEG buffer", every | {JPEG}),
    ]


def door_config(
    folder: Path,
    *,
    http_port: int,
    notify_url: str,
    mqtt_port: int | None,
    features: frozenset[str] | tuple[str, ...] = FEATURES,
) -> Path:
    """A config file turning on ``features`` (all by default; :data:`JPEG` too: the clips' buffer in JPEG), writing
    under ``folder``; its path."""
    parts: dict[str, dict] = {
        "zone": {"zones": [{"name": "door", "polygon": [[0.02, 0.02], [0.98, 0.02], [0.98, 0.98], [0.02, 0.98]]}]},
        "line": {"lines": [{"name": "entrance", "points": [[0.5, 0.0], [0.5, 1.0]], "in": "right"}]},
        "alarm": {"alarm": {"command": "cat"}},
        "history": {"history": {"path": str(folder / "door.db")}},
        "clips": {"clips": {"dir": str(folder / "clips")} | ({"raw_buffer_mb": 0.0} if JPEG in features else {})},
        "notify": {"notify": [notify_url]},
        "view": {"http": {"bind": f"127.0.0.1:{http_port}", "token": TOKEN}},
        "mqtt": {"mqtt": {"host": "127.0.0.1", "port": mqtt_port, "prefix": "bench"}} if mqtt_port is not None else {},
    }
    config: dict = {}
    for feature in features:
        config |= parts.get(feature, {})
    path = folder / "door.yaml"
    path.write_text(json.dumps(config, indent=1))  # JSON is YAML
    return path


def door_bench(clip: Path, repeats: int = 5, names: list[str] | None = None) -> dict:
    """fps and CPU seconds of ``maskwatch run --source CLIP`` with each variant (``names``: only those), taking turns
    ``repeats`` times."""
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="maskwatch-door-") as tmp, JsonEndpoint() as endpoint:
        folder = Path(tmp)
        with mosquitto(folder) as mqtt_port:
            chosen = [v for v in variants(mqtt_port is not None) if names is None or v.name in names]
            runs: dict[str, dict[str, list]] = {v.name: {k: [] for k in _KEYS} for v in chosen}
            base = ["run", "--source", str(clip), "--no-progress"]
            for round_ in range(repeats):
                shift = round_ % len(chosen)
                order = chosen[shift:] + chosen[:shift]
                for variant in order if round_ % 2 == 0 else order[::-1]:
                    where = folder / f"run{round_}-{re.sub(r'[^a-z]+', '-', variant.name)}"
                    seconds, cpu_s, err, made = _run(where, base, variant, endpoint, mqtt_port)
                    for key, value in (("fps", _fps(err)), ("wall_s", seconds), ("cpu_s", cpu_s), ("made", made)):
                        runs[variant.name][key].append(value)
    return _summary(clip, repeats, mqtt_port is not None, chosen, runs, (load_before, os.getloadavg()))


def _summary(clip: Path, repeats: int, mqtt: bool, chosen: list[Variant], runs: dict, load: tuple) -> dict:
    medians = {
        name: {key: statistics.median(values) for key, values in r.items() if key != "made"} for name, r in runs.items()
    }
    result: dict = {
        "video": str(clip),
        "repeats": repeats,
        "mqtt": mqtt,
        "goal_ratio": GOAL,
        "load_avg": {"before": list(load[0]), "after": list(load[1])},
        "variants": {v.name: {"features": sorted(v.features), **medians[v.name]} for v in chosen},
        "runs": runs,
    }
    for m in result["variants"].values():
        for base in ("none", "view"):
            if base in medians:
                m[f"fps_ratio_{base}"] = m["fps"] / medians[base]["fps"]
                m[f"cpu_extra_s_{base}"] = m["cpu_s"] - medians[base]["cpu_s"]
    return result


def _run(
    folder: Path, base: list[str], variant: Variant, endpoint: JsonEndpoint, mqtt_port: int | None
) -> tuple[float, float, str, dict]:
    """One run of ``variant``, writing under ``folder``: (wall s, CPU s, stderr, what its outputs hold)."""
    folder.mkdir()
    port = free_port()
    features = variant.features
    config = door_config(folder, http_port=port, notify_url=endpoint.url, mqtt_port=mqtt_port, features=features)
    before, stop = endpoint.received, threading.Event()
    display = watch_door(port, stop) if "display" in features else None
    try:
        seconds, cpu_s, err = timed_run([*base, "--config", str(config)])
    finally:
        stop.set()
        if display is not None:
            display.join(5)
    made: dict[str, int] = {}
    if "notify" in features:
        made["notifications"] = endpoint.received - before
    if "clips" in features:
        clips = folder / "clips"
        made["clips"] = len(list(clips.glob("*.mp4"))) if clips.is_dir() else 0
    if "history" in features:
        made["history_people"] = history_people(folder / "door.db")
    return seconds, cpu_s, err, made


def _verdict(ratio: float, goal: float) -> str:
    return f"{ratio:.3f} ({'within' if ratio >= goal else 'NOT within'} the goal of {goal:.2f})"


def _cell(m: dict, key: str, spec: str) -> str:
    return format(m[key], spec) if key in m else " " * 8


def door_lines(result: dict) -> list[str]:
    """The bench's summary for the terminal: a row per variant, then the verdicts of all of them together."""
    v, goal = result["variants"], result["goal_ratio"]
    mqtt = "with MQTT" if result["mqtt"] else "without MQTT (no mosquitto here)"
    load = result["load_avg"]
    lines = [
        f"door features on {Path(result['video']).name}, medians of {result['repeats']} runs each, taking turns "
        f"({mqtt}; load average {load['before'][0]:.1f} before, {load['after'][0]:.1f} after):",
        f"  {'variant':<17}{'fps':>7}{'/ none':>8}{'/ view':>8}{'CPU s':>8}{'+ none':>8}{'+ view':>8}",
    ]
    for name, m in v.items():
        ratios = "".join(_cell(m, f"fps_ratio_{b}", "8.3f") for b in ("none", "view"))
        extra = "".join(_cell(m, f"cpu_extra_s_{b}", "+8.2f") for b in ("none", "view"))
        lines.append(f"  {name:<17}{m['fps']:7.1f}{ratios}{m['cpu_s']:8.2f}{extra}")
    if "all" in v:
        all_ = v["all"]
        if "fps_ratio_none" in all_:
            lines.append(f"  all against none: fps ratio {_verdict(all_['fps_ratio_none'], goal)}")
        if "fps_ratio_view" in all_:
            lines.append(
                f"  all against the view alone: fps ratio {_verdict(all_['fps_ratio_view'], goal)}, "
                f"{all_['cpu_extra_s_view']:+.2f} CPU s"
            )
        made = result["runs"]["all"]["made"][-1] if result["runs"]["all"]["made"] else {}
        lines.append(
            f"  an 'all' run's outputs: {made.get('notifications', 0)} notifications, {made.get('clips', 0)} clips, "
            f"{made.get('history_people', 0)} people in the history"
        )
    return lines


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
