from pathlib import Path

import numpy as np
import pytest
import yaml

from maskwatch.config import Config, config_from_dict, load_config, render_reference
from maskwatch.errors import ConfigError
from maskwatch.types import UNDECIDED, FaceDetections, Frame, FrameResult

ROOT = Path(__file__).resolve().parent.parent


def test_face_detections_defaults_and_indexing():
    faces = FaceDetections(xyxy=[[0, 0, 10, 10], [5, 5, 20, 20]], det_score=[0.9, 0.6])
    assert len(faces) == 2
    assert (faces.class_id == UNDECIDED).all()
    assert faces.class_score.tolist() == [0.0, 0.0]
    picked = faces[faces.det_score > 0.7]
    assert len(picked) == 1 and picked.det_score[0] == pytest.approx(0.9)
    assert len(FaceDetections.empty()) == 0


def test_face_detections_rejects_mismatched_rows():
    with pytest.raises(ValueError, match="det_score"):
        FaceDetections(xyxy=[[0, 0, 1, 1]], det_score=[0.5, 0.4])


def test_frame_result_json_matches_contract():
    faces = FaceDetections(xyxy=[[1, 2, 3, 4]], det_score=[0.75], class_id=[1], class_prob=[[0.1, 0.85, 0.05]])
    result = FrameResult(frame=Frame(np.zeros((8, 8, 3), np.uint8), 7, 0.7, name="cam"), faces=faces)
    record = result.to_json()
    assert record == {
        "source": "cam",
        "frame": 7,
        "faces": [{"box": [1.0, 2.0, 3.0, 4.0], "label": "without_mask", "score": 0.85, "det_score": 0.75}],
    }


def test_default_yaml_equals_builtin_defaults():
    assert load_config(ROOT / "configs" / "default.yaml") == Config()


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"detector": {"score_treshold": 0.3}}, "unknown config key 'detector.score_treshold'"),
        ({"detectorr": {}}, "unknown config key 'detectorr'"),
        ({"capture": {"queue_size": "many"}}, "capture.queue_size"),
        ({"detector": {"score_threshold": 1.5}}, "detector.score_threshold"),
        ({"runtime": {"device": "tpu"}}, "runtime.device"),
        ({"render": {"colors": {"with_mask": [0, 0]}}}, "render.colors.with_mask"),
        ([1, 2], "mapping"),
    ],
)
def test_invalid_config_names_the_key(data, message):
    with pytest.raises(ConfigError, match=message.replace(".", r"\.")):
        config_from_dict(data)


def test_malformed_yaml_and_missing_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("detector: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.yaml")


def test_cli_overrides_win_over_file(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({"runtime": {"device": "cpu", "threads": 1}, "detector": {"input_size": 320}}))
    cfg = load_config(path, {"runtime.precision": "fp32", "runtime.device": None})
    assert cfg.runtime.threads == 1 and cfg.runtime.precision == "fp32" and cfg.detector.input_size == 320


def test_reference_lists_every_field():
    ref = render_reference()
    for section, field in Config.model_fields.items():
        if not hasattr(field.annotation, "model_fields"):  # a top-level list such as `sources`
            assert f"| `{section}` |" in ref
            continue  # its entries' keys: below
        for name in field.annotation.model_fields:
            assert f"`{section}.{name}`" in ref


def test_reference_lists_the_keys_of_list_entries():
    from maskwatch.config.door import LineConfig, ZoneConfig
    from maskwatch.config.sources import SourceConfig

    ref = render_reference()
    for section, model in (("zones", ZoneConfig), ("lines", LineConfig), ("sources", SourceConfig)):
        for name, field in model.model_fields.items():
            assert f"| `{section}[].{field.alias or name}` |" in ref


def test_docs_config_reference_is_current():
    page = (ROOT / "docs" / "config.md").read_text()
    assert render_reference() in page, "docs/config.md is out of date: run python docs/make_config.py"


def test_the_pi_profile_is_valid_and_stays_on_this_machine():
    cfg = load_config(ROOT / "configs" / "pi.yaml")
    assert cfg.detector.input_size == 480 and cfg.tracking.detect_every == 3 and cfg.runtime.precision == "int8"
    assert cfg.http.bind.startswith("127.0.0.1:")  # the Pi's view is local unless the user says otherwise


def test_the_service_unit_runs_the_pi_profile_with_a_persistent_event_log():
    unit = (ROOT / "deploy" / "maskwatch.service").read_text()
    exec_start = unit.split("ExecStart=", 1)[1].split("\n#", 1)[0]
    assert "--config /etc/maskwatch/pi.yaml" in exec_start and "--events /var/lib/maskwatch/events.jsonl" in exec_start
    assert "Restart=on-failure" in unit and "WantedBy=multi-user.target" in unit and "StateDirectory=maskwatch" in unit
