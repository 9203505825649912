"""The config reference (``docs/config.md``) as Markdown, generated from the field descriptions: one row per key of
each section, and for a list of entries (``zones``, ``lines``, ``sources``) one row for the list and one per key of
its entries (``lines[].band``)."""

from __future__ import annotations

from typing import get_args

from pydantic import BaseModel
from pydantic.fields import FieldInfo


def render_reference() -> str:
    """The config reference as a Markdown table."""
    from maskwatch.config import Config

    lines = ["| key | default | description |", "|---|---|---|"]
    defaults = Config()
    for section_name, section_field in Config.model_fields.items():
        section = getattr(defaults, section_name)
        if not isinstance(section, BaseModel):  # a top-level list (zones, lines, sources)
            lines.append(f"| `{section_name}` | `{section}` | {section_field.description} |")
            lines += _entry_rows(section_name, section_field)
            continue
        for name, field in type(section).model_fields.items():
            value = field.default if field.validate_default else getattr(section, name)  # "auto", not this machine's
            if isinstance(value, dict):
                value = ", ".join(f"{k}: {list(v)}" for k, v in value.items())
            lines.append(f"| `{section_name}.{name}` | `{value}` | {field.description} |")
    return "\n".join(lines)


def _entry_rows(list_name: str, list_field: FieldInfo) -> list[str]:
    """Rows for the keys of a list's entries, when its entries are sections."""
    rows = []
    for model in get_args(list_field.annotation):
        if not (isinstance(model, type) and issubclass(model, BaseModel)):
            continue
        for name, field in model.model_fields.items():
            key = field.alias or name
            default = '""' if field.default == "" else field.default
            value = "required" if field.is_required() else f"`{default}`"
            rows.append(f"| `{list_name}[].{key}` | {value} | {field.description} |")
    return rows
