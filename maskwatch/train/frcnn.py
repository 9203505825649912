"""The original project's architecture, torchvision Faster R-CNN as a one-class face detector (``--arch
fasterrcnn_*``): the network, its :class:`Detector` facade, and its training on the VOC scenes.

All three mask classes count as one class, face. Meant for a GPU: on 2 CPU cores the ResNet-50 variant
takes seconds per image. The model is not shipped (maskwatch ships the much faster RetinaFace); it exists for
comparison with the original project and needs the ``[train]`` extra (torchvision).
Schedule (per-step warm-up and cosine), checkpoints (``runs/<arch>/last.pt``, ``epoch_NNN.pt``) and resume come
from :mod:`maskwatch.train.engine`.
"""

from __future__ import annotations

import random
import time
from pathlib import Path

import cv2
import numpy as np
import torch
from loguru import logger
from torch.utils.data import DataLoader, Dataset
from torchvision.models.detection import FasterRCNN
from tqdm import tqdm

from maskwatch.data.voc import AnnotatedImage, read_voc
from maskwatch.errors import MaskwatchError, WeightsError
from maskwatch.metrics import average_precision
from maskwatch.models.base import Detector
from maskwatch.models.weights import load_checked, load_state_dict_strict, save_model_file
from maskwatch.train.engine import optimisation_step, save_checkpoint, seed_everything, warmup_cosine
from maskwatch.train.engine import resume as resume_checkpoint
from maskwatch.types import FaceDetections

ARCHS = ("fasterrcnn_resnet50_fpn", "fasterrcnn_mobilenet_v3_large_fpn")


DEFAULT_INPUT_SIZE = 640
"""Side images are resized to (shorter side, capped at the longer side), as maskwatch's own detector sees them;
torchvision's default (800 / 1333) would upscale these scenes about 2.8x in pixels."""


def build_frcnn(
    arch: str, pretrained: bool = True, num_classes: int = 2, input_size: int = DEFAULT_INPUT_SIZE
) -> FasterRCNN:
    """A torchvision Faster R-CNN with a ``num_classes`` head (background + face) at ``input_size`` px.

    With ``pretrained`` the COCO weights are fetched through torchvision (cached in ``$TORCH_HOME``);
    when that fails (no network) the ImageNet backbone is tried, then random init, each with a warning.
    """
    import torchvision.models.detection as det
    from torchvision.models.detection.faster_rcnn import FastRCNNPredictor

    if arch not in ARCHS:
        raise ValueError(f"unknown Faster R-CNN arch {arch!r}; choose one of {', '.join(ARCHS)}")
    builder = getattr(det, arch)
    attempts: list[dict[str, str | None]] = [{"weights": "DEFAULT"}, {"weights": None, "weights_backbone": "DEFAULT"}]
    model = None
    for kwargs in attempts if pretrained else []:
        try:
            model = builder(**kwargs, min_size=input_size, max_size=input_size)
            break
        except Exception as exc:  # no network or no cache: fall back to the next starting point
            logger.warning(f"{arch} with {kwargs} unavailable ({type(exc).__name__}); falling back")
    if model is None:
        logger.warning(f"{arch} starts from random weights (from scratch)")
        model = builder(weights=None, weights_backbone=None, min_size=input_size, max_size=input_size)
    in_features = model.roi_heads.box_predictor.cls_score.in_features
    model.roi_heads.box_predictor = FastRCNNPredictor(in_features, num_classes)
    return model


class FasterRCNNDetector(Detector):
    """``Detector`` facade over a trained Faster R-CNN face model file."""

    def __init__(
        self,
        weights: str | Path,
        *,
        input_size: int | None = None,
        score_threshold: float = 0.5,
        nms_iou: float = 0.5,
        max_faces: int = 200,
        device: str = "cpu",
    ) -> None:
        payload = load_checked(weights)
        arch = payload.get("arch") if isinstance(payload, dict) else None
        if arch not in ARCHS or "state_dict" not in payload:
            raise WeightsError(f"weights file {weights} holds a {arch!r} model, not a Faster R-CNN")
        meta = payload.get("meta", {})
        size = int(input_size or meta.get("input_size", 800))
        self.model = build_frcnn(arch, pretrained=False, input_size=size)
        load_state_dict_strict(self.model, payload["state_dict"], weights)
        self.model.roi_heads.nms_thresh = nms_iou
        self.model.roi_heads.score_thresh = min(score_threshold, 0.05)
        self.model.eval().to(device)
        self.device = torch.device(device)
        self.score_threshold = score_threshold
        self.max_faces = max_faces
        self.meta = meta

    @torch.inference_mode()
    def detect(self, image_bgr: np.ndarray) -> FaceDetections:
        rgb = torch.from_numpy(np.ascontiguousarray(image_bgr[:, :, ::-1])).permute(2, 0, 1).float() / 255.0
        out = self.model([rgb.to(self.device)])[0]
        keep = out["scores"] >= self.score_threshold
        boxes, scores = out["boxes"][keep][: self.max_faces], out["scores"][keep][: self.max_faces]
        return FaceDetections(xyxy=boxes.cpu().numpy(), det_score=scores.cpu().numpy())


WARMUP_STEPS = 100


class FaceScenes(Dataset):
    """VOC scenes as (RGB float tensor, {boxes, labels=1}) with a random horizontal flip when training."""

    def __init__(self, scenes: list[AnnotatedImage], train: bool) -> None:
        self.scenes = scenes
        self.train = train

    def __len__(self) -> int:
        return len(self.scenes)

    def __getitem__(self, i: int):
        scene = self.scenes[i]
        image = cv2.imread(str(scene.image_path), cv2.IMREAD_COLOR)
        if image is None:
            raise MaskwatchError(f"cannot read image {scene.image_path}")
        boxes = scene.xyxy.copy()
        if self.train and random.random() < 0.5:
            image = image[:, ::-1]
            w = image.shape[1]
            boxes[:, [0, 2]] = w - boxes[:, [2, 0]]
        tensor = torch.from_numpy(np.ascontiguousarray(image[:, :, ::-1])).permute(2, 0, 1).float() / 255.0
        target = {
            "boxes": torch.from_numpy(boxes).float().reshape(-1, 4),
            "labels": torch.ones(len(boxes), dtype=torch.int64),
        }
        return tensor, target


def _collate(batch):
    return tuple(zip(*batch, strict=True))


@torch.inference_mode()
def face_ap(model: torch.nn.Module, scenes: list[AnnotatedImage], device: torch.device) -> float:
    model.eval()
    boxes, scores = [], []
    for image, _ in tqdm(FaceScenes(scenes, train=False), desc="val", leave=False):
        out = model([image.to(device)])[0]
        boxes.append(out["boxes"].cpu().numpy())
        scores.append(out["scores"].cpu().numpy())
    return float(average_precision(boxes, scores, [s.xyxy for s in scenes], iou=0.5)[0])


def train_one_epoch(
    model: torch.nn.Module, loader: DataLoader, optimizer, scheduler, device: torch.device, epoch: int
) -> float:
    """One pass over ``loader``; stops with an error on a non-finite loss. Returns the mean loss."""
    model.train()
    total, steps = 0.0, 0
    bar = tqdm(loader, desc=f"epoch {epoch}", leave=False)
    for images, targets in bar:
        losses = model([i.to(device) for i in images], [{k: v.to(device) for k, v in t.items()} for t in targets])
        value = optimisation_step(sum(losses.values()), optimizer, scheduler, epoch)
        total, steps = total + value, steps + 1
        bar.set_postfix(loss=f"{value:.3f}")
    return total / max(steps, 1)


def train(
    data: Path,
    split: Path | None,
    epochs: int = 10,
    device: str = "cpu",
    out: Path = Path("runs/frcnn/model.pt"),
    resume: Path | None = None,
    val_split: Path | None = None,
    arch: str = "fasterrcnn_mobilenet_v3_large_fpn",
    batch_size: int = 4,
    lr: float = 0.01,
    seed: int = 0,
    pretrained: bool = True,
    input_size: int = DEFAULT_INPUT_SIZE,
) -> Path:
    """Fine-tune (or train from scratch when no pretrained weights can be fetched) and write ``out``.

    Checkpoints go to ``runs/<arch>/``; ``resume`` takes one of them (``last.pt``).
    """
    seed_everything(seed)
    dev = torch.device(device)
    model = build_frcnn(arch, pretrained=pretrained and resume is None, input_size=input_size).to(dev)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(params, lr=lr, momentum=0.9, weight_decay=1e-4)
    loader = DataLoader(
        FaceScenes(read_voc(data, split), train=True),
        batch_size=batch_size,
        shuffle=True,
        collate_fn=_collate,
        num_workers=0,
    )
    scheduler = warmup_cosine(optimizer, max(1, epochs * len(loader)), WARMUP_STEPS)
    start, history = 0, list[dict]()
    if resume is not None:
        start, history = resume_checkpoint(resume, model, optimizer, scheduler)
    ckpt_dir = Path("runs") / arch
    args = {"arch": arch, "lr": lr, "epochs": epochs, "batch_size": batch_size, "seed": seed, "data": str(data)}
    args["input_size"] = input_size
    val = read_voc(data, val_split) if val_split is not None else []
    for epoch in range(start, epochs):
        t0 = time.monotonic()
        record = {"epoch": epoch, "loss": train_one_epoch(model, loader, optimizer, scheduler, dev, epoch)}
        if val:
            record["val_face_ap50"] = face_ap(model, val, dev)
        record["seconds"] = round(time.monotonic() - t0, 1)
        history.append(record)
        save_checkpoint(ckpt_dir, epoch, model, optimizer, scheduler, args, history)
        ap = f", val face AP@0.5 {record['val_face_ap50']:.4f}" if val else ""
        logger.info(f"epoch {epoch}: loss {record['loss']:.4f}{ap}")
    meta = {"epochs": epochs, "lr": lr, "seed": seed, "input_size": input_size, "history": history}
    save_model_file(out, arch, model.state_dict(), meta)
    return Path(out)
