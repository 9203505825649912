"""``maskwatch train``: which trainer, with what recipe, from what starting weights."""

from __future__ import annotations

import argparse
from pathlib import Path

from loguru import logger

from maskwatch.errors import MaskwatchError
from maskwatch.media import EXIT_OK

DEFAULT_EPOCHS = {
    "classifier": 20,
    "retinaface_mnet025": 20,
    "fasterrcnn_resnet50_fpn": 10,
    "fasterrcnn_mobilenet_v3_large_fpn": 10,
}
"""Epochs of the shipped models' recipes (see weights/README.md)."""


def train_command(args: argparse.Namespace) -> int:
    """``maskwatch train``: the recipe's epochs and preset, then the trainer of ``args.model`` / ``args.arch``."""
    from maskwatch.models.manifest import WEIGHTS_DIRS

    split = args.split or default_split(args.data, "train.txt")
    val_split = args.val_split or default_split(args.data, "val.txt")
    out = args.out or WEIGHTS_DIRS[0] / f"{args.model}.pt"
    common = {
        "data": args.data,
        "split": split,
        "device": args.device,
        "out": out,
        "resume": args.resume,
        "val_split": val_split,
    }
    recipe = "classifier" if args.model == "classifier" else args.arch
    common["epochs"] = args.epochs if args.epochs is not None else DEFAULT_EPOCHS[recipe]
    kind = {"classifier": "classifier", "retinaface_mnet025": "retinaface"}.get(recipe)
    if kind is None and args.preset != "default":
        raise MaskwatchError(f"--preset: {recipe} has no augmentation presets")
    if kind is not None:
        from maskwatch.train.presets import get_preset

        preset = get_preset(kind, args.preset)  # an unknown name fails here, before any data is read
        common.update({"recipe": preset} if kind == "classifier" else {"preset": args.preset})
    if args.model == "classifier":
        from maskwatch.train import classifier

        path = classifier.train(
            **common,
            extra_crops=args.crops,
            detector=args.mine_with or shipped_detector(),
            pretrained=None if args.init is None else _init(args.init),
            arch=args.backbone,
            teacher=args.teacher,
        )
    elif args.arch == "retinaface_mnet025":
        from maskwatch.train import detector

        path = detector.train(**common, init=_init(args.init), pseudo=args.pseudo)
    else:
        from maskwatch.train import frcnn

        path = frcnn.train(**common, arch=args.arch)
    logger.info(f"wrote {path}")
    return EXIT_OK


def shipped_detector() -> Path | None:
    from maskwatch.models.manifest import WEIGHTS_DIRS

    path = WEIGHTS_DIRS[0] / "detector.pt"
    return path if path.is_file() else None


def _init(path: Path | None) -> Path:
    """The detector's starting weights: ``--init``, which must name a file."""
    if path is None:
        raise MaskwatchError(
            "train detector needs --init PATH: the pretrained weights to start from "
            "(e.g. the WIDER FACE retinaface_mobilenet0.25.pth)"
        )
    if not Path(path).is_file():
        raise MaskwatchError(f"--init {path} does not exist")
    return Path(path)


def default_split(data: Path, name: str) -> Path | None:
    """``DATA/splits/NAME`` when it exists."""
    candidate = Path(data) / "splits" / name
    return candidate if candidate.is_file() else None
