"""ONNX export: graphs match torch under onnxruntime, dynamic shapes work, export_all writes files and models.json."""

from __future__ import annotations

import copy
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from maskwatch.commands.export import export_all, export_classifier, export_detector, verify_onnx
from maskwatch.errors import MaskwatchError, OutputError, WeightsError
from maskwatch.models import classifier as clf
from maskwatch.models import retinaface as rf
from maskwatch.models.manifest import read_manifest, sha256_of
from maskwatch.models.weights import save_model_file
from maskwatch.types import CLASS_NAMES

pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

# Tolerance: onnxruntime and torch run the same fp32 ops in another order (BN folded into the convs, other conv
# kernels), so they differ by float rounding only. How much rounding a network amplifies depends on its weights (these
# random ones turn raw 0..255 pixels into outputs of ~5 with ~2e-4 of fp32 error), so the bound is measured, not
# guessed: the ONNX graph may differ from torch fp32 by at most TOL_FACTOR x torch's own fp32 error against an fp64
# run (two fp32 results each that far from the truth are at most 2x apart; 4x leaves margin for other CPUs' kernels).
# A wrong graph (a BN not folded, a mean not subtracted, a shape baked in) is off by the output's own size (~1).
TOL_FACTOR = 4.0


def _realistic(model: nn.Module, example: torch.Tensor, seed: int) -> nn.Module:
    """Random BN affine params and BN statistics measured on ``example``, so every layer's output is O(1) and
    folding errors show (the default BN stats make BN an identity and the outputs tiny)."""
    gen = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.reset_running_stats()
            m.momentum = None  # cumulative average: one pass sets the stats to that batch's
            m.weight.data = torch.rand(m.num_features, generator=gen) + 0.5
            m.bias.data = torch.randn(m.num_features, generator=gen) * 0.2
    model.train()
    with torch.no_grad():
        model(example)
    return model.eval()


def _images(n: int, h: int, w: int, seed: int = 0) -> torch.Tensor:
    """Smooth random BGR images (0..255): blobs rather than noise, so features vary like in photos."""
    gen = torch.Generator().manual_seed(seed)
    low = torch.rand(n, 3, max(h // 16, 2), max(w // 16, 2), generator=gen) * 255
    return torch.nn.functional.interpolate(low, size=(h, w), mode="bilinear", align_corners=False).round()


def _tolerance(module: nn.Module, x: torch.Tensor) -> float:
    """TOL_FACTOR x the max abs error of ``module``'s fp32 outputs against an fp64 copy (floored at 1e-6 x scale)."""
    module64 = copy.deepcopy(module).eval().double()
    with torch.no_grad():
        out32, out64 = module.eval()(x), module64(x.double())
    outs32 = [out32] if isinstance(out32, torch.Tensor) else list(out32)
    outs64 = [out64] if isinstance(out64, torch.Tensor) else list(out64)
    err = max(float((a.double() - b).abs().max()) for a, b in zip(outs32, outs64, strict=True))
    scale = max(1.0, max(float(o.abs().max()) for o in outs32))
    return TOL_FACTOR * max(err, 1e-6 * scale)


@pytest.fixture(scope="module")
def detector(tmp_path_factory: pytest.TempPathFactory) -> tuple[nn.Module, Path]:
    torch.manual_seed(0)
    model = _realistic(rf.build_model(), _images(2, 160, 224, seed=1), seed=2)
    path = export_detector(model, tmp_path_factory.mktemp("det") / "detector.onnx", example_hw=(480, 640))
    return model, path


@pytest.fixture(scope="module")
def classifier(tmp_path_factory: pytest.TempPathFactory) -> tuple[nn.Module, Path]:
    torch.manual_seed(0)
    net = _realistic(clf.MaskClassifierNet(), _images(8, 80, 80, seed=3), seed=4)
    return net, export_classifier(net, tmp_path_factory.mktemp("cls") / "classifier.onnx", input_size=80)


def test_detector_graph_signature(detector: tuple[nn.Module, Path]) -> None:
    session = ort.InferenceSession(str(detector[1]), providers=["CPUExecutionProvider"])
    (inp,) = session.get_inputs()
    assert (inp.name, inp.type, inp.shape) == ("image", "tensor(float)", [1, 3, "height", "width"])
    assert [o.name for o in session.get_outputs()] == ["loc", "logits", "landmarks"]


@pytest.mark.parametrize("hw", [(480, 640), (320, 320), (333, 517)], ids=["traced", "square", "odd"])
def test_detector_matches_torch(detector: tuple[nn.Module, Path], hw: tuple[int, int]) -> None:
    model, path = detector
    x = _images(1, *hw, seed=hw[0])
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    loc, logits, landmarks = session.run(None, {"image": x.numpy()})
    priors = len(rf.prior_boxes(*hw))
    assert (loc.shape, logits.shape, landmarks.shape) == ((1, priors, 4), (1, priors, 2), (1, priors, 10))
    assert verify_onnx(path, model, x) <= _tolerance(model, x)


@pytest.mark.parametrize("batch", [1, 5])
def test_classifier_matches_torch(classifier: tuple[nn.Module, Path], batch: int) -> None:
    net, path = classifier
    x = _images(batch, 80, 80, seed=batch)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (inp,) = session.get_inputs()
    assert (inp.name, inp.shape) == ("crops", ["batch", 3, 80, 80])
    (logits,) = session.run(["logits"], {"crops": x.numpy()})
    assert logits.shape == (batch, len(CLASS_NAMES))
    tol = _tolerance(net, x)
    assert verify_onnx(path, net, x) <= tol
    with torch.no_grad():  # the fused copy the pipeline runs gives the same answer
        np.testing.assert_allclose(logits, net.fused_for_inference()(x).numpy(), rtol=0, atol=tol)


@pytest.mark.slow
def test_export_is_deterministic_and_eval_mode(tmp_path: Path) -> None:
    import onnx

    torch.manual_seed(0)
    net = clf.MaskClassifierNet().train()  # train mode on purpose: the export must still be the eval graph
    a = export_classifier(net, tmp_path / "a.onnx", input_size=64)
    b = export_classifier(net, tmp_path / "b.onnx", input_size=64)
    assert a.read_bytes() == b.read_bytes()
    assert net.training  # the caller's mode is restored
    ops = {node.op_type for node in onnx.load(str(a)).graph.node}
    assert not ops & {"Dropout", "BatchNormalization"}
    x = _images(3, 64, 64)
    assert verify_onnx(a, net, x) <= _tolerance(copy.deepcopy(net), x)


def _weights_dir(folder: Path, detector_meta: dict | None = None) -> tuple[Path, Path]:
    torch.manual_seed(0)
    det, cls = folder / "det.pt", folder / "cls.pt"
    meta = {"min_sizes": [[8, 16], [32, 64], [128, 256]], "input_size": 640}
    save_model_file(det, rf.ARCH, rf.build_model().state_dict(), detector_meta or meta)
    save_model_file(
        cls, clf.ARCH, clf.MaskClassifierNet().state_dict(), {"input_size": 80, "class_names": [*CLASS_NAMES]}
    )
    return det, cls


def test_export_all_writes_models_and_card(tmp_path: Path) -> None:
    det, cls = _weights_dir(tmp_path / "weights")
    written = export_all(tmp_path / "out" / "onnx", det, cls)
    assert [p.name for p in written] == ["detector.onnx", "classifier.onnx", "models.json", "SHA256SUMS"]
    assert all(p.is_file() and p.stat().st_size > 0 for p in written)
    assert read_manifest(written[0].parent) == {p.name: sha256_of(p) for p in written[:2]}  # they load verified

    card = json.loads(written[2].read_text())
    assert card["detector"]["input"] == {"name": "image", "shape": [1, 3, "height", "width"], "dtype": "float32"}
    assert card["detector"]["min_sizes"] == [[8, 16], [32, 64], [128, 256]]
    assert card["detector"]["steps"] == [8, 16, 32] and card["detector"]["variances"] == [0.1, 0.2]
    assert card["detector"]["input_size"] == 640
    assert card["classifier"]["input"]["shape"] == ["batch", 3, 80, 80]
    assert card["classifier"]["class_names"] == list(CLASS_NAMES)
    assert "BGR" in card["detector"]["preprocessing"] and "BGR" in card["classifier"]["preprocessing"]

    session = ort.InferenceSession(str(written[1]), providers=["CPUExecutionProvider"])
    (logits,) = session.run(None, {"crops": _images(2, 80, 80).numpy()})
    assert logits.shape == (2, 3) and np.isfinite(logits).all()
    props = {k: json.loads(v) for k, v in session.get_modelmeta().custom_metadata_map.items()}
    assert props == {"format": "maskwatch-onnx/1", "arch": clf.ARCH, "input_size": 80, "class_names": list(CLASS_NAMES)}
    det_session = ort.InferenceSession(str(written[0]), providers=["CPUExecutionProvider"])
    props = {k: json.loads(v) for k, v in det_session.get_modelmeta().custom_metadata_map.items()}
    assert props["min_sizes"] == card["detector"]["min_sizes"] and props["input_size"] == 640
    assert (props["steps"], props["variances"]) == (card["detector"]["steps"], card["detector"]["variances"])


def test_export_all_refuses_unwritable_out_dir(tmp_path: Path) -> None:
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    with pytest.raises(OutputError, match="cannot write to output folder"):
        export_all(blocker / "onnx", "unused.pt", "unused.pt")


def test_export_all_refuses_int8_and_foreign_weights(tmp_path: Path) -> None:
    det, cls = _weights_dir(tmp_path / "w", detector_meta={"precision": "int8"})
    with pytest.raises(WeightsError, match="int8"):
        export_all(tmp_path / "out", det, cls)
    with pytest.raises(WeightsError, match="ONNX export supports detectors"):
        export_all(tmp_path / "out", cls, cls)


def test_missing_dependencies_give_install_hint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "onnx", None)  # makes `import onnx` raise ImportError
    with pytest.raises(MaskwatchError, match="pip install"):
        export_all(tmp_path / "out", "unused.pt", "unused.pt")
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    with pytest.raises(MaskwatchError, match="'onnxruntime'.*pip install"):
        verify_onnx(tmp_path / "x.onnx", nn.Identity(), torch.zeros(1))
