"""Pseudo-label the detector's training scenes with a teacher face detector (CenterFace, ONNX).

    python tools/pseudo_label.py --data ../shared/data/facemask-voc --teacher ../shared/pretrained/centerface.onnx \\
        --out runs/pseudo/centerface_train.json

    python tools/pseudo_label.py --photos ../shared/data/mask-crops --per-class 200 --style-from \
        runs/pseudo/centerface_train.json --teacher ../shared/pretrained/centerface.onnx --out runs/pseudo/crops.json

The files feed ``maskwatch train detector --pseudo FILE [FILE]``: the teacher's confident faces that no annotation
covers become training faces, its doubtful ones regions without loss (:mod:`maskwatch.train.pseudo`). With
``--photos``, photos without annotations (face crops from the web: close-ups once scaled to the detector's input)
are labelled the same way, drawn from the ``train`` half of the folder only (the ``heldout`` half stays for
``tools/models_check.py --heldout``).
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

import numpy as np

from maskwatch.media import IMAGE_SUFFIXES
from maskwatch.train.pseudo import PseudoSettings, crops_half, label_photos, pseudo_label


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, help="Pascal VOC folder")
    ap.add_argument("--photos", type=Path, help="a folder of photos without annotations (sub-folders searched)")
    ap.add_argument("--per-class", type=int, default=200, help="--photos: photos drawn per sub-folder")
    ap.add_argument("--style-from", type=Path, help="--photos: the VOC pseudo-labels whose box style to apply")
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
    if args.photos is not None:
        style = np.asarray(json.loads(args.style_from.read_text())["box_style"], np.float32)
        files = []
        for sub in sorted(p for p in args.photos.iterdir() if p.is_dir()):
            pool = sorted(f for f in sub.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES and crops_half(f) == "train")
            files += random.Random(0).sample(pool, min(args.per_class, len(pool)))
        result = label_photos(files, args.teacher, style, args.out, settings)
        print({"photos": len(files), "labelled": len(result["scenes"])})
        return
    split = args.split or args.data / "splits" / "train.txt"
    result = pseudo_label(args.data, split, args.teacher, args.out, settings)
    keys = ("images", "annotated_faces", "extra_faces", "ignore_regions", "box_style", "style_pairs")
    print({k: result[k] for k in keys})


if __name__ == "__main__":
    main()
