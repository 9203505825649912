"""Helpers shared by the test modules."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
"""The checkout's root: the working directory of ``maskwatch`` runs."""


def maskwatch(*args: str, timeout: float = 120, **kwargs) -> subprocess.CompletedProcess:
    """Run ``python -m maskwatch ARGS`` in the checkout's root; output captured as text (``kwargs``: e.g. ``env``)."""
    return subprocess.run(
        [sys.executable, "-m", "maskwatch", *args], capture_output=True, text=True, timeout=timeout, cwd=ROOT, **kwargs
    )
