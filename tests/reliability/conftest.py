"""Reliability suite helpers: every case records what was expected and what was observed.

The rows go to ``test-artifacts/reliability.jsonl`` during the run and are rendered as the Markdown table
``test-artifacts/reliability.md`` at the end (case → expected → observed), for the release notes.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = Path(os.environ.get("MASKWATCH_ARTIFACTS", ROOT / "test-artifacts"))
ROWS = ARTIFACTS / "reliability.jsonl"


@pytest.fixture(scope="session", autouse=True)
def reliability_table():
    """Start an empty table for the session and render it when the session ends."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    ROWS.unlink(missing_ok=True)
    yield
    _render()


def _render() -> None:
    if not ROWS.exists():
        return
    rows = [json.loads(line) for line in ROWS.read_text().splitlines() if line.strip()]
    lines = ["| area | case | expected | observed | ok |", "|---|---|---|---|---|"]
    for r in rows:
        cells = [r["area"], r["case"], r["expected"], r["observed"], "yes" if r["ok"] else "**no**"]
        lines.append("| " + " | ".join(str(c).replace("|", "\\|").replace("\n", " ") for c in cells) + " |")
    (ARTIFACTS / "reliability.md").write_text("\n".join(lines) + "\n")


@pytest.fixture
def record():
    """``record(area, case, expected, observed, ok)`` adds one row to the reliability table."""

    def _record(area: str, case: str, expected: str, observed: str, ok: bool = True) -> None:
        with ROWS.open("a", encoding="utf-8") as f:
            row = {"area": area, "case": case, "expected": expected, "observed": observed, "ok": bool(ok)}
            f.write(json.dumps(row) + "\n")

    return _record
