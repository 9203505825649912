"""Join videos end to end at one size and fps (a longer demo clip for `maskwatch run`).

    python tools/concat_videos.py OUT.mp4 A.mp4 B.mp4 [...] [--size 1280x720] [--gap-s 1.0]

Every input is letterboxed to --size; --gap-s inserts that many seconds of black frames between clips so that
the people of consecutive clips are separate visits.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np


def letterbox(image: np.ndarray, size_wh: tuple[int, int]) -> np.ndarray:
    w, h = size_wh
    scale = min(w / image.shape[1], h / image.shape[0])
    nw, nh = round(image.shape[1] * scale), round(image.shape[0] * scale)
    canvas = np.zeros((h, w, 3), np.uint8)
    x, y = (w - nw) // 2, (h - nh) // 2
    canvas[y : y + nh, x : x + nw] = cv2.resize(image, (nw, nh), interpolation=cv2.INTER_AREA)
    return canvas


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("inputs", type=Path, nargs="+")
    parser.add_argument("--size", default="1280x720")
    parser.add_argument("--fps", type=float, default=25.0)
    parser.add_argument("--gap-s", type=float, default=1.0)
    args = parser.parse_args()
    size = tuple(int(v) for v in args.size.lower().split("x"))
    writer = cv2.VideoWriter(str(args.out), cv2.VideoWriter_fourcc(*"mp4v"), args.fps, size)
    frames = 0
    for n, path in enumerate(args.inputs):
        if n and args.gap_s > 0:
            for _ in range(round(args.gap_s * args.fps)):
                writer.write(np.zeros((size[1], size[0], 3), np.uint8))
                frames += 1
        cap = cv2.VideoCapture(str(path))
        while True:
            ok, frame = cap.read()
            if not ok:
                break
            writer.write(letterbox(frame, size))
            frames += 1
        cap.release()
    writer.release()
    print(f"wrote {args.out}: {frames} frames at {args.fps} fps, {size[0]}x{size[1]}")


if __name__ == "__main__":
    main()
