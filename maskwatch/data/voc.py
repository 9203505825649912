"""Pascal VOC reader for the face-mask scenes (images/ + annotations/ + optional splits)."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from maskwatch.data.labels import class_id_of
from maskwatch.errors import MaskwatchError
from maskwatch.media import IMAGE_SUFFIXES


@dataclass
class AnnotatedImage:
    """One image's ground truth: boxes ``xyxy`` (pixels) and class ids into ``CLASS_NAMES``."""

    image_path: Path
    xyxy: np.ndarray
    class_id: np.ndarray
    size_wh: tuple[int, int]


def read_split(split_file: str | Path) -> list[str]:
    """Image stems, one per line, blank lines ignored."""
    path = Path(split_file)
    if not path.is_file():
        raise MaskwatchError(f"split file not found: {path}")
    return [line.strip() for line in path.read_text().splitlines() if line.strip()]


def parse_annotation(xml_path: Path, images_dir: Path) -> AnnotatedImage:
    try:
        root = ET.parse(xml_path).getroot()
    except ET.ParseError as exc:
        raise MaskwatchError(f"{xml_path}: not valid XML ({exc})") from None
    size = root.find("size")
    w = int(float(size.findtext("width", "0"))) if size is not None else 0
    h = int(float(size.findtext("height", "0"))) if size is not None else 0
    boxes, labels = [], []
    for obj in root.iter("object"):
        bb = obj.find("bndbox")
        if bb is None:
            raise MaskwatchError(f"{xml_path}: an object has no <bndbox>")
        labels.append(class_id_of(obj.findtext("name") or "", where=str(xml_path)))
        box = []
        for key in ("xmin", "ymin", "xmax", "ymax"):
            text = bb.findtext(key)
            if text is None:
                raise MaskwatchError(f"{xml_path}: a <bndbox> has no <{key}>")
            box.append(float(text))
        boxes.append(box)
    filename = root.findtext("filename") or (xml_path.stem + ".jpg")
    image_path = images_dir / filename
    if not image_path.is_file():
        candidates = [images_dir / (xml_path.stem + s) for s in IMAGE_SUFFIXES]
        image_path = next((c for c in candidates if c.is_file()), image_path)
    return AnnotatedImage(
        image_path=image_path,
        xyxy=np.asarray(boxes, np.float32).reshape(-1, 4),
        class_id=np.asarray(labels, np.int64),
        size_wh=(w, h),
    )


def read_voc(root: str | Path, split_file: str | Path | None = None) -> list[AnnotatedImage]:
    """Read ``root/annotations/*.xml`` (restricted to ``split_file``'s stems if given), sorted by stem."""
    root = Path(root)
    ann_dir, images_dir = root / "annotations", root / "images"
    if not ann_dir.is_dir():
        raise MaskwatchError(f"{root} is not a Pascal VOC folder (no annotations/)")
    if split_file is not None:
        stems = read_split(split_file)
        xmls = [ann_dir / f"{s}.xml" for s in stems]
        missing = [x for x in xmls if not x.is_file()]
        if missing:
            raise MaskwatchError(
                f"split {split_file} names {len(missing)} images without annotations, e.g. {missing[0].name}"
            )
    else:
        xmls = sorted(ann_dir.glob("*.xml"))
    return [parse_annotation(x, images_dir) for x in xmls]
