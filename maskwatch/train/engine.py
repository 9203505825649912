"""What every trainer shares: seeding, the learning-rate schedule, the optimisation step and checkpoints.

A checkpoint is ``{"format", "model", "optimizer", "lr_scheduler", "args", "epoch", "history"}``, written as
``last.pt`` (what ``--resume`` takes) and ``epoch_NNN.pt`` after every epoch. Files of older trainers (the same
keys without ``format`` or ``history``, e.g. ``checkpoint.pt``) resume too.
"""

from __future__ import annotations

import math
import pickle
import random
import re
from pathlib import Path

import numpy as np
import torch
from loguru import logger
from torch import nn

from maskwatch.errors import MaskwatchError

CHECKPOINT_FORMAT = 1
"""Version of the checkpoint layout written by :func:`save_checkpoint`."""
LAST = "last.pt"
"""The latest checkpoint in a run's folder: the one to resume from."""
_REQUIRED = ("model", "optimizer", "lr_scheduler", "epoch")


def seed_everything(seed: int) -> None:
    """Seed python's ``random``, numpy's global generator and torch (CPU and every GPU)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def warmup_cosine(
    optimizer: torch.optim.Optimizer, total_steps: int, warmup_steps: int, final_factor: float = 0.0
) -> torch.optim.lr_scheduler.LambdaLR:
    """Per-step schedule: linear warm-up to the base rate, then cosine decay to ``final_factor`` × the base rate.

    The warm-up is clamped to at most a fifth of ``total_steps`` (and at least one step); the cosine runs from the
    end of the warm-up to ``total_steps`` and stays at ``final_factor`` after it.
    """
    total = max(1, int(total_steps))
    warmup = max(1, min(int(warmup_steps), total // 5))

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = min(1.0, (step - warmup) / max(1, total - warmup))
        return final_factor + (1.0 - final_factor) * 0.5 * (1.0 + math.cos(math.pi * progress))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def optimisation_step(
    loss: torch.Tensor,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    epoch: int,
) -> float:
    """Back-propagate ``loss``, step the optimiser and the schedule; return the loss as a float.

    A non-finite loss stops the run with a :class:`MaskwatchError` (before any weight is changed).
    """
    value = loss.item()
    if not math.isfinite(value):
        raise MaskwatchError(f"non-finite loss {value} at epoch {epoch}; stopping (lower the learning rate?)")
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    scheduler.step()
    return value


def save_checkpoint(
    folder: Path,
    epoch: int,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    args: dict,
    history: list,
) -> Path:
    """Write ``epoch_NNN.pt`` and ``last.pt`` in ``folder`` (created if needed); return the ``last.pt`` path.

    ``args`` and ``history`` must hold plain values (numbers, strings, lists, tuples, dicts) so that the file
    loads with ``weights_only=True``.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    ckpt = {
        "format": CHECKPOINT_FORMAT,
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "lr_scheduler": scheduler.state_dict(),
        "args": args,
        "epoch": epoch,
        "history": history,
    }
    torch.save(ckpt, folder / f"epoch_{epoch:03d}.pt")
    last = folder / LAST
    torch.save(ckpt, last)
    return last


def load_checkpoint(path: Path) -> dict:
    """Read and check a training checkpoint (``weights_only``, on the CPU); one-line errors for anything else."""
    path = Path(path)
    if not path.is_file():
        raise MaskwatchError(f"checkpoint {path} not found")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch's own messages run to many lines and suggest unsafe loading
        code = re.search(r"GLOBAL ([\w.]+)", str(exc)) if isinstance(exc, pickle.UnpicklingError) else None
        if code:
            raise MaskwatchError(f"cannot resume from {path}: it refers to code ({code.group(1)}); refused") from exc
        raise MaskwatchError(f"cannot resume from {path}: not a readable torch file ({type(exc).__name__})") from exc
    if isinstance(ckpt, dict) and "state_dict" in ckpt and "arch" in ckpt:
        raise MaskwatchError(
            f"cannot resume from {path}: it is a model file ({ckpt['arch']}), not a training checkpoint; "
            "resume takes last.pt or epoch_NNN.pt of a run (a model file can be a starting point: --init)"
        )
    missing = [k for k in _REQUIRED if k not in ckpt] if isinstance(ckpt, dict) else list(_REQUIRED)
    if missing:
        raise MaskwatchError(f"cannot resume from {path}: not a training checkpoint (no {', '.join(missing)})")
    if int(ckpt.get("format", CHECKPOINT_FORMAT)) > CHECKPOINT_FORMAT:
        raise MaskwatchError(f"cannot resume from {path}: checkpoint format {ckpt['format']} is newer than this one")
    return ckpt


def resume(
    path: Path,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
) -> tuple[int, list]:
    """Load a checkpoint into ``model``, ``optimizer`` and ``scheduler``; return (next epoch, history)."""
    ckpt = load_checkpoint(path)
    problem = _state_mismatch(model, ckpt["model"])
    if problem:
        raise MaskwatchError(f"cannot resume from {path}: its weights do not fit this model ({problem})")
    saved = ckpt["lr_scheduler"]
    foreign = sorted(set(saved) - set(scheduler.state_dict())) if isinstance(saved, dict) else []
    if foreign:  # e.g. the per-epoch CosineAnnealingLR of older frcnn runs: LambdaLR would take it silently
        raise MaskwatchError(f"cannot resume from {path}: its schedule is of another kind ({', '.join(foreign)})")
    try:
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        scheduler.load_state_dict(ckpt["lr_scheduler"])
    except (RuntimeError, ValueError, KeyError, TypeError, AttributeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise MaskwatchError(f"cannot resume from {path}: its state does not fit this run ({first})") from exc
    start = int(ckpt["epoch"]) + 1
    logger.info("resumed from {} at epoch {}", path, start)
    return start, list(ckpt.get("history") or [])


def _state_mismatch(model: nn.Module, state: object) -> str:
    """A short description of how ``state`` differs from ``model.state_dict()`` (keys, shapes); "" if it fits."""
    if not isinstance(state, dict):
        return f"the model entry is a {type(state).__name__}, not a state dict"
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shapes = [
        f"{k} {tuple(state[k].shape)} vs {tuple(v.shape)}"
        for k, v in own.items()
        if k in state and isinstance(state[k], torch.Tensor) and state[k].shape != v.shape
    ]
    parts = [
        f"{what}: {len(found)}, e.g. {found[0]}"
        for found, what in ((missing, "missing keys"), (unexpected, "unexpected keys"), (shapes, "other shapes"))
        if found
    ]
    return "; ".join(parts)
