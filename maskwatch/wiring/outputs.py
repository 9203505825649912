"""The builders of a run's outputs from the config: the overlay renderer, the video / image sinks, the event
outputs (log, snapshots, webhook, web view) behind one fan-out, and the HTTP remote view."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from maskwatch.config import Config
from maskwatch.errors import ConfigError, OutputError
from maskwatch.outputs.render import OverlayRenderer

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from maskwatch.capture.base import Source
    from maskwatch.monitor.lines import CountingLine
    from maskwatch.monitor.zones import ZoneSet
    from maskwatch.outputs.alarm import Alarm
    from maskwatch.outputs.clips import ClipSink
    from maskwatch.outputs.events import EventOutputs, EventSink
    from maskwatch.outputs.mqtt import MqttOutput
    from maskwatch.outputs.notify import Notifier
    from maskwatch.outputs.sinks import NullVideoSink, Sink, VideoSink
    from maskwatch.runner.status import RunStatus
    from maskwatch.serve.web import WebView


MQTT_START_TIMEOUT_S = 3.0
"""How long a run waits at start for the MQTT broker's first answer (a refusal stops the run; silence does not)."""


def build_renderer(cfg: Config, *, zones: ZoneSet | None = None, lines: Sequence[CountingLine] = ()) -> OverlayRenderer:
    """The overlay renderer; with ``zones`` and ``lines`` (one source's), it draws them too."""
    r = cfg.render
    return OverlayRenderer(
        colors=dict(r.colors),
        thickness=r.thickness,
        font_scale=r.font_scale,
        hud=r.hud,
        blur_faces=r.blur_faces,
        zones=zones,
        lines=lines,
    )


def build_event_outputs(
    cfg: Config,
    events: Path | None,
    *,
    tracking: bool,
    per_source: bool = False,
    view: EventSink | None = None,
    status: Callable[[], RunStatus] | None = None,
    sources: Sequence[str] = (),
) -> EventOutputs | None:
    """Every event output of a run behind one fan-out, in order: the ``--events`` log (after its snapshots), the
    history, the webhook (tracked runs), MQTT, the alarm, notifications (tracked runs), the web view. None when
    there is none. A new output is one line here.

    ``per_source`` names alert snapshots ``<source>_<track>_<frame>.jpg`` (several sources share the log);
    ``status`` and ``sources`` (the run's source names) feed the MQTT output's state and discovery. MQTT is
    connected first (a broker that refuses the client stops the run before any file is opened); when an output
    cannot be built, the ones built before it are closed.
    """
    from maskwatch.outputs.events import EventOutputs

    a = cfg.alerts
    mqtt = build_mqtt_output(cfg, status, sources) if cfg.mqtt.host is not None else None
    outputs: list[EventSink] = []
    try:
        if events is not None:
            outputs += _event_log_outputs(cfg, events, per_source=per_source)
        if cfg.history.path is not None:
            outputs.append(build_history(cfg, tracking=tracking, sources=sources))
        if a.webhook and tracking:
            from maskwatch.outputs.webhook import Webhook

            outputs.append(Webhook(a.webhook, timeout_s=a.webhook_timeout_s, retries=a.webhook_retries))
        if mqtt is not None:
            outputs.append(mqtt)
        if (alarm := build_alarm(cfg)) is not None:
            outputs.append(alarm)
        if cfg.notify and tracking:
            outputs.append(build_notifier(cfg))
    except BaseException:
        for output in outputs if mqtt is None or mqtt in outputs else [*outputs, mqtt]:
            output.close()
        raise
    if view is not None:
        outputs.append(view)
    return EventOutputs(outputs) if outputs else None


def build_history(cfg: Config, *, tracking: bool, sources: Sequence[str]) -> EventSink:
    """``--history``: the SQLite history writer (opened and checked now: one line on a locked, corrupt or foreign
    file), with its retention and scheduled reports."""
    from maskwatch.history.writer import HistoryWriter

    h = cfg.history
    assert h.path is not None
    if not tracking:
        raise OutputError("--history needs a video, camera or stream with tracking on (not images or --no-track)")
    reports = Path(h.reports_dir) if h.reports_dir is not None else None
    return HistoryWriter(
        Path(h.path),
        retention_days=h.retention_days,
        report_at=h.report_at,
        report_weekday=h.report_weekday,
        reports_dir=reports,
        sources=sources,
    )


def build_mqtt_output(cfg: Config, status: Callable[[], RunStatus] | None, sources: Sequence[str]) -> MqttOutput:
    """The ``mqtt`` section's output; its state numbers come from ``status``. It waits up to
    :data:`MQTT_START_TIMEOUT_S` for the broker's first answer: a refusal (a wrong password) is a ConfigError, a
    broker that is down a warning (it goes on connecting in the background)."""
    from maskwatch.outputs.mqtt import MqttOutput, MqttTls, SourceNumbers

    m = cfg.mqtt
    assert m.host is not None

    def numbers() -> dict[str, SourceNumbers]:
        rows = status().sources if status is not None else ()
        return {
            s.name: SourceNumbers(
                people_in_view=s.people.people_now if s.people else None,
                people_total=s.people.people_total if s.people else None,
                compliance=s.people.compliance if s.people else None,
                fps=s.fps,
                alerts=s.people.alerts if s.people else None,
                entered=s.people.entered if s.people and s.people.lines else None,
                exited=s.people.exited if s.people and s.people.lines else None,
            )
            for s in rows
        }

    tls = MqttTls(**m.tls.model_dump()) if m.tls is not None else None
    return MqttOutput(
        m.host,
        m.port,
        prefix=m.prefix,
        sources=sources,
        username=m.username,
        password=m.password,
        tls=tls,
        client_id=m.client_id,
        keepalive_s=m.keepalive_s,
        buffer_size=m.buffer_size,
        numbers=numbers if status is not None else None,
        state_interval_s=m.state_interval_s,
        discovery_prefix=m.discovery_prefix,
        start_timeout_s=MQTT_START_TIMEOUT_S,
    )


def build_alarm(cfg: Config) -> Alarm | None:
    """The ``alarm`` section's output (a sound, a GPIO output, a command; each checked first), or None."""
    from maskwatch.outputs.alarm import Alarm, Command, Relay, Sound, open_output, program_words

    a = cfg.alarm
    if a.sound is None and a.gpio_pin is None and a.command is None:
        return None
    sound = Sound(a.sound, a.player) if a.sound is not None else None
    argv = program_words(a.command, "alarm.command") if a.command is not None else None
    device = open_output(a.gpio_pin, a.gpio_active_high) if a.gpio_pin is not None else None
    relay = Relay(device, a.hold_s) if device is not None else None
    return Alarm(sound=sound, relay=relay, command=Command(argv, a.command_timeout_s) if argv else None)


def build_notifier(cfg: Config) -> Notifier:
    """The ``notify`` URLs' output (Apprise; one line when it is missing or a URL is unusable)."""
    from maskwatch.outputs.notify import Notifier, load_apprise

    return Notifier(load_apprise(cfg.notify), blur=cfg.render.blur_faces, crop_margin=cfg.classifier.crop_margin)


def build_clip_sink(cfg: Config, source: Source, name: str) -> ClipSink:
    """``clips``: the alert clips of one source (``name``) in ``clips.dir``, after retention has run there."""
    from maskwatch.outputs.clips import ClipRecorder, ClipSink, open_clip_folder

    c = cfg.clips
    assert c.dir is not None
    folder = Path(c.dir)
    open_clip_folder(folder)
    recorder = ClipRecorder(
        folder,
        name,
        fps=source.fps,
        live=source.is_live,
        pre_s=c.pre_s,
        post_s=c.post_s,
        max_age_days=c.max_age_days,
        max_total_mb=c.max_total_mb,
        fourcc=output_fourcc(cfg),
        raw_buffer_mb=c.raw_buffer_mb,
    )
    recorder.prune()
    return ClipSink(recorder, blur=cfg.render.blur_faces)


def build_event_log(cfg: Config, path: Path, *, per_source: bool = False) -> EventOutputs:
    """The ``--events`` log at ``path`` (with its snapshots when configured) as a sink of its own."""
    from maskwatch.outputs.events import EventOutputs

    return EventOutputs(_event_log_outputs(cfg, path, per_source=per_source))


def _event_log_outputs(cfg: Config, path: Path, *, per_source: bool) -> list[EventSink]:
    """The snapshots (``alerts.snapshots``: blurred as rendered, cut with the classifier's margin), then the log
    with the configured rotation."""
    from maskwatch.outputs.events import EventLog, Snapshots, snapshot_folder

    a = cfg.alerts
    outputs: list[EventSink] = []
    if a.snapshots:
        blur, margin = cfg.render.blur_faces, cfg.classifier.crop_margin
        outputs.append(Snapshots(snapshot_folder(path), blur=blur, crop_margin=margin, prefix_source=per_source))
    outputs.append(EventLog(path, max_bytes=a.max_bytes, backups=a.backups))
    return outputs


def output_fourcc(cfg: Config) -> str:
    """The FourCC codec of output videos (``output.fourcc``)."""
    return cfg.output.fourcc


def build_video_sink(cfg: Config, path: Path, fps: float) -> VideoSink:
    """An annotated video at ``path`` with the configured codec that plays in the source's time (frames repeated
    where a variable-frame-rate file or a live source leaves a gap longer than one frame at ``fps``)."""
    from maskwatch.outputs.sinks import VideoSink

    return VideoSink(path, fps=fps, fourcc=output_fourcc(cfg), follow_timestamps=True)


def build_null_video_sink(cfg: Config) -> NullVideoSink:
    """A stand-in for ``--output`` that encodes every frame as a JPEG of the configured quality and keeps nothing."""
    from maskwatch.outputs.sinks import NullVideoSink

    return NullVideoSink(cfg.output.jpeg_quality)


def build_output_sink(cfg: Config, out: Path, source: Source) -> Sink:
    """``--output``: annotated images (a file for one image, else a folder) or an annotated video.

    Fails early, before any model loads, on an output that cannot be written or would overwrite an input.
    """
    from maskwatch.capture.sources import ImageFilesSource, RealtimeFileSource
    from maskwatch.media import IMAGE_SUFFIXES, VIDEO_SUFFIXES
    from maskwatch.outputs.sinks import ImageSink, check_writable

    if isinstance(source, RealtimeFileSource):
        source = source.video
    inputs = tuple(source.paths)
    if isinstance(source, ImageFilesSource):
        single = len(source.paths) == 1 and out.suffix.lower() in IMAGE_SUFFIXES
        if not single and out.suffix.lower() in IMAGE_SUFFIXES:
            raise OutputError(f"--output {out} must be a folder for a folder of images")
        if not single and out.exists() and not out.is_dir():
            raise OutputError(f"--output {out} must be a folder for a folder of images")
        check_writable(out, inputs)
        if not single and out.resolve() in {p.parent.resolve() for p in source.paths}:
            raise OutputError(f"--output {out} is the input folder; annotated images would overwrite the inputs")
        return ImageSink(out, single_file=single, jpeg_quality=cfg.output.jpeg_quality)
    if out.suffix.lower() not in VIDEO_SUFFIXES:
        raise OutputError(f"--output {out} must be a video file ({', '.join(VIDEO_SUFFIXES)})")
    check_writable(out, inputs)
    return build_video_sink(cfg, out, source.fps)


def http_bind(cfg: Config) -> tuple[str, int] | None:
    """The remote view's (host, port) from ``http.bind``, or None; one beyond this machine needs ``http.token``."""
    from maskwatch.serve.bind import is_loopback, parse_bind

    bind = parse_bind(cfg.http.bind) if cfg.http.bind else None
    if bind is not None and not is_loopback(bind[0]) and not cfg.http.token:
        raise ConfigError(f"--http on {bind[0]} serves beyond this machine: set --http-token (or MASKWATCH_HTTP_TOKEN)")
    return bind


def _zones_by_source(cfg: Config, sources: list[str] | None) -> dict[str, ZoneSet]:
    """Each source's zones by name (``""`` for ``--source``), for the pages that show who is at the door."""
    from maskwatch.wiring import configured_sources, source_zones

    if not sources:
        return {"": source_zones(cfg)}
    entries = {entry.name: entry for entry in configured_sources(cfg)}
    return {name: source_zones(cfg, entries.get(name)) for name in sources}


def build_web_view(
    cfg: Config, bind: tuple[str, int], status: Callable[[], RunStatus], *, sources: list[str] | None = None
) -> WebView:
    """The ``--http`` remote view on ``bind`` (see :func:`http_bind`), not started; ``sources`` names a tile each."""
    from maskwatch.serve.door import mount_door
    from maskwatch.serve.web import WebView
    from maskwatch.serve.zones_page import mount_zones

    view = WebView(
        bind[0],
        bind[1],
        token=cfg.http.token,
        status=status,
        max_stream_fps=cfg.http.max_stream_fps,
        sources=sources,
    )
    mount_door(view, sources, zones=_zones_by_source(cfg, sources))  # /door: the kiosk page at the door
    mount_zones(view)  # /zones: draw a zone on the latest snapshot, copy its config
    if cfg.history.path is not None:
        from maskwatch.serve.history_page import HistoryPages

        HistoryPages(Path(cfg.history.path)).mount(view)  # /history, /history.json
    return view
