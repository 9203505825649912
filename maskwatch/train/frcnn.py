"""Training of the original project's Faster R-CNN face detector (``--arch fasterrcnn_*``) on the VOC scenes.

All three mask classes count as one class, face. Meant for a GPU: on 2 CPU cores the ResNet-50 variant
takes seconds per image. The model is not shipped; it exists for comparison with the original project.
"""

from __future__ import annotations

import math
import random
from pathlib import Path

import cv2
import numpy as np
import torch
from loguru import logger
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from maskwatch.data.voc import AnnotatedImage, read_voc
from maskwatch.errors import MaskwatchError
from maskwatch.metrics import average_precision
from maskwatch.models.frcnn import build_frcnn
from maskwatch.models.weights import save_model_file


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
) -> Path:
    """Fine-tune (or train from scratch when no pretrained weights can be fetched) and write ``out``."""
    random.seed(seed)
    torch.manual_seed(seed)
    dev = torch.device(device)
    model = build_frcnn(arch, pretrained=pretrained and resume is None).to(dev)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(params, lr=lr, momentum=0.9, weight_decay=1e-4)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(epochs, 1))
    start = 0
    ckpt_dir = Path("runs") / arch
    if resume is not None:
        ckpt = torch.load(resume, map_location="cpu", weights_only=True)
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        scheduler.load_state_dict(ckpt["lr_scheduler"])
        start = ckpt["epoch"] + 1
    loader = DataLoader(
        FaceScenes(read_voc(data, split), train=True),
        batch_size=batch_size,
        shuffle=True,
        collate_fn=_collate,
        num_workers=0,
    )
    val = read_voc(data, val_split) if val_split is not None else []
    for epoch in range(start, epochs):
        model.train()
        bar = tqdm(loader, desc=f"epoch {epoch}")
        for images, targets in bar:
            losses = model([i.to(dev) for i in images], [{k: v.to(dev) for k, v in t.items()} for t in targets])
            loss = sum(losses.values())
            if not math.isfinite(loss.item()):
                raise MaskwatchError(f"non-finite loss {loss.item()} at epoch {epoch}; stopping")
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            bar.set_postfix(loss=f"{loss.item():.3f}")
        scheduler.step()
        ckpt_dir.mkdir(parents=True, exist_ok=True)
        torch.save(
            {
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "lr_scheduler": scheduler.state_dict(),
                "args": {"arch": arch, "lr": lr, "epochs": epochs},
                "epoch": epoch,
            },
            ckpt_dir / "checkpoint.pt",
        )
        if val:
            logger.info(f"epoch {epoch}: val face AP@0.5 {face_ap(model, val, dev):.4f}")
    save_model_file(out, arch, model.state_dict(), {"epochs": epochs, "lr": lr, "seed": seed})
    return Path(out)
