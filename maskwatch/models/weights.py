"""Verified loading of model files.

Every model file must be listed, with its sha256, in a ``SHA256SUMS`` file in the same folder
(the ``sha256sum`` format). Files are loaded with ``torch.load(weights_only=True)``, so a pickle
that would run code is refused.
"""

from __future__ import annotations

import hashlib
import pickle
import re
import sys
from pathlib import Path

import torch

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


def load_checked(path: str | Path) -> dict:
    """Verify ``path`` and load it with ``weights_only=True`` on the CPU."""
    p = verify(path)
    try:
        return torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:  # name the file and the problem, not torch's internals or advice
        raise _load_error(p, exc) from exc


_UNSAFE_GLOBAL = re.compile(r"GLOBAL ([\w.]+)")


def _load_error(path: Path, exc: Exception) -> WeightsError:
    """One short line for a failed ``torch.load``: a refused unsafe pickle, or an unreadable (corrupt) file.

    torch's own messages run to many lines and suggest ``weights_only=False``, which would run the file's code.
    """
    text = str(exc)
    found = _UNSAFE_GLOBAL.search(text)
    if isinstance(exc, pickle.UnpicklingError) and found:
        return WeightsError(
            f"cannot load weights file {path}: it refers to code ({found.group(1)}), not only tensors; "
            "refused without running it"
        )
    if isinstance(exc, pickle.UnpicklingError) and "weights only load failed" in text.lower():
        return WeightsError(
            f"cannot load weights file {path}: it is corrupt or holds objects other than tensors; refused"
        )
    return WeightsError(
        f"cannot load weights file {path}: it is corrupt or truncated, not a readable torch file ({type(exc).__name__})"
    )


def load_state_dict_strict(module: torch.nn.Module, state_dict: dict, path: str | Path) -> None:
    """Load ``state_dict`` with strict key and shape checks and a short message on mismatch."""
    if not isinstance(state_dict, dict):
        raise WeightsError(f"weights file {path} does not hold a state_dict (got {type(state_dict).__name__})")
    own = module.state_dict()
    missing = [k for k in own if k not in state_dict]
    unexpected = [str(k) for k in state_dict if k not in own]
    wrong_shape = [k for k in own if k in state_dict and _shape(state_dict[k]) != tuple(own[k].shape)]
    if missing or unexpected or wrong_shape:
        raise WeightsError(
            f"weights file {path} does not fit {type(module).__name__}: "
            f"{len(missing)} missing, {len(unexpected)} unexpected, {len(wrong_shape)} wrong-shape tensors"
            + (f" (e.g. {(missing + unexpected + wrong_shape)[0]})" if missing or unexpected or wrong_shape else "")
        )
    module.load_state_dict(state_dict, strict=True)


def _shape(value: object) -> tuple | None:
    """A tensor's shape; None for anything else (which never fits)."""
    return tuple(value.shape) if isinstance(value, torch.Tensor) else None


def save_model_file(path: str | Path, arch: str, state_dict: dict, meta: dict | None = None) -> str:
    """Write a shippable model file ``{"arch", "state_dict", "meta"}`` and record its sha256.

    ``meta`` holds plain values only (numbers, strings, lists, dicts) so ``weights_only`` loading works.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu() if isinstance(v, torch.Tensor) else v for k, v in state_dict.items()}
    payload = {"arch": arch, "state_dict": state, "meta": meta or {}}
    torch.save(payload, path)
    return write_manifest_entry(path)


def load_model_file(path: str | Path, arch: str) -> tuple[dict, dict]:
    """Load a file written by :func:`save_model_file`; check its ``arch``; return (state_dict, meta)."""
    payload = load_checked(path)
    if not isinstance(payload, dict) or "state_dict" not in payload:
        raise WeightsError(f"weights file {path} is not a maskwatch model file (no 'state_dict')")
    if payload.get("arch") != arch:
        raise WeightsError(f"weights file {path} holds a {_short(payload.get('arch'))} model, expected {arch!r}")
    state, meta = payload["state_dict"], payload.get("meta") or {}
    if not isinstance(state, dict) or not isinstance(meta, dict):
        raise WeightsError(f"weights file {path} is not a valid maskwatch model file (malformed state_dict or meta)")
    return state, meta


def _short(value: object, limit: int = 40) -> str:
    """``repr(value)`` cut to ``limit`` characters, for naming odd values in one-line messages."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"
