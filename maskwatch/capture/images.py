"""Reading still images the way every viewer shows them: EXIF orientation applied, any depth, BGR uint8 out."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from maskwatch.capture.formats import OpenCVName, image_format, quiet_opencv

_AS_STORED_DEPTH = cv2.IMREAD_ANYDEPTH | cv2.IMREAD_ANYCOLOR
"""Keeps 16-bit and grayscale data (converted below) and, unlike ``IMREAD_UNCHANGED``, applies EXIF orientation."""


def to_bgr8(image: np.ndarray) -> np.ndarray:
    """Convert grayscale, BGRA and 16-bit images to 3-channel uint8 BGR."""
    if image.dtype == np.uint16:
        image = (image >> 8).astype(np.uint8)
    elif image.dtype != np.uint8:
        image = cv2.normalize(image, None, 0, 255, cv2.NORM_MINMAX).astype(np.uint8)
    if image.ndim == 2:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    if image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
    if image.shape[2] == 1:
        return cv2.cvtColor(image[:, :, 0], cv2.COLOR_GRAY2BGR)
    return image


def read_image(path: str | Path) -> np.ndarray | None:
    """The image at ``path`` as upright BGR uint8 (a phone photo with EXIF Orientation 6 comes out portrait),
    or None if it cannot be decoded. A GIF gives its first frame.

    The bytes are read by Python and decoded by OpenCV: any file name works (OpenCV crashes on names that are not
    UTF-8), and a TIFF with EXIF orientation 5-8, which ``cv2.imread`` rejects, is read and turned upright."""
    try:
        data = np.fromfile(path, np.uint8)
    except (OSError, ValueError):
        return None
    with quiet_opencv():
        image = cv2.imdecode(data, _AS_STORED_DEPTH) if data.size else None
    if image is None and image_format(data[:64].tobytes()) == "GIF":
        image = _first_video_frame(path)
    return None if image is None else to_bgr8(image)


def _first_video_frame(path: str | Path) -> np.ndarray | None:
    alias = OpenCVName(path)
    try:
        with quiet_opencv():
            video = cv2.VideoCapture(alias.name)
            ok, image = video.read()
            video.release()
    finally:
        alias.close()
    return image if ok else None
