"""``maskwatch quantize`` (int8 ONNX files, calibrated), the retired torch int8 path, fp32 Conv-BN folding, and the
bench's command-line checks. The quantization itself is tested in tests/test_onnx_quant.py."""

import json

import numpy as np
import pytest
import torch
from torch import nn

from maskwatch.config import load_config
from maskwatch.errors import WeightsError
from maskwatch.models.classifier import MaskClassifierNet
from maskwatch.models.fuse import fused_copy, fusion_groups
from maskwatch.models.retinaface import RetinaFace
from maskwatch.types import CLASS_NAMES
from maskwatch.wiring import build_pipeline, effective_engine, effective_precision, with_runtime


def _randomize_bn(model: nn.Module, seed: int) -> nn.Module:
    """Non-trivial BatchNorm statistics, so that folding them is actually exercised."""
    gen = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=gen) * 0.2)
            m.running_var.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
            m.weight.data.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
            m.bias.data.copy_(torch.randn(m.num_features, generator=gen) * 0.1)
    return model.eval()


@pytest.mark.parametrize(("make", "shape"), [(RetinaFace, (1, 3, 96, 128)), (MaskClassifierNet, (2, 3, 80, 80))])
def test_folding_keeps_the_outputs_and_uses_no_quantization_api(make, shape):
    torch.manual_seed(0)
    net = _randomize_bn(make(len(CLASS_NAMES)) if make is MaskClassifierNet else make(), 0)
    fused = fused_copy(net)
    assert fusion_groups(net) and not any(isinstance(m, nn.BatchNorm2d) for m in fused.modules())
    assert not any("intrinsic" in type(m).__module__ for m in fused.modules())  # plain convs, no torch.ao fusion
    x = torch.rand(shape) * 255
    with torch.no_grad():
        want, got = net(x), fused(x)
    pairs = zip(want if isinstance(want, tuple) else (want,), got if isinstance(got, tuple) else (got,), strict=True)
    for a, b in pairs:
        torch.testing.assert_close(b, a, atol=1e-4, rtol=1e-4)
    assert any(isinstance(m, nn.BatchNorm2d) for m in net.modules())  # the original is untouched


def test_int8_runs_on_onnx_and_cuda_runs_fp32(monkeypatch):
    import platform

    for machine, want in (("aarch64", "int8"), ("x86_64", "fp32")):  # precision auto: int8 on ARM, fp32 elsewhere
        monkeypatch.setattr(platform, "machine", lambda machine=machine: machine)
        assert load_config(None).runtime.precision == want
        assert load_config(None, {"runtime.precision": "int8" if want == "fp32" else "fp32"}).runtime.precision != want
    int8 = load_config(None, {"runtime.precision": "int8"})
    assert effective_engine(int8) == "onnx"
    assert effective_engine(with_runtime(int8, engine="torch")) == "onnx"  # int8 on the CPU always runs on onnx
    cuda = load_config(None, {"runtime.device": "cuda", "runtime.precision": "int8"})
    assert (effective_engine(cuda), effective_precision(cuda)) == ("torch", "fp32")
    fp32 = load_config(None, {"runtime.precision": "fp32"})
    assert (effective_engine(fp32), effective_precision(fp32)) == ("onnx", "fp32")  # engine auto: onnx on the CPU
    torch_fp32 = load_config(None, {"runtime.precision": "fp32", "runtime.engine": "torch"})
    assert (effective_engine(torch_fp32), effective_precision(torch_fp32)) == ("torch", "fp32")


def test_torch_engine_refuses_int8_model_files(tmp_path):
    from maskwatch.models.manifest import write_manifest_entry
    from maskwatch.models.weights import save_model_file

    path = tmp_path / "old_int8.pt"
    save_model_file(path, "retinaface_mnet025", {}, {"precision": "int8"})
    write_manifest_entry(path)
    cfg = load_config(None, {"runtime.engine": "torch", "runtime.precision": "fp32", "detector.weights": str(path)})
    with pytest.raises(WeightsError, match="torch int8 model file.*onnx engine") as error:
        build_pipeline(cfg)
    assert "\n" not in str(error.value)


@pytest.mark.slow
def test_quantize_command_exports_pt_files_first(tmp_path):
    """``maskwatch quantize`` from the shipped .pt files on a tiny synthetic VOC set: int8 ONNX files that load."""
    pytest.importorskip("onnxruntime")
    from maskwatch.cli import main
    from maskwatch.models.manifest import sha256_of
    from maskwatch.models.onnx_engine import OnnxMaskClassifier, OnnxRetinaFaceDetector
    from tests.test_evaluate import ITEMS, _write_voc

    _write_voc(tmp_path / "voc", ITEMS)
    out = tmp_path / "w"
    argv = ["quantize", "--calib", "2", "--data", str(tmp_path / "voc"), "--out", str(out)]
    assert main([*argv, "--detector", "detector.pt", "--classifier", "classifier.pt"]) == 0
    detector = OnnxRetinaFaceDetector(out / "detector_int8.onnx")
    classifier = OnnxMaskClassifier(out / "classifier_int8.onnx")
    assert detector.precision == classifier.precision == "int8"
    meta = detector.session.get_modelmeta().custom_metadata_map
    assert json.loads(meta["calibration"])["images"] == 2 and json.loads(meta["source"]) == "detector.onnx"
    assert json.loads(meta["source_sha256"]) != sha256_of(out / "detector_int8.onnx")
    assert classifier.classify([np.zeros((30, 20, 3), np.uint8)]).shape == (1, len(CLASS_NAMES))
    assert "detector_int8.onnx" in (out / "SHA256SUMS").read_text()


@pytest.mark.slow
def test_bench_writes_json(tmp_path):
    from maskwatch.cli import main
    from tests.conftest import write_video

    video = write_video(tmp_path / "v.mp4", frames=6, size_wh=(320, 240))
    out = tmp_path / "b.json"
    args = ["bench", "--video", str(video), "--frames", "4", "--repeats", "1", "--runs", "2", "--seed-runs", "0"]
    assert main([*args, "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    for name in ("detector", "classifier"):
        assert {"fp32_ms", "int8_ms", "fp32_bytes", "int8_bytes"} <= set(result[name])


@pytest.mark.slow
def test_seed_frcnn_timing_runs_offline():
    from maskwatch.commands.bench.core import seed_frcnn_ms

    timing = seed_frcnn_ms(1)
    assert timing is not None and timing["median_ms"] > 0


def test_bench_rejects_bad_numbers(tmp_path):
    from maskwatch.cli import main

    assert main(["bench", "--frames", "0"]) == 1
    assert main(["bench", "--video", str(tmp_path / "missing.mp4")]) == 1
