"""The one place that reads and validates configuration.

Every tunable lives in a section model below; ``extra="forbid"`` turns a typo into an error and the
field bounds reject out-of-range values. The field descriptions are the config reference.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

import yaml
from pydantic import Field, ValidationError, field_validator

from maskwatch.config.base import Section
from maskwatch.config.door import AlarmConfig, ClipsConfig, HistoryConfig, LineConfig, ZoneConfig
from maskwatch.config.sources import SourceConfig, default_source_name
from maskwatch.errors import ConfigError
from maskwatch.types import ClassKey, ColorKey, MaskClass, default_colors

BGR = tuple[int, int, int]


_Section = Section

__all__ = [
    "AlarmConfig",
    "ClipsConfig",
    "Config",
    "HistoryConfig",
    "LineConfig",
    "SourceConfig",
    "ZoneConfig",
    "config_from_dict",
    "default_source_name",
    "load_config",
    "render_reference",
]


class DetectorConfig(_Section):
    weights: str = Field("detector.pt", description="Detector model file; a bare name is looked up in weights/.")
    onnx_weights: str = Field(
        "detector.onnx", description="ONNX fp32 detector file used with engine onnx (see `maskwatch export`)."
    )
    onnx_int8_weights: str = Field(
        "detector_int8.onnx",
        description="ONNX int8 detector file used with precision int8 on the CPU (see `maskwatch quantize`).",
    )
    input_size: int | None = Field(
        None, ge=64, le=4096, description="Longest side (px) a frame is resized to for detection; null = as trained."
    )
    score_threshold: float = Field(0.5, gt=0.0, lt=1.0, description="Minimum detector score to keep a face.")
    nms_iou: float = Field(0.4, gt=0.0, le=1.0, description="IoU above which overlapping faces are merged (NMS).")
    max_faces: int = Field(200, ge=1, le=5000, description="At most this many faces per frame, highest scores first.")
    nested_overlap: float = Field(
        0.6,
        ge=0.0,
        le=1.0,
        description="A face box lying this much (share of its area) inside a stronger box is the same face boxed "
        "twice (a close face's chin) and is dropped; 0 keeps every box.",
    )
    closeup_trigger: float = Field(
        0.3,
        ge=0.0,
        le=1.0,
        description="In photos and untracked runs, a face this large (longer side, share of the frame's) makes the "
        "detector look again at the frame zoomed out, where a close face gets one box instead of two; 0: never. "
        "Tracked video keeps one box per face through its tracks.",
    )
    tile_small_frames: bool = Field(
        False,
        description="Also detect a frame of at most 640 px (longer side) in 2 overlapping tiles along its longer "
        "side, each enlarged to the input size, keeping their faces up to 32 px: finds more faces under 24 px "
        "(under 16 px on 360x640 frames: 41 % -> 71 %) for 4.5-5x the detector time and more false boxes.",
    )


class ClassifierConfig(_Section):
    weights: str = Field(
        "classifier.pt", description="Mask classifier model file; a bare name is looked up in weights/."
    )
    onnx_weights: str = Field("classifier.onnx", description="ONNX fp32 classifier file used with engine onnx.")
    onnx_int8_weights: str = Field(
        "classifier_int8.onnx", description="ONNX int8 classifier file used with precision int8 on the CPU."
    )
    crop_margin: float = Field(
        0.15, ge=0.0, le=1.0, description="Context added to each side of a face box, as a fraction of its size."
    )
    min_confidence: float = Field(
        0.0, ge=0.0, le=1.0, description="A face whose top class probability is below this is left undecided (grey)."
    )


class CaptureConfig(_Section):
    queue_size: int = Field(8, ge=1, le=1024, description="Frames buffered between capture and inference for files.")
    live_queue_size: int = Field(
        2, ge=1, le=64, description="Frames buffered for live sources; the oldest is dropped when full."
    )
    open_timeout_s: float = Field(
        10.0, gt=0.0, le=300.0, description="How long to wait for a stream or camera to open."
    )
    read_timeout_s: float = Field(
        10.0,
        gt=0.0,
        le=3600.0,
        description="A live source that yields no frame for this long is reconnected (or, without reconnect, "
        "ends the run with an error).",
    )
    reconnect: bool = Field(True, description="Reopen a camera or stream that stops, with backoff; the run goes on.")
    max_backoff_s: float = Field(30.0, gt=0.0, le=3600.0, description="Longest wait between reconnect attempts.")


def default_precision() -> str:
    """What ``runtime.precision: auto`` means on this machine: int8 on ARM, fp32 elsewhere."""
    import platform

    return "int8" if platform.machine().lower() in ("aarch64", "arm64", "armv7l", "armv8l") else "fp32"


class RuntimeConfig(_Section):
    engine: Literal["auto", "torch", "onnx"] = Field(
        "auto",
        description="What runs the models: onnx (ONNX Runtime on the CPU, the .onnx files, no torch needed), torch "
        "(the .pt files, fp32, cpu or cuda; needs the [train] extra), or auto: onnx on the CPU, torch on cuda. "
        "Precision int8 on the CPU always runs on onnx.",
    )
    device: Literal["cpu", "cuda"] = Field("cpu", description="Where the models run (engine onnx: cpu only).")
    precision: Literal["auto", "fp32", "int8"] = Field(
        "auto",
        description="Model precision: int8 (the int8 .onnx files on ONNX Runtime, CPU only), fp32, or auto: int8 on "
        "ARM (a Raspberry Pi, where speed is the limit), fp32 elsewhere (fast enough on x86, and the int8 models "
        "decide people on video less well; see docs/performance.md). With device cuda, fp32.",
        validate_default=True,
    )
    threads: int = Field(
        0,
        ge=0,
        le=256,
        description="CPU threads per model call; 0 = the engine's default (torch: one per core; onnx: 1).",
    )
    batch_frames: int | None = Field(
        None,
        ge=1,
        le=64,
        description="Frames detected together when the consumer is behind (those already queued); "
        "null = 8 on cuda, 1 on cpu.",
    )

    @field_validator("precision")
    @classmethod
    def _resolve_precision(cls, value: str) -> str:
        return default_precision() if value == "auto" else value


class RenderConfig(_Section):
    colors: dict[ColorKey, BGR] = Field(
        default_factory=default_colors,
        description="Box colour per class, as B, G, R (0-255); undecided (grey) is also a face that never moved "
        "(a poster, a screen), drawn without a person id.",
    )
    thickness: int = Field(
        2, ge=1, le=20, description="Box line thickness in px at a 480-px frame (larger frames get thicker lines)."
    )
    font_scale: float = Field(
        0.5, gt=0.0, le=5.0, description="Label text scale at a 480-px frame (scaled with the frame's short side)."
    )
    hud: bool = Field(True, description="Draw the fps and per-class counts in the top-left corner.")
    blur_faces: bool = Field(
        False, description="Blur every face in video outputs, the HTTP stream and snapshots (privacy)."
    )


class TrackingConfig(_Section):
    enabled: bool = Field(
        True, description="Track faces across video frames so each person gets an id and one decided label."
    )
    low_score: float = Field(
        0.3,
        gt=0.0,
        lt=1.0,
        description="Detections from here up to detector.score_threshold only extend existing tracks (ByteTrack).",
    )
    new_track_score: float = Field(0.6, gt=0.0, le=1.0, description="Minimum detector score to start a new track.")
    match_iou: float = Field(0.3, gt=0.0, lt=1.0, description="Minimum IoU between a track and a detection to match.")
    min_hits: int = Field(
        3,
        ge=1,
        le=100,
        description="Detections needed before a track counts as a person (at 25 fps; see detect_every).",
    )
    max_lost: int = Field(
        30, ge=1, le=10000, description="Frames (at 25 fps) a person may be unseen (occlusion) and keep the same id."
    )
    vote_window: int = Field(
        15, ge=1, le=1000, description="Recent classifications (at 25 fps) a track's label is voted over."
    )
    vote_threshold: float = Field(
        0.6, gt=0.0, le=1.0, description="Share of the window's votes a class needs to become the track's label."
    )
    min_votes: int = Field(3, ge=1, le=1000, description="Votes needed (at 25 fps) before a track's label is decided.")
    detect_every: int = Field(
        4,
        ge=1,
        le=100,
        description="Run the detector on every Nth frame, the tracker carries the boxes in between (1 = every frame). "
        "This and the other counts of frames and detections here are for a 25-fps source: at another frame rate "
        "each becomes the count that lasts as long (a 2-fps camera detects on every frame).",
    )
    auto_stride: bool = Field(
        True,
        description="Live sources: raise detect_every automatically while the CPU cannot keep up with the source.",
    )
    max_detect_every: int = Field(6, ge=1, le=100, description="Cap of the automatic detect_every.")
    static_after_s: float = Field(
        3.0,
        ge=0.0,
        le=3600.0,
        description="A face that has not moved in the scene for this long (its own motion, camera motion "
        "subtracted) is static (a poster, a screen): drawn grey, not counted, never alerted; a face alerts only once "
        "it has moved. 0 turns the check off (every track is a person at once).",
    )
    reid_max_gap_s: float = Field(
        30.0,
        ge=0.0,
        le=3600.0,
        description="A person lost for up to this long is recognised by appearance when seen again and keeps "
        "their id and alert state (0: off, a person lost beyond max_lost is gone).",
    )
    reid_similarity: float = Field(
        0.65, gt=0.0, le=1.0, description="Appearance similarity (0-1) a new face needs to be a lost person again."
    )


class AlertsConfig(_Section):
    labels: list[ClassKey] = Field(
        default_factory=lambda: [c.key for c in MaskClass if c.alerts],
        description="Decided labels that raise an alert.",
    )
    min_duration_s: float = Field(
        1.0, ge=0.0, le=3600.0, description="A track must be seen this long before it can raise an alert."
    )
    min_confidence: float = Field(
        0.5,
        ge=0.0,
        le=1.0,
        description="A track alerts only when the classifier holds its decided label with at least this mean "
        "probability; below it (posters, false alarms, odd masks) the face is shown but raises no alert.",
    )
    cooldown_s: float = Field(
        300.0,
        ge=0.0,
        le=86400.0,
        description="A track alerts again only after this long and after having been decided masked in between.",
    )
    updates: bool = Field(True, description="Also log an `update` event when a track's decided label changes.")
    ends: bool = Field(True, description="Also log an `end` event when a track leaves.")
    snapshots: bool = Field(False, description="Save a face snapshot JPEG with each alert (off for privacy).")
    max_bytes: int = Field(
        10_000_000, ge=1000, le=10**12, description="The events file is rotated when it grows past this size."
    )
    backups: int = Field(5, ge=0, le=1000, description="Rotated events files kept (events.jsonl.1, .2, ...).")
    webhook: str | None = Field(None, description="URL that receives each event as an HTTP POST (JSON), or null.")

    @field_validator("webhook")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is not None:
            parts = urlsplit(value)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise ValueError("the webhook must be an http:// or https:// URL with a host")
        return value

    webhook_timeout_s: float = Field(5.0, gt=0.0, le=300.0, description="Timeout of one webhook request.")
    webhook_retries: int = Field(5, ge=0, le=100, description="Retries of a failed webhook POST, with backoff.")


class HttpConfig(_Section):
    bind: str | None = Field(
        None, description="HOST:PORT of the remote view (MJPEG, status, /events, /metrics), or null for none."
    )
    token: str | None = Field(None, description="Token required by the remote view (needed on any non-loopback host).")
    max_stream_fps: float = Field(15.0, gt=0.0, le=120.0, description="Frame rate cap of the MJPEG stream.")


class MqttTlsConfig(_Section):
    ca_file: str | None = Field(None, description="CA certificate file of the broker (null: the system's CAs).")
    cert_file: str | None = Field(None, description="Client certificate file, for brokers that want one.")
    key_file: str | None = Field(None, description="Private key file of the client certificate.")
    insecure: bool = Field(False, description="Accept a certificate whose host name does not match (testing only).")


class MqttConfig(_Section):
    host: str | None = Field(None, description="MQTT broker host (also set by `--mqtt URL`); null: no MQTT output.")
    port: int = Field(1883, ge=1, le=65535, description="Broker port (1883; 8883 is usual with TLS).")
    prefix: str = Field(
        "maskwatch", pattern=r"^[^#+]{1,64}$", description="Topic prefix: PREFIX/SOURCE/event, /state, /availability."
    )
    username: str | None = Field(None, description="Broker user name, or null.")
    password: str | None = Field(None, description="Broker password (never logged), or null.")
    tls: MqttTlsConfig | None = Field(
        None, description="TLS (also `mqtts://`): {ca_file, cert_file, key_file, insecure: false}; null: plain TCP."
    )
    client_id: str = Field("", max_length=64, description="MQTT client id; empty: maskwatch-HOSTNAME-PID.")
    keepalive_s: int = Field(60, ge=5, le=3600, description="Seconds between keep-alive pings to the broker.")
    buffer_size: int = Field(1000, ge=10, le=10**6, description="Events kept while the broker is away (alerts last).")
    state_interval_s: float = Field(2.0, gt=0.0, le=3600.0, description="Seconds between retained state messages.")
    discovery_prefix: str | None = Field("homeassistant", description="Home Assistant discovery prefix; null: none.")


class OutputConfig(_Section):
    fourcc: str = Field("mp4v", min_length=4, max_length=4, description="FourCC codec of output videos.")
    jpeg_quality: int = Field(92, ge=1, le=100, description="Quality of annotated JPEG images.")


class LoggingConfig(_Section):
    level: Literal["TRACE", "DEBUG", "INFO", "SUCCESS", "WARNING", "ERROR"] = Field("INFO", description="Log level.")
    status_interval_s: float = Field(
        1.0, gt=0.0, le=3600.0, description="Seconds between status lines for live sources."
    )
    summary_interval_s: float = Field(
        60.0, gt=0.0, le=86400.0, description="Seconds between summary lines (people seen, compliance) with tracking."
    )


class Config(_Section):
    """The whole maskwatch configuration (``configs/default.yaml`` lists every field)."""

    detector: DetectorConfig = Field(default_factory=DetectorConfig)
    classifier: ClassifierConfig = Field(default_factory=ClassifierConfig)
    capture: CaptureConfig = Field(default_factory=CaptureConfig)
    runtime: RuntimeConfig = Field(default_factory=RuntimeConfig)
    render: RenderConfig = Field(default_factory=RenderConfig)
    tracking: TrackingConfig = Field(default_factory=TrackingConfig)
    alerts: AlertsConfig = Field(default_factory=AlertsConfig)
    http: HttpConfig = Field(default_factory=HttpConfig)
    mqtt: MqttConfig = Field(default_factory=MqttConfig)
    output: OutputConfig = Field(default_factory=OutputConfig)
    logging: LoggingConfig = Field(default_factory=LoggingConfig)
    alarm: AlarmConfig = Field(default_factory=AlarmConfig)
    history: HistoryConfig = Field(default_factory=HistoryConfig)
    clips: ClipsConfig = Field(default_factory=ClipsConfig)
    zones: list[ZoneConfig] = Field(
        default_factory=list,
        description="Zones [{name, polygon: [[x, y], ...], mode: watch or ignore}] in fractions of the frame (also "
        "`--zone`): with a watch zone, only faces whose centre is in one (and in no ignore zone) are counted and "
        "alerted; the others are drawn dimmed. Apply to `--source` and to each source without its own.",
    )
    lines: list[LineConfig] = Field(
        default_factory=list,
        description="Counting lines [{name, points: [[x, y], [x, y]], in: left or right}]: crossings are counted in "
        "and out with the person's label. Apply to `--source` and to each source without its own.",
    )
    notify: list[str] = Field(
        default_factory=list,
        description="Apprise URLs notified of each alert with its snapshot (also `--notify`; needs "
        "`pip install 'maskwatch[notify]'`).",
    )
    sources: list[SourceConfig] = Field(
        default_factory=list,
        description="Live sources `maskwatch run` serves together when no --source is given: each a camera index, "
        "URL or video file, or {name, source}; names must be unique.",
    )

    @field_validator("sources")
    @classmethod
    def _unique_names(cls, sources: list[SourceConfig]) -> list[SourceConfig]:
        seen: set[str] = set()
        for entry in sources:
            if entry.name in seen:
                raise ValueError(
                    f"two sources are named '{entry.name}': give each a unique name ({{name: ..., source: ...}})"
                )
            seen.add(entry.name)
        return sources


def _describe(error: ValidationError) -> str:
    first = error.errors()[0]
    key = ".".join(str(p) for p in first["loc"]) or "(top level)"
    if first["type"] == "extra_forbidden":
        return f"unknown config key '{key}'"
    message = str(first["msg"]).removeprefix("Value error, ")
    return f"invalid config value for '{key}': {message}"


def config_from_dict(data: dict[str, Any] | None) -> Config:
    """Validate a plain dict (e.g. from YAML) into a :class:`Config`."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError("config must be a mapping of sections (detector:, classifier:, ...)")
    try:
        return Config.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_describe(exc)) from None


def load_config(path: str | Path | None = None, overrides: dict[str, Any] | None = None) -> Config:
    """Read ``path`` (None: the built-in defaults, as in configs/default.yaml), apply dotted ``overrides``, validate."""
    if path is None:
        return config_from_dict(_apply_overrides({}, overrides))
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
        raise ConfigError(f"config file {path} is not valid YAML{where}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"config file {path} is not UTF-8 text") from None
    if data is not None and not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping of sections, not {type(data).__name__}")
    try:
        return config_from_dict(_apply_overrides(dict(data or {}), overrides))
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None


def _apply_overrides(data: dict[str, Any], overrides: dict[str, Any] | None) -> dict[str, Any]:
    """Set ``section.key`` values (from CLI flags) on top of the file's; a key without a dot sets a top-level
    list (``zones``, ``notify``); None means not given."""
    for dotted, value in (overrides or {}).items():
        if value is None:
            continue
        section, _, key = dotted.partition(".")
        if not key:
            data[section] = value
            continue
        current = data.get(section, {})
        if not isinstance(current, dict):
            raise ConfigError(f"config section '{section}' must be a mapping")
        data[section] = {**current, key: value}
    return data


def render_reference() -> str:
    """The config reference as Markdown, generated from the field descriptions (:mod:`maskwatch.config.reference`)."""
    from maskwatch.config.reference import render_reference as render

    return render()
