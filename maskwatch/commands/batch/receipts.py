"""Inputs, output names and receipts of ``maskwatch batch``: what to run, and what a re-run may skip.

A finished video has ``OUT/<stem>.*`` outputs and a ``<stem>.done.json`` receipt; a re-run skips it while the
receipt still matches its outputs (checked: sizes and the annotated video's frame count, not mere presence).
Work files are hidden ``.<stem>.partial*`` names, removed or renamed when the video is done.
"""

from __future__ import annotations

import glob
import json
import os
from pathlib import Path

import cv2

from maskwatch.errors import MaskwatchError

OUTPUTS = ("annotated.mp4", "detections.jsonl", "events.jsonl", "report.json")


def expand_inputs(spec: str) -> list[Path]:
    """A glob (``videos/*.mp4``) or a text file listing one video per line; sorted, duplicates removed."""
    path = Path(spec)
    if path.is_file() and path.suffix.lower() in (".txt", ".lst", ".list"):
        lines = [line.strip() for line in path.read_text().splitlines()]
        videos = [Path(line) if Path(line).is_absolute() else path.parent / line for line in lines if line]
    else:
        videos = [Path(p) for p in glob.glob(os.path.expanduser(spec), recursive=True)]
    videos = sorted({v.resolve() for v in videos if v.is_file()})
    if not videos:
        raise MaskwatchError(f"--inputs {spec} matches no video files")
    return videos


def stem_of(video: Path, videos: list[Path]) -> str:
    """Output name of a video: its stem, made unique with its parent folder's name when stems collide."""
    if sum(v.stem == video.stem for v in videos) > 1:
        return f"{video.parent.name}_{video.stem}"
    return video.stem


def outputs_of(out: Path, stem: str) -> dict[str, Path]:
    return {name: out / f"{stem}.{name}" for name in OUTPUTS}


def finished(out: Path, stem: str, video: Path) -> dict | None:
    """The receipt of a finished video if its outputs still match it, else None."""
    receipt = out / f"{stem}.done.json"
    try:
        done = json.loads(receipt.read_text())
        if done.get("source_size") != video.stat().st_size:
            return None
        for name, path in outputs_of(out, stem).items():
            if path.stat().st_size != done["sizes"][name]:
                return None
        cap = cv2.VideoCapture(str(outputs_of(out, stem)["annotated.mp4"]))
        frames = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
        cap.release()
        return done if frames == done["frames"] else None
    except (OSError, ValueError, KeyError, TypeError):
        return None


def remove_partials(out: Path, stem: str) -> None:
    for path in out.glob(f".{glob.escape(stem)}.partial*"):
        path.unlink(missing_ok=True)
