"""Close-up faces: how often one face gets two (nested) boxes, with and without nested-box suppression.

Makes close-up frames the way a shop-entrance camera sees them — one face filling most of the frame — from
(a) the frames of video clips (the face found in the full frame, then cropped so it fills the frame) and
(b) the largest annotated face of each val photo if at least ``--min-face`` px tall (cropped the same way, only
where no other face is in the crop),
then runs the shipped detector on each and counts the frames with more than one box, before and after
:func:`maskwatch.metrics.suppress_nested`.

    python tools/closeups.py --videos ../shared/data/videos/*.mp4 \
        --voc ../shared/data/facemask-voc --split ../shared/data/facemask-voc/splits/val.txt [--json out.json]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import cv2
import numpy as np

from maskwatch.capture.images import read_image
from maskwatch.config import load_config
from maskwatch.metrics import box_iou, suppress_nested
from maskwatch.monitor.closeup import closeup_pass
from maskwatch.wiring import build_pipeline

FILL = (0.55, 0.75, 0.95)  # face height as a share of the close-up's height


def closeup(image: np.ndarray, box: np.ndarray, fill: float, aspect: float) -> tuple[np.ndarray, np.ndarray] | None:
    """Crop around ``box`` so the face is ``fill`` of the crop's height (crop w/h = ``aspect``); None if it leaves
    the image. Returns the crop and the face box in its coordinates."""
    x1, y1, x2, y2 = box
    ch = (y2 - y1) / fill
    cw = ch * aspect
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    a, b = int(round(cx - cw / 2)), int(round(cy - ch / 2))
    c, d = int(round(cx + cw / 2)), int(round(cy + ch / 2))
    h, w = image.shape[:2]
    if a < 0 or b < 0 or c > w or d > h or c - a < 16 or d - b < 16:
        return None
    return image[b:d, a:c].copy(), np.array([x1 - a, y1 - b, x2 - a, y2 - b], np.float64)


def video_closeups(paths: list[Path], detector, step: int) -> list[tuple[np.ndarray, np.ndarray, str]]:
    out = []
    for path in paths:
        video = cv2.VideoCapture(str(path))
        index = 0
        while True:
            ok, frame = video.read()
            if not ok:
                break
            if index % step == 0:
                faces = detector.detect(frame)
                if len(faces):
                    best = faces.xyxy[int(np.argmax(faces.det_score))]
                    aspect = 3 / 4 if frame.shape[0] > frame.shape[1] else 4 / 3
                    for fill in FILL:
                        crop = closeup(frame, best, fill, aspect)
                        if crop is not None:
                            out.append((*crop, f"{path.name}#{index}@{fill}"))
            index += 1
        video.release()
    return out


def photo_closeups(voc: Path, split: Path, min_face: int) -> list[tuple[np.ndarray, np.ndarray, str]]:
    from maskwatch.data.voc import read_voc

    out = []
    for scene in read_voc(voc, split):
        image = read_image(scene.image_path)
        boxes = np.asarray(scene.xyxy, np.float64).reshape(-1, 4)
        if image is None or not len(boxes):
            continue
        i = int(np.argmax((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])))
        if boxes[i, 3] - boxes[i, 1] < min_face:  # a close-up from a tiny face is a 10x upscale, not a close-up
            continue
        for fill in FILL:
            crop = closeup(image, boxes[i], fill, 1.0)
            if crop is None:
                continue
            others = np.delete(boxes, i, axis=0)
            if len(others) and (box_iou(others, crop[1][None])[:, 0] > 0).any():
                continue  # keep crops with one face only
            out.append((*crop, f"{scene.image_path.name}@{fill}"))
    return out


def score(frames, detector, overlap: float, trigger: float = 0.0) -> dict:
    """Boxes per close-up before and after what ``run`` does after the detector: the zoomed-out pass for close
    faces (``trigger``, 0: none) and the nested-box rule (``overlap``)."""
    n = len(frames)
    multi_before = multi_after = found_before = found_after = 0
    for image, truth, _name in frames:
        faces = detector.detect(image)
        faces = faces[faces.det_score >= detector.score_threshold]
        after = closeup_pass(detector, image, faces, trigger=trigger, min_score=detector.score_threshold)
        after = after[suppress_nested(after.xyxy, after.det_score, overlap)] if len(after) > 1 else after
        for boxes, flag in ((faces.xyxy, "before"), (after.xyxy, "after")):
            found = bool(len(boxes)) and box_iou(boxes, truth[None]).max() >= 0.5
            if flag == "before":
                multi_before += len(boxes) > 1
                found_before += found
            else:
                multi_after += len(boxes) > 1
                found_after += found
    return {
        "frames": n,
        "multi_box_rate_before": round(multi_before / max(n, 1), 4),
        "multi_box_rate_after": round(multi_after / max(n, 1), 4),
        "face_found_before": round(found_before / max(n, 1), 4),
        "face_found_after": round(found_after / max(n, 1), 4),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--videos", nargs="*", type=Path, default=[])
    ap.add_argument("--voc", type=Path)
    ap.add_argument("--split", type=Path)
    ap.add_argument("--config", type=Path)
    ap.add_argument("--precision", choices=("int8", "fp32"))
    ap.add_argument("--step", type=int, default=10, help="every Nth video frame")
    ap.add_argument("--overlap", type=float, default=0.8)
    ap.add_argument("--closeup", type=float, default=0.0, help="detector.closeup_trigger of the 'after' boxes")
    ap.add_argument("--min-face", type=int, default=64, help="photos: the face must be at least this tall (px)")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    cfg = load_config(args.config, {"runtime.precision": args.precision})
    detector = build_pipeline(cfg).detector
    results = {}
    if args.videos:
        results["video_closeups"] = score(
            video_closeups(args.videos, detector, args.step), detector, args.overlap, args.closeup
        )
    if args.voc is not None:
        results["photo_closeups"] = score(
            photo_closeups(args.voc, args.split, args.min_face), detector, args.overlap, args.closeup
        )
    print(json.dumps(results, indent=2))
    if args.json is not None:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
