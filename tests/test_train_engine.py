"""The trainers' shared engine (schedule, seeding, checkpoints, resume) and the augmentation presets."""

from __future__ import annotations

import argparse
import random
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from maskwatch.errors import MaskwatchError
from maskwatch.models.weights import save_model_file
from maskwatch.train.engine import (
    LAST,
    optimisation_step,
    resume,
    save_checkpoint,
    seed_everything,
    warmup_cosine,
)
from maskwatch.train.presets import PRESETS, RetinaFacePreset, as_plain, get_preset
from tests.helpers import maskwatch


def _run(total: int = 50, warmup: int = 5, final: float = 0.0, seed: int = 0):
    torch.manual_seed(seed)
    model = nn.Linear(4, 2)
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.1)
    return model, optimizer, warmup_cosine(optimizer, total, warmup, final)


def _factors(total: int, warmup: int, final: float = 0.0) -> list[float]:
    _, optimizer, scheduler = _run(total, warmup, final)
    out = []
    for _ in range(total + 3):
        out.append(scheduler.get_last_lr()[0] / 0.1)
        optimizer.step()
        scheduler.step()
    return out


def test_schedule_warms_up_then_decays_to_the_final_factor() -> None:
    f = _factors(total=100, warmup=10, final=0.05)
    assert f[0] == pytest.approx(0.1) and f[9] == pytest.approx(1.0)
    assert all(a < b for a, b in zip(f[:9], f[1:10], strict=True))  # warm-up rises
    assert all(a >= b for a, b in zip(f[9:], f[10:], strict=False))  # never rises after it
    assert f[100] == pytest.approx(0.05) and f[-1] == pytest.approx(0.05)  # ends at final_factor and stays
    assert max(f) == pytest.approx(1.0)


def test_warmup_is_clamped_to_a_fifth_of_the_run_and_at_least_one_step() -> None:
    f = _factors(total=20, warmup=100)
    assert f[3] == pytest.approx(1.0) and f[2] < 1.0  # 4 warm-up steps, not 100
    f = _factors(total=3, warmup=0)
    assert f[0] == pytest.approx(1.0) and f[3] == pytest.approx(0.0)


def _train_steps(model, optimizer, scheduler, n: int) -> None:
    x = torch.randn(8, 4, generator=torch.Generator().manual_seed(0))
    for _ in range(n):
        optimisation_step(model(x).pow(2).mean(), optimizer, scheduler, epoch=0)


def test_save_then_resume_restores_model_optimizer_schedule_and_history(tmp_path: Path) -> None:
    model, optimizer, scheduler = _run()
    _train_steps(model, optimizer, scheduler, 7)
    history = [{"epoch": 0, "loss": 1.5}, {"epoch": 1, "loss": 1.2}]
    last = save_checkpoint(tmp_path / "run", 1, model, optimizer, scheduler, {"lr": 0.1}, history)
    assert last == tmp_path / "run" / LAST and (tmp_path / "run" / "epoch_001.pt").is_file()
    payload = torch.load(last, weights_only=True)
    assert set(payload) == {"format", "model", "optimizer", "lr_scheduler", "args", "epoch", "history"}

    model2, optimizer2, scheduler2 = _run(seed=1)
    start, restored = resume(last, model2, optimizer2, scheduler2)
    assert start == 2 and restored == history
    for a, b in zip(model.parameters(), model2.parameters(), strict=True):
        assert torch.equal(a, b)
    assert scheduler2.last_epoch == 7 and scheduler2.get_last_lr() == scheduler.get_last_lr()
    state, state2 = optimizer.state_dict()["state"], optimizer2.state_dict()["state"]
    assert torch.equal(state[0]["exp_avg"], state2[0]["exp_avg"])
    _train_steps(model, optimizer, scheduler, 3)  # both continue identically
    _train_steps(model2, optimizer2, scheduler2, 3)
    for a, b in zip(model.parameters(), model2.parameters(), strict=True):
        assert torch.equal(a, b)


def test_resume_accepts_an_old_checkpoint_without_format_or_history(tmp_path: Path) -> None:
    model, optimizer, scheduler = _run()
    old = {
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "lr_scheduler": scheduler.state_dict(),
        "args": {},
        "epoch": 4,
    }
    torch.save(old, tmp_path / "checkpoint.pt")
    assert resume(tmp_path / "checkpoint.pt", *_run()) == (5, [])
    cosine = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=10)
    torch.save({**old, "lr_scheduler": cosine.state_dict()}, tmp_path / "cosine.pt")
    _one_line_error(tmp_path / "cosine.pt", "schedule is of another kind (T_max, eta_min)")


def _one_line_error(path: Path, *needles: str) -> None:
    with pytest.raises(MaskwatchError) as caught:
        resume(path, *_run())
    text = str(caught.value)
    assert "\n" not in text and str(path) in text
    for needle in needles:
        assert needle in text


def test_resume_refuses_a_model_file_garbage_a_missing_file_and_another_model(tmp_path: Path) -> None:
    model_file = tmp_path / "detector.pt"
    save_model_file(model_file, "retinaface_mnet025", nn.Linear(4, 2).state_dict(), {})
    _one_line_error(model_file, "model file", "not a training checkpoint")
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"\x00not a torch file" * 50)
    _one_line_error(garbage, "not a readable torch file")
    _one_line_error(tmp_path / "missing.pt", "not found")
    torch.save({"args": argparse.Namespace(lr=0.1)}, tmp_path / "pickled.pt")
    _one_line_error(tmp_path / "pickled.pt", "refers to code (argparse.Namespace)")
    torch.save({"weights": torch.zeros(3)}, tmp_path / "dict.pt")
    _one_line_error(tmp_path / "dict.pt", "not a training checkpoint")

    other = nn.Linear(4, 3)
    other_opt = torch.optim.AdamW(other.parameters())
    save_checkpoint(tmp_path / "other", 0, other, other_opt, warmup_cosine(other_opt, 10, 1), {}, [])
    _one_line_error(tmp_path / "other" / LAST, "do not fit", "weight (3, 4) vs (2, 4)")


def test_non_finite_loss_stops_before_any_update() -> None:
    model, optimizer, scheduler = _run()
    before = [p.clone() for p in model.parameters()]
    with pytest.raises(MaskwatchError, match="non-finite loss"):
        optimisation_step(model(torch.randn(2, 4)).sum() * float("nan"), optimizer, scheduler, epoch=3)
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))


def test_seed_everything_repeats_the_draws() -> None:
    def draws() -> tuple:
        return random.random(), float(np.random.rand()), float(torch.rand(1))

    seed_everything(7)
    first = draws()
    seed_everything(7)
    assert draws() == first
    seed_everything(8)
    assert draws() != first


def test_presets_by_name() -> None:
    assert get_preset("retinaface", "v1") == RetinaFacePreset()
    assert get_preset("retinaface", "default") == get_preset("retinaface", "small")
    assert get_preset("retinaface", "wide").closeup_prob == 0.0
    assert as_plain(RetinaFacePreset())["closeup_fill"] == [0.3, 0.95]
    with pytest.raises(MaskwatchError) as caught:
        get_preset("retinaface", "sunny")
    assert "sunny" in str(caught.value) and all(name in str(caught.value) for name in PRESETS["retinaface"])
    with pytest.raises(MaskwatchError, match="known"):
        get_preset("yolo", "default")


@pytest.mark.parametrize("name", list(PRESETS["retinaface"]))
def test_every_retinaface_preset_keeps_boxes_inside_the_crop(name: str) -> None:
    from maskwatch.train.detector import Settings, augment

    s = Settings(input_size=160, crop_size=96, augmentation=get_preset("retinaface", name))
    image = np.full((120, 160, 3), 128, np.uint8)
    boxes = np.array([[10, 10, 40, 40], [100, 60, 140, 110]], np.float32)
    rng = random.Random(0)
    for _ in range(10):
        crop, out = augment(image, boxes, rng, s)
        assert crop.shape == (96, 96, 3) and (out >= 0).all() and (out <= 96).all()


def test_cli_refuses_an_unknown_preset_in_one_line(tmp_path: Path) -> None:
    run = maskwatch("train", "detector", "--data", str(tmp_path), "--preset", "sunny", "--out", str(tmp_path / "d.pt"))
    assert run.returncode == 1 and "Traceback" not in run.stderr, run.stderr[-2000:]
    errors = [line for line in run.stderr.splitlines() if "ERROR" in line]
    assert len(errors) == 1 and "sunny" in errors[0] and "closeup" in errors[0]


def test_scenes_with_unmasked_faces_are_drawn_more_often() -> None:
    import random
    from pathlib import Path

    import numpy as np

    from maskwatch.data.voc import AnnotatedImage
    from maskwatch.train.detector import make_batches, scene_weights

    def scene(classes):
        return AnnotatedImage(Path("x.jpg"), np.zeros((len(classes), 4), np.float32), np.array(classes), (64, 64))

    items = [scene([0]), scene([0, 1]), scene([2]), scene([])]
    assert scene_weights(items, 3.0) == [1.0, 3.0, 1.0, 1.0]
    once = make_batches(4, 2, random.Random(0), scene_weights(items, 1.0))
    assert sorted(i for b in once for i in b) == [0, 1, 2, 3]  # weight 1: every scene once per epoch
    rng = random.Random(0)
    draws = [i for _ in range(500) for b in make_batches(4, 2, rng, scene_weights(items, 3.0)) for i in b]
    share = draws.count(1) / len(draws)
    assert 0.45 < share < 0.55  # 3 / 6 of the weight


def test_small_faces_get_at_least_k_anchors_without_stealing() -> None:
    import torch

    from maskwatch.train.detector import TRAIN_MIN_SIZES, match, prior_boxes

    priors = prior_boxes(480, 480, TRAIN_MIN_SIZES)
    tiny = torch.tensor([[101.0, 103.0, 109.0, 113.0]]) / 480
    big = torch.tensor([[200.0, 200.0, 300.0, 320.0]]) / 480
    plain, _ = match(tiny, priors, 0.35)
    compensated, _ = match(tiny, priors, 0.35, min_matches=3)
    assert int(plain.sum()) == 1 and int(compensated.sum()) == 3
    both_plain, _ = match(torch.cat([tiny, big]), priors, 0.35)
    both, _ = match(torch.cat([tiny, big]), priors, 0.35, min_matches=3)
    assert bool((both >= both_plain).all())  # only adds positives; the big face keeps all of its own
    assert int(both.sum()) == int(both_plain.sum()) + 2


def test_empty_frames_are_flat_mostly_dark_and_repeatable() -> None:
    from maskwatch.train.detector import blank_frame

    frames = [blank_frame(64, random.Random(seed)) for seed in range(40)]
    assert all(f.shape == (64, 64, 3) and f.dtype == np.uint8 for f in frames)
    assert all(float(f.std()) < 20 for f in frames)  # no structure beyond a soft ramp and sensor noise
    assert sum(float(f.mean()) < 50 for f in frames) >= 15  # dark in about half the draws (a night, a lens cap)
    assert np.array_equal(blank_frame(64, random.Random(3)), frames[3])
    assert get_preset("retinaface", "small").blank_prob > 0 and get_preset("retinaface", "v1").blank_prob == 0
