"""The ``/metrics`` page: the run's status dict as Prometheus metrics, in a registry of the view's own.

``prometheus_client`` is imported only when metrics are collected, so importing the HTTP view stays light.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry
    from prometheus_client.metrics_core import Metric

# status key, metric name, type, help
_METRICS: tuple[tuple[str, str, str, str], ...] = (
    ("uptime_s", "maskwatch_uptime_seconds", "gauge", "Seconds since the run started."),
    ("frames", "maskwatch_frames_total", "counter", "Frames processed."),
    ("dropped", "maskwatch_dropped_frames_total", "counter", "Frames dropped because processing was behind."),
    ("fps", "maskwatch_fps", "gauge", "Processed frames per second."),
    ("stage_ms", "maskwatch_stage_milliseconds", "gauge", "Time per frame of each pipeline stage."),
    ("detect_every", "maskwatch_detect_every", "gauge", "The detector runs on every Nth frame."),
    ("people_now", "maskwatch_people_in_view", "gauge", "Tracked people in the current frame."),
    ("people_total", "maskwatch_people_total", "counter", "Distinct people tracked so far."),
    ("unmasked_total", "maskwatch_unmasked_people_total", "counter", "People decided as not (correctly) masked."),
    ("alerts", "maskwatch_alerts_total", "counter", "Alert events raised."),
    ("compliance", "maskwatch_compliance_ratio", "gauge", "Share of decided people wearing a mask."),
    ("outages", "maskwatch_source_outages_total", "counter", "Times the source was lost."),
    ("connected", "maskwatch_source_connected", "gauge", "1 while the source delivers frames."),
)


def _number(value: object) -> float | None:
    """A Prometheus sample value, or None when ``value`` is not a number."""
    if isinstance(value, bool | np.bool_ | int | np.integer):
        return float(int(value))
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None


def _samples(key: str, value: object, labels: dict[str, str]) -> list[tuple[dict[str, str], float]]:
    """(labels, value) of the samples of status ``key``; ``stage_ms`` adds a ``stage`` label per stage."""
    if key == "stage_ms":
        stages = value.items() if isinstance(value, dict) else ()
        pairs = [(labels | {"stage": str(k)}, _number(v)) for k, v in stages]
    else:
        pairs = [(labels, _number(value))]
    return [(names, v) for names, v in pairs if v is not None]


class _StatusCollector:
    """A ``prometheus_client.registry.Collector``: reads the status dict and stream clients at scrape time.

    It implements the collector protocol (``collect``) without subclassing, so that importing this module does not
    import ``prometheus_client``. With a ``sources`` list (several sources), a metric its rows carry gets one sample
    per source, labelled ``source="NAME"``; the others come from the top level. Missing keys are skipped.
    """

    def __init__(self, read: Callable[[], tuple[dict, int]]) -> None:
        self._read = read

    def collect(self) -> Iterator[Metric]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        status, clients = self._read()
        rows = status.get("sources") if isinstance(status.get("sources"), list) else []
        rows = [row for row in rows if isinstance(row, dict)]
        for key, name, kind, help_text in _METRICS:
            if any(key in row for row in rows):
                samples = []
                for row in rows:
                    samples += _samples(key, row.get(key), {"source": str(row.get("name", ""))})
            else:
                samples = _samples(key, status.get(key), {})
            if samples:  # counter families take the name with its _total and expose it unchanged
                family_type = CounterMetricFamily if kind == "counter" else GaugeMetricFamily
                family = family_type(name, help_text, labels=list(samples[0][0]))
                for labels, value in samples:
                    family.add_metric(list(labels.values()), value)
                yield family
        yield GaugeMetricFamily("maskwatch_http_stream_clients", "Clients watching the MJPEG stream.", int(clients))


def status_registry(read: Callable[[], tuple[dict, int]]) -> CollectorRegistry:
    """A new registry (not the global default) holding a :class:`_StatusCollector` over ``read``."""
    from prometheus_client import CollectorRegistry

    registry = CollectorRegistry(auto_describe=False)
    registry.register(_StatusCollector(read))
    return registry


def prometheus_text(status: dict, clients: int) -> str:
    """Prometheus text exposition of the application's status dict (see :class:`_StatusCollector`)."""
    from prometheus_client import generate_latest

    return generate_latest(status_registry(lambda: (status, clients))).decode()
