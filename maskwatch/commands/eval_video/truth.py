"""Ground truth of a benchmark clip: MOTChallenge-style boxes plus one label file per clip.

A clip is a folder::

    CLIP/seqinfo.ini      [Sequence] name, video (file in CLIP), frameRate, seqLength, imWidth, imHeight, boxes
    CLIP/gt/gt.txt        frame,id,left,top,width,height,conf,class,visibility   (MOT17 columns, frames from 1)
    CLIP/gt/labels.csv    id,first_frame,last_frame,label,kind                    (one row per label spell)

``gt.txt`` rows with ``conf`` 0 are ignore regions (a face hidden or mostly out of view, or a static face:
class 7, "static person"); a tracker's box on them is neither a hit nor a false positive. ``kind`` is ``person``
(someone who moves through the scene) or ``static`` (a face fixed in the scene: a poster, a screen). A clip whose
``boxes`` is 0 has no ``gt.txt``: only its per-person metrics are scored, people being told apart by time.
"""

from __future__ import annotations

import configparser
import csv
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from maskwatch.errors import MaskwatchError
from maskwatch.types import CLASS_NAMES

PERSON, STATIC = "person", "static"
MOT_PEDESTRIAN, MOT_STATIC_PERSON = 1, 7
UNMASKED = frozenset({"without_mask", "mask_weared_incorrect"})
"""Truth labels a person should be alerted for (the default ``alerts.labels``)."""


class BenchmarkError(MaskwatchError):
    """A benchmark folder or clip is missing, empty or malformed."""


@dataclass(frozen=True)
class Spell:
    """A person's true label over frames ``first..last`` (inclusive, from 1)."""

    person: int
    first: int
    last: int
    label: str
    kind: str = PERSON

    @property
    def unmasked(self) -> bool:
        return self.label in UNMASKED


@dataclass
class ClipTruth:
    """Everything known about one clip. ``boxes``: frame -> (ids, xyxy, considered) arrays; None when unknown."""

    name: str
    folder: Path
    video: Path
    fps: float
    frames: int
    size_wh: tuple[int, int]
    spells: list[Spell]
    boxes: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]] | None = field(default=None)

    @property
    def people(self) -> list[Spell]:
        """The spells of moving people (static faces left out)."""
        return [s for s in self.spells if s.kind == PERSON]

    def kind_of(self, person: int) -> str:
        return next((s.kind for s in self.spells if s.person == person), PERSON)


@dataclass
class BoxRow:
    """One ``gt.txt`` row (xyxy in pixels, frame from 1)."""

    frame: int
    person: int
    xyxy: tuple[float, float, float, float]
    considered: bool
    mot_class: int
    visibility: float

    def line(self) -> str:
        x1, y1, x2, y2 = self.xyxy
        return (
            f"{self.frame},{self.person},{x1:.1f},{y1:.1f},{x2 - x1:.1f},{y2 - y1:.1f},"
            f"{int(self.considered)},{self.mot_class},{self.visibility:.2f}"
        )


def write_clip(
    folder: Path,
    *,
    name: str,
    video: str,
    fps: float,
    frames: int,
    size_wh: tuple[int, int],
    spells: list[Spell],
    rows: list[BoxRow] | None,
) -> None:
    """Write ``seqinfo.ini``, ``gt/labels.csv`` and (``rows`` not None) ``gt/gt.txt`` into ``folder``."""
    (folder / "gt").mkdir(parents=True, exist_ok=True)
    info = (
        f"[Sequence]\nname={name}\nvideo={video}\nframeRate={fps:g}\nseqLength={frames}\n"
        f"imWidth={size_wh[0]}\nimHeight={size_wh[1]}\nboxes={int(rows is not None)}\n"
    )
    (folder / "seqinfo.ini").write_text(info)
    lines = ["id,first_frame,last_frame,label,kind"]
    lines += [f"{s.person},{s.first},{s.last},{s.label},{s.kind}" for s in spells]
    (folder / "gt" / "labels.csv").write_text("\n".join(lines) + "\n")
    if rows is not None:
        (folder / "gt" / "gt.txt").write_text("".join(r.line() + "\n" for r in rows))


def find_clips(data: Path) -> list[Path]:
    """The clip folders of ``data``: itself when it holds a ``seqinfo.ini``, else its subfolders that do."""
    data = Path(data)
    if not data.exists():
        raise BenchmarkError(f"benchmark folder {data} does not exist")
    if not data.is_dir():
        raise BenchmarkError(f"benchmark {data} is not a folder (give the folder of clips)")
    if (data / "seqinfo.ini").is_file():
        return [data]
    clips = sorted(p for p in data.iterdir() if (p / "seqinfo.ini").is_file())
    if not clips:
        raise BenchmarkError(
            f"no clips in {data}: no CLIP/seqinfo.ini found (make them with tools/make_video_bench.py)"
        )
    return clips


def read_clip(folder: Path) -> ClipTruth:
    """Read and check one clip folder; any problem is a :class:`BenchmarkError` naming the file."""
    info_path = folder / "seqinfo.ini"
    parser = configparser.ConfigParser()
    try:
        parser.read(info_path)
        seq = parser["Sequence"]
        name = seq.get("name", folder.name)
        video = folder / seq["video"]
        fps, frames = float(seq["frameRate"]), int(seq["seqLength"])
        size = (int(seq["imWidth"]), int(seq["imHeight"]))
        has_boxes = seq.getboolean("boxes", fallback=True)
    except (configparser.Error, KeyError, ValueError) as exc:
        raise BenchmarkError(f"{info_path}: malformed ({exc.__class__.__name__}: {exc})") from None
    if fps <= 0 or frames <= 0:
        raise BenchmarkError(f"{info_path}: frameRate and seqLength must be positive")
    if not video.is_file():
        raise BenchmarkError(f"{info_path}: video {video} not found")
    spells = _read_labels(folder / "gt" / "labels.csv")
    boxes = _read_boxes(folder / "gt" / "gt.txt") if has_boxes else None
    return ClipTruth(name, folder, video, fps, frames, size, spells, boxes)


def _read_labels(path: Path) -> list[Spell]:
    if not path.is_file():
        raise BenchmarkError(f"{path} not found (every clip needs its per-person labels)")
    spells: list[Spell] = []
    try:
        with open(path, newline="") as f:
            for n, row in enumerate(csv.DictReader(f), start=2):
                label, kind = row["label"], row.get("kind") or PERSON
                if label not in CLASS_NAMES or kind not in (PERSON, STATIC):
                    raise ValueError(f"line {n}: label {label!r} / kind {kind!r} unknown")
                spell = Spell(int(row["id"]), int(row["first_frame"]), int(row["last_frame"]), label, kind)
                if spell.last < spell.first:
                    raise ValueError(f"line {n}: last_frame before first_frame")
                spells.append(spell)
    except (KeyError, ValueError, TypeError) as exc:
        raise BenchmarkError(f"{path}: malformed ({exc})") from None
    if not spells:
        raise BenchmarkError(f"{path} lists nobody")
    return spells


def _read_boxes(path: Path) -> dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    if not path.is_file():
        raise BenchmarkError(f"{path} not found (set boxes=0 in seqinfo.ini for a clip without boxes)")
    try:
        table = np.loadtxt(path, delimiter=",", ndmin=2)
    except ValueError as exc:
        raise BenchmarkError(f"{path}: malformed ({exc})") from None
    if table.size and table.shape[1] < 7:
        raise BenchmarkError(f"{path}: needs at least 7 columns (frame,id,left,top,width,height,conf)")
    by_frame: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
    for frame in np.unique(table[:, 0]).astype(int) if table.size else []:
        rows = table[table[:, 0] == frame]
        xyxy = np.column_stack([rows[:, 2], rows[:, 3], rows[:, 2] + rows[:, 4], rows[:, 3] + rows[:, 5]])
        by_frame[int(frame)] = (rows[:, 1].astype(int), xyxy, rows[:, 6] > 0)
    return by_frame
