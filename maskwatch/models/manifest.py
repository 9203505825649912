"""The sha256 manifest of model files, without torch: where shipped weights live, and the check every load makes.

Every model file must be listed, with its sha256, in a ``SHA256SUMS`` file in the same folder (the ``sha256sum``
format). :mod:`maskwatch.models.weights` loads torch files after this check; the ONNX engine loads ``.onnx`` files
after it, in processes that never import torch.
"""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

from maskwatch.errors import WeightsError

WEIGHTS_DIRS = (
    Path(__file__).resolve().parent.parent.parent / "weights",  # a source checkout (pip install -e .)
    Path(sys.prefix) / "share" / "maskwatch" / "weights",  # installed as data files (pip install .)
)
"""Where shipped weights are looked up, in order."""

MANIFEST_NAME = "SHA256SUMS"


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_manifest(folder: Path) -> dict[str, str]:
    """Map file name -> sha256 from ``folder/SHA256SUMS`` (empty if there is none)."""
    manifest = folder / MANIFEST_NAME
    if not manifest.is_file():
        return {}
    entries = {}
    for line in manifest.read_text().splitlines():
        parts = line.split()
        if len(parts) == 2:
            entries[parts[1].lstrip("*")] = parts[0].lower()
    return entries


def write_manifest_entry(path: Path) -> str:
    """Add or update ``path``'s line in its folder's SHA256SUMS; return the digest."""
    path = Path(path)
    entries = read_manifest(path.parent)
    entries[path.name] = sha256_of(path)
    lines = [f"{digest}  {name}" for name, digest in sorted(entries.items())]
    (path.parent / MANIFEST_NAME).write_text("\n".join(lines) + "\n")
    return entries[path.name]


def resolve_weights(path: str | Path) -> Path:
    """Resolve a weights path: as given, else relative to the shipped weights folder."""
    p = Path(path).expanduser()
    if p.is_file() or p.is_absolute():
        return p
    for folder in WEIGHTS_DIRS:
        if (folder / p).is_file():
            return folder / p
    return p


def verify(path: str | Path) -> Path:
    """Check that ``path`` exists and matches its SHA256SUMS entry; return the resolved path."""
    p = resolve_weights(path)
    if not p.is_file():
        raise WeightsError(f"weights file not found: {p}")
    expected = read_manifest(p.parent).get(p.name)
    if expected is None:
        raise WeightsError(f"weights file {p} has no sha256 entry in {p.parent / MANIFEST_NAME}; refusing to load it")
    actual = sha256_of(p)
    if actual != expected:
        raise WeightsError(
            f"weights file {p} is corrupt or modified: "
            f"sha256 {actual[:12]}… does not match the manifest's {expected[:12]}…"
        )
    return p
