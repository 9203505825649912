"""The ``/metrics`` page: the run's :class:`~maskwatch.runner.status.RunStatus` as Prometheus metrics, in a registry
of the view's own.

``prometheus_client`` is imported only when metrics are collected, so importing the HTTP view stays light.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from maskwatch.runner.faults import fault_counts

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry
    from prometheus_client.metrics_core import Metric

    from maskwatch.runner.status import RunStatus, SourceStatus

Reading = Callable[[], "tuple[RunStatus | None, int]"]

# per source: the value (None: not known), metric name, type, help
_SOURCE_METRICS: tuple[tuple[Callable[[SourceStatus], object], str, str, str], ...] = (
    (lambda s: s.frames, "maskwatch_frames_total", "counter", "Frames processed."),
    (lambda s: s.dropped, "maskwatch_dropped_frames_total", "counter", "Frames dropped because processing was behind."),
    (lambda s: s.fps, "maskwatch_fps", "gauge", "Processed frames per second."),
    (lambda s: s.stage_ms, "maskwatch_stage_milliseconds", "gauge", "Time per frame of each pipeline stage."),
    (
        lambda s: s.people and s.people.detect_every,
        "maskwatch_detect_every",
        "gauge",
        "The detector runs on every Nth frame.",
    ),
    (
        lambda s: s.people and s.people.people_now,
        "maskwatch_people_in_view",
        "gauge",
        "Tracked people in the current frame.",
    ),
    (
        lambda s: s.people and s.people.people_total,
        "maskwatch_people_total",
        "counter",
        "Distinct people tracked so far.",
    ),
    (
        lambda s: s.people and s.people.unmasked_total,
        "maskwatch_unmasked_people_total",
        "counter",
        "People decided as not (correctly) masked.",
    ),
    (lambda s: s.people and s.people.alerts, "maskwatch_alerts_total", "counter", "Alert events raised."),
    (
        lambda s: s.people and s.people.lines and s.people.entered,
        "maskwatch_people_entered_total",
        "counter",
        "Crossings of the counting lines to their inside (all lines).",
    ),
    (
        lambda s: s.people and s.people.lines and s.people.exited,
        "maskwatch_people_exited_total",
        "counter",
        "Crossings of the counting lines away from their inside (all lines).",
    ),
    (
        lambda s: s.people and s.people.compliance,
        "maskwatch_compliance_ratio",
        "gauge",
        "Share of decided people wearing a mask.",
    ),
    (lambda s: s.outages, "maskwatch_source_outages_total", "counter", "Times the source was lost."),
    (lambda s: s.connected, "maskwatch_source_connected", "gauge", "1 while the source delivers frames."),
)


def _number(value: object) -> float | None:
    """A Prometheus sample value, or None when ``value`` is not a number."""
    if isinstance(value, bool | int):
        return float(int(value))
    return float(value) if isinstance(value, float) else None


def _samples(value: object, labels: dict[str, str]) -> list[tuple[dict[str, str], float]]:
    """(labels, value) of one source's samples of a metric; a dict (``stage_ms``) adds a ``stage`` label per key."""
    if isinstance(value, dict):
        pairs = [(labels | {"stage": str(k)}, _number(v)) for k, v in value.items()]
    else:
        pairs = [(labels, _number(value))]
    return [(names, v) for names, v in pairs if v is not None]


class _StatusCollector:
    """A ``prometheus_client.registry.Collector``: reads the status and stream clients at scrape time.

    It implements the collector protocol (``collect``) without subclassing, so that importing this module does not
    import ``prometheus_client``. With several sources (``per_source``) every source metric gets one sample per
    source, labelled ``source="NAME"``; a number not known (no people without tracking) is skipped.
    """

    def __init__(self, read: Reading) -> None:
        self._read = read

    def collect(self) -> Iterator[Metric]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        status, clients = self._read()
        if status is not None:
            yield GaugeMetricFamily("maskwatch_uptime_seconds", "Seconds since the run started.", status.uptime_s)
            for value, name, kind, help_text in _SOURCE_METRICS:
                samples = []
                for source in status.sources:
                    samples += _samples(value(source), {"source": source.name} if status.per_source else {})
                if samples:  # counter families take the name with its _total and expose it unchanged
                    family_type = CounterMetricFamily if kind == "counter" else GaugeMetricFamily
                    family = family_type(name, help_text, labels=list(samples[0][0]))
                    for labels, number in samples:
                        family.add_metric(list(labels.values()), number)
                    yield family
            yield from _line_crossings(status)
        yield GaugeMetricFamily("maskwatch_http_stream_clients", "Clients watching the MJPEG stream.", int(clients))
        faults = CounterMetricFamily("maskwatch_output_faults", "Run-time faults of each output.", labels=["output"])
        for output, count in sorted(fault_counts().items()):
            faults.add_metric([output], count)
        yield faults


def _line_crossings(status: RunStatus) -> Iterator[Metric]:
    """``maskwatch_line_crossings_total{line, direction}`` (and ``source`` with several) where a source has lines."""
    from prometheus_client.core import CounterMetricFamily

    rows = [(s.name, line) for s in status.sources if s.people is not None for line in s.people.lines]
    if not rows:
        return
    labels = ["source", "line", "direction"] if status.per_source else ["line", "direction"]
    family = CounterMetricFamily("maskwatch_line_crossings", "Crossings of each counting line.", labels=labels)
    for source, line in rows:
        for direction, count in (("in", line.entered), ("out", line.exited)):
            family.add_metric([source, line.name, direction][-len(labels) :], count)
    yield family


def status_registry(read: Reading) -> CollectorRegistry:
    """A new registry (not the global default) holding a :class:`_StatusCollector` over ``read``."""
    from prometheus_client import CollectorRegistry

    registry = CollectorRegistry(auto_describe=False)
    registry.register(_StatusCollector(read))
    return registry


def prometheus_text(status: RunStatus | None, clients: int) -> str:
    """Prometheus text exposition of a run's status (see :class:`_StatusCollector`)."""
    from prometheus_client import generate_latest

    return generate_latest(status_registry(lambda: (status, clients))).decode()
