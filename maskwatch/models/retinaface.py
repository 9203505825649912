"""RetinaFace with a MobileNetV1-0.25 backbone (Deng et al., 2019), written for maskwatch.

The network is the published single-stage design: a MobileNetV1 ×0.25 body whose stride 8/16/32 outputs feed a
three-level FPN, one SSH context module per level and 1×1 class / box / landmark heads with two anchors per cell.
Parameter names follow the public WIDER FACE checkpoint so it loads with strict key and shape checks.
Preprocessing (BGR minus the mean, no std) lives in the module, which therefore takes raw BGR NCHW pixels.
Anchor sizes are not part of the weights: maskwatch model files carry theirs in ``meta["min_sizes"]``; the shared
WIDER FACE checkpoint decodes correctly only with :data:`PRETRAINED_MIN_SIZES` (see there).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from loguru import logger
from torch import nn
from torchvision.ops import nms

from maskwatch.errors import WeightsError
from maskwatch.models.fuse import fused_copy
from maskwatch.models.manifest import verify
from maskwatch.models.mobilenet import MobileNetV1x025
from maskwatch.models.prep import Resized, resize_longest_side
from maskwatch.models.prep import prior_boxes as numpy_prior_boxes
from maskwatch.models.weights import load_checked, load_model_file, load_state_dict_strict, refuse_torch_int8
from maskwatch.types import FaceDetections

ARCH = "retinaface_mnet025"
"""The ``arch`` tag of maskwatch model files holding this network."""

BGR_MEAN = (104.0, 117.0, 123.0)
MIN_SIZES: tuple[tuple[int, ...], ...] = ((16, 32), (64, 128), (256, 512))
"""Anchor sizes of the published configuration (input pixels per level)."""
PRETRAINED_MIN_SIZES: tuple[tuple[int, ...], ...] = ((8, 16), (32, 64), (128, 256))
"""Anchor sizes the shared WIDER FACE checkpoint actually decodes with: measured on the VOC scenes, its boxes and
landmarks fit the faces with these half-size anchors and come out twice too large with :data:`MIN_SIZES`."""
STEPS: tuple[int, ...] = (8, 16, 32)
VARIANCES: tuple[float, float] = (0.1, 0.2)


# --- layers
def _conv_bn(cin: int, cout: int, k: int = 3, stride: int = 1, slope: float | None = 0.0) -> nn.Sequential:
    """Conv (no bias) + BN, followed by a LeakyReLU unless ``slope`` is None."""
    layers: list[nn.Module] = [nn.Conv2d(cin, cout, k, stride, k // 2, bias=False), nn.BatchNorm2d(cout)]
    if slope is not None:
        layers.append(nn.LeakyReLU(slope, inplace=True))
    return nn.Sequential(*layers)


class FPN(nn.Module):
    """Top-down feature pyramid: 1×1 lateral projections, nearest upsampling, 3×3 merge convs."""

    def __init__(self, in_channels: tuple[int, int, int] = (64, 128, 256), out_channels: int = 64) -> None:
        super().__init__()
        slope = 0.1 if out_channels <= 64 else 0.0
        self.output1 = _conv_bn(in_channels[0], out_channels, 1, slope=slope)
        self.output2 = _conv_bn(in_channels[1], out_channels, 1, slope=slope)
        self.output3 = _conv_bn(in_channels[2], out_channels, 1, slope=slope)
        self.merge1 = _conv_bn(out_channels, out_channels, 3, slope=slope)
        self.merge2 = _conv_bn(out_channels, out_channels, 3, slope=slope)

    def forward(self, feats: list[torch.Tensor]) -> list[torch.Tensor]:
        p3, p4, p5 = self.output1(feats[0]), self.output2(feats[1]), self.output3(feats[2])
        p4 = self.merge2(p4 + F.interpolate(p5, size=p4.shape[-2:], mode="nearest"))
        p3 = self.merge1(p3 + F.interpolate(p4, size=p3.shape[-2:], mode="nearest"))
        return [p3, p4, p5]


class SSH(nn.Module):
    """Single Stage Headless context module: parallel 3×3, 5×5 and 7×7 receptive fields (stacked 3×3 convs)."""

    def __init__(self, cin: int = 64, cout: int = 64) -> None:
        super().__init__()
        if cout % 4:
            raise ValueError(f"SSH output channels must be a multiple of 4, got {cout}")
        slope = 0.1 if cout <= 64 else 0.0
        self.conv3X3 = _conv_bn(cin, cout // 2, slope=None)
        self.conv5X5_1 = _conv_bn(cin, cout // 4, slope=slope)
        self.conv5X5_2 = _conv_bn(cout // 4, cout // 4, slope=None)
        self.conv7X7_2 = _conv_bn(cout // 4, cout // 4, slope=slope)
        self.conv7x7_3 = _conv_bn(cout // 4, cout // 4, slope=None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        branch5_in = self.conv5X5_1(x)
        branch7_in = self.conv7X7_2(branch5_in)
        out = torch.cat([self.conv3X3(x), self.conv5X5_2(branch5_in), self.conv7x7_3(branch7_in)], dim=1)
        return F.relu(out)


class _Head(nn.Module):
    """A 1×1 conv predicting ``per_anchor`` values for each of ``anchors`` anchors per cell, flattened to (N, A, k)."""

    def __init__(self, cin: int, anchors: int, per_anchor: int) -> None:
        super().__init__()
        self.per_anchor = per_anchor
        self.conv1x1 = nn.Conv2d(cin, anchors * per_anchor, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv1x1(x).permute(0, 2, 3, 1)
        return out.reshape(out.shape[0], -1, self.per_anchor)


class RetinaFace(nn.Module):
    """RetinaFace-MobileNet0.25: raw BGR (N, 3, H, W) pixels in, per-anchor (loc, class logits, landmarks) out.

    ``forward`` returns ``loc`` (N, P, 4) box offsets, ``logits`` (N, P, 2) background/face logits and
    ``landmarks`` (N, P, 10), for the P priors of :func:`prior_boxes` at the input's height and width.
    """

    pixel_mean: torch.Tensor

    def __init__(self, channels: int = 64, anchors_per_cell: int = 2) -> None:
        super().__init__()
        self.register_buffer("pixel_mean", torch.tensor(BGR_MEAN).view(1, 3, 1, 1), persistent=False)
        self.body = MobileNetV1x025(slope=0.1, levels=True)
        self.fpn = FPN((64, 128, 256), channels)
        self.ssh1 = SSH(channels, channels)
        self.ssh2 = SSH(channels, channels)
        self.ssh3 = SSH(channels, channels)
        self.ClassHead = nn.ModuleList([_Head(channels, anchors_per_cell, 2) for _ in STEPS])
        self.BboxHead = nn.ModuleList([_Head(channels, anchors_per_cell, 4) for _ in STEPS])
        self.LandmarkHead = nn.ModuleList([_Head(channels, anchors_per_cell, 10) for _ in STEPS])

    def forward(self, image_bgr: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x = image_bgr.float() - self.pixel_mean
        feats = self.fpn(self.body(x))
        feats = [self.ssh1(feats[0]), self.ssh2(feats[1]), self.ssh3(feats[2])]
        loc = torch.cat([head(f) for head, f in zip(self.BboxHead, feats, strict=True)], dim=1)
        logits = torch.cat([head(f) for head, f in zip(self.ClassHead, feats, strict=True)], dim=1)
        landmarks = torch.cat([head(f) for head, f in zip(self.LandmarkHead, feats, strict=True)], dim=1)
        return loc, logits, landmarks


# --- priors and box coding
def prior_boxes(
    height: int, width: int, min_sizes: Sequence[Sequence[int]] = MIN_SIZES, steps: Sequence[int] = STEPS
) -> torch.Tensor:
    """Anchors (P, 4) as normalised (cx, cy, w, h) for an input of ``height``×``width``.

    Order matches the heads: level by level, then row-major cells, then the level's sizes. The one definition is
    the numpy :func:`maskwatch.models.prep.prior_boxes`, shared with the ONNX engine.
    """
    return torch.from_numpy(np.ascontiguousarray(numpy_prior_boxes(height, width, min_sizes, steps)))


def encode_boxes(xyxy: torch.Tensor, priors: torch.Tensor, variances: tuple[float, float] = VARIANCES) -> torch.Tensor:
    """Regression targets (…, 4) of normalised ``xyxy`` boxes relative to matched ``priors`` (cx, cy, w, h)."""
    centre = (xyxy[..., :2] + xyxy[..., 2:]) / 2
    wh = (xyxy[..., 2:] - xyxy[..., :2]).clamp(min=1e-6)
    d_centre = (centre - priors[..., :2]) / (variances[0] * priors[..., 2:])
    d_wh = torch.log(wh / priors[..., 2:]) / variances[1]
    return torch.cat([d_centre, d_wh], dim=-1)


def decode_boxes(loc: torch.Tensor, priors: torch.Tensor, variances: tuple[float, float] = VARIANCES) -> torch.Tensor:
    """Inverse of :func:`encode_boxes`: normalised ``xyxy`` boxes from predicted offsets."""
    centre = priors[..., :2] + loc[..., :2] * variances[0] * priors[..., 2:]
    wh = priors[..., 2:] * torch.exp(loc[..., 2:] * variances[1])
    return torch.cat([centre - wh / 2, centre + wh / 2], dim=-1)


# --- facade
def build_model(pretrained_state: dict | None = None) -> RetinaFace:
    """The bare network with random init (for tests), or with ``pretrained_state`` loaded strictly."""
    model = RetinaFace()
    if pretrained_state is not None:
        load_state_dict_strict(model, pretrained_state, "<state_dict>")
    return model


def _strip_prefix(state: dict, prefix: str = "module.") -> dict:
    return {(k[len(prefix) :] if k.startswith(prefix) else k): v for k, v in state.items()}


def load_retinaface(weights: str | Path) -> tuple[RetinaFace, dict]:
    """Load a verified weights file: a maskwatch model file (float or int8) or the raw WIDER FACE state_dict.

    Returns (model, meta). An old torch int8 file is refused in one line: int8 runs on the onnx engine.
    """
    path = verify(weights)
    payload = load_checked(path)
    if isinstance(payload, dict) and "arch" in payload and "state_dict" in payload:
        state, meta = load_model_file(path, ARCH)
        if meta.get("precision") == "int8":
            refuse_torch_int8(path)
    elif isinstance(payload, dict) and any(k.endswith("ClassHead.0.conv1x1.weight") for k in payload):
        state = _strip_prefix(payload)
        meta = {"source": f"pretrained:{path.name}", "min_sizes": [list(m) for m in PRETRAINED_MIN_SIZES]}
    else:
        raise WeightsError(f"weights file {path} is neither a maskwatch model file nor a RetinaFace state_dict")
    model = RetinaFace()
    load_state_dict_strict(model, state, path)
    return model, dict(meta)


class RetinaFaceDetector:
    """Face detector facade: resize a BGR frame, run RetinaFace, decode, threshold and NMS, map back to the frame."""

    def __init__(
        self,
        weights: str | Path | None = None,
        *,
        input_size: int = 640,
        score_threshold: float = 0.5,
        nms_iou: float = 0.4,
        max_faces: int = 200,
        device: str = "cpu",
        model: RetinaFace | None = None,
        min_sizes: tuple[tuple[int, ...], ...] | None = None,
        pre_nms_top_k: int = 2000,
    ) -> None:
        if weights is not None and model is not None:
            raise ValueError("give exactly one of weights= or model=")
        if input_size < 32:
            raise ValueError(f"input_size must be at least 32, got {input_size}")
        self.meta: dict = {}
        if weights is not None:
            model, self.meta = load_retinaface(weights)
            min_sizes = min_sizes or self.meta.get("min_sizes")
            logger.debug("loaded RetinaFace from {} ({})", weights, self.meta.get("source", "maskwatch model file"))
        if model is None:
            raise ValueError("give exactly one of weights= or model=")
        self.precision = "fp32"  # int8 runs on the onnx engine (maskwatch.models.onnx_engine)
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()
        self._net = fused_copy(self.model)  # Conv-BN folded: same outputs, fewer ops
        self.input_size = int(input_size)
        self.score_threshold = float(score_threshold)
        self.nms_iou = float(nms_iou)
        self.max_faces = int(max_faces)
        self.pre_nms_top_k = int(pre_nms_top_k)
        self.min_sizes = tuple(tuple(int(v) for v in level) for level in (min_sizes or MIN_SIZES))
        self._priors: dict[tuple[int, int], torch.Tensor] = {}

    @classmethod
    def random_init(cls, **kwargs) -> RetinaFaceDetector:
        """A detector around an untrained network (tests, benchmarks)."""
        return cls(model=build_model(), **kwargs)

    def priors(self, height: int, width: int) -> torch.Tensor:
        key = (height, width)
        if key not in self._priors:
            self._priors[key] = prior_boxes(height, width, self.min_sizes).to(self.device)
        return self._priors[key]

    def preprocess(self, image_bgr: np.ndarray) -> tuple[torch.Tensor, Resized]:
        """Resize so the longest side is ``input_size`` (keeping aspect); return a (1, 3, h, w) uint8 tensor."""
        resized, box = resize_longest_side(image_bgr, self.input_size)
        tensor = torch.from_numpy(resized).permute(2, 0, 1).unsqueeze(0)
        return tensor.to(self.device), box

    def postprocess(
        self, loc: torch.Tensor, logits: torch.Tensor, box: Resized, frame_hw: tuple[int, int]
    ) -> FaceDetections:
        """Decode one image's outputs, threshold, NMS, and map boxes to frame pixels (clipped)."""
        nh, nw = box.size_hw
        scores = logits.softmax(dim=-1)[:, 1]
        keep = scores >= self.score_threshold
        if not bool(keep.any()):
            return FaceDetections.empty()
        idx = torch.nonzero(keep).squeeze(1)
        if len(idx) > self.pre_nms_top_k:
            idx = idx[scores[idx].topk(self.pre_nms_top_k).indices]
        boxes = decode_boxes(loc[idx], self.priors(nh, nw)[idx])
        scores = scores[idx]
        boxes = boxes * torch.tensor([nw, nh, nw, nh], dtype=boxes.dtype, device=boxes.device) / box.scale
        order = nms(boxes, scores, self.nms_iou)[: self.max_faces]
        xyxy, score = boxes[order].cpu().numpy(), scores[order].cpu().numpy()
        fh, fw = frame_hw
        xyxy[:, [0, 2]] = xyxy[:, [0, 2]].clip(0, fw)
        xyxy[:, [1, 3]] = xyxy[:, [1, 3]].clip(0, fh)
        valid = (xyxy[:, 2] > xyxy[:, 0]) & (xyxy[:, 3] > xyxy[:, 1])
        return FaceDetections(xyxy=xyxy[valid], det_score=score[valid])

    @torch.inference_mode()
    def detect(self, image_bgr: np.ndarray) -> FaceDetections:
        """Faces of one BGR uint8 frame, boxes in the frame's pixels, classes undecided."""
        tensor, box = self.preprocess(image_bgr)
        loc, logits, _ = self._net(tensor)
        return self.postprocess(loc[0], logits[0], box, image_bgr.shape[:2])

    @torch.inference_mode()
    def detect_batch(self, images_bgr: list[np.ndarray]) -> list[FaceDetections]:
        """:meth:`detect` for several frames in one forward pass (frames of one size; mixed sizes run one by one)."""
        prepared = [self.preprocess(image) for image in images_bgr]
        if len({box.size_hw for _, box in prepared}) > 1:
            return [self.detect(image) for image in images_bgr]
        loc, logits, _ = self._net(torch.cat([tensor for tensor, _ in prepared]))
        return [
            self.postprocess(loc[i], logits[i], box, image.shape[:2])
            for i, ((_, box), image) in enumerate(zip(prepared, images_bgr, strict=True))
        ]
