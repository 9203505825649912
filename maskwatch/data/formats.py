"""Readers for YOLO txt and COCO json face-mask datasets, and detection of a folder's format.

All readers return :class:`~maskwatch.data.voc.AnnotatedImage` lists sorted by image stem, so an
evaluation does not care where its ground truth came from.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import yaml

from maskwatch.capture.images import read_image
from maskwatch.data.labels import class_id_of
from maskwatch.data.voc import AnnotatedImage, read_split, read_voc
from maskwatch.errors import MaskwatchError
from maskwatch.media import IMAGE_SUFFIXES


def _images_in(folder: Path) -> dict[str, Path]:
    return {p.stem: p for p in sorted(folder.rglob("*")) if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()}


def _yolo_names(root: Path) -> list[str]:
    for name in ("data.yaml", "dataset.yaml"):
        if (root / name).is_file():
            names = (yaml.safe_load((root / name).read_text()) or {}).get("names")
            if isinstance(names, dict):
                return [names[k] for k in sorted(names)]
            if isinstance(names, list):
                return names
    for name in ("classes.txt", "obj.names", "classes.names"):
        if (root / name).is_file():
            return [line.strip() for line in (root / name).read_text().splitlines() if line.strip()]
    raise MaskwatchError(f"{root}: YOLO dataset without class names (data.yaml 'names' or classes.txt)")


def read_yolo(root: str | Path, split_file: str | Path | None = None) -> list[AnnotatedImage]:
    """``images/`` + ``labels/`` (``class cx cy w h`` normalised) + class names in data.yaml or classes.txt."""
    root = Path(root)
    names = _yolo_names(root)
    class_map = [class_id_of(n, where=str(root)) for n in names]
    images = _images_in(root / "images")
    stems = read_split(split_file) if split_file is not None else sorted(images)
    out = []
    for stem in stems:
        if stem not in images:
            raise MaskwatchError(f"{root}: no image for {stem!r}")
        image_path = images[stem]
        label_path = root / "labels" / image_path.relative_to(root / "images").with_suffix(".txt")
        image = read_image(image_path)  # YOLO boxes are relative to the upright image
        if image is None:
            raise MaskwatchError(f"cannot read image {image_path}")
        h, w = image.shape[:2]
        boxes, labels = [], []
        if label_path.is_file():
            for n, line in enumerate(label_path.read_text().splitlines(), 1):
                parts = line.split()
                if not parts:
                    continue
                if len(parts) < 5:
                    raise MaskwatchError(f"{label_path}:{n}: expected 'class cx cy w h'")
                cls, cx, cy, bw, bh = int(parts[0]), *map(float, parts[1:5])
                if not 0 <= cls < len(class_map):
                    raise MaskwatchError(f"{label_path}:{n}: class {cls} has no name")
                boxes.append([(cx - bw / 2) * w, (cy - bh / 2) * h, (cx + bw / 2) * w, (cy + bh / 2) * h])
                labels.append(class_map[cls])
        out.append(
            AnnotatedImage(
                image_path, np.asarray(boxes, np.float32).reshape(-1, 4), np.asarray(labels, np.int64), (w, h)
            )
        )
    return out


def read_coco(
    json_path: str | Path, images_dir: str | Path | None = None, split_file: str | Path | None = None
) -> list[AnnotatedImage]:
    """A COCO detection json (``bbox`` = x, y, w, h); images next to it or in ``images/``."""
    json_path = Path(json_path)
    try:
        data = json.loads(json_path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise MaskwatchError(f"cannot read COCO file {json_path}: {exc}") from None
    categories = {c["id"]: class_id_of(c["name"], where=str(json_path)) for c in data.get("categories", [])}
    if images_dir is None:
        images_dir = json_path.parent / "images" if (json_path.parent / "images").is_dir() else json_path.parent
    images_dir = Path(images_dir)
    per_image: dict[int, tuple[list, list]] = {img["id"]: ([], []) for img in data.get("images", [])}
    for ann in data.get("annotations", []):
        if ann.get("iscrowd", 0):
            continue
        x, y, w, h = ann["bbox"]
        per_image[ann["image_id"]][0].append([x, y, x + w, y + h])
        per_image[ann["image_id"]][1].append(categories[ann["category_id"]])
    wanted = set(read_split(split_file)) if split_file is not None else None
    out = []
    for img in sorted(data.get("images", []), key=lambda i: Path(i["file_name"]).stem):
        if wanted is not None and Path(img["file_name"]).stem not in wanted:
            continue
        boxes, labels = per_image[img["id"]]
        out.append(
            AnnotatedImage(
                images_dir / img["file_name"],
                np.asarray(boxes, np.float32).reshape(-1, 4),
                np.asarray(labels, np.int64),
                (int(img.get("width", 0)), int(img.get("height", 0))),
            )
        )
    return out


def read_dataset(root: str | Path, split_file: str | Path | None = None) -> list[AnnotatedImage]:
    """Read a Pascal VOC, YOLO or COCO folder (or a COCO json file), detected by its layout."""
    root = Path(root)
    if not root.exists():
        raise MaskwatchError(f"dataset not found: {root}")
    if root.is_file() and root.suffix == ".json":
        return read_coco(root, split_file=split_file)
    if (root / "annotations").is_dir() and any((root / "annotations").glob("*.xml")):
        return read_voc(root, split_file)
    if (root / "labels").is_dir() and (root / "images").is_dir():
        return read_yolo(root, split_file)
    jsons = sorted(root.glob("*.json")) + sorted(
        (root / "annotations").glob("*.json") if (root / "annotations").is_dir() else []
    )
    if len(jsons) == 1:
        return read_coco(jsons[0], root / "images" if (root / "images").is_dir() else root, split_file)
    raise MaskwatchError(
        f"{root}: not a recognised dataset (Pascal VOC images/ + annotations/*.xml, "
        "YOLO images/ + labels/ + data.yaml, or one COCO .json)"
    )
