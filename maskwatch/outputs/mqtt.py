"""Publish events, a retained state per source, availability and Home Assistant discovery to an MQTT broker, from a
background thread that never blocks the pipeline and keeps alerts while the broker is away."""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from loguru import logger

from maskwatch.errors import ConfigError
from maskwatch.media import scrub_url
from maskwatch.outputs.mqtt_topics import MqttTls, SourceNumbers, discovery_configs, topic_key
from maskwatch.types import Event

__all__ = ["MqttOutput", "MqttStats", "MqttTls", "SourceNumbers"]

if TYPE_CHECKING:
    from paho.mqtt.client import Client, MQTTMessageInfo

_WARN_EVERY_S = 60.0
_CREDENTIALS, _CLIENT_ID = "mqtt.username / mqtt.password", "mqtt.client_id"
_REFUSED = {132: "the broker's MQTT version", 133: _CLIENT_ID, 134: _CREDENTIALS, 135: _CREDENTIALS, 138: _CLIENT_ID}
"""CONNACK reason codes that say the broker will not take this client as configured, and what to check."""
_UNMASKED = ("without_mask", "mask_weared_incorrect")


@dataclass
class MqttStats:
    """Messages acknowledged by the broker, events dropped unsent, and connections made."""

    sent: int = 0
    dropped: int = 0
    connects: int = 0


@dataclass(frozen=True)
class _Message:
    topic: str
    payload: bytes
    retain: bool = False
    alert: bool = False


class MqttOutput:
    """An event output (:class:`~maskwatch.outputs.events.EventSink`) for an MQTT broker (QoS 1).

    ``send`` only queues (at most ``buffer_size`` events; when full the oldest ``update``/``end`` goes first, an
    ``alert`` only when nothing else is left). One daemon thread publishes them in order, one at a time, each
    acknowledged before the next, reconnecting with backoff when the broker is away. ``numbers`` (the runner's
    status per source name) feeds the retained state every ``state_interval_s``; without it the state carries what
    the events tell.

    ``start_timeout_s`` > 0: the constructor waits that long for the broker's first answer. A broker that refuses
    this client (a wrong user name or password, not authorized, a client id it rejects) is a
    :class:`~maskwatch.errors.ConfigError`; a broker that is down or does not answer is a warning, and the output
    goes on buffering and retrying.
    """

    def __init__(
        self,
        host: str,
        port: int = 1883,
        *,
        prefix: str = "maskwatch",
        sources: Sequence[str] = (),
        username: str | None = None,
        password: str | None = None,
        tls: MqttTls | None = None,
        client_id: str = "",
        keepalive_s: int = 60,
        buffer_size: int = 1000,
        numbers: Callable[[], dict[str, SourceNumbers]] | None = None,
        state_interval_s: float = 2.0,
        discovery_prefix: str | None = "homeassistant",
        max_backoff_s: int = 30,
        start_timeout_s: float = 0.0,
    ) -> None:
        if buffer_size < 1:
            raise ValueError(f"mqtt buffer_size must be at least 1, got {buffer_size}")
        self.prefix = prefix.strip("/")
        self.name = f"mqtt{'s' if tls else ''}://{'***@' if username else ''}{host}:{port}"
        self.buffer_size, self.state_interval_s = buffer_size, state_interval_s
        self.discovery_prefix = discovery_prefix.strip("/") if discovery_prefix else None
        self.stats = MqttStats()
        self._numbers_fn = numbers
        self._numbers: dict[str, SourceNumbers] = {}
        self._sources: dict[str, str] = {}  # topic key -> source name, in order of appearance
        for name in sources:
            self._sources.setdefault(topic_key(name), name)
        # one will per client: the source's own availability topic, or the run's when it serves several
        one = len(self._sources) == 1
        self.will_topic = (
            f"{self.prefix}/{next(iter(self._sources))}/availability" if one else f"{self.prefix}/availability"
        )
        self._alerted: dict[str, set[int]] = {}
        self._unmasked: dict[str, set[int]] = {}
        self._alerts: dict[str, int] = {}
        self._queue: deque[_Message] = deque()
        self._dirty: set[str] = set()
        self._published_state: dict[str, bytes] = {}
        self._announce = False
        self._connected = False
        self._closing = self._closed = False
        self._cond = threading.Condition()
        self._abort = threading.Event()
        self._last_warn: dict[str, float] = {}
        self._answered, self._refusal = threading.Event(), ""
        self._checking = start_timeout_s > 0
        self._client = self._make_client(host, port, username, password, tls, client_id, keepalive_s, max_backoff_s)
        self._thread = threading.Thread(target=self._run, name="maskwatch-mqtt", daemon=True)
        self._thread.start()
        if self._checking:
            self._check_start(start_timeout_s)

    def _check_start(self, timeout_s: float) -> None:
        """Wait for the broker's first answer: a refusal of this client stops here with one line, anything else
        goes on (a broker that is down or silent is said once, by the callbacks or here)."""
        answered = self._answered.wait(timeout_s)
        self._checking = False
        if not answered:
            self._warn("unreachable", f"mqtt: no answer from the broker at {self.name} in {timeout_s:g} s; retrying")
        elif self._refusal:
            self._abort.set()
            with self._cond:
                self._closed = self._closing = True
                self._cond.notify_all()
            self._client.disconnect()
            threading.Thread(target=self._client.loop_stop, name="maskwatch-mqtt-stop", daemon=True).start()
            raise ConfigError(self._refusal)

    def _make_client(self, host, port, username, password, tls, client_id, keepalive_s, max_backoff_s) -> Client:
        """A paho client with the will set, connecting in the background (it retries until the broker answers)."""
        import paho.mqtt.client as mqtt

        cid = client_id or f"maskwatch-{socket.gethostname()}-{os.getpid()}"[:64]
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=cid)
        if username:
            client.username_pw_set(username, password)
        if tls is not None:
            try:
                client.tls_set(ca_certs=tls.ca_file, certfile=tls.cert_file, keyfile=tls.key_file)
            except (OSError, ValueError) as exc:  # a missing or unreadable file, a key that does not fit
                raise ConfigError(f"mqtt.tls: {exc}") from None
            client.tls_insecure_set(tls.insecure)
        client.will_set(self.will_topic, "offline", qos=1, retain=True)
        client.reconnect_delay_set(1, max_backoff_s)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_connect_fail = self._on_connect_fail
        client.connect_async(host, port, keepalive=keepalive_s)
        client.loop_start()
        return client

    def __enter__(self) -> MqttOutput:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def pending(self) -> int:
        """Events queued and not yet acknowledged by the broker."""
        return len(self._queue)

    @property
    def connected(self) -> bool:
        return self._connected

    def send(self, event: Event, image: object = None) -> None:
        """Queue ``event`` for ``PREFIX/SOURCE/event`` and update its source's state; returns at once."""
        body = json.dumps(event.to_json(), ensure_ascii=False, default=str).encode("utf-8")
        with self._cond:
            if self._closing:
                self.stats.dropped += 1
                self._warn("closed", f"mqtt {self.name} is closed; event dropped")
                return
            key = self._note_source(event.source)
            self._follow(key, event)
            if len(self._queue) >= self.buffer_size:
                self._drop_one()
            self._queue.append(_Message(f"{self.prefix}/{key}/event", body, alert=event.event == "alert"))
            self._dirty.add(key)
            self._cond.notify_all()

    def close(self, timeout_s: float = 5.0) -> None:
        """Deliver what is queued for up to ``timeout_s``, publish ``offline``, disconnect; idempotent. Returns
        within about ``timeout_s + 3`` s whatever the broker does."""
        if self._closed:
            return
        self._refresh_numbers()  # the last numbers: who is still in view when the run ends
        with self._cond:
            if self._closed:
                return
            self._closed = self._closing = True
            self._cond.notify_all()
        self._thread.join(timeout=max(timeout_s, 0.0))
        if self._thread.is_alive():
            self._abort.set()
            with self._cond:
                left = len(self._queue)
                self.stats.dropped += left
                self._queue.clear()
                self._cond.notify_all()
            if left:
                logger.warning(f"mqtt {self.name}: {left} queued events not delivered before close")
            self._thread.join(timeout=1.0)
        if self._connected:
            infos = [self._client.publish(t, "offline", qos=1, retain=True) for t in self._availability_topics()]
            deadline = time.monotonic() + 1.0
            while any(not i.is_published() for i in infos) and time.monotonic() < deadline:
                time.sleep(0.01)
        self._client.disconnect()
        stopper = threading.Thread(target=self._client.loop_stop, name="maskwatch-mqtt-stop", daemon=True)
        stopper.start()
        stopper.join(timeout=2.0)
        s = self.stats
        logger.info(f"mqtt: {s.sent} messages sent, {s.dropped} events dropped, {s.connects} connection(s)")

    # --- state kept from the events ------------------------------------------------------------------------------
    def _note_source(self, name: str) -> str:
        key = topic_key(name)
        if key not in self._sources:
            self._sources[key] = name
            self._announce = self._announce or self._connected
        return key

    def _follow(self, key: str, event: Event) -> None:
        """Who of the source is in view unmasked: alerted, still decided unmasked, not gone."""
        alerted, unmasked = self._alerted.setdefault(key, set()), self._unmasked.setdefault(key, set())
        tid = event.track_id
        if event.event == "alert":
            alerted.add(tid)
            unmasked.add(tid)
            self._alerts[key] = self._alerts.get(key, 0) + 1
        elif event.event == "end":
            alerted.discard(tid)
            unmasked.discard(tid)
        elif event.label in _UNMASKED and tid in alerted:
            unmasked.add(tid)
        else:
            unmasked.discard(tid)

    def _drop_one(self) -> None:
        """Make room: drop the oldest non-alert event, else the oldest alert."""
        index = next((i for i, m in enumerate(self._queue) if not m.alert), 0)
        lost = self._queue[index]
        del self._queue[index]
        self.stats.dropped += 1
        what = "an alert" if lost.alert else "an update"
        self._warn("full", f"mqtt {self.name}: buffer of {self.buffer_size} events full, dropped {what} (and more)")

    def _state(self, key: str) -> bytes:
        n = self._numbers.get(key, SourceNumbers())
        alerts = n.alerts if n.alerts is not None else self._alerts.get(key, 0)
        state = {
            "source": self._sources.get(key, key),
            "people_in_view": n.people_in_view,
            "people_total": n.people_total,
            "unmasked_in_view": len(self._unmasked.get(key, ())),
            "compliance": None if n.compliance is None else round(n.compliance, 4),
            "fps": n.fps,
            "alerts": alerts,
        }
        if n.entered is not None or n.exited is not None:
            state |= {"entered": n.entered, "exited": n.exited}
        return json.dumps(state).encode("utf-8")

    # --- the worker ---------------------------------------------------------------------------------------------
    def _run(self) -> None:
        next_numbers = 0.0
        while not self._abort.is_set():
            if time.monotonic() >= next_numbers:
                self._refresh_numbers()
                next_numbers = time.monotonic() + self.state_interval_s
            try:
                if not self._step(timeout=max(0.0, min(next_numbers - time.monotonic(), 0.5))):
                    return
            except Exception as exc:  # never let the worker die: say so and go on
                logger.warning(f"mqtt {self.name}: unexpected error: {scrub_url(exc)}")
                self._abort.wait(1.0)

    def _step(self, timeout: float) -> bool:
        """Publish what is due (announcements, the next event, changed states); False when closed and done."""
        with self._cond:
            if not self._connected or not (self._announce or self._queue or self._dirty):
                if self._closing and not self._queue and not (self._dirty and self._connected):
                    return False  # closing: events are worth waiting for, states only while connected
                self._cond.wait(timeout)
                return True
            announce, self._announce = self._announce, False
            message = self._queue[0] if self._queue and not announce else None
        if announce:
            self._announce_all()
        elif message is not None and self._publish(message):
            with self._cond:
                if self._queue and self._queue[0] is message:
                    self._queue.popleft()
        self._publish_states()
        return True

    def _refresh_numbers(self) -> None:
        if self._numbers_fn is None:
            return
        try:
            numbers = self._numbers_fn()
        except Exception as exc:  # the status is a view of other threads' counters: try again next time
            logger.debug(f"mqtt: status not read: {exc}")
            return
        with self._cond:
            for name, n in numbers.items():
                key = self._note_source(name)
                self._numbers[key] = n
                self._dirty.add(key)
            self._cond.notify_all()

    def _publish_states(self) -> None:
        """The retained state of each source whose numbers changed since it was last published."""
        with self._cond:
            dirty, self._dirty = self._dirty, set()
            states = {key: self._state(key) for key in dirty}
        for key, body in states.items():
            if self._published_state.get(key) == body:
                continue
            if self._publish(_Message(f"{self.prefix}/{key}/state", body, retain=True)):
                self._published_state[key] = body
            else:
                with self._cond:
                    self._dirty.add(key)

    def _announce_all(self) -> None:
        """On each connection: ``online``, the discovery configs and the last state of every source (retained, so a
        broker restarted without persistence has them again)."""
        for topic in self._availability_topics():
            self._publish(_Message(topic, b"online", retain=True))
        with self._cond:
            keys = list(self._sources)
            self._dirty.update(keys)
        self._published_state.clear()
        if self.discovery_prefix is not None:
            for key in keys:
                for topic, config in self.discovery(key):
                    self._publish(_Message(topic, json.dumps(config).encode("utf-8"), retain=True))

    def _availability_topics(self) -> list[str]:
        topics = [f"{self.prefix}/{key}/availability" for key in list(self._sources)]
        return topics if self.will_topic in topics else [self.will_topic, *topics]

    def discovery(self, key: str) -> Iterable[tuple[str, dict]]:
        """(topic, config) of the Home Assistant discovery messages of one source."""
        topics = list(dict.fromkeys([self.will_topic, f"{self.prefix}/{key}/availability"]))
        name = self._sources.get(key, key)
        return discovery_configs(self.discovery_prefix or "homeassistant", self.prefix, key, name, topics)

    def _publish(self, message: _Message) -> bool:
        """Hand one message to paho (QoS 1) and wait for the broker's acknowledgement; paho sends it again after a
        reconnect. False only when the output is aborted first."""
        info = self._client.publish(message.topic, message.payload, qos=1, retain=message.retain)
        if self._await(info):
            self.stats.sent += 1
            return True
        return False

    def _await(self, info: MQTTMessageInfo) -> bool:
        while not info.is_published():
            if self._abort.is_set():
                return False
            if info.rc == 0 and self._connected:
                try:
                    info.wait_for_publish(timeout=0.2)
                except (RuntimeError, ValueError):
                    self._abort.wait(0.05)
            else:
                self._abort.wait(0.05)
        return True

    # --- paho's callbacks (its network thread) ------------------------------------------------------------------
    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            check = _REFUSED.get(reason_code.value)
            said = f"mqtt: the broker at {self.name} refused the connection: {reason_code}"
            if self._checking and check is not None:  # at start: the run stops with this line
                self._refusal = f"{said} (check {check})"
            else:
                self._warn("refused", f"{said}{f' (check {check})' if check else ''}; retrying")
            self._answered.set()
            return
        self._answered.set()
        self.stats.connects += 1
        again = self.stats.connects > 1
        logger.info(f"mqtt: {'re' if again else ''}connected to {self.name} ({len(self._queue)} events queued)")
        with self._cond:
            self._connected = self._announce = True
            self._last_warn.clear()
            self._cond.notify_all()

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        with self._cond:
            was, self._connected = self._connected, False
            self._cond.notify_all()
        if was and not self._closing:
            self._warn("lost", f"mqtt: lost the broker at {self.name} ({reason_code}); reconnecting, events are kept")

    def _on_connect_fail(self, client, userdata) -> None:
        self._answered.set()
        self._warn(
            "unreachable",
            f"mqtt: cannot reach the broker at {self.name}; the run goes on, retrying with backoff and keeping up to "
            f"{self.buffer_size} events",
        )

    def _warn(self, key: str, message: str) -> None:
        """Log ``message`` at most once a minute per ``key``."""
        now = time.monotonic()
        if now - self._last_warn.get(key, -_WARN_EVERY_S) >= _WARN_EVERY_S:
            self._last_warn[key] = now
            logger.warning(message)
