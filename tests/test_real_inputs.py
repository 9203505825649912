"""Inputs as people have them: EXIF-rotated phone photos, GIFs, and the like."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from maskwatch.capture.images import read_image
from maskwatch.capture.sources import open_source


def _phone_photo(path: Path, orientation: int) -> np.ndarray:
    """A landscape-stored JPEG whose EXIF says how to turn it; returns the upright RGB->BGR pixels a viewer shows."""
    stored = np.zeros((60, 100, 3), np.uint8)
    stored[:, :30] = (255, 255, 255)  # a white band on the stored image's left
    image = Image.fromarray(stored)
    exif = image.getexif()
    exif[0x0112] = orientation
    image.save(path, exif=exif, quality=95)
    from PIL import ImageOps

    return cv2.cvtColor(np.asarray(ImageOps.exif_transpose(Image.open(path))), cv2.COLOR_RGB2BGR)


@pytest.mark.parametrize("orientation", [3, 6, 8])
def test_images_are_read_upright(tmp_path: Path, orientation: int):
    path = tmp_path / f"phone_{orientation}.jpg"
    upright = _phone_photo(path, orientation)
    image = read_image(path)
    assert image.shape == upright.shape
    assert np.abs(image.astype(int) - upright.astype(int)).mean() < 3
    source = open_source(str(path))
    frame = source.read()
    source.close()
    image = frame.image if hasattr(frame, "image") else frame[0]
    assert image.shape == upright.shape


def test_sixteen_bit_and_gray_images_still_read(tmp_path: Path):
    cv2.imwrite(str(tmp_path / "deep.png"), np.full((20, 30), 40000, np.uint16))
    cv2.imwrite(str(tmp_path / "gray.png"), np.full((20, 30), 7, np.uint8))
    deep, gray = read_image(tmp_path / "deep.png"), read_image(tmp_path / "gray.png")
    assert deep.shape == gray.shape == (20, 30, 3) and deep.dtype == np.uint8
    assert int(deep[0, 0, 0]) == 40000 >> 8 and int(gray[0, 0, 0]) == 7
    assert read_image(tmp_path / "missing.png") is None
