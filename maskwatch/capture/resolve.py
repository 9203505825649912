"""What a ``--source`` names, told without opening it: a camera index, a file (spaces in its name kept), the
images of a folder by content, and why an image cannot be read."""

from __future__ import annotations

from pathlib import Path

from loguru import logger

from maskwatch.capture.formats import IMAGE_FORMATS, sniff
from maskwatch.errors import SourceError
from maskwatch.media import IMAGE_SUFFIXES

MAX_CAMERA_INDEX = 2**31 - 1
"""OpenCV takes a camera index (plus its backend code, e.g. 200 + N for V4L2) as a 32-bit int."""


def camera_index(spec: str) -> int | None:
    """The camera index ``spec`` names (ASCII digits only: ``²`` is a file name), or None; one too large for
    OpenCV is an error."""
    if not (spec.isascii() and spec.isdigit()):
        return None
    index = int(spec)
    if index > MAX_CAMERA_INDEX:
        raise SourceError(f"camera index {spec} is out of range (0 to {MAX_CAMERA_INDEX})")
    return index


def find_path(raw: str) -> Path:
    """The file or folder ``raw`` names: as given (a name may start or end with a space), else without the spaces
    around it. Not found: the error says when a name differs from an existing one only by such spaces."""
    for candidate in (raw, raw.strip()):
        path = Path(candidate).expanduser()
        if candidate and path.exists():
            return path
    path = Path(raw.strip()).expanduser()
    parent = path.parent if str(path.parent) else Path(".")
    near = []
    if path.name and parent.is_dir():
        try:
            near = [p.name for p in parent.iterdir() if p.name != path.name and p.name.strip() == path.name]
        except OSError:
            near = []
    if near:
        raise SourceError(f"source not found: {raw!r}; {near[0]!r} exists: its name has a leading or trailing space")
    if raw != raw.strip():
        raise SourceError(f"source not found: {raw!r} (nor without the spaces around the name)")
    raise SourceError(f"source not found: {path}")


def is_image_file(path: Path) -> bool:
    """An image by content (a JPEG saved as ``.jfif``, ``.download`` or without a suffix) or by its suffix."""
    return path.suffix.lower() in IMAGE_SUFFIXES or sniff(path) in IMAGE_FORMATS


def unreadable_reason(path: Path) -> str:
    """Why an image could not be decoded, naming its format where the first bytes tell it."""
    fmt = sniff(path)
    if fmt == "HEIC":
        return "a HEIC/HEIF image, which OpenCV cannot decode: convert it to JPEG (e.g. heif-convert)"
    if fmt is not None:
        return f"a {fmt} image that cannot be decoded (damaged, or a variant this OpenCV build does not read)"
    return "not a valid image file"


def folder_images(path: Path) -> list[Path]:
    """The image files directly in ``path`` (by suffix or content), sorted by name; images in subfolders are not
    read, with a warning."""
    try:
        images = sorted(p for p in path.iterdir() if p.is_file() and is_image_file(p))
    except OSError as exc:
        raise SourceError(f"cannot list folder {path}: {exc.strerror}") from None
    nested = next((p for p in path.rglob("*") if p.parent != path and p.suffix.lower() in IMAGE_SUFFIXES), None)
    if nested is not None:
        logger.warning(f"images in subfolders of {path} are not read (e.g. {nested.relative_to(path)}): "
                       "run maskwatch on each folder")  # fmt: skip
    return images
