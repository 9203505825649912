"""The video benchmark's score of a change of mask state: how long until the new label shows and stays, flickers."""

from __future__ import annotations

from pathlib import Path

import pytest

from maskwatch.commands.eval_video.changes import change_summary, changes_shown
from maskwatch.commands.eval_video.run import summarize, table_lines
from maskwatch.commands.eval_video.score import LabelSpell, score_clip
from maskwatch.commands.eval_video.truth import MOT_PEDESTRIAN, BoxRow, Spell, read_clip, write_clip

FPS = 10.0
OFF, ON = "without_mask", "with_mask"
SPELLS = [LabelSpell(1, OFF, 1, 10), LabelSpell(1, ON, 11, 40)]  # the mask goes on at frame 11


def _shown(labels_from: dict[int, str], last: int = 40) -> dict[int, dict[int, list[str | None]]]:
    """Person 1 shown from frame 1 to ``last`` with the label of the latest key of ``labels_from`` at or before."""
    shown: dict[int, list[str | None]] = {}
    for frame in range(1, last + 1):
        label = labels_from[max(k for k in labels_from if k <= frame)]
        shown[frame] = [label]
    return {1: shown}


def test_latency_is_from_the_change_frame_to_a_label_that_stays():
    (change,) = changes_shown(SPELLS, _shown({1: OFF, 14: ON}), FPS)
    assert (change.person, change.frame, change.label) == (1, 11, ON)
    assert change.latency_s == pytest.approx(0.3)
    assert change.flickers == 0


def test_a_flip_back_is_a_flicker_and_the_change_counts_once_it_stays():
    (change,) = changes_shown(SPELLS, _shown({1: OFF, 13: ON, 16: OFF, 18: ON}), FPS)
    assert change.flickers == 1
    assert change.latency_s == pytest.approx(0.7)  # shown for good from frame 18


def test_frames_without_the_person_say_nothing_and_a_change_never_shown_is_none():
    shown = _shown({1: OFF, 14: ON})
    for frame in range(15, 30):
        del shown[1][frame]  # not tracked: neither right nor wrong
    (change,) = changes_shown(SPELLS, shown, FPS)
    assert change.latency_s == pytest.approx(0.3) and change.flickers == 0
    (never,) = changes_shown(SPELLS, _shown({1: OFF}), FPS)
    assert never.latency_s is None
    summary = change_summary([change, never])
    assert summary["label_changes"] == 2 and summary["changes_shown"] == 1 and summary["changes_shown_fast"] == 1
    assert summary["max_change_latency_s"] is None and summary["median_change_latency_s"] is None


def test_a_return_with_another_label_after_a_gap_is_no_change():
    spells = [LabelSpell(1, OFF, 1, 10), LabelSpell(1, ON, 20, 40)]  # left and came back masked
    assert changes_shown(spells, _shown({1: OFF, 20: ON}), FPS) == []
    assert change_summary([])["label_changes"] == 0


def _box(i: int) -> tuple[float, float, float, float]:
    return (5.0 + 2 * i, 20.0, 35.0 + 2 * i, 50.0)


def test_clip_score_summary_and_table_report_the_change(tmp_path: Path):
    folder = tmp_path / "change"
    folder.mkdir()
    (folder / "video.mp4").write_bytes(b"")  # only its existence is checked by read_clip
    rows = [BoxRow(i + 1, 1, _box(i), True, MOT_PEDESTRIAN, 1.0) for i in range(40)]
    spells = [Spell(1, 1, 10, OFF), Spell(1, 11, 40, ON)]
    write_clip(
        folder, name="change", video="video.mp4", fps=FPS, frames=40, size_wh=(200, 80), spells=spells, rows=rows
    )
    label = lambda i: ON if i + 1 >= 16 else OFF  # noqa: E731  (shown from frame 16: 0.5 s late)
    records = [{"frame": i, "faces": [{"box": list(_box(i)), "label": label(i), "track_id": 1}]} for i in range(40)]
    score = score_clip(read_clip(folder), records, [])
    clip = score.to_json()
    assert clip["label_changes"] == 1 and clip["max_change_latency_s"] == pytest.approx(0.5)
    assert clip["changes"] == [{"person": 1, "frame": 11, "label": ON, "latency_s": 0.5, "flickers": 0}]
    result = summarize([score])
    assert result["changes_shown_fast"] == 1 and result["change_flickers"] == 0
    lines = table_lines(result)
    assert lines[-1].startswith("label changes: 1, shown 1 (1 within 0.5 s)")
    assert "change s" in lines[0] and lines[-2].startswith("OVERALL")
