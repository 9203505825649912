import pickle

import pytest
import torch

from maskwatch.errors import WeightsError
from maskwatch.models.manifest import sha256_of, write_manifest_entry
from maskwatch.models.weights import load_checked, load_model_file, load_state_dict_strict, save_model_file


def test_roundtrip_and_manifest(tmp_path):
    net = torch.nn.Linear(3, 2)
    path = tmp_path / "m.pt"
    digest = save_model_file(path, "linear", net.state_dict(), {"input_size": 3})
    assert digest == sha256_of(path)
    assert f"{digest}  m.pt" in (tmp_path / "SHA256SUMS").read_text()
    state, meta = load_model_file(path, "linear")
    assert meta == {"input_size": 3}
    other = torch.nn.Linear(3, 2)
    load_state_dict_strict(other, state, path)
    assert torch.equal(other.weight, net.weight)


def test_missing_file_and_missing_manifest_entry(tmp_path):
    with pytest.raises(WeightsError, match="not found"):
        load_checked(tmp_path / "none.pt")
    path = tmp_path / "x.pt"
    torch.save({"a": torch.zeros(1)}, path)
    with pytest.raises(WeightsError, match="no sha256 entry"):
        load_checked(path)


def test_modified_file_is_refused(tmp_path):
    path = tmp_path / "m.pt"
    save_model_file(path, "linear", torch.nn.Linear(2, 2).state_dict())
    path.write_bytes(path.read_bytes()[:-10])  # truncated after the manifest was written
    with pytest.raises(WeightsError, match="sha256"):
        load_checked(path)


def test_truncated_but_listed_file_gives_clear_error(tmp_path):
    path = tmp_path / "m.pt"
    torch.save({"state_dict": {}}, path)
    path.write_bytes(path.read_bytes()[:40])
    write_manifest_entry(path)
    with pytest.raises(WeightsError, match="cannot load weights file"):
        load_checked(path)


class _Evil:
    def __reduce__(self):
        return (print, ("pwned",))


def test_code_executing_pickle_is_refused(tmp_path, capsys):
    path = tmp_path / "evil.pt"
    with open(path, "wb") as f:
        pickle.dump({"state_dict": _Evil()}, f)
    write_manifest_entry(path)
    with pytest.raises(WeightsError, match="cannot load"):
        load_checked(path)
    assert "pwned" not in capsys.readouterr().out


def test_wrong_architecture_is_named_not_dumped(tmp_path):
    path = tmp_path / "m.pt"
    save_model_file(path, "linear", torch.nn.Linear(4, 4).state_dict())
    with pytest.raises(WeightsError, match="holds a 'linear' model"):
        load_model_file(path, "retinaface_mnet025")
    state, _ = load_model_file(path, "linear")
    with pytest.raises(WeightsError, match="does not fit Conv2d: .*wrong-shape") as err:
        load_state_dict_strict(torch.nn.Conv2d(4, 4, 3), state, path)
    assert len(str(err.value).splitlines()) == 1


def test_shipped_weights_match_manifest_and_load():
    import numpy as np

    from maskwatch.models.classifier import MaskClassifier
    from maskwatch.models.detector import identify, load_detector
    from maskwatch.models.manifest import WEIGHTS_DIRS, read_manifest

    folder = WEIGHTS_DIRS[0]
    manifest = read_manifest(folder)
    assert {"detector.pt", "classifier.pt"} <= set(manifest)
    for name, digest in manifest.items():
        assert sha256_of(folder / name) == digest, name
        assert (folder / name).stat().st_size < 10 * 1024 * 1024
    arch, meta = identify("detector.pt")
    assert arch == "retinaface_mnet025" and meta["input_size"] > 0
    faces = load_detector("detector.pt").detect(np.zeros((120, 160, 3), np.uint8))
    assert len(faces) == 0  # a black frame has no face
    prob = MaskClassifier("classifier.pt").classify([np.zeros((30, 20, 3), np.uint8)])
    assert prob.shape == (1, 3) and abs(float(prob.sum()) - 1) < 1e-5
