"""Ultra-Light-Fast-Generic-Face-Detector-1MB (RFB and slim variants), written from the published design.

An SSD-style detector: a MobileNet-like backbone (depthwise-separable convolutions, base width 16, one
receptive-field block in the RFB variant), four heads at strides 8/16/32/64 with 3/2/2/3 square priors of
``MIN_BOXES`` pixels, boxes encoded with centre variance 0.1 and size variance 0.2.

Input sizing (:class:`UltraLightDetector`): the frame is resized, keeping its aspect ratio, so that its longest
side is ``input_size`` pixels (a 640×480 frame at ``input_size=320`` becomes the original 320×240). Priors are
generated for whatever input size arrives and cached per size.
"""

from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np
import torch
import torchvision
from loguru import logger
from torch import nn

from maskwatch.errors import WeightsError
from maskwatch.models.base import Detector
from maskwatch.models.weights import load_checked, load_model_file, load_state_dict_strict
from maskwatch.types import FaceDetections

ARCH_RFB = "ultralight_rfb"
ARCH_SLIM = "ultralight_slim"
MIN_BOXES: tuple[tuple[int, ...], ...] = ((10, 16, 24), (32, 48), (64, 96), (128, 192, 256))
STRIDES: tuple[int, ...] = (8, 16, 32, 64)
CENTER_VARIANCE = 0.1
SIZE_VARIANCE = 0.2
BASE = 16
PRE_NMS_TOP_K = 1000
"""At most this many highest-scoring candidates go into NMS."""


def _conv_bn(cin: int, cout: int, stride: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


def _conv_dw(cin: int, cout: int, stride: int) -> nn.Sequential:
    """Depthwise 3×3 + BN + ReLU, then pointwise 1×1 + BN + ReLU."""
    return nn.Sequential(
        nn.Conv2d(cin, cin, 3, stride, 1, groups=cin, bias=False),
        nn.BatchNorm2d(cin),
        nn.ReLU(inplace=True),
        nn.Conv2d(cin, cout, 1, 1, 0, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


class _ConvBN(nn.Module):
    """Conv (no bias) + BN (+ optional ReLU), the building block of the RFB branches."""

    def __init__(self, cin: int, cout: int, kernel: int, padding: int = 0, dilation: int = 1, relu: bool = True):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel, 1, padding, dilation=dilation, bias=False)
        self.bn = nn.BatchNorm2d(cout, eps=1e-5, momentum=0.01)
        self.relu = nn.ReLU(inplace=True) if relu else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.bn(self.conv(x))
        return self.relu(x) if self.relu is not None else x


class _RFB(nn.Module):
    """Receptive-field block: three branches with dilations 2, 3 and 5, a 1×1 fuse and a 1×1 shortcut."""

    def __init__(self, cin: int, cout: int, reduce: int = 8):
        super().__init__()
        mid = cin // reduce
        self.branch0 = nn.Sequential(
            _ConvBN(cin, mid, 1, relu=False),
            _ConvBN(mid, 2 * mid, 3, padding=1),
            _ConvBN(2 * mid, 2 * mid, 3, padding=2, dilation=2, relu=False),
        )
        self.branch1 = nn.Sequential(
            _ConvBN(cin, mid, 1, relu=False),
            _ConvBN(mid, 2 * mid, 3, padding=1),
            _ConvBN(2 * mid, 2 * mid, 3, padding=3, dilation=3, relu=False),
        )
        self.branch2 = nn.Sequential(
            _ConvBN(cin, mid, 1, relu=False),
            _ConvBN(mid, mid // 2 * 3, 3, padding=1),
            _ConvBN(mid // 2 * 3, 2 * mid, 3, padding=1),
            _ConvBN(2 * mid, 2 * mid, 3, padding=5, dilation=5, relu=False),
        )
        self.ConvLinear = _ConvBN(6 * mid, cout, 1, relu=False)
        self.shortcut = _ConvBN(cin, cout, 1, relu=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.cat([self.branch0(x), self.branch1(x), self.branch2(x)], dim=1)
        return torch.relu(self.ConvLinear(y) + self.shortcut(x))


def _separable(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    """Depthwise 3×3 (with bias) + ReLU + pointwise 1×1, as used by the extra layer and the heads."""
    return nn.Sequential(nn.Conv2d(cin, cin, 3, stride, 1, groups=cin), nn.ReLU(inplace=True), nn.Conv2d(cin, cout, 1))


def feature_sizes(width: int, height: int) -> list[tuple[int, int]]:
    """(w, h) of the four head feature maps for an input of ``width``×``height`` (each stride-2 conv rounds up)."""
    return [(math.ceil(width / s), math.ceil(height / s)) for s in STRIDES]


def make_priors(width: int, height: int) -> torch.Tensor:
    """(P, 4) priors (cx, cy, w, h) normalised to the input, in the heads' output order (row, column, box)."""
    out = []
    for (fw, fh), stride, boxes in zip(feature_sizes(width, height), STRIDES, MIN_BOXES, strict=True):
        ys, xs = torch.meshgrid(torch.arange(fh), torch.arange(fw), indexing="ij")
        cx = ((xs.reshape(-1).float() + 0.5) * stride / width)[:, None].expand(-1, len(boxes))
        cy = ((ys.reshape(-1).float() + 0.5) * stride / height)[:, None].expand(-1, len(boxes))
        bw = torch.tensor([b / width for b in boxes])[None].expand_as(cx)
        bh = torch.tensor([b / height for b in boxes])[None].expand_as(cx)
        out.append(torch.stack([cx, cy, bw, bh], dim=-1).reshape(-1, 4))
    return torch.cat(out).clamp_(0.0, 1.0)


def decode(loc: torch.Tensor, priors: torch.Tensor) -> torch.Tensor:
    """Offsets (..., P, 4) against priors (P, 4) → corner boxes (x1, y1, x2, y2) normalised to the input."""
    centre = loc[..., :2] * CENTER_VARIANCE * priors[:, 2:] + priors[:, :2]
    size = torch.exp(loc[..., 2:] * SIZE_VARIANCE) * priors[:, 2:]
    return torch.cat([centre - size / 2, centre + size / 2], dim=-1)


def encode(xyxy: torch.Tensor, priors: torch.Tensor) -> torch.Tensor:
    """Corner boxes (P, 4) normalised to the input → regression targets against priors (P, 4)."""
    centre = (xyxy[:, :2] + xyxy[:, 2:]) / 2
    size = (xyxy[:, 2:] - xyxy[:, :2]).clamp(min=1e-6)
    return torch.cat(
        [
            (centre - priors[:, :2]) / (CENTER_VARIANCE * priors[:, 2:]),
            torch.log(size / priors[:, 2:]) / SIZE_VARIANCE,
        ],
        dim=1,
    )


class UltraLightNet(nn.Module):
    """The network: raw BGR float frames (N, 3, H, W) in 0..255 → (class logits (N, P, C), offsets (N, P, 4)).

    Colour order and normalisation ((RGB - 127) / 128, as in the original training) live in buffers here.
    """

    def __init__(self, num_classes: int = 2, rfb: bool = True):
        super().__init__()
        self.num_classes = num_classes
        self.rfb = rfb
        b = BASE
        self.register_buffer("pixel_mean", torch.full((1, 3, 1, 1), 127.0), persistent=False)
        self.register_buffer("pixel_scale", torch.full((1, 3, 1, 1), 1.0 / 128.0), persistent=False)
        self.base_net = nn.Sequential(
            _conv_bn(3, b, 2),
            _conv_dw(b, 2 * b, 1),
            _conv_dw(2 * b, 2 * b, 2),
            _conv_dw(2 * b, 2 * b, 1),
            _conv_dw(2 * b, 4 * b, 2),
            _conv_dw(4 * b, 4 * b, 1),
            _conv_dw(4 * b, 4 * b, 1),
            _RFB(4 * b, 4 * b) if rfb else _conv_dw(4 * b, 4 * b, 1),
            _conv_dw(4 * b, 8 * b, 2),
            _conv_dw(8 * b, 8 * b, 1),
            _conv_dw(8 * b, 8 * b, 1),
            _conv_dw(8 * b, 16 * b, 2),
            _conv_dw(16 * b, 16 * b, 1),
        )
        self.extras = nn.ModuleList(
            [nn.Sequential(nn.Conv2d(16 * b, 4 * b, 1), nn.ReLU(inplace=True), _separable(4 * b, 16 * b, 2), nn.ReLU())]
        )
        chans = (4 * b, 8 * b, 16 * b)
        anchors = [len(m) for m in MIN_BOXES]
        self.classification_headers = nn.ModuleList(
            [_separable(c, a * num_classes) for c, a in zip(chans, anchors, strict=False)]
            + [nn.Conv2d(16 * b, anchors[3] * num_classes, 3, padding=1)]
        )
        self.regression_headers = nn.ModuleList(
            [_separable(c, a * 4) for c, a in zip(chans, anchors, strict=False)]
            + [nn.Conv2d(16 * b, anchors[3] * 4, 3, padding=1)]
        )
        self._source_ends = (8, 11, 13)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        n = x.shape[0]
        x = (x.flip(1) - self.pixel_mean) * self.pixel_scale  # BGR → RGB, then (x - 127) / 128
        feats = []
        start = 0
        for end in self._source_ends:
            for layer in self.base_net[start:end]:
                x = layer(x)
            feats.append(x)
            start = end
        for layer in self.extras:
            x = layer(x)
            feats.append(x)
        conf = [
            h(f).permute(0, 2, 3, 1).reshape(n, -1, self.num_classes)
            for h, f in zip(self.classification_headers, feats, strict=True)
        ]
        loc = [h(f).permute(0, 2, 3, 1).reshape(n, -1, 4) for h, f in zip(self.regression_headers, feats, strict=True)]
        return torch.cat(conf, dim=1), torch.cat(loc, dim=1)


def _strip_module(state: dict) -> dict:
    return {k.removeprefix("module."): v for k, v in state.items()}


def _infer_num_classes(state: dict) -> int:
    w = state.get("classification_headers.3.weight")
    if w is None:
        raise WeightsError("not an Ultra-Light state_dict (no classification_headers.3.weight)")
    return int(w.shape[0]) // len(MIN_BOXES[3])


def load_ultralight(path: str | Path) -> tuple[UltraLightNet, dict]:
    """Load a pretrained Ultra-Light ``.pth`` state_dict or a maskwatch model file; return (net in eval mode, meta).

    The variant (RFB or slim) and the number of classes are read from the tensors; loading is strict.
    """
    payload = load_checked(path)
    meta: dict = {}
    if isinstance(payload, dict) and "state_dict" in payload and "arch" in payload:
        arch = payload.get("arch")
        if arch not in (ARCH_RFB, ARCH_SLIM):
            raise WeightsError(f"weights file {path} holds a {arch!r} model, expected {ARCH_RFB!r} or {ARCH_SLIM!r}")
        state, meta = load_model_file(path, arch)
    else:
        state = payload
    if not isinstance(state, dict):
        raise WeightsError(f"weights file {path} is not a state_dict")
    state = _strip_module(state)
    rfb = any(k.startswith("base_net.7.branch0") for k in state)
    num_classes = int(meta.get("num_classes", _infer_num_classes(state)))
    net = UltraLightNet(num_classes=num_classes, rfb=rfb)
    load_state_dict_strict(net, state, path)
    meta = {"arch": ARCH_RFB if rfb else ARCH_SLIM, "num_classes": num_classes, **meta}
    return net.eval(), meta


class UltraLightDetector(Detector):
    """Face detector facade over :class:`UltraLightNet`; implements ``maskwatch.models.base.Detector``.

    ``input_size`` is the network input's longest side (the frame keeps its aspect ratio). With a 3-class
    (background / face / masked_face) model the face score is P(face) + P(masked_face).
    """

    def __init__(
        self,
        weights: str | Path | None = None,
        input_size: int = 320,
        score_threshold: float = 0.5,
        nms_iou: float = 0.4,
        max_faces: int = 200,
        device: str = "cpu",
        net: UltraLightNet | None = None,
    ):
        if net is None:
            if weights is None:
                raise WeightsError("UltraLightDetector needs weights= (a .pth or a maskwatch model file) or net=")
            net, meta = load_ultralight(weights)
            logger.debug("loaded {} ({} classes) from {}", meta["arch"], meta["num_classes"], weights)
        self.device = torch.device(device)
        self.net = net.to(self.device).eval()
        self.input_size = int(input_size)
        self.score_threshold = float(score_threshold)
        self.nms_iou = float(nms_iou)
        self.max_faces = int(max_faces)
        self._priors: dict[tuple[int, int], torch.Tensor] = {}

    def input_wh(self, frame_wh: tuple[int, int]) -> tuple[int, int]:
        """Network input size for a frame: longest side ``input_size``, aspect ratio kept."""
        w, h = frame_wh
        scale = self.input_size / max(w, h)
        return max(1, round(w * scale)), max(1, round(h * scale))

    def priors(self, width: int, height: int) -> torch.Tensor:
        key = (width, height)
        if key not in self._priors:
            self._priors[key] = make_priors(width, height).to(self.device)
        return self._priors[key]

    def preprocess(self, image_bgr: np.ndarray) -> torch.Tensor:
        """Resize to the input size; return a (1, 3, h, w) float tensor of raw BGR values."""
        iw, ih = self.input_wh((image_bgr.shape[1], image_bgr.shape[0]))
        resized = cv2.resize(image_bgr, (iw, ih), interpolation=cv2.INTER_LINEAR)
        return torch.from_numpy(np.ascontiguousarray(resized.transpose(2, 0, 1))).float()[None].to(self.device)

    def face_scores(self, logits: torch.Tensor) -> torch.Tensor:
        """(.., P, C) logits → (.., P) face probability (every non-background class counts as face)."""
        return 1.0 - torch.softmax(logits, dim=-1)[..., 0]

    def postprocess(
        self, logits: torch.Tensor, loc: torch.Tensor, input_wh: tuple[int, int], frame_wh: tuple[int, int]
    ) -> FaceDetections:
        """Decode one image's outputs (P, C) and (P, 4), threshold, NMS, and scale to frame pixels."""
        iw, ih = input_wh
        scores = self.face_scores(logits)
        keep = scores > self.score_threshold
        if not bool(keep.any()):
            return FaceDetections.empty()
        idx = keep.nonzero().squeeze(1)
        if len(idx) > PRE_NMS_TOP_K:  # NMS cost grows with the square of the candidates
            idx = idx[scores[idx].topk(PRE_NMS_TOP_K).indices]
        boxes = decode(loc[idx], self.priors(iw, ih)[idx])
        scores = scores[idx]
        w, h = frame_wh
        boxes = boxes * torch.tensor([w, h, w, h], dtype=boxes.dtype, device=boxes.device)
        boxes[:, 0::2] = boxes[:, 0::2].clamp(0, w)
        boxes[:, 1::2] = boxes[:, 1::2].clamp(0, h)
        order = torchvision.ops.nms(boxes, scores, self.nms_iou)[: self.max_faces]
        return FaceDetections(xyxy=boxes[order].cpu().numpy(), det_score=scores[order].cpu().numpy())

    @torch.inference_mode()
    def detect(self, image_bgr: np.ndarray) -> FaceDetections:
        """Faces in a BGR uint8 frame, boxes in the frame's pixels, classes undecided."""
        if image_bgr.ndim != 3 or image_bgr.shape[2] != 3:
            raise ValueError(f"expected an (H, W, 3) BGR image, got shape {image_bgr.shape}")
        x = self.preprocess(image_bgr)
        logits, loc = self.net(x)
        return self.postprocess(logits[0], loc[0], (x.shape[3], x.shape[2]), (image_bgr.shape[1], image_bgr.shape[0]))
