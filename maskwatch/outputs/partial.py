"""Unfinished outputs: unique hidden partial names, their cleanup after a killed run, and the final rename that
never silently replaces a file another run has just finished."""

from __future__ import annotations

import contextlib
import os
import re
import secrets
from pathlib import Path

from loguru import logger

from maskwatch.errors import OutputError


def partial_name(path: Path) -> Path:
    """Where an output is written before it is complete: a hidden name beside it, with the same suffix, unique to
    this process (``.NAME.partial-PID-RANDOM.SUFFIX``) so that two runs writing one output never share it. The name
    is valid UTF-8 even where the output's is not (OpenCV cannot take such names)."""
    stem = path.stem.encode("utf-8", "surrogateescape").decode("utf-8", "replace").replace("\ufffd", "_")
    suffix = path.suffix.encode("ascii", "replace").decode("ascii")
    return path.with_name(f".{stem}.partial-{os.getpid()}-{secrets.token_hex(3)}{suffix}")


_PARTIAL = re.compile(r"\.(?P<stem>.*)\.partial-(?P<pid>\d+)-[0-9a-f]+(?P<suffix>\.[^.]*)?")


def remove_stale_partials(path: Path) -> list[Path]:
    """Delete the partial files of ``path`` left by runs that were killed (SIGKILL, power cut): those whose process
    is gone. Returns what was removed; each removal is logged."""
    folder = path.parent if str(path.parent) else Path(".")
    stem = partial_name(path).name.split(".partial-")[0][1:]
    removed = []
    with contextlib.suppress(OSError):
        for candidate in folder.iterdir():
            found = _PARTIAL.fullmatch(candidate.name)
            if not found or found["stem"] != stem or (found["suffix"] or "") != path.suffix:
                continue
            if _alive(int(found["pid"])):
                continue
            with contextlib.suppress(OSError):
                candidate.unlink()
                removed.append(candidate)
                logger.info(f"removed {candidate.name}: the unfinished output of a run that ended (pid {found['pid']})")
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # exists, owned by someone else
        return True
    return True


def move_into_place(partial: Path, path: Path, before: os.stat_result | None) -> Path:
    """Rename the finished ``partial`` to ``path``; where another run finished ``path`` while this one ran (it
    appeared or changed since ``before``), keep both: this one goes to ``NAME (2).SUFFIX`` (the first free), with
    a warning. Returns where it went."""
    now = stat_or_none(path)
    unchanged = (
        before is not None and now is not None and (now.st_ino, now.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    )
    if unchanged or (now is None and _claim(partial, path)):
        if partial.exists():
            os.replace(partial, path)
        return path
    for n in range(2, 1000):
        other = path.with_name(f"{path.stem} ({n}){path.suffix}")
        if not other.exists() and _claim(partial, other):
            logger.warning(f"{path} was written by another run meanwhile; this run's output is {other.name}")
            return other
    raise OutputError(f"cannot finish {path}: another run wrote it and no free name was found")


def _claim(partial: Path, target: Path) -> bool:
    """Move ``partial`` to ``target`` unless ``target`` exists: a hard link (atomic, so two runs finishing at once
    cannot both win), or a rename where the file system has no hard links. False when ``target`` was taken."""
    try:
        os.link(partial, target)
    except FileExistsError:
        return False
    except OSError:  # no hard links on this file system
        if target.exists():
            return False
        os.replace(partial, target)
        return True
    os.unlink(partial)
    return True


def stat_or_none(path: Path) -> os.stat_result | None:
    try:
        return path.stat()
    except OSError:
        return None
