"""Helpers shared by the test modules."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from maskwatch.models.manifest import WEIGHTS_DIRS, sha256_of, write_manifest_entry

ROOT = Path(__file__).resolve().parent.parent
"""The checkout's root: the working directory of ``maskwatch`` runs."""


def maskwatch(*args: str, timeout: float = 120, **kwargs) -> subprocess.CompletedProcess:
    """Run ``python -m maskwatch ARGS`` in the checkout's root; output captured as text (``kwargs``: e.g. ``env``)."""
    return subprocess.run(
        [sys.executable, "-m", "maskwatch", *args], capture_output=True, text=True, timeout=timeout, cwd=ROOT, **kwargs
    )


# --- damaged model files, each listed (or not) in its folder's SHA256SUMS as the case needs
def truncated(src: Path, dst: Path) -> Path:
    """``src`` cut to 40 % at ``dst``, listed with its own sha256 (so only the parser can refuse it)."""
    dst.write_bytes(src.read_bytes()[: src.stat().st_size * 2 // 5])
    write_manifest_entry(dst)
    return dst


def mismatch(src: Path, dst: Path) -> Path:
    """A copy of ``src`` whose SHA256SUMS line lists another file's digest."""
    shutil.copy(src, dst)
    (dst.parent / "SHA256SUMS").write_text(f"{sha256_of(WEIGHTS_DIRS[0] / 'classifier.pt')}  {dst.name}\n")
    return dst


def unlisted(src: Path, dst: Path) -> Path:
    """A copy of ``src`` with no SHA256SUMS entry."""
    shutil.copy(src, dst)
    return dst
