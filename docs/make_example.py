"""Draws docs/example.png: the overlay renderer on a synthetic frame (an illustration, not a detection).

Run: python docs/make_example.py
"""

from pathlib import Path

import cv2
import numpy as np

from maskwatch.outputs.render import OverlayRenderer
from maskwatch.types import FaceDetections, Frame, FrameResult


def main() -> None:
    h, w = 360, 640
    y = np.linspace(0, 1, h)[:, None, None]
    image = (np.array([90, 80, 60]) * (1 - y) + np.array([40, 45, 50]) * y).astype(np.uint8).repeat(w, axis=1)
    faces = [(150, 170, 60, "with_mask"), (330, 160, 55, "without_mask"), (500, 185, 50, "mask_weared_incorrect")]
    boxes, probs, ids = [], [], []
    for i, (cx, cy, r, label) in enumerate(faces):
        cv2.rectangle(image, (cx - r, cy + r), (cx + r, h), (70, 60, 140 - 30 * i), -1)  # shoulders
        cv2.ellipse(image, (cx, cy), (int(r * 0.8), r), 0, 0, 360, (150, 180, 220), -1)  # face
        cv2.circle(image, (cx - r // 3, cy - r // 4), 4, (40, 40, 40), -1)
        cv2.circle(image, (cx + r // 3, cy - r // 4), 4, (40, 40, 40), -1)
        if label == "with_mask":
            cv2.ellipse(image, (cx, cy + r // 3), (int(r * 0.75), r // 2), 0, 0, 180, (235, 235, 230), -1)
        elif label == "mask_weared_incorrect":
            cv2.ellipse(image, (cx, cy + r // 2 + 6), (int(r * 0.7), r // 3), 0, 0, 180, (200, 150, 90), -1)
        else:
            cv2.ellipse(image, (cx, cy + r // 2), (r // 3, r // 8), 0, 0, 180, (60, 60, 150), 2)
        boxes.append([cx - r, cy - r - 8, cx + r, cy + r + 8])
        p = np.full(3, 0.03, np.float32)
        p[i] = 0.94
        probs.append(p)
        ids.append(i)
    result = FrameResult(
        frame=Frame(image, 0, 0.0),
        faces=FaceDetections(xyxy=boxes, det_score=[0.98, 0.97, 0.91], class_id=ids, class_prob=probs),
    )
    out = OverlayRenderer(font_scale=0.55).annotate(result, fps=41.7)
    cv2.imwrite(str(Path(__file__).with_name("example.png")), out)


if __name__ == "__main__":
    main()
