"""The 3-class mask classifier: a MobileNetV1 x0.25 backbone, global pooling and a linear head.

:class:`MaskClassifierNet` takes raw BGR pixel values (0..255, float, NCHW); colour order and
ImageNet mean/std live inside it as buffers. Its Conv-BN pairs are folded for inference
(:func:`maskwatch.models.fuse.fused_copy`); int8 runs on the onnx engine (:mod:`maskwatch.models.onnx_quant`).
:class:`MaskClassifier` is the facade the pipeline uses (the ``Classifier`` protocol).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from maskwatch.errors import WeightsError
from maskwatch.models.fuse import fused_copy
from maskwatch.models.mobilenet import MobileNetV1x025
from maskwatch.models.prep import resize_crop
from maskwatch.models.weights import load_checked, load_model_file, load_state_dict_strict, refuse_torch_int8
from maskwatch.types import CLASS_NAMES

ARCH = "mask_classifier_mnv1_025"
"""The ``arch`` tag of classifier model files."""

DEFAULT_INPUT_SIZE = 80
"""Square input side in pixels, chosen by measured CPU cost (see the model card)."""

IMAGENET_MEAN_RGB = (0.485, 0.456, 0.406)
IMAGENET_STD_RGB = (0.229, 0.224, 0.225)


class MaskClassifierNet(nn.Module):
    """Raw BGR (0..255) NCHW float input -> (N, num_classes) logits."""

    pixel_mean_bgr: torch.Tensor
    pixel_std_bgr: torch.Tensor

    def __init__(self, num_classes: int = len(CLASS_NAMES), dropout: float = 0.2) -> None:
        super().__init__()
        # Normalisation in BGR order, then a channel flip to the RGB order the ImageNet weights expect.
        mean_bgr = torch.tensor(IMAGENET_MEAN_RGB[::-1]).view(1, 3, 1, 1) * 255.0
        std_bgr = torch.tensor(IMAGENET_STD_RGB[::-1]).view(1, 3, 1, 1) * 255.0
        self.register_buffer("pixel_mean_bgr", mean_bgr)
        self.register_buffer("pixel_std_bgr", std_bgr)
        self.backbone = MobileNetV1x025()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten(1)
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(MobileNetV1x025.out_channels, num_classes)

    def preprocess(self, x_bgr: torch.Tensor) -> torch.Tensor:
        """Raw BGR 0..255 -> normalised RGB (float, outside the quantized region)."""
        return ((x_bgr - self.pixel_mean_bgr) / self.pixel_std_bgr).flip(1)

    def forward(self, x_bgr: torch.Tensor) -> torch.Tensor:
        x = self.preprocess(x_bgr)
        x = self.flatten(self.pool(self.backbone(x)))
        return self.head(self.dropout(x))

    def fused_for_inference(self) -> nn.Module:
        """An eval-mode copy with every Conv-BN-ReLU folded into one ConvReLU2d (same outputs, fewer ops)."""
        return fused_copy(self)


def build_classifier_net(
    num_classes: int = len(CLASS_NAMES), pretrained_backbone: str | Path | None = None
) -> MaskClassifierNet:
    """A classifier network with random init, or with the ImageNet MobileNetV1 x0.25 backbone if a path is given.

    ``pretrained_backbone`` is ``mobilenetv1_x0.25_imagenet.tar`` (checked against its folder's SHA256SUMS);
    its ``module.stage*`` tensors must fit the backbone exactly, its ImageNet ``fc`` is dropped.
    """
    net = MaskClassifierNet(num_classes)
    if pretrained_backbone is not None:
        checkpoint = load_checked(pretrained_backbone)
        state = checkpoint.get("state_dict", checkpoint) if isinstance(checkpoint, dict) else checkpoint
        backbone_state = {
            k.removeprefix("module."): v for k, v in state.items() if not k.removeprefix("module.").startswith("fc.")
        }
        load_state_dict_strict(net.backbone, backbone_state, pretrained_backbone)
    return net


def crops_to_tensor(crops_bgr: list[np.ndarray], size: int) -> torch.Tensor:
    """Stack resized uint8 BGR crops into the network's (N, 3, size, size) float input."""
    batch = np.stack([resize_crop(c, size) for c in crops_bgr])
    return torch.from_numpy(batch).permute(0, 3, 1, 2).float()


class MaskClassifier:
    """Classifies face crops into ``CLASS_NAMES`` with a trained ``mask_classifier_mnv1_025`` model file.

    ``net`` is the float :class:`MaskClassifierNet` as loaded (for export and quantization); ``classify`` runs a
    copy with Conv-BN-ReLU fused, which gives the same outputs with fewer ops. Old torch int8 files are refused.
    """

    def __init__(self, weights: str | Path, input_size: int | None = None, device: str = "cpu") -> None:
        state_dict, meta = load_model_file(weights, ARCH)
        names = meta.get("class_names", CLASS_NAMES)
        names = tuple(names) if isinstance(names, list | tuple) else names
        if names != CLASS_NAMES:
            raise WeightsError(f"weights file {weights} has classes {names}, expected {CLASS_NAMES}")
        self.meta = meta
        try:
            self.input_size = int(input_size or meta.get("input_size", DEFAULT_INPUT_SIZE))
        except (TypeError, ValueError):
            bad = repr(meta.get("input_size"))[:40]
            raise WeightsError(f"weights file {weights} has an invalid input_size {bad}") from None
        if meta.get("precision") == "int8":
            refuse_torch_int8(weights)
        self.precision = "fp32"
        self.device = torch.device(device)
        self.net = MaskClassifierNet(len(CLASS_NAMES))
        load_state_dict_strict(self.net, state_dict, weights)
        self.net.eval().to(self.device)
        self._fused = self.net.fused_for_inference()

    @classmethod
    def from_net(
        cls, net: MaskClassifierNet, input_size: int = DEFAULT_INPUT_SIZE, device: str = "cpu"
    ) -> MaskClassifier:
        """Wrap an in-memory network (random init in tests, or a model being trained)."""
        obj = cls.__new__(cls)
        obj.meta = {"input_size": input_size, "class_names": list(CLASS_NAMES)}
        obj.input_size = input_size
        obj.precision = "fp32"
        obj.device = torch.device(device)
        obj.net = net.eval().to(obj.device)
        obj._fused = obj.net.fused_for_inference()
        return obj

    def classify(self, crops_bgr: list[np.ndarray]) -> np.ndarray:
        """(N, 3) softmax probabilities for N BGR uint8 crops of any sizes, run as one batch."""
        if len(crops_bgr) == 0:
            return np.zeros((0, len(CLASS_NAMES)), np.float32)
        x = crops_to_tensor(crops_bgr, self.input_size).to(self.device)
        with torch.inference_mode():
            prob = torch.softmax(self._fused(x).float(), dim=1)
        return prob.cpu().numpy().astype(np.float32)
