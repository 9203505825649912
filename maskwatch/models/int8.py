"""Static post-training int8 quantization of both models, and loading of the int8 model files.

Path: eager-mode ``torch.ao.quantization`` (the one flow whose int8 kernels run without a compiler, on x86 via the
``x86``/fbgemm engine and on ARM via ``qnnpack``). Conv-BN(-ReLU) runs are fused, weights are quantized per
channel, activations are calibrated with histogram observers on a fixed subset of training data. The models
mark their int8 region with quant/dequant stubs; pre- and post-processing stay in float.

An int8 model file is a maskwatch model file (``arch``, ``state_dict``, ``meta``) whose ``meta["precision"]`` is
``"int8"``; loading rebuilds the quantized module structure from the float network and loads the int8 tensors
into it, so the file holds no code and loads with ``weights_only=True``.
"""

from __future__ import annotations

import copy
import platform
import warnings
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import torch
from loguru import logger
from torch import nn

from maskwatch.errors import ConfigError, WeightsError
from maskwatch.models.fuse import fusion_groups
from maskwatch.models.weights import save_model_file

QCONFIG_BACKEND = "x86"
"""Quantization recipe of the shipped files: ``get_default_qconfig("x86")`` = per-channel symmetric int8 weights,
histogram-calibrated uint8 activations with reduce_range (7-bit), which every engine (x86, fbgemm, qnnpack) runs."""

ENGINE_BY_MACHINE = {
    "x86_64": ("x86", "fbgemm"),
    "amd64": ("x86", "fbgemm"),
    "i686": ("x86", "fbgemm"),
    "aarch64": ("qnnpack",),
    "arm64": ("qnnpack",),
    "armv7l": ("qnnpack",),
    "armv8l": ("qnnpack",),
}
"""Preferred quantized engines per CPU architecture (``platform.machine()``), best first."""


def select_engine(machine: str | None = None, supported: Sequence[str] | None = None) -> str:
    """The quantized engine for this CPU: ``x86`` (else fbgemm) on x86, ``qnnpack`` on ARM.

    Raises :class:`ConfigError` if torch was built without a suitable engine.
    """
    machine = (machine or platform.machine()).lower()
    supported = list(torch.backends.quantized.supported_engines if supported is None else supported)
    preferred = ENGINE_BY_MACHINE.get(machine, ("x86", "fbgemm", "qnnpack"))
    for engine in preferred:
        if engine in supported:
            return engine
    raise ConfigError(
        f"this torch build has no int8 engine for a {machine} CPU (has {', '.join(supported) or 'none'}); "
        "use --precision fp32"
    )


def use_engine(engine: str | None = None) -> str:
    """Select the quantized engine for this machine (or ``engine``) process-wide; return its name."""
    engine = engine or select_engine()
    if torch.backends.quantized.engine != engine:
        torch.backends.quantized.engine = engine
    return engine


def without_inplace(model: nn.Module) -> nn.Module:
    """Quantized activations have no in-place kernel (and warn on every call), so turn ``inplace`` off."""
    for module in model.modules():
        if isinstance(module, nn.LeakyReLU | nn.ReLU):
            module.inplace = False
    return model


def prepare(model: nn.Module, engine: str | None = None) -> nn.Module:
    """A fused eval-mode copy of ``model`` with observers inserted, ready for calibration."""
    use_engine(engine)
    model = without_inplace(copy.deepcopy(model).cpu().eval())
    model = torch.ao.quantization.fuse_modules(model, fusion_groups(model))
    model.qconfig = torch.ao.quantization.get_default_qconfig(QCONFIG_BACKEND)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.ao.quantization's deprecation notices
        return torch.ao.quantization.prepare(model)


def convert(prepared: nn.Module) -> nn.Module:
    """Replace observed modules by their int8 versions."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return torch.ao.quantization.convert(prepared.eval())


@torch.no_grad()  # not inference_mode: converted modules must hold normal tensors to load state into
def quantize(model: nn.Module, calibration: Iterable[torch.Tensor], engine: str | None = None) -> nn.Module:
    """Static int8 copy of float ``model`` calibrated on the input batches of ``calibration``."""
    prepared = prepare(model, engine)
    n = 0
    for batch in calibration:
        prepared(batch)
        n += 1
    if n == 0:
        raise ValueError("calibration needs at least one input batch")
    return convert(prepared)


@torch.no_grad()
def int8_skeleton(model: nn.Module, example: torch.Tensor) -> nn.Module:
    """The int8 module structure of ``model`` (placeholder scales), for loading an int8 state_dict into."""
    prepared = prepare(model)
    prepared(example)
    return convert(prepared)


# --- compact storage: torch.save writes every tensor as its own zip record and per-channel scales as float64,
# which adds about a third to an int8 file. Packing all int8 data into one buffer and all float32 data (biases,
# per-channel scales) into another keeps the file close to one byte per weight.
_QUINT = {"torch.quint8": torch.quint8, "torch.qint8": torch.qint8}


def pack_state(state: dict) -> dict:
    """A quantized ``state_dict`` as ``{"int8", "f32", "index"}``: two flat tensors and plain-value records."""
    int8_parts: list[torch.Tensor] = []
    f32_parts: list[torch.Tensor] = []
    sizes = {"int8": 0, "f32": 0}

    def put(parts: list, key: str, flat: torch.Tensor) -> int:
        offset = sizes[key]
        parts.append(flat.reshape(-1))
        sizes[key] += flat.numel()
        return offset

    def record(v):
        if v is None:
            return {"kind": "none"}
        if isinstance(v, tuple | list):
            return {"kind": "tuple", "items": [record(x) for x in v]}
        if not isinstance(v, torch.Tensor):
            return {"kind": "value", "value": v}
        v = v.detach().cpu()
        if v.is_quantized:
            raw = v.int_repr().contiguous().view(torch.int8)
            rec = {"dtype": str(v.dtype), "shape": list(v.shape), "off": put(int8_parts, "int8", raw)}
            if v.qscheme() in (torch.per_channel_affine, torch.per_channel_symmetric):
                zp = v.q_per_channel_zero_points()
                rec |= {"kind": "qpc", "axis": v.q_per_channel_axis(), "n_ch": zp.numel()}
                rec["soff"] = put(f32_parts, "f32", v.q_per_channel_scales().float())
                rec["zp"] = zp.tolist() if bool(zp.any()) else None
                return rec
            return rec | {"kind": "qpt", "scale": v.q_scale(), "zp": v.q_zero_point()}
        if v.dtype == torch.float32 and v.dim() > 0:
            return {"kind": "f32", "shape": list(v.shape), "off": put(f32_parts, "f32", v)}
        if v.dim() == 0 or v.numel() == 1:
            return {"kind": "scalar", "dtype": str(v.dtype), "shape": list(v.shape), "value": v.item()}
        return {"kind": "tensor", "value": v}

    index = {k: record(v) for k, v in state.items()}
    int8 = torch.cat(int8_parts) if int8_parts else torch.zeros(0, dtype=torch.int8)
    f32 = torch.cat(f32_parts) if f32_parts else torch.zeros(0)
    versions = {k: dict(v) for k, v in getattr(state, "_metadata", {}).items()}  # modules' state_dict versions
    return {"int8": int8, "f32": f32, "index": index, "versions": versions}


def unpack_state(packed: dict) -> dict:
    """Inverse of :func:`pack_state`."""
    int8, f32 = packed["int8"], packed["f32"]

    def numel(shape) -> int:
        return int(torch.Size(shape).numel())

    def build(rec):
        kind = rec["kind"]
        if kind == "none":
            return None
        if kind == "tuple":
            return tuple(build(x) for x in rec["items"])
        if kind in ("value", "tensor"):
            return rec["value"]
        if kind == "scalar":
            dtype = getattr(torch, rec["dtype"].removeprefix("torch."))
            return torch.tensor(rec["value"], dtype=dtype).reshape(rec["shape"])
        if kind == "f32":
            return f32[rec["off"] : rec["off"] + numel(rec["shape"])].reshape(rec["shape"]).clone()
        dtype = _QUINT[rec["dtype"]]
        raw = int8[rec["off"] : rec["off"] + numel(rec["shape"])].reshape(rec["shape"]).clone()
        if dtype == torch.quint8:
            raw = raw.view(torch.uint8)
        if kind == "qpt":
            return torch._make_per_tensor_quantized_tensor(raw, rec["scale"], rec["zp"])
        scales = f32[rec["soff"] : rec["soff"] + rec["n_ch"]].double()
        zp = torch.tensor(rec["zp"] or [0] * rec["n_ch"], dtype=torch.long)
        return torch._make_per_channel_quantized_tensor(raw, scales, zp, rec["axis"])

    state = OrderedDict((k, build(rec)) for k, rec in packed["index"].items())
    state._metadata = OrderedDict((k, dict(v)) for k, v in packed.get("versions", {}).items())  # type: ignore[attr-defined]
    return state


def save_int8(path: str | Path, arch: str, qmodel: nn.Module, meta: dict) -> str:
    """Write an int8 model file (``meta["precision"] = "int8"``, packed state) and record its sha256."""
    meta = {**meta, "precision": "int8", "qconfig": QCONFIG_BACKEND, "torch": torch.__version__.split("+")[0]}
    return save_model_file(path, arch, pack_state(qmodel.state_dict()), meta)


def int8_from_state(
    state: dict, meta: dict, source: str | Path, build_float: Callable[[dict], nn.Module], example: torch.Tensor
) -> nn.Module:
    """The int8 network of a loaded int8 model file: float net from ``meta``, converted, int8 tensors loaded."""
    if meta.get("precision") != "int8":
        raise WeightsError(f"weights file {source} is not an int8 model file (precision {meta.get('precision')!r})")
    engine = use_engine()
    qmodel = int8_skeleton(build_float(meta), example)
    try:
        qmodel.load_state_dict(unpack_state(state), strict=True)
    except (RuntimeError, KeyError, TypeError, IndexError, ValueError, AttributeError) as exc:
        first = str(exc).strip().splitlines()[0]
        raise WeightsError(f"weights file {source} does not fit its int8 network: {first}") from exc
    logger.debug("loaded int8 model {} (engine {})", source, engine)
    return qmodel.eval()
