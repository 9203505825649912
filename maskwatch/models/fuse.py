"""Conv-BN folding for fp32 inference: the same outputs with fewer ops (plain ``torch.nn``, no quantization API)."""

from __future__ import annotations

import copy

from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval


def fusion_groups(model: nn.Module) -> list[list[str]]:
    """Names of every Conv2d-BatchNorm2d(-ReLU) run inside an ``nn.Sequential`` of ``model``."""
    groups = []
    for name, module in model.named_modules():
        if not isinstance(module, nn.Sequential):
            continue
        children = list(module.named_children())
        i = 0
        while i < len(children) - 1:
            (n0, m0), (n1, m1) = children[i], children[i + 1]
            if isinstance(m0, nn.Conv2d) and isinstance(m1, nn.BatchNorm2d):
                group = [n0, n1]
                if i + 2 < len(children) and type(children[i + 2][1]) is nn.ReLU:
                    group.append(children[i + 2][0])
                groups.append([f"{name}.{n}" if name else n for n in group])
                i += len(group)
            else:
                i += 1
    return groups


def fused_copy(model: nn.Module) -> nn.Module:
    """An eval-mode copy of ``model`` with each Conv-BN pair folded into one conv (``model`` itself if it has none)."""
    groups = fusion_groups(model)
    if not groups:
        return model.eval()
    fused = copy.deepcopy(model).eval()
    for conv_name, bn_name, *_ in groups:
        parent_name, _, conv_attr = conv_name.rpartition(".")
        parent = fused.get_submodule(parent_name) if parent_name else fused
        bn_attr = bn_name.rpartition(".")[2]
        setattr(parent, conv_attr, fuse_conv_bn_eval(getattr(parent, conv_attr), getattr(parent, bn_attr)))
        setattr(parent, bn_attr, nn.Identity())
    return fused
