"""Pseudo-label the detector's training scenes with a teacher face detector (CenterFace, ONNX).

    python tools/pseudo_label.py --data ../shared/data/facemask-voc --teacher ../shared/pretrained/centerface.onnx \\
        --out runs/pseudo/centerface_train.json

The file feeds ``maskwatch train detector --pseudo FILE``: the teacher's confident faces that no annotation covers
become training faces, its doubtful ones regions without loss (:mod:`maskwatch.train.pseudo`).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from maskwatch.train.pseudo import PseudoSettings, pseudo_label


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, required=True, help="Pascal VOC folder")
    ap.add_argument("--split", type=Path, help="stems to label (default DATA/splits/train.txt)")
    ap.add_argument("--teacher", type=Path, required=True, help="CenterFace ONNX file")
    ap.add_argument("--out", type=Path, required=True, help="JSON file to write")
    ap.add_argument("--extra-score", type=float, default=PseudoSettings.extra_score)
    ap.add_argument("--ignore-score", type=float, default=PseudoSettings.ignore_score)
    ap.add_argument("--sizes", type=int, nargs="+", default=list(PseudoSettings.long_sides))
    args = ap.parse_args()
    settings = PseudoSettings(
        long_sides=tuple(args.sizes), extra_score=args.extra_score, ignore_score=args.ignore_score
    )
    split = args.split or args.data / "splits" / "train.txt"
    result = pseudo_label(args.data, split, args.teacher, args.out, settings)
    keys = ("images", "annotated_faces", "extra_faces", "ignore_regions", "box_style", "style_pairs")
    print({k: result[k] for k in keys})


if __name__ == "__main__":
    main()
