"""The base of every config section: unknown keys are errors, assignments are validated."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True, populate_by_name=True)


def checked_name(value: str, what: str) -> str:
    """``value`` stripped, or a ValueError unless it is printable text without ``/ ? & #`` (names go in URLs)."""
    value = value.strip()
    if not value or not value.isprintable() or any(c in value for c in "/?&#"):
        raise ValueError(f"{what} name {value!r} must be printable text without / ? & #")
    return value
