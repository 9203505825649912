"""End-to-end fps of whole ``maskwatch run`` processes (decode → detect → classify → track → draw → encode) with the
default config beside ``--detect-every 1``, and how far their per-frame results agree.

Each variant writes an annotated mp4 and ``--detections``; the variants alternate run by run (medians), so load
changes on a shared machine hit them alike. Agreement compares every frame's faces with the detect-every-1 run's:
same number of faces, IoU of the boxes matched greedily (IoU ≥ ``match_iou``), same label; and per person, the final
labels of the people the run reports.
"""

from __future__ import annotations

import json
import statistics
import tempfile
from pathlib import Path

import numpy as np

from maskwatch.commands.bench.process import _fps, _run

MATCH_IOU = 0.3


def read_detections(path: Path) -> dict[int, list[dict]]:
    """``--detections`` JSON lines as {frame index: faces}."""
    frames = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            record = json.loads(line)
            frames[int(record["frame"])] = record["faces"]
    return frames


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU matrix of boxes ``a`` (N, 4) and ``b`` (M, 4), xyxy."""
    a, b = a.reshape(-1, 1, 4), b.reshape(1, -1, 4)
    w = np.clip(np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0]), 0, None)
    h = np.clip(np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1]), 0, None)
    inter = w * h
    area = lambda x: (x[..., 2] - x[..., 0]) * (x[..., 3] - x[..., 1])  # noqa: E731
    union = area(a) + area(b) - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


def agreement(reference: dict[int, list[dict]], other: dict[int, list[dict]], match_iou: float = MATCH_IOU) -> dict:
    """How ``other``'s per-frame faces agree with ``reference``'s (same frames; see the module docstring).

    ``same_count``: share of frames with as many faces; ``mean_iou``: mean IoU of matched boxes; ``same_label``: share
    of matched faces with the same label (None = undecided on both counts as the same); ``matched``: share of the
    reference's faces matched; ``extra``: faces of ``other`` left unmatched, per reference face.
    """
    frames = sorted(reference)
    same_count, ious, same_label, ref_faces, extra = 0, [], 0, 0, 0
    for index in frames:
        ref, got = reference[index], other.get(index, [])
        same_count += len(ref) == len(got)
        ref_faces += len(ref)
        if not ref or not got:
            extra += len(got)
            continue
        iou = box_iou(np.array([f["box"] for f in ref], float), np.array([f["box"] for f in got], float))
        used_ref, used_got = set(), set()
        for flat in np.argsort(-iou, axis=None):
            i, j = divmod(int(flat), iou.shape[1])
            if iou[i, j] < match_iou:
                break
            if i in used_ref or j in used_got:
                continue
            used_ref.add(i)
            used_got.add(j)
            ious.append(float(iou[i, j]))
            same_label += ref[i].get("label") == got[j].get("label")
        extra += len(got) - len(used_got)
    return {
        "frames": len(frames),
        "same_count": same_count / max(len(frames), 1),
        "matched": len(ious) / ref_faces if ref_faces else 1.0,
        "mean_iou": float(np.mean(ious)) if ious else None,
        "same_label": same_label / len(ious) if ious else None,
        "extra": extra / ref_faces if ref_faces else float(extra),
    }


def people_labels(report: Path) -> list[str | None]:
    """Final labels of the people a run's ``.report.json`` lists, in track order."""
    if not report.is_file():
        return []
    return [t.get("label") for t in json.loads(report.read_text(encoding="utf-8")).get("tracks", [])]


def e2e_figures(clip: Path, common: list[str], repeats: int = 3, variants: dict[str, list[str]] | None = None) -> dict:
    """fps of ``maskwatch run`` on ``clip`` writing an annotated mp4 (and detections), per variant (extra flags;
    default: the config as it is, and ``--detect-every 1``), alternated ``repeats`` times; medians, every run, and
    each variant's agreement with the first variant that detects on every frame (or with the first variant)."""
    variants = variants or {"default": [], "detect_every_1": ["--detect-every", "1"]}
    runs: dict[str, list[float]] = {name: [] for name in variants}
    agree: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="maskwatch-e2e-") as tmp:
        folder = Path(tmp)
        for _ in range(repeats):
            for name, flags in variants.items():
                out, dets = folder / f"{name}.mp4", folder / f"{name}.jsonl"
                args = ["run", "--source", str(clip), "--output", str(out), "--detections", str(dets), "--no-progress"]
                runs[name].append(_fps(_run([*args, *common, *flags])[2]))
        names = list(variants)
        ref = next((n for n in names if variants[n][-2:] == ["--detect-every", "1"]), names[0])
        reference = read_detections(folder / f"{ref}.jsonl")
        ref_people = people_labels(folder / f"{ref}.report.json")
        for name in names:
            people = people_labels(folder / f"{name}.report.json")
            agree[name] = {
                **agreement(reference, read_detections(folder / f"{name}.jsonl")),
                "people": len(people),
                "people_labels": people,
                "same_people_labels": sorted(map(str, people)) == sorted(map(str, ref_people)),
            }
    return {
        "fps": {name: statistics.median(v) for name, v in runs.items()},
        "runs": runs,
        "reference": ref,
        "agreement": agree,
    }
