"""Verified loading of model files.

Every model file must be listed, with its sha256, in a ``SHA256SUMS`` file in the same folder
(the ``sha256sum`` format; the check itself is torch-free, in :mod:`maskwatch.models.manifest`).
Files are loaded with ``torch.load(weights_only=True)``, so a pickle that would run code is refused.
"""

from __future__ import annotations

import pickle
import re
from pathlib import Path

import torch

from maskwatch.errors import WeightsError
from maskwatch.models.manifest import verify, write_manifest_entry


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


def refuse_torch_int8(path: str | Path) -> None:
    """Refuse an old torch int8 model file (eager ``torch.ao``, retired) with a one-line :class:`WeightsError`."""
    raise WeightsError(
        f"weights file {path} is a torch int8 model file, which maskwatch no longer runs: int8 runs on the onnx "
        "engine (--precision int8 with detector_int8.onnx / classifier_int8.onnx from `maskwatch quantize`)"
    )


def _short(value: object, limit: int = 40) -> str:
    """``repr(value)`` cut to ``limit`` characters, for naming odd values in one-line messages."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"
