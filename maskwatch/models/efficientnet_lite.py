"""EfficientNet-Lite0 (Tan & Le 2019; the "Lite" variant: no squeeze-excitation, ReLU6, fixed stem and head) and a
mask classifier built on it, used as the classifier's *teacher* in training (too slow for the run path).

Module names follow the published ImageNet checkpoint (``_conv_stem``, ``_blocks.N``, ``_conv_head``), so
``efficientnet_lite0_imagenet.pth`` loads strictly. Its input is RGB scaled as ``(x - 127) / 128``.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from maskwatch.models.weights import load_checked, load_state_dict_strict
from maskwatch.types import CLASS_NAMES

TEACHER_ARCH = "mask_classifier_efficientnet_lite0"
STAGES = ((1, 3, 1, 16, 1), (6, 3, 2, 24, 2), (6, 5, 2, 40, 2), (6, 3, 2, 80, 3), (6, 5, 1, 112, 3),
          (6, 5, 2, 192, 4), (6, 3, 1, 320, 1))  # fmt: skip
"""Per stage: expansion, kernel, stride of its first block, output channels, blocks."""
BN_EPS = 1e-3


def _bn(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=BN_EPS, momentum=0.01)


class MBConv(nn.Module):
    """Inverted residual: 1x1 expansion (skipped at ratio 1), depthwise kxk, 1x1 projection; ReLU6."""

    def __init__(self, inp: int, out: int, expand: int, kernel: int, stride: int) -> None:
        super().__init__()
        mid = inp * expand
        self.has_expand = expand != 1
        if self.has_expand:
            self._expand_conv = nn.Conv2d(inp, mid, 1, bias=False)
            self._bn0 = _bn(mid)
        self._depthwise_conv = nn.Conv2d(mid, mid, kernel, stride, kernel // 2, groups=mid, bias=False)
        self._bn1 = _bn(mid)
        self._project_conv = nn.Conv2d(mid, out, 1, bias=False)
        self._bn2 = _bn(out)
        self.residual = stride == 1 and inp == out
        self.act = nn.ReLU6(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.act(self._bn0(self._expand_conv(x))) if self.has_expand else x
        y = self._bn2(self._project_conv(self.act(self._bn1(self._depthwise_conv(y)))))
        return x + y if self.residual else y


class EfficientNetLite0(nn.Module):
    """The feature extractor: normalised RGB in, 1280 channels at stride 32 out."""

    out_channels = 1280

    def __init__(self) -> None:
        super().__init__()
        self._conv_stem = nn.Conv2d(3, 32, 3, 2, 1, bias=False)
        self._bn0 = _bn(32)
        blocks, inp = [], 32
        for expand, kernel, stride, out, repeats in STAGES:
            for i in range(repeats):
                blocks.append(MBConv(inp, out, expand, kernel, stride if i == 0 else 1))
                inp = out
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = nn.Conv2d(inp, self.out_channels, 1, bias=False)
        self._bn1 = _bn(self.out_channels)
        self.act = nn.ReLU6(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act(self._bn0(self._conv_stem(x)))
        for block in self._blocks:
            x = block(x)
        return self.act(self._bn1(self._conv_head(x)))


class TeacherClassifierNet(nn.Module):
    """Raw BGR (0..255) NCHW float input -> (N, num_classes) logits, on an EfficientNet-Lite0 body."""

    def __init__(self, num_classes: int = len(CLASS_NAMES), dropout: float = 0.2) -> None:
        super().__init__()
        self.backbone = EfficientNetLite0()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(EfficientNetLite0.out_channels, num_classes)

    def forward(self, x_bgr: torch.Tensor) -> torch.Tensor:
        x = (x_bgr.flip(1) - 127.0) / 128.0
        return self.head(self.dropout(self.pool(self.backbone(x)).flatten(1)))


def build_teacher_net(
    num_classes: int = len(CLASS_NAMES), pretrained: str | Path | None = None
) -> TeacherClassifierNet:
    """The teacher with random init, or with the ImageNet EfficientNet-Lite0 body (its ``_fc`` dropped)."""
    net = TeacherClassifierNet(num_classes)
    if pretrained is not None:
        checkpoint = load_checked(pretrained)
        state = checkpoint.get("state_dict", checkpoint) if isinstance(checkpoint, dict) else checkpoint
        load_state_dict_strict(net.backbone, {k: v for k, v in state.items() if not k.startswith("_fc.")}, pretrained)
    return net
