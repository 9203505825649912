"""Fine-tune the RetinaFace detector on Pascal VOC scenes (all classes count as "face").

Wiring only: data and augmentation (parameters from a named preset, :mod:`maskwatch.train.presets`), anchor
matching, MultiBox loss, and the epoch loop (schedule, checkpoints and resume from :mod:`maskwatch.train.engine`)
with a val face AP@0.5 after each epoch (the val split is only measured, never trained on).
"""

from __future__ import annotations

import math
import random
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from loguru import logger
from torchvision.ops import box_iou
from tqdm import tqdm

from maskwatch.data.voc import AnnotatedImage, read_voc
from maskwatch.errors import MaskwatchError
from maskwatch.metrics import average_precision
from maskwatch.models.retinaface import (
    ARCH,
    BGR_MEAN,
    PRETRAINED_MIN_SIZES,
    RetinaFace,
    RetinaFaceDetector,
    encode_boxes,
    load_retinaface,
    prior_boxes,
)
from maskwatch.models.weights import save_model_file
from maskwatch.train.engine import optimisation_step, save_checkpoint, seed_everything, warmup_cosine
from maskwatch.train.engine import resume as resume_checkpoint
from maskwatch.train.presets import RetinaFacePreset, retinaface_preset
from maskwatch.types import CLASS_NAMES

TRAIN_MIN_SIZES = (PRETRAINED_MIN_SIZES[0], PRETRAINED_MIN_SIZES[1], (128, 384))
"""Anchors used for fine-tuning a WIDER FACE checkpoint: those it decodes with (8 px anchors at stride 8 suit the many
small faces of the scenes), except the largest, raised from 256 to 384 px so that a face filling a close-up frame
(400-600 px at the 640 px input) has an anchor to start from instead of being boxed in parts."""


@dataclass
class Settings:
    """Hyper-parameters of a run (stored in checkpoints and in the model file's meta)."""

    input_size: int = 640
    crop_size: int = 480
    batch_size: int = 8
    lr: float = 1e-3
    weight_decay: float = 5e-4
    momentum: float = 0.9
    warmup_steps: int = 50
    pos_iou: float = 0.35
    neg_pos_ratio: int = 3
    loc_weight: float = 2.0
    min_face_px: float = 2.0
    seed: int = 0
    augmentation: RetinaFacePreset = RetinaFacePreset()


# --- augmentation
def photometric(image: np.ndarray, rng: random.Random) -> np.ndarray:
    """Random brightness, contrast, saturation and hue changes (each with probability 1/2)."""
    pixels = image.astype(np.float32)
    if rng.random() < 0.5:
        pixels += rng.uniform(-32, 32)
    if rng.random() < 0.5:
        pixels *= rng.uniform(0.6, 1.4)
    img = np.clip(pixels, 0, 255).astype(np.uint8)
    if rng.random() < 0.5:
        hsv = cv2.cvtColor(img, cv2.COLOR_BGR2HSV).astype(np.int16)
        hsv[..., 0] = (hsv[..., 0] + rng.randint(-9, 9)) % 180
        hsv[..., 1] = np.clip(hsv[..., 1] * rng.uniform(0.6, 1.4), 0, 255)
        img = np.asarray(cv2.cvtColor(hsv.astype(np.uint8), cv2.COLOR_HSV2BGR), np.uint8)
    return img


def augment(image: np.ndarray, boxes: np.ndarray, rng: random.Random, s: Settings) -> tuple[np.ndarray, np.ndarray]:
    """Scale jitter around the inference scale (or a close-up), a random ``crop_size`` square crop that keeps faces
    (by centre), horizontal flip and photometric jitter, as ``s.augmentation`` sets them.
    Returns (crop HxWx3 uint8, boxes (N, 4) in crop pixels)."""
    crop, kept, _ = augment_with_ignore(image, boxes, np.zeros((0, 4), np.float32), rng, s)
    return crop, kept


def augment_with_ignore(
    image: np.ndarray, boxes: np.ndarray, ignore: np.ndarray, rng: random.Random, s: Settings
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`augment` that also carries ``ignore`` regions (faces nobody annotated for sure) through the same
    geometry. Returns (crop, boxes, ignore boxes), both in crop pixels."""
    n_faces = len(boxes)
    boxes = np.concatenate([boxes.reshape(-1, 4), ignore.reshape(-1, 4)]).astype(np.float32)
    a = s.augmentation
    h, w = image.shape[:2]
    c = s.crop_size
    focus = _closeup_face(boxes[:n_faces], rng, a)
    if focus is not None:  # a close-up: this face fills a share closeup_fill of the crop, as at a shop entrance
        side = max(boxes[focus, 2] - boxes[focus, 0], boxes[focus, 3] - boxes[focus, 1])
        scale = rng.uniform(*a.closeup_fill) * c / side
    else:
        scale = s.input_size / max(h, w) * rng.uniform(*a.scale_jitter)
    img = cv2.resize(image, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_LINEAR)
    b = boxes * scale
    h, w = img.shape[:2]
    centres = (b[:, :2] + b[:, 2:]) / 2
    for attempt in range(10):
        if focus is not None:  # a crop that holds the whole focus face (as far as the image allows)
            fx1, fy1, fx2, fy2 = b[focus]
            x0 = rng.randint(*sorted((max(0, min(int(fx2) - c, w - c)), max(0, min(int(fx1), w - c)))))
            y0 = rng.randint(*sorted((max(0, min(int(fy2) - c, h - c)), max(0, min(int(fy1), h - c)))))
        else:
            x0 = rng.randint(0, max(0, w - c))
            y0 = rng.randint(0, max(0, h - c))
        inside = (centres[:, 0] >= x0) & (centres[:, 0] < x0 + c) & (centres[:, 1] >= y0) & (centres[:, 1] < y0 + c)
        if inside[:n_faces].any() or n_faces == 0 or attempt == 9:
            break
    canvas = np.empty((c, c, 3), np.uint8)
    canvas[:] = np.asarray(BGR_MEAN, np.uint8)
    patch = img[y0 : y0 + c, x0 : x0 + c]
    canvas[: patch.shape[0], : patch.shape[1]] = patch
    is_face = np.arange(len(b)) < n_faces
    b, is_face = b[inside] - np.array([x0, y0, x0, y0], np.float32), is_face[inside]
    b[:, [0, 2]] = b[:, [0, 2]].clip(0, patch.shape[1])
    b[:, [1, 3]] = b[:, [1, 3]].clip(0, patch.shape[0])
    big = np.minimum(b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]) >= s.min_face_px
    b, is_face = b[big], is_face[big]
    if rng.random() < a.flip_prob:
        canvas = canvas[:, ::-1]
        b = np.stack([c - b[:, 2], b[:, 1], c - b[:, 0], b[:, 3]], axis=1)
    canvas = np.ascontiguousarray(canvas)
    b = b.astype(np.float32).reshape(-1, 4)
    return photometric(canvas, rng) if a.photometric else canvas, b[is_face], b[~is_face]


def blank_frame(size: int, rng: random.Random) -> np.ndarray:
    """An empty ``size`` x ``size`` frame: a flat colour (dark in half the draws), a soft gradient and sensor noise."""
    level = rng.uniform(0, 40) if rng.random() < 0.5 else rng.uniform(0, 255)
    colour = np.clip(level + np.array([rng.uniform(-10, 10) for _ in range(3)]), 0, 255)
    ramp = np.linspace(-1.0, 1.0, size, dtype=np.float32) * rng.uniform(0, 20)
    ramp = ramp[None, :] if rng.random() < 0.5 else ramp[:, None]
    img = np.broadcast_to(colour[None, None, :].astype(np.float32) + ramp[..., None], (size, size, 3))
    noise = np.random.default_rng(rng.getrandbits(32)).normal(0.0, rng.uniform(0, 6), img.shape)
    return np.clip(img + noise, 0, 255).astype(np.uint8)


def _closeup_face(boxes: np.ndarray, rng: random.Random, a: RetinaFacePreset) -> int | None:
    """With probability ``closeup_prob``, the index of a face (at least ``closeup_min_face`` px) to zoom in on."""
    if len(boxes) == 0 or rng.random() >= a.closeup_prob:
        return None
    sides = np.maximum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1])
    candidates = np.flatnonzero(sides >= a.closeup_min_face)
    return int(candidates[rng.randrange(len(candidates))]) if len(candidates) else None


# --- matching, loss
def point_form(priors: torch.Tensor) -> torch.Tensor:
    return torch.cat([priors[:, :2] - priors[:, 2:] / 2, priors[:, :2] + priors[:, 2:] / 2], dim=1)


def match(
    gt_xyxy: torch.Tensor,
    priors: torch.Tensor,
    pos_iou: float,
    min_matches: int = 0,
    ignore_xyxy: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Assign faces (normalised xyxy) to priors: IoU >= ``pos_iou``, plus each face's best prior.

    ``min_matches`` > 0: a face with fewer positive priors than that also takes its next-best priors (IoU >= 0.1,
    not already taken) up to that number, as S3FD's scale-compensation matching does, so that small faces, which
    overlap few anchors well, get as many training signals as large ones. Priors that are not positive and overlap
    an ``ignore_xyxy`` region (IoU >= 0.3) get label -1: no loss. Returns (labels (P,) -1/0/1, loc targets (P, 4))."""
    labels, targets = _match_faces(gt_xyxy, priors, pos_iou, min_matches)
    if ignore_xyxy is not None and len(ignore_xyxy):
        near = box_iou(ignore_xyxy, point_form(priors)).max(0).values >= 0.3
        labels[near & (labels == 0)] = -1
    return labels, targets


def _match_faces(
    gt_xyxy: torch.Tensor, priors: torch.Tensor, pos_iou: float, min_matches: int
) -> tuple[torch.Tensor, torch.Tensor]:
    n_priors = len(priors)
    if len(gt_xyxy) == 0:
        return torch.zeros(n_priors, dtype=torch.long), torch.zeros(n_priors, 4)
    iou = box_iou(gt_xyxy, point_form(priors))  # (G, P)
    best_gt_iou, best_gt = iou.max(0)
    best_prior = iou.argmax(1)
    best_gt_iou[best_prior] = 2.0
    best_gt[best_prior] = torch.arange(len(gt_xyxy))
    if min_matches > 0:
        _compensate(iou, best_gt_iou, best_gt, pos_iou, min_matches)
    labels = (best_gt_iou >= pos_iou).long()
    return labels, encode_boxes(gt_xyxy[best_gt], priors)


def _compensate(iou: torch.Tensor, best_gt_iou: torch.Tensor, best_gt: torch.Tensor, pos_iou: float, k: int) -> None:
    """Give each face with fewer than ``k`` positive priors its next-best free priors (IoU >= 0.1), in place."""
    positive = best_gt_iou >= pos_iou
    counts = torch.bincount(best_gt[positive], minlength=len(iou))
    top_iou, top_idx = iou.topk(min(k, iou.shape[1]), dim=1)
    for g in torch.nonzero(counts < k).flatten().tolist():
        missing = k - int(counts[g])
        for v, p in zip(top_iou[g].tolist(), top_idx[g].tolist(), strict=True):
            if missing == 0 or v < 0.1:
                break
            if not positive[p]:
                best_gt_iou[p], best_gt[p], positive[p] = 2.0, g, True
                missing -= 1


def multibox_loss(
    loc: torch.Tensor, logits: torch.Tensor, labels: torch.Tensor, loc_t: torch.Tensor, s: Settings
) -> tuple[torch.Tensor, torch.Tensor]:
    """Smooth-L1 box loss on positives and cross-entropy with 3:1 hard negative mining, both per positive."""
    pos = labels > 0
    n_pos = pos.sum().clamp(min=1).float()
    loss_loc = F.smooth_l1_loss(loc[pos], loc_t[pos], reduction="sum") / n_pos
    ce = F.cross_entropy(logits.reshape(-1, 2), labels.reshape(-1), reduction="none", ignore_index=-1)
    ce = ce.view_as(labels)
    with torch.no_grad():
        mining = ce.clone()
        mining[pos | (labels < 0)] = 0
        rank = mining.argsort(dim=1, descending=True).argsort(dim=1)
        n_neg = (s.neg_pos_ratio * pos.sum(1, keepdim=True)).clamp(min=s.neg_pos_ratio, max=labels.shape[1] - 1)
        neg = rank < n_neg
    loss_cls = ce[pos | neg].sum() / n_pos
    return loss_loc, loss_cls


# --- engine
def make_batches(n: int, batch_size: int, rng: random.Random, weights: list[float] | None = None) -> list[list[int]]:
    """An epoch's batches: every scene once in random order, or ``n`` draws with replacement by ``weights``."""
    if weights is None or len(set(weights)) <= 1:
        order = list(range(n))
        rng.shuffle(order)
    else:
        order = rng.choices(range(n), weights=weights, k=n)
    return [order[i : i + batch_size] for i in range(0, n, batch_size)]


def scene_weights(items: list[AnnotatedImage], unmasked_weight: float) -> list[float]:
    """Draw weight per scene: ``unmasked_weight`` for a scene with an unmasked face, 1 for the others."""
    unmasked = CLASS_NAMES.index("without_mask")
    return [unmasked_weight if np.any(it.class_id == unmasked) else 1.0 for it in items]


def train_one_epoch(
    model: RetinaFace,
    images: list[np.ndarray],
    items: list[AnnotatedImage],
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    priors: torch.Tensor,
    s: Settings,
    rng: random.Random,
    device: torch.device,
    epoch: int,
    ignores: list[np.ndarray] | None = None,
) -> float:
    """One pass over the training images (``ignores``: per image, regions that get no loss); raises on a
    non-finite loss. Returns the mean loss."""
    model.train()
    total, steps = 0.0, 0
    weights = scene_weights(items, s.augmentation.unmasked_weight)
    bar = tqdm(make_batches(len(images), s.batch_size, rng, weights), desc=f"epoch {epoch}", leave=False)
    for batch in bar:
        crops, labels, targets = [], [], []
        for i in batch:
            no_region = np.zeros((0, 4), np.float32)
            crop, boxes, ignore = augment_with_ignore(
                images[i], items[i].xyxy, ignores[i] if ignores else no_region, rng, s
            )
            if s.augmentation.blank_prob and rng.random() < s.augmentation.blank_prob:
                crop, boxes, ignore = blank_frame(s.crop_size, rng), no_region, no_region
            lab, tgt = match(
                torch.from_numpy(boxes) / s.crop_size,
                priors,
                s.pos_iou,
                s.augmentation.small_face_matches,
                torch.from_numpy(ignore) / s.crop_size,
            )
            crops.append(torch.from_numpy(crop).permute(2, 0, 1))
            labels.append(lab)
            targets.append(tgt)
        x = torch.stack(crops).to(device)
        loc, logits, _ = model(x)
        loss_loc, loss_cls = multibox_loss(
            loc, logits, torch.stack(labels).to(device), torch.stack(targets).to(device), s
        )
        value = optimisation_step(s.loc_weight * loss_loc + loss_cls, optimizer, scheduler, epoch)
        total += value
        steps += 1
        bar.set_postfix(loss=f"{value:.3f}", lr=f"{scheduler.get_last_lr()[0]:.1e}")
    return total / max(steps, 1)


@torch.inference_mode()
def evaluate(
    model: RetinaFace, images: list[np.ndarray], items: list[AnnotatedImage], input_size: int, min_sizes
) -> float:
    """Face AP@0.5 (all classes as one) of ``model`` on the given images."""
    detector = RetinaFaceDetector(model=model, input_size=input_size, score_threshold=0.05, min_sizes=min_sizes)
    dets = [detector.detect(img) for img in images]
    ap, _, _ = average_precision([d.xyxy for d in dets], [d.det_score for d in dets], [it.xyxy for it in items])
    model.train()
    return ap


def build_model(init: Path | None) -> tuple[RetinaFace, tuple]:
    """The net to fine-tune (from ``init``, a raw pretrained or maskwatch model file, or random) and its anchors."""
    if init is None:
        return RetinaFace(), TRAIN_MIN_SIZES
    model, init_meta = load_retinaface(init)
    pretrained = str(init_meta.get("source", "")).startswith("pretrained:")
    stored = tuple(tuple(m) for m in init_meta.get("min_sizes", TRAIN_MIN_SIZES))
    return model, TRAIN_MIN_SIZES if pretrained else stored


def with_pseudo_labels(
    items: list[AnnotatedImage], pseudo: Path | list[Path] | None
) -> tuple[list[AnnotatedImage], list[np.ndarray] | None]:
    """The scenes with at least one face, each with a teacher's extra faces added (class -1: unknown) and its
    ignore regions, then the teacher-labelled photos of ``pseudo``'s files (None without ``pseudo``)."""
    if not pseudo:
        return [it for it in items if len(it.xyxy)], None
    from maskwatch.train.pseudo import read_photo_scenes, read_pseudo_labels

    files = [Path(pseudo)] if isinstance(pseudo, str | Path) else [Path(p) for p in pseudo]
    labels = {stem: v for f in files for stem, v in read_pseudo_labels(f).items()}
    out, ignores, added = [], [], 0
    for it in items:
        extra = labels.get(it.image_path.stem, {})
        boxes = extra.get("extra", np.zeros((0, 4), np.float32))
        it = replace(
            it,
            xyxy=np.concatenate([it.xyxy, boxes]).astype(np.float32),
            class_id=np.concatenate([it.class_id, np.full(len(boxes), -1, np.int64)]),
        )
        if len(it.xyxy):
            out.append(it)
            ignores.append(extra.get("ignore", np.zeros((0, 4), np.float32)))
            added += len(boxes)
    for f in files:
        for path, faces, ignore in read_photo_scenes(f):
            out.append(AnnotatedImage(path, faces, np.full(len(faces), -1, np.int64), (0, 0)))
            ignores.append(ignore)
            added += len(faces)
    logger.info("pseudo-labels: {} extra faces, {} ignore regions, {} scenes", added, sum(map(len, ignores)), len(out))
    return out, ignores


def load_images(items: list[AnnotatedImage]) -> list[np.ndarray]:
    images = []
    for it in items:
        img = cv2.imread(str(it.image_path), cv2.IMREAD_COLOR)
        if img is None:
            raise MaskwatchError(f"cannot read image {it.image_path}")
        images.append(img)
    return images


def train(
    data: Path,
    split: Path | None,
    epochs: int,
    device: str,
    out: Path,
    resume: Path | None = None,
    init: Path | None = None,
    val_split: Path | None = None,
    input_size: int = 640,
    batch_size: int = 8,
    seed: int = 0,
    lr: float = 1e-3,
    crop_size: int = 480,
    ckpt_dir: Path | None = None,
    preset: str = "default",
    pseudo: Path | list[Path] | None = None,
) -> Path:
    """Fine-tune RetinaFace on ``data`` (VOC), checkpoint each epoch next to ``out``, write the model file ``out``.

    ``init`` is a starting weights file (raw pretrained or maskwatch model file); ``resume`` a checkpoint of this
    program. Checkpoints ``epoch_NNN.pt`` and ``last.pt`` go to ``ckpt_dir`` (default ``runs/detector``).
    ``preset`` names the augmentation (:data:`maskwatch.train.presets.PRESETS` ``["retinaface"]``); ``pseudo`` a
    teacher's pseudo-labels (:mod:`maskwatch.train.pseudo`): extra faces to train on and regions to ignore.
    The last epoch's model is written (not the best val epoch: val is for measurement only).
    """
    s = Settings(input_size=input_size, crop_size=min(crop_size, input_size), batch_size=batch_size, lr=lr, seed=seed)
    s = replace(s, augmentation=retinaface_preset(preset))
    seed_everything(seed)
    rng = random.Random(seed)
    dev = torch.device(device)
    out = Path(out)
    ckpt_dir = Path(ckpt_dir) if ckpt_dir is not None else Path("runs") / "detector"

    items, ignores = with_pseudo_labels(read_voc(data, split), pseudo)
    images = load_images(items)
    val_items = read_voc(data, val_split) if val_split is not None else []
    val_images = load_images(val_items)
    logger.info("training on {} images, measuring on {} val images", len(items), len(val_items))

    model, min_sizes = build_model(init)
    model.to(dev)
    priors = prior_boxes(s.crop_size, s.crop_size, min_sizes)
    optimizer = torch.optim.SGD(model.parameters(), lr=s.lr, momentum=s.momentum, weight_decay=s.weight_decay)
    total_steps = max(1, epochs * math.ceil(len(items) / s.batch_size))

    scheduler = warmup_cosine(optimizer, total_steps, s.warmup_steps)
    start_epoch, history = 0, list[dict]()
    if resume is not None:
        start_epoch, history = resume_checkpoint(resume, model, optimizer, scheduler)
        rng.seed(seed + start_epoch)

    args = {
        "data": str(data),
        "split": str(split),
        "val_split": str(val_split),
        "init": str(init),
        "epochs": epochs,
        "preset": preset,
        "pseudo": [str(p) for p in pseudo] if isinstance(pseudo, list) else str(pseudo),
        **asdict(s),
        "min_sizes": [list(m) for m in min_sizes],
    }
    for epoch in range(start_epoch, epochs):
        loss = train_one_epoch(model, images, items, optimizer, scheduler, priors, s, rng, dev, epoch, ignores)
        ap = evaluate(model, val_images, val_items, s.input_size, min_sizes) if val_items else float("nan")
        history.append({"epoch": epoch, "loss": loss, "val_face_ap50": ap})
        logger.info("epoch {}: loss {:.4f}, val face AP@0.5 {:.4f}", epoch, loss, ap)
        save_checkpoint(ckpt_dir, epoch, model, optimizer, scheduler, args, history)

    meta = {
        "input_size": s.input_size,
        "min_sizes": [list(m) for m in min_sizes],
        "train": args,
        "history": history,
        "derived_from": str(init) if init is not None else "random init",
    }
    save_model_file(out, ARCH, model.state_dict(), meta)
    logger.info("wrote {}", out)
    return out
