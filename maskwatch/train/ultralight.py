"""Fine-tune the Ultra-Light face detector on Pascal VOC scenes (every labelled class counts as face).

SSD recipe: random 4:3 crops that keep faces (with zoom-out padding), scale jitter, flip and colour jitter;
priors matched at IoU >= 0.35 plus the best prior of every face; MultiBox loss (smooth L1 + cross-entropy with
3:1 hard-negative mining); AdamW with warm-up and cosine decay. Augmentation parameters come from a named preset
(:mod:`maskwatch.train.presets`); schedule, checkpoints (``runs/ultralight/last.pt`` and ``epoch_NNN.pt``) and
resume from :mod:`maskwatch.train.engine`. ``out`` is a maskwatch model file (arch ``ultralight_rfb``).
"""

from __future__ import annotations

import math
import random
import time
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F
import torchvision
from loguru import logger
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from maskwatch.data.voc import AnnotatedImage, read_voc
from maskwatch.errors import MaskwatchError
from maskwatch.metrics import average_precision
from maskwatch.models.ultralight import (
    ARCH_RFB,
    ARCH_SLIM,
    UltraLightDetector,
    UltraLightNet,
    encode,
    load_ultralight,
    make_priors,
)
from maskwatch.models.weights import save_model_file
from maskwatch.train.engine import (
    load_checkpoint,
    optimisation_step,
    save_checkpoint,
    seed_everything,
    warmup_cosine,
)
from maskwatch.train.engine import resume as resume_checkpoint
from maskwatch.train.presets import UltraLightPreset, as_plain, get_preset

MATCH_IOU = 0.35
NEG_POS_RATIO = 3
MIN_FACE_PX = 3.0
"""Faces whose longest side is below this many input pixels after augmentation are dropped."""
WARMUP_STEPS = 100
FINAL_LR_FACTOR = 0.02


def _read(path: Path) -> np.ndarray:
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise MaskwatchError(f"cannot read image {path}")
    return image


class FaceScenes(Dataset):
    """VOC scenes → (raw BGR float tensor (3, H, W), boxes (K, 4) normalised xyxy) at a fixed input size."""

    def __init__(
        self,
        scenes: list[AnnotatedImage],
        input_wh: tuple[int, int],
        train: bool,
        augmentation: UltraLightPreset = UltraLightPreset(),
    ) -> None:
        self.scenes = scenes
        self.input_wh = input_wh
        self.train = train
        self.augmentation = augmentation
        self._cache: dict[int, np.ndarray] = {}

    def __len__(self) -> int:
        return len(self.scenes)

    def _image(self, i: int) -> np.ndarray:
        if i not in self._cache:
            self._cache[i] = _read(self.scenes[i].image_path)
        return self._cache[i]

    def _window(self, w: int, h: int, boxes: np.ndarray) -> tuple[float, float, float]:
        """A random crop window (x0, y0, width) of the input's aspect that keeps at least one face centre."""
        iw, ih = self.input_wh
        aspect = iw / ih
        fit = max(w, h * aspect)  # the smallest window of the input's aspect that covers the whole image
        centres = (boxes[:, :2] + boxes[:, 2:]) / 2
        for _ in range(20):
            cw = fit * random.uniform(*self.augmentation.window_scale)
            ch = cw / aspect
            x0 = random.uniform(min(0.0, w - cw), max(0.0, w - cw))
            y0 = random.uniform(min(0.0, h - ch), max(0.0, h - ch))
            inside = (centres[:, 0] > x0) & (centres[:, 0] < x0 + cw) & (centres[:, 1] > y0) & (centres[:, 1] < y0 + ch)
            if len(boxes) == 0 or inside.any():
                return x0, y0, cw
        return (w - fit) / 2, (h - fit / aspect) / 2, fit

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        image = self._image(i)
        boxes = self.scenes[i].xyxy.astype(np.float32).reshape(-1, 4)
        h, w = image.shape[:2]
        iw, ih = self.input_wh
        if self.train:
            x0, y0, cw = self._window(w, h, boxes)
        else:  # letterbox the whole image, centred
            cw = max(w, h * iw / ih)
            x0, y0 = (w - cw) / 2, (h - cw * ih / iw) / 2
        s = iw / cw
        matrix = np.array([[s, 0, -x0 * s], [0, s, -y0 * s]], np.float32)
        out = cv2.warpAffine(image, matrix, (iw, ih), flags=cv2.INTER_LINEAR, borderValue=(127, 127, 127))
        boxes = (boxes - np.array([x0, y0, x0, y0], np.float32)) * s
        centres = (boxes[:, :2] + boxes[:, 2:]) / 2
        keep = (centres[:, 0] > 0) & (centres[:, 0] < iw) & (centres[:, 1] > 0) & (centres[:, 1] < ih)
        boxes = boxes[keep]
        boxes[:, 0::2] = boxes[:, 0::2].clip(0, iw)
        boxes[:, 1::2] = boxes[:, 1::2].clip(0, ih)
        boxes = boxes[np.maximum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]) >= MIN_FACE_PX]
        if self.train:
            if random.random() < self.augmentation.flip_prob:
                out = out[:, ::-1]
                boxes[:, [0, 2]] = iw - boxes[:, [2, 0]]
            out = _colour_jitter(out) if self.augmentation.photometric else out
        tensor = torch.from_numpy(np.ascontiguousarray(out.transpose(2, 0, 1))).float()
        return tensor, torch.from_numpy(boxes / np.array([iw, ih, iw, ih], np.float32))


def _colour_jitter(image: np.ndarray) -> np.ndarray:
    """Random brightness, contrast and saturation on a BGR uint8 image (left as it is one time in five)."""
    if random.random() < 0.2:
        return image
    img = image.astype(np.float32)
    img = img * random.uniform(0.65, 1.35) + random.uniform(-32, 32)
    grey = img.mean(axis=2, keepdims=True)
    img = grey + (img - grey) * random.uniform(0.6, 1.4)
    return img.clip(0, 255).astype(np.uint8)


def _collate(batch: list[tuple[torch.Tensor, torch.Tensor]]) -> tuple[torch.Tensor, list[torch.Tensor]]:
    images, boxes = zip(*batch, strict=True)
    return torch.stack(images), list(boxes)


def _corners(priors: torch.Tensor) -> torch.Tensor:
    return torch.cat([priors[:, :2] - priors[:, 2:] / 2, priors[:, :2] + priors[:, 2:] / 2], dim=1)


def match(
    boxes: torch.Tensor, priors: torch.Tensor, iou_threshold: float = MATCH_IOU
) -> tuple[torch.Tensor, torch.Tensor]:
    """Assign faces (K, 4) to priors (P, 4): (labels (P,) 1 face / 0 background, regression targets (P, 4))."""
    labels = torch.zeros(len(priors), dtype=torch.int64)
    if len(boxes) == 0:
        return labels, torch.zeros(len(priors), 4)
    iou = torchvision.ops.box_iou(boxes, _corners(priors))  # (K, P)
    best_iou, best_face = iou.max(dim=0)
    best_prior = iou.argmax(dim=1)
    best_face[best_prior] = torch.arange(len(boxes))
    best_iou[best_prior] = 2.0
    labels[best_iou >= iou_threshold] = 1
    return labels, encode(boxes[best_face], priors)


def multibox_loss(
    logits: torch.Tensor, loc: torch.Tensor, labels: torch.Tensor, targets: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """(classification, regression) loss per positive prior, negatives mined at 3:1 by background loss."""
    with torch.no_grad():
        bg_loss = -F.log_softmax(logits, dim=2)[:, :, 0]
        pos = labels > 0
        num_neg = (pos.sum(dim=1, keepdim=True) * NEG_POS_RATIO).clamp(min=NEG_POS_RATIO)
        bg_loss[pos] = -math.inf
        rank = bg_loss.argsort(dim=1, descending=True).argsort(dim=1)
        selected = pos | (rank < num_neg)
    num_pos = max(int(pos.sum()), 1)
    cls = F.cross_entropy(logits[selected], labels[selected], reduction="sum") / num_pos
    reg = F.smooth_l1_loss(loc[pos], targets[pos], reduction="sum") / num_pos
    return cls, reg


def merge_masked_head(state: dict, num_classes: int = 3) -> dict:
    """Turn a background/face/masked_face head into background/face.

    Softmax over [b, f, m] gives P(face or masked) = 1 - P(b); a 2-way softmax with logits [b, logsumexp(f, m)]
    gives the same. Exact logsumexp is not linear, so the face row takes the mean of the two rows' weights plus
    log 2 in the bias, the best linear stand-in when the two logits are close.
    """
    out = dict(state)
    heads = [f"classification_headers.{i}.2" for i in range(3)] + ["classification_headers.3"]
    for key in [f"{h}.{p}" for h in heads for p in ("weight", "bias")]:
        t = state[key]
        rows = t.reshape(t.shape[0] // num_classes, num_classes, *t.shape[1:])
        face = rows[:, 1:].mean(dim=1)
        if t.dim() == 1:
            face = face + math.log(num_classes - 1)
        out[key] = torch.stack([rows[:, 0], face], dim=1).reshape(-1, *t.shape[1:])
    return out


def build_net(init: Path | None) -> tuple[UltraLightNet, str]:
    """A 2-class net, from ``init`` (pretrained .pth or maskwatch model file; 3-class heads merged) or random."""
    if init is None:
        return UltraLightNet(num_classes=2, rfb=True), "random"
    net, meta = load_ultralight(init)
    if meta["num_classes"] == 2:
        return net, str(init)
    if meta["num_classes"] != 3:
        raise MaskwatchError(f"{init}: cannot start a face detector from a {meta['num_classes']}-class head")
    two = UltraLightNet(num_classes=2, rfb=net.rfb)
    two.load_state_dict(merge_masked_head(net.state_dict()), strict=True)
    return two, f"{init} (face + masked_face rows merged)"


@torch.inference_mode()
def face_ap(net: UltraLightNet, scenes: list[AnnotatedImage], input_size: int, device: str = "cpu") -> float:
    """Face AP@0.5 of ``net`` on ``scenes`` through :class:`UltraLightDetector` (score threshold 0.01)."""
    was_training = net.training
    detector = UltraLightDetector(net=net, input_size=input_size, score_threshold=0.01, device=device)
    boxes, scores = [], []
    for scene in scenes:
        faces = detector.detect(_read(scene.image_path))
        boxes.append(faces.xyxy)
        scores.append(faces.det_score)
    net.train(was_training)
    return average_precision(boxes, scores, [s.xyxy for s in scenes], iou=0.5)[0]


def train_loader(dataset: FaceScenes, batch_size: int, seed: int) -> DataLoader:
    """Shuffled batches in the main process (the order set by ``seed``), the last short batch dropped if others."""
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=True,
        collate_fn=_collate,
        num_workers=0,
        drop_last=len(dataset) > batch_size,
        generator=torch.Generator().manual_seed(seed),
    )


def train_one_epoch(
    net: UltraLightNet, loader: DataLoader, priors: torch.Tensor, optimizer, scheduler, device: str, epoch: int
) -> float:
    """One pass over ``loader``; stops with an error on a non-finite loss. Returns the last batch's loss."""
    net.train()
    bar = tqdm(loader, desc=f"epoch {epoch}", leave=False)
    for images, boxes in bar:
        matched = [match(b, priors) for b in boxes]
        labels = torch.stack([m[0] for m in matched]).to(device)
        targets = torch.stack([m[1] for m in matched]).to(device)
        logits, loc = net(images.to(device))
        cls, reg = multibox_loss(logits, loc, labels, targets)
        loss = optimisation_step(cls + reg, optimizer, scheduler, epoch)
        bar.set_postfix(cls=f"{cls.item():.3f}", reg=f"{reg.item():.3f}")
    return loss


def train(
    data: Path,
    split: Path | None,
    epochs: int,
    device: str,
    out: Path,
    resume: Path | None = None,
    init: Path | None = None,
    val_split: Path | None = None,
    input_size: int = 480,
    batch_size: int = 16,
    seed: int = 0,
    lr: float = 5e-4,
    preset: str = "default",
) -> Path:
    """Fine-tune a 2-class Ultra-Light RFB detector on ``data`` and write the model file ``out``.

    ``input_size`` is the training input width (4:3, so 480 → 480×360); ``init`` a pretrained file to start from;
    ``resume`` a checkpoint (``runs/ultralight/last.pt``); ``preset`` names the augmentation.
    """
    augmentation = get_preset("ultralight", preset)
    torch.set_num_threads(1)
    seed_everything(seed)
    out = Path(out)
    ckpt_dir = Path("runs") / "ultralight"
    input_wh = (int(input_size), int(round(input_size * 3 / 4)))
    net, origin = build_net(init)
    net.to(device)
    priors = make_priors(*input_wh)
    optimizer = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=1e-4)
    scenes = read_voc(data, split)
    loader = train_loader(FaceScenes(scenes, input_wh, train=True, augmentation=augmentation), batch_size, seed)
    total_steps = max(1, epochs * len(loader))  # warm-up: at most a tenth of the run, as the shipped model's
    scheduler = warmup_cosine(optimizer, total_steps, min(WARMUP_STEPS, total_steps // 10), FINAL_LR_FACTOR)
    start, history = 0, []
    if resume is not None:
        start, history = resume_checkpoint(resume, net, optimizer, scheduler)
        origin = str((load_checkpoint(resume).get("args") or {}).get("origin", origin))
    val = read_voc(data, val_split) if val_split is not None else []
    args = {
        "data": str(data),
        "split": str(split),
        "epochs": epochs,
        "init": str(init),
        "origin": origin,
        "input_size": input_size,
        "batch_size": batch_size,
        "lr": lr,
        "seed": seed,
        "preset": preset,
        "augmentation": as_plain(augmentation),
    }
    logger.info("training Ultra-Light RFB from {} on {} scenes at {}x{}", origin, len(scenes), *input_wh)
    for epoch in range(start, epochs):
        t0 = time.monotonic()
        loss = train_one_epoch(net, loader, priors, optimizer, scheduler, device, epoch)
        record = {"epoch": epoch, "loss": loss, "seconds": round(time.monotonic() - t0, 1)}
        if val:
            record["val_face_ap50"] = face_ap(net, val, input_size, device)
        history.append(record)
        save_checkpoint(ckpt_dir, epoch, net, optimizer, scheduler, args, history)
        ap = f", val face AP@0.5 {record['val_face_ap50']:.4f}" if val else ""
        logger.info(f"epoch {epoch}: last loss {loss:.3f} ({record['seconds']:.0f} s){ap}")
    meta = {
        "num_classes": 2,
        "input_size": int(input_size),
        "origin": origin,
        "epochs": epochs,
        "seed": seed,
        "preset": preset,
        "val_face_ap": history[-1].get("val_face_ap50") if history else None,
        "history": history,
    }
    save_model_file(out, ARCH_RFB if net.rfb else ARCH_SLIM, net.state_dict(), meta)
    return out
