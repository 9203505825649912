"""The MQTT output's names: the ``--mqtt`` URL, topic levels and Home Assistant discovery configs, and the plain
records it takes (TLS files, a source's numbers); no paho needed."""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

from maskwatch import __version__
from maskwatch.media import scrub_url


@dataclass(frozen=True)
class SourceNumbers:
    """One source's live numbers for its state topic, as the runner's status has them (None: not known).

    ``people_total``: the people counted so far (the run's summary number); ``entered`` / ``exited``: crossings of
    the source's counting lines (None without lines: then not published).
    """

    people_in_view: int | None = None
    people_total: int | None = None
    compliance: float | None = None
    fps: float | None = None
    alerts: int | None = None
    entered: int | None = None
    exited: int | None = None


@dataclass(frozen=True)
class MqttTls:
    """TLS to the broker: the CA file (None: the system's), a client certificate and key, and whether to skip the
    host name check."""

    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    insecure: bool = False


_SENSORS = (  # object id, name, value template, unit
    ("people_in_view", "People in view", "{{ value_json.people_in_view }}", None),
    ("people_total", "People seen", "{{ value_json.people_total }}", None),
    ("unmasked_in_view", "Unmasked in view", "{{ value_json.unmasked_in_view }}", None),
    (
        "compliance",
        "Mask compliance",
        "{{ none if value_json.compliance is none else (value_json.compliance * 100) | round(1) }}",
        "%",
    ),
    ("fps", "Processing fps", "{{ value_json.fps }}", "fps"),
)
_DOOR = ("unmasked_at_door", "Unmasked person at the door", "{{ 'ON' if value_json.unmasked_in_view > 0 else 'OFF' }}")


def parse_mqtt_url(url: str) -> dict[str, Any]:
    """``mqtt://[user:pass@]host[:port][/prefix]`` (``mqtts://`` for TLS) as ``mqtt`` config keys; ValueError (the
    URL's credentials masked) when it is not one."""
    parts = urlsplit(str(url).strip())
    scheme = parts.scheme.lower()
    try:
        port = parts.port
    except ValueError:
        port = -1
    if scheme not in ("mqtt", "mqtts") or not parts.hostname or port == -1 or parts.query or parts.fragment:
        raise ValueError(f"--mqtt must look like mqtt://[user:pass@]host:port[/prefix], got {scrub_url(url)!r}")
    keys: dict[str, Any] = {"host": parts.hostname, "port": port or (8883 if scheme == "mqtts" else 1883)}
    prefix = parts.path.strip("/")
    if prefix:
        keys["prefix"] = prefix
    if parts.username:
        keys["username"] = unquote(parts.username)
    if parts.password is not None:
        keys["password"] = unquote(parts.password)
    if scheme == "mqtts":
        keys["tls"] = {}
    return keys


def topic_key(name: str) -> str:
    """A source name as one topic level: a file's stem, a stream's host and path, a camera's ``cameraN``, else the
    name; without ``/``, ``+``, ``#`` or credentials."""
    from maskwatch.config import default_source_name

    if "/" in name or "\\" in name or name.strip().isdigit():
        name = default_source_name(scrub_url(name).replace("***@", ""))
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_") or "source"


def discovery_configs(
    discovery_prefix: str, prefix: str, key: str, name: str, availability: Sequence[str]
) -> Iterator[tuple[str, dict]]:
    """(topic, config) of one source's Home Assistant discovery messages: its sensors (people and unmasked in view,
    people seen in the run, compliance in %, processing fps) and the binary sensor "unmasked person at the door",
    one device per source, all read from ``PREFIX/KEY/state`` and available while every ``availability`` topic
    says ``online``."""
    node = topic_key(f"{prefix}_{key}")
    device = {
        "identifiers": [node],
        "name": f"maskwatch {name}",
        "manufacturer": "maskwatch",
        "model": "face-mask monitor",
        "sw_version": __version__,
    }
    common = {
        "state_topic": f"{prefix}/{key}/state",
        "availability": [{"topic": t} for t in availability],
        "availability_mode": "all",
        "device": device,
    }
    for obj, title, template, unit in _SENSORS:
        config = {"name": title, "unique_id": f"{node}_{obj}", "value_template": template, **common}
        config["state_class"] = "total_increasing" if obj == "people_total" else "measurement"
        if unit is not None:
            config["unit_of_measurement"] = unit
        yield f"{discovery_prefix}/sensor/{node}/{obj}/config", config
    obj, title, template = _DOOR
    config = {"name": title, "unique_id": f"{node}_{obj}", "value_template": template, **common}
    yield f"{discovery_prefix}/binary_sensor/{node}/{obj}/config", config
