"""The ``sources:`` entries: what to watch, the name events carry, and each source's zones and lines."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from pydantic import Field, field_validator, model_validator

from maskwatch.config.base import Section, checked_name
from maskwatch.config.door import LineConfig, ZoneConfig


class SourceConfig(Section):
    """One entry of ``sources:``: a camera index, a stream URL or a video file, with the name events carry."""

    source: str = Field(..., min_length=1, description="Camera index (0), rtsp:// or http:// URL, or video file.")
    name: str = Field(
        "", max_length=64, description="Name shown in events, the HTTP view and logs; default from the source."
    )
    zones: list[ZoneConfig] | None = Field(
        None, description="This source's zones (see `zones`); null: the top-level `zones` apply."
    )
    lines: list[LineConfig] | None = Field(
        None, description="This source's counting lines (see `lines`); null: the top-level `lines` apply."
    )

    @model_validator(mode="before")
    @classmethod
    def _normalise(cls, value: Any) -> Any:
        """A plain string is the source; a missing or empty name is derived from it."""
        if isinstance(value, int | str):
            value = {"source": str(value)}
        if isinstance(value, dict) and isinstance(value.get("source"), int | str):
            value = {**value, "source": str(value["source"]).strip()}
            if not str(value.get("name") or "").strip():
                value["name"] = default_source_name(value["source"])
            elif isinstance(value["name"], str):
                value["name"] = value["name"].strip()
        return value

    @field_validator("name")
    @classmethod
    def _printable(cls, name: str) -> str:
        return checked_name(name, "source")


def default_source_name(spec: str) -> str:
    """A readable, credential-free name: ``camera0``, the host and port of a URL, or a video file's stem."""
    spec = spec.strip()
    if spec.isdigit():
        return f"camera{spec}"
    if "://" in spec:
        parts = urlsplit(spec)
        host = parts.hostname or "stream"
        name = f"{host}-{parts.port}" if parts.port else host
        tail = parts.path.strip("/").replace("/", "-")
        return f"{name}-{tail}"[:64] if tail else name
    return Path(spec).stem or spec
