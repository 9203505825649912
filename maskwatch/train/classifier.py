"""Training program of the mask classifier (``maskwatch.models.classifier``).

Jittered, augmented face crops cut on the fly from the VOC scenes' boxes, plus optional ready-made crops, with
the rare ``mask_weared_incorrect`` class oversampled (see :mod:`maskwatch.train.classifier_crops`); AdamW with
warm-up and cosine decay; validation on the val split's boxes cut with the pipeline's margin and no jitter.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from loguru import logger
from torch import nn
from torch.utils.data import DataLoader, WeightedRandomSampler
from tqdm import tqdm

from maskwatch.data.negatives import non_face_rates as summarise_non_face
from maskwatch.data.voc import read_voc
from maskwatch.errors import MaskwatchError
from maskwatch.models.classifier import ARCH, build_classifier_net
from maskwatch.models.efficientnet_lite import TEACHER_ARCH, TeacherClassifierNet, build_teacher_net
from maskwatch.models.weights import load_model_file, load_state_dict_strict, save_model_file
from maskwatch.train.classifier_crops import (
    MIN_TRAIN_BOX_SIDE,
    NOT_A_FACE,
    Recipe,
    Sample,
    TrainCrops,
    non_face_tensors,
    sample_weights,
    scan_extra_crops,
    val_tensors,
    voc_samples,
)
from maskwatch.train.engine import optimisation_step, save_checkpoint, seed_everything, warmup_cosine
from maskwatch.train.engine import resume as resume_engine
from maskwatch.types import CLASS_NAMES

TRAIN_INPUT_SIZE = 112
"""Crop side the shipped classifier is trained at (stored as ``meta.input_size``): 112 px, up from 80, labels the
masks worn wrongly and the unmasked faces better at 0.2 ms more per 4 crops (see weights/README.md)."""


def metrics_from_confusion(confusion: np.ndarray) -> dict:
    """Per-class precision/recall and balanced accuracy (mean recall over classes present) of a true x pred matrix."""
    tp = np.diag(confusion).astype(float)
    support, predicted = confusion.sum(1), confusion.sum(0)
    recall = np.divide(tp, support, out=np.zeros_like(tp), where=support > 0)
    precision = np.divide(tp, predicted, out=np.zeros_like(tp), where=predicted > 0)
    present = support > 0
    return {
        "confusion": confusion.tolist(),
        "precision": {n: round(float(p), 4) for n, p in zip(CLASS_NAMES, precision, strict=True)},
        "recall": {n: round(float(r), 4) for n, r in zip(CLASS_NAMES, recall, strict=True)},
        "balanced_accuracy": round(float(recall[present].mean()) if present.any() else 0.0, 4),
        "accuracy": round(float(tp.sum() / max(confusion.sum(), 1)), 4),
    }


@torch.inference_mode()
def evaluate(net: nn.Module, x: torch.Tensor, y: torch.Tensor, device: torch.device, batch_size: int = 256) -> dict:
    """Confusion matrix (rows: true, columns: predicted) and the metrics derived from it."""
    net.eval()
    preds = [net(x[i : i + batch_size].to(device)).argmax(1).cpu() for i in range(0, len(x), batch_size)]
    pred = torch.cat(preds) if preds else torch.zeros(0, dtype=torch.long)
    confusion = np.zeros((len(CLASS_NAMES), len(CLASS_NAMES)), np.int64)
    np.add.at(confusion, (y.numpy(), pred.numpy()), 1)
    return metrics_from_confusion(confusion)


class SoftTargetLoss(nn.Module):
    """Cross-entropy against label-smoothed one-hot targets; a :data:`NOT_A_FACE` row's target is uniform."""

    def __init__(self, num_classes: int, label_smoothing: float) -> None:
        super().__init__()
        self.num_classes, self.smoothing = num_classes, label_smoothing

    def forward(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        k = self.num_classes
        target = torch.full_like(logits, self.smoothing / k)
        face = y != NOT_A_FACE
        target[face] = target[face].scatter(1, y[face].unsqueeze(1), 1.0 - self.smoothing + self.smoothing / k)
        target[~face] = 1.0 / k
        return -(target * torch.log_softmax(logits, dim=1)).sum(1).mean()


@torch.inference_mode()
def non_face_rates(net: nn.Module, x: torch.Tensor, device: torch.device, batch_size: int = 256) -> dict:
    """On crops holding no face: the share called ``with_mask`` at probability >= 0.5, and any class >= 0.5."""
    net.eval()
    if not len(x):
        return {"crops": 0}
    prob = torch.cat([net(x[i : i + batch_size].to(device)).softmax(1).cpu() for i in range(0, len(x), batch_size)])
    return summarise_non_face(prob.numpy())


class DistillationLoss(nn.Module):
    """``(1 - alpha)`` times the label loss plus ``alpha`` times the KL divergence from the teacher's softened
    probabilities (temperature ``temperature``, scaled by its square as in Hinton et al. 2015)."""

    def __init__(self, label_loss: nn.Module, alpha: float, temperature: float) -> None:
        super().__init__()
        self.label_loss, self.alpha, self.t = label_loss, alpha, temperature

    def forward(self, logits: torch.Tensor, y: torch.Tensor, teacher_logits: torch.Tensor) -> torch.Tensor:
        soft = torch.softmax(teacher_logits / self.t, dim=1)
        kl = (soft * (torch.log(soft.clamp(min=1e-8)) - torch.log_softmax(logits / self.t, dim=1))).sum(1).mean()
        return (1 - self.alpha) * self.label_loss(logits, y) + self.alpha * self.t**2 * kl


def train_one_epoch(
    net: nn.Module,
    loader: DataLoader,
    optimizer: torch.optim.Optimizer,
    scheduler,
    criterion: nn.Module,
    device: torch.device,
    epoch: int,
    teacher: nn.Module | None = None,
) -> float:
    """One pass over ``loader`` (with ``teacher``: ``criterion`` also takes its logits on the same crops); stops
    with an error on a non-finite loss. Returns the mean loss."""
    net.train()
    total, count = 0.0, 0
    progress = tqdm(loader, desc=f"epoch {epoch}", leave=False, dynamic_ncols=True)
    for x, y in progress:
        x, y = x.to(device), y.to(device)
        if teacher is not None:
            with torch.no_grad():
                teacher_logits = teacher(x)
            loss = criterion(net(x), y, teacher_logits)
        else:
            loss = criterion(net(x), y)
        value = optimisation_step(loss, optimizer, scheduler, epoch)
        total, count = total + value * len(y), count + len(y)
        progress.set_postfix(loss=f"{total / count:.4f}", lr=f"{scheduler.get_last_lr()[0]:.2e}")
    return total / max(count, 1)


def training_samples(
    data: Path, split: Path | None, extra_crops: Path | None, recipe: Recipe, seed: int, detector: Path | None
) -> tuple[list[Sample], int]:
    """The training crops: the scenes' annotated faces, the faces and false alarms ``detector`` finds in them,
    random background boxes ("not a face"), then the extra crops (their number is returned too)."""
    scenes = read_voc(data, split)
    voc = voc_samples(scenes, MIN_TRAIN_BOX_SIDE)
    mined: list[Sample] = []
    if detector is not None and (recipe.detector_faces or recipe.negative_share > 0):
        from maskwatch.train.mining import detector_samples

        faces, false_alarms = detector_samples(scenes, detector)
        mined = (faces if recipe.detector_faces else []) + (false_alarms if recipe.negative_share > 0 else [])
    if recipe.negative_share > 0 and recipe.negatives_per_scene > 0:
        from maskwatch.train.mining import background_samples

        mined += background_samples(scenes, recipe.negatives_per_scene, seed)
    extra = scan_extra_crops(Path(extra_crops)) if extra_crops else []
    if not voc + extra:
        raise MaskwatchError(f"no training faces in {data}" + (f" split {split}" if split else ""))
    n_neg = sum(s.label == NOT_A_FACE for s in mined)
    logger.info(
        f"training crops: {len(voc)} annotated faces {np.bincount([s.label for s in voc], minlength=3).tolist()}, "
        f"{len(mined) - n_neg} detector-cut faces, {n_neg} not-a-face crops, {len(extra)} extra crops"
    )
    return voc + mined + extra, len(extra)


def make_loader(dataset: TrainCrops, weights: torch.Tensor, batch_size: int, recipe: Recipe, generator) -> DataLoader:
    """Batches of ``recipe.samples_per_epoch`` weighted draws with replacement (at most 4 per sample on average)."""
    n_draws = max(batch_size, min(recipe.samples_per_epoch, 4 * len(dataset)))
    sampler = WeightedRandomSampler(weights.tolist(), n_draws, replacement=True, generator=generator)
    return DataLoader(
        dataset, batch_size=batch_size, sampler=sampler, num_workers=0, drop_last=len(dataset) > batch_size
    )


def make_optimizer(net: nn.Module, recipe: Recipe, total_steps: int):
    """AdamW (weight decay on the backbone's conv weights and the head's weight only) and its warm-up cosine."""
    decay = [p for n, p in net.named_parameters() if (p.ndim > 1 and "backbone" in n) or n == "head.weight"]
    no_decay = [p for p in net.parameters() if all(p is not q for q in decay)]
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": recipe.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=recipe.lr,
    )
    return optimizer, warmup_cosine(optimizer, total_steps, recipe.warmup_steps)


def log_epoch(epoch: int, loss: float, record: dict) -> None:
    if "val" in record:
        logger.info(
            f"epoch {epoch}: loss {loss:.4f}, val balanced acc {record['val']['balanced_accuracy']:.4f}, "
            f"recall {record['val']['recall']}, non-face {record.get('val_non_face')}, {record['seconds']} s"
        )
    else:
        logger.info(f"epoch {epoch}: loss {loss:.4f}, {record['seconds']} s")


def model_meta(input_size: int, recipe: Recipe, use_pretrained: bool, args: dict, history: list) -> dict:
    """The model file's meta: input contract, backbone, training arguments and every epoch's metrics."""
    if args.get("arch") == "efficientnet_lite0":
        backbone, init = "EfficientNet-Lite0", "ImageNet (efficientnet_lite0_imagenet.pth)"
    else:
        backbone, init = "MobileNetV1 x0.25", "ImageNet (mobilenetv1_x0.25_imagenet.tar)"
    return {
        "input_size": input_size,
        "class_names": list(CLASS_NAMES),
        "crop_margin": recipe.margin,
        "resize": "plain",
        "input": "raw BGR 0..255 NCHW float; normalisation inside the model",
        "backbone": backbone,
        "backbone_init": init if use_pretrained else "random",
        "training": args,
        "shipped_epoch": args["epochs"] - 1,
        "history": history,
        "val": history[-1].get("val") if history else None,
    }


def _run_args(data, split, extra_crops, detector, val_split, recipe: Recipe, **plain: Any) -> dict:
    """The training arguments stored in checkpoints and the model file (paths as strings)."""

    def text(path: Path | None) -> str | None:
        return str(path) if path else None

    return {
        "data": str(data),
        "split": text(split),
        "extra_crops": text(extra_crops),
        "detector": text(detector),
        "val_split": text(val_split),
        **plain,
        "recipe": {k: list(v) if isinstance(v, tuple) else v for k, v in recipe.__dict__.items()},
    }


def _val_data(data: Path, val_split: Path | None, input_size: int, recipe: Recipe) -> tuple[torch.Tensor, ...]:
    """The val split's face crops and labels, and its background crops (empty without a val split)."""
    scenes = read_voc(data, val_split) if val_split else []
    x, y = val_tensors(scenes, input_size, recipe.margin)
    return x, y, non_face_tensors(scenes, input_size, recipe.margin)


def _epoch_record(net: nn.Module, epoch: int, loss: float, seconds: float, val: tuple, dev: torch.device) -> dict:
    """One epoch's line of the history: loss, time and the val metrics; logged."""
    record: dict[str, Any] = {"epoch": epoch, "train_loss": round(loss, 5), "seconds": round(seconds, 1)}
    val_x, val_y, val_bg = val
    if len(val_y):
        record["val"] = evaluate(net, val_x, val_y, dev)
        record["val_non_face"] = non_face_rates(net, val_bg, dev)
    log_epoch(epoch, loss, record)
    return record


def _build_net(arch: str, pretrained: Path | None) -> nn.Module:
    if arch == "efficientnet_lite0":
        return build_teacher_net(len(CLASS_NAMES), pretrained)
    if arch != "mobilenet":
        raise MaskwatchError(f"unknown classifier arch {arch!r}; choose mobilenet or efficientnet_lite0")
    return build_classifier_net(len(CLASS_NAMES), pretrained)


def load_teacher(path: Path, device: torch.device) -> nn.Module:
    """A trained EfficientNet-Lite0 classifier (``--arch efficientnet_lite0``) in eval mode, for distillation."""
    state, _ = load_model_file(path, TEACHER_ARCH)
    net = TeacherClassifierNet(len(CLASS_NAMES))
    load_state_dict_strict(net, state, path)
    return net.eval().to(device)


def train(
    data: Path,
    split: Path | None,
    epochs: int,
    device: str,
    out: Path,
    resume: Path | None = None,
    extra_crops: Path | None = None,
    val_split: Path | None = None,
    input_size: int = TRAIN_INPUT_SIZE,
    batch_size: int = 64,
    seed: int = 0,
    checkpoint_dir: Path | None = None,
    pretrained: Path | None = None,
    recipe: Recipe | None = None,
    num_threads: int | None = None,
    detector: Path | None = None,
    arch: str = "mobilenet",
    teacher: Path | None = None,
    distill: tuple[float, float] = (0.5, 2.0),
) -> Path:
    """Train the mask classifier on VOC scenes (+ optional extra crops); write the model file ``out`` and return it.

    ``checkpoint_dir`` (default ``runs/classifier`` under the working directory) gets ``last.pt`` every epoch;
    ``resume`` continues from such a file. The last epoch of the cosine schedule is shipped (not the best val
    epoch, which would overfit the val split); val metrics of every epoch go into the model file's meta.
    ``pretrained`` is the ImageNet backbone (None or a missing file: random init). ``detector`` (a RetinaFace
    model file) cuts extra training faces and finds false alarms in the training scenes (see ``train.mining``).
    ``arch`` is ``mobilenet`` (the shipped classifier) or ``efficientnet_lite0`` (a teacher); ``teacher`` a
    teacher's model file to distil from, with ``distill`` = (weight of its soft targets, temperature).
    """
    recipe = recipe or Recipe()
    if num_threads:
        torch.set_num_threads(num_threads)
        cv2.setNumThreads(num_threads)
    seed_everything(seed)
    dev = torch.device(device)
    data, out = Path(data), Path(out)
    checkpoint_dir = Path(checkpoint_dir) if checkpoint_dir else Path.cwd() / "runs" / "classifier"
    checkpoint_dir.mkdir(parents=True, exist_ok=True)

    samples, n_extra = training_samples(data, split, extra_crops, recipe, seed, detector)
    val = _val_data(data, val_split, input_size, recipe)

    use_pretrained = pretrained is not None and Path(pretrained).is_file()
    if pretrained is not None and not use_pretrained:
        logger.warning(f"pretrained backbone {pretrained} not found; starting from random init")
    net = _build_net(arch, pretrained if use_pretrained else None).to(dev)
    teacher_net = load_teacher(teacher, dev) if teacher is not None else None
    dataset = TrainCrops(samples, input_size, recipe, seed)
    sampler_gen = torch.Generator()
    loader = make_loader(dataset, sample_weights(samples, n_extra, recipe), batch_size, recipe, sampler_gen)
    optimizer, scheduler = make_optimizer(net, recipe, epochs * len(loader))
    criterion: nn.Module = SoftTargetLoss(len(CLASS_NAMES), recipe.label_smoothing)
    criterion = criterion if teacher_net is None else DistillationLoss(criterion, *distill)
    args = _run_args(data, split, extra_crops, detector, val_split, recipe, epochs=epochs, input_size=input_size,
                     batch_size=batch_size, seed=seed, arch=arch,
                     pretrained=Path(pretrained).name if use_pretrained and pretrained is not None else None,
                     teacher=str(teacher) if teacher else None, distill=list(distill) if teacher else None)  # fmt: skip
    start_epoch, history = resume_engine(resume, net, optimizer, scheduler) if resume is not None else (0, [])

    for epoch in range(start_epoch, epochs):
        dataset.set_epoch(epoch)
        sampler_gen.manual_seed(seed * 1000 + epoch)
        t0 = time.perf_counter()
        loss = train_one_epoch(net, loader, optimizer, scheduler, criterion, dev, epoch, teacher_net)
        record = _epoch_record(net, epoch, loss, time.perf_counter() - t0, val, dev)
        history.append(record)
        save_checkpoint(checkpoint_dir, epoch, net, optimizer, scheduler, args, history)

    meta = model_meta(input_size, recipe, use_pretrained, args, history)
    digest = save_model_file(out, TEACHER_ARCH if arch == "efficientnet_lite0" else ARCH, net.state_dict(), meta)
    logger.info(f"wrote {out} (sha256 {digest[:12]}…)")
    return out
