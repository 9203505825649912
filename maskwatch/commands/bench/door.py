"""``maskwatch bench door``: what the shop-door features cost, as end-to-end fps and CPU seconds of whole
``maskwatch run`` processes on a clip (the demo by default), each feature alone and all of them together.

The features: a watch zone, a counting line, the alarm running a command (``cat``, reading the event) on each alert,
the SQLite history, alert clips, a notification to a local JSON endpoint (Apprise's ``json://``, served here), the
HTTP view, the door display's event stream open on it (a client reading it, as the screen at the door does), and MQTT
to a local mosquitto when one is installed.

Each comparison (:func:`comparisons`) pairs a run of a variant with a run of its base (no feature, or the HTTP view
alone, which the door features came after) right next to it, in alternating order; the pairs take turns, the order
rotated and flipped each round. On a machine shared with other work, the load changes less between two neighbouring
runs than over a round, so the ratio of a pair says more than the ratio of medians; the figures are the medians of
the pairs, with their quartiles. The goal: all features keep at least 95 % of the fps. Each run's CPU seconds (user
+ system, start-up included) say what a feature costs in work, which other load disturbs less than the fps. What the
runs wrote is counted (notifications received, clips, history people), so a feature that silently did nothing shows.
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

__all__ = [
    "GOAL",
    "FEATURES",
    "TOKEN",
    "Comparison",
    "JsonEndpoint",
    "Variant",
    "door_bench",
    "door_config",
    "door_lines",
]


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


@dataclass(frozen=True)
class Comparison:
    """A variant measured against a base: each of its runs is paired with a run of the base next to it in time."""

    variant: Variant
    base: Variant

    @property
    def key(self) -> str:
        return f"{self.variant.name} / {self.base.name}"


def comparisons(mqtt: bool) -> list[Comparison]:
    """Each feature alone and all of them against none; the door display and all of them (also without clips, and
    with the clips' buffer in JPEG) against the HTTP view alone, which the door features came after."""
    by_name = {v.name: v for v in variants(mqtt)}
    none, view = by_name.pop("none"), by_name["view"]
    against_view = ("display", "all", "all but clips", "all, JPEG buffer")
    return [
        *(Comparison(v, none) for name, v in by_name.items() if name not in against_view[1:] and name != "display"),
        Comparison(by_name["all"], none),
        *(Comparison(by_name[name], view) for name in against_view),
    ]


def door_bench(clip: Path, repeats: int = 5, only: set[str] | None = None) -> dict:
    """fps and CPU seconds of ``maskwatch run --source CLIP``: each comparison (``only``: those whose variant is
    named there) ``repeats`` times, as a pair of runs, base and variant, the pairs taking turns."""
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="maskwatch-door-") as tmp, JsonEndpoint() as endpoint:
        folder = Path(tmp)
        with mosquitto(folder) as mqtt_port:
            chosen = [c for c in comparisons(mqtt_port is not None) if only is None or c.variant.name in only]
            runs: dict[str, dict[str, list]] = {}
            pairs: dict[str, list[dict[str, float]]] = {c.key: [] for c in chosen}
            base_args = ["run", "--source", str(clip), "--no-progress"]
            count = 0
            for round_ in range(repeats):
                shift = round_ % len(chosen)
                order = chosen[shift:] + chosen[:shift]
                for i, comp in enumerate(order if round_ % 2 == 0 else order[::-1]):
                    measured = {}
                    for variant in (comp.base, comp.variant) if (round_ + i) % 2 == 0 else (comp.variant, comp.base):
                        count += 1
                        where = folder / f"run{count}-{re.sub(r'[^a-z]+', '-', variant.name)}"
                        measured[variant.name] = m = _run(where, base_args, variant, endpoint, mqtt_port)
                        for key in _KEYS:
                            runs.setdefault(variant.name, {k: [] for k in _KEYS})[key].append(m[key])
                    got, base = measured[comp.variant.name], measured[comp.base.name]
                    ratio, extra = got["fps"] / base["fps"], got["cpu_s"] - base["cpu_s"]
                    pairs[comp.key].append({"fps_ratio": ratio, "cpu_extra_s": extra})
    return _summary(clip, repeats, mqtt_port is not None, chosen, runs, pairs, (load_before, os.getloadavg()))


def _spread(values: list[float]) -> tuple[float, float, float]:
    """Median, first and third quartile."""
    q1, q2, q3 = statistics.quantiles(values, n=4, method="inclusive") if len(values) > 1 else values * 3
    return q2, q1, q3


def _summary(
    clip: Path, repeats: int, mqtt: bool, chosen: list[Comparison], runs: dict, pairs: dict, load: tuple
) -> dict:
    every = {v.name: v for c in chosen for v in (c.base, c.variant)}
    result: dict = {
        "video": str(clip),
        "repeats": repeats,
        "mqtt": mqtt,
        "goal_ratio": GOAL,
        "load_avg": {"before": list(load[0]), "after": list(load[1])},
        "variants": {
            name: {"features": sorted(every[name].features), "runs": len(r["fps"])}
            | {key: statistics.median(r[key]) for key in _KEYS if key != "made"}
            for name, r in runs.items()
        },
        "comparisons": {},
        "runs": runs,
    }
    for comp in chosen:
        ratio, r1, r3 = _spread([p["fps_ratio"] for p in pairs[comp.key]])
        extra, e1, e3 = _spread([p["cpu_extra_s"] for p in pairs[comp.key]])
        result["comparisons"][comp.key] = {
            "variant": comp.variant.name,
            "base": comp.base.name,
            "fps_ratio": ratio,
            "fps_ratio_quartiles": [r1, r3],
            "cpu_extra_s": extra,
            "cpu_extra_s_quartiles": [e1, e3],
            "pairs": pairs[comp.key],
        }
    return result


def _run(folder: Path, base: list[str], variant: Variant, endpoint: JsonEndpoint, mqtt_port: int | None) -> dict:
    """One run of ``variant``, writing under ``folder``: its fps, wall and CPU seconds, and what its outputs hold."""
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
    return {"fps": _fps(err), "wall_s": seconds, "cpu_s": cpu_s, "made": made}


def _verdict(ratio: float, goal: float) -> str:
    return f"{ratio:.3f} ({'within' if ratio >= goal else 'NOT within'} the goal of {goal:.2f})"


def door_lines(result: dict) -> list[str]:
    """The bench's summary for the terminal: a row per comparison, the medians per variant, the verdicts."""
    comps, goal = result["comparisons"], result["goal_ratio"]
    mqtt = "with MQTT" if result["mqtt"] else "without MQTT (no mosquitto here)"
    load = result["load_avg"]
    lines = [
        f"door features on {Path(result['video']).name}: each variant run next to its base, {result['repeats']} "
        f"pairs each, taking turns ({mqtt}; load average {load['before'][0]:.1f} before, {load['after'][0]:.1f} "
        "after); medians of the pairs (quartiles):",
        f"  {'variant':<17}{'against':<9}{'fps ratio':<22}extra CPU s",
    ]
    for c in comps.values():
        (r1, r3), (e1, e3) = c["fps_ratio_quartiles"], c["cpu_extra_s_quartiles"]
        ratio = f"{c['fps_ratio']:.3f} ({r1:.2f}-{r3:.2f})"
        lines.append(f"  {c['variant']:<17}{c['base']:<9}{ratio:<22}{c['cpu_extra_s']:+.2f} ({e1:+.2f}..{e3:+.2f})")
    medians = ", ".join(f"{n} {m['fps']:.1f} fps {m['cpu_s']:.2f} s" for n, m in result["variants"].items())
    lines.append(f"  medians of all runs (fps, CPU s with start-up): {medians}")
    for key, what in (("all / none", "none"), ("all / view", "the view alone")):
        if key in comps:
            lines.append(f"  all against {what}: fps ratio {_verdict(comps[key]['fps_ratio'], goal)}")
    made = result["runs"]["all"]["made"] if "all" in result["runs"] else []
    if made:
        lines.append(
            f"  an 'all' run's outputs: {made[-1].get('notifications', 0)} notifications, "
            f"{made[-1].get('clips', 0)} clips, {made[-1].get('history_people', 0)} people in the history"
        )
    return lines


def door_command(args) -> int:
    """``maskwatch bench door [--video CLIP] [--repeats N] [--only VARIANT ...] [--json FILE]``."""
    from maskwatch.commands.options import emit
    from maskwatch.errors import UsageError
    from maskwatch.outputs.sinks import check_writable

    video = args.video
    if video is None:
        from maskwatch.demo import demo_folder

        video = demo_folder() / "demo.mp4"
    if not video.is_file():
        raise UsageError(f"--video {video} does not exist")
    only = set(args.only) if getattr(args, "only", None) else None
    known = {v.name for v in variants(mqtt=True)} - {"none"}
    if only is not None and only - known:
        unknown = ", ".join(sorted(only - known))
        raise UsageError(f"--only {unknown}: not a variant (one of: {', '.join(sorted(known))})")
    if args.json is not None:
        check_writable(args.json)
    result = door_bench(video, repeats=args.repeats, only=only)
    return emit(door_lines(result), result, args.json)
