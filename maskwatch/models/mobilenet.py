"""The MobileNetV1 ×0.25 body shared by the mask classifier and RetinaFace.

Laid out as ``stage1..3`` of Conv-BN-activation triples (a full 3×3 stem, then depthwise-separable blocks), the
parameter names of both the ImageNet checkpoint and the WIDER FACE RetinaFace checkpoint (``body.stage*``), so
either loads with strict key and shape checks. The classifier uses plain ReLU (every block fuses); RetinaFace
keeps the checkpoints' LeakyReLU(0.1).
"""

from __future__ import annotations

import torch
from torch import nn


def conv_bn_act(
    inp: int, out: int, kernel: int, stride: int, groups: int = 1, slope: float | None = None
) -> list[nn.Module]:
    """A Conv-BN-ReLU triple (fusable), or Conv-BN-LeakyReLU(``slope``); the conv has no bias because BN follows."""
    return [
        nn.Conv2d(inp, out, kernel, stride, kernel // 2, groups=groups, bias=False),
        nn.BatchNorm2d(out),
        nn.ReLU(inplace=True) if slope is None else nn.LeakyReLU(slope, inplace=True),
    ]


def stem_block(inp: int, out: int, stride: int, slope: float | None = None) -> nn.Sequential:
    """Full 3x3 convolution (indices 0-2)."""
    return nn.Sequential(*conv_bn_act(inp, out, 3, stride, slope=slope))


def depthwise_block(inp: int, out: int, stride: int, slope: float | None = None) -> nn.Sequential:
    """Depthwise 3x3 (indices 0-2) then pointwise 1x1 (indices 3-5), each Conv-BN-activation."""
    return nn.Sequential(
        *conv_bn_act(inp, inp, 3, stride, groups=inp, slope=slope), *conv_bn_act(inp, out, 1, 1, slope=slope)
    )


class MobileNetV1x025(nn.Module):
    """MobileNetV1 with width 0.25 (8..256 channels), without its classifier. Output stride 32, 256 channels.

    ``slope`` None: ReLU everywhere (the ImageNet checkpoint was trained with LeakyReLU(0.1); fine-tuning adapts
    the weights), else LeakyReLU(``slope``). ``levels``: ``forward`` returns the stride 8, 16 and 32 feature maps
    (64/128/256 channels) instead of the last one only.
    """

    out_channels = 256

    def __init__(self, slope: float | None = None, levels: bool = False) -> None:
        super().__init__()
        self.levels = levels
        self.stage1 = nn.Sequential(
            stem_block(3, 8, 2, slope),
            depthwise_block(8, 16, 1, slope),
            depthwise_block(16, 32, 2, slope),
            depthwise_block(32, 32, 1, slope),
            depthwise_block(32, 64, 2, slope),
            depthwise_block(64, 64, 1, slope),
        )
        self.stage2 = nn.Sequential(
            depthwise_block(64, 128, 2, slope), *[depthwise_block(128, 128, 1, slope) for _ in range(5)]
        )
        self.stage3 = nn.Sequential(depthwise_block(128, 256, 2, slope), depthwise_block(256, 256, 1, slope))

    def forward(self, x: torch.Tensor) -> torch.Tensor | list[torch.Tensor]:
        c3 = self.stage1(x)
        c4 = self.stage2(c3)
        c5 = self.stage3(c4)
        return [c3, c4, c5] if self.levels else c5
