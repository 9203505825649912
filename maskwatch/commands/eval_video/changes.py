"""How fast a change of a person's mask state is shown, and whether the shown label flickers afterwards.

A *change* is where one of a person's label spells ends and the next, with another label, starts on the following
frame (someone who puts a mask on or takes it off while in view). From that frame on, a frame is *right* when every
tracked face matched to the person shows the new label (a frame where the person has no tracked face says
nothing). The change is *shown* on the first right frame that starts a run of :data:`HOLD_S` seconds without a wrong
frame (or the rest of the spell, if shorter); its latency is the time from the change frame to it. A *flicker* is a
return from a right frame to a wrong one anywhere in the new spell.
"""

from __future__ import annotations

from dataclasses import dataclass

HOLD_S = 1.0
"""How long the new label must stay on the person for the change to count as shown."""
FAST_S = 0.5
"""A change shown within this time is shown in time."""


@dataclass(frozen=True)
class ChangeShown:
    """One change of a person's label: the truth's first frame of the new label, and what the tracker showed."""

    person: int
    frame: int
    label: str
    latency_s: float | None  # None: never shown for HOLD_S within the spell
    flickers: int

    def to_json(self) -> dict:
        return {
            "person": self.person,
            "frame": self.frame,
            "label": self.label,
            "latency_s": self.latency_s,
            "flickers": self.flickers,
        }


def changes_shown(spells, shown: dict[int, dict[int, list[str | None]]], fps: float) -> list[ChangeShown]:
    """Every change in ``spells`` (score.LabelSpell, merged per person) as shown: ``shown`` is person -> frame ->
    the labels of the tracked faces matched to them on that frame."""
    out = []
    hold = max(int(round(HOLD_S * fps)), 1)
    ordered = sorted(spells, key=lambda s: (s.person, s.first))
    for before, after in zip(ordered, ordered[1:], strict=False):
        if before.person != after.person or before.label == after.label or after.first != before.last + 1:
            continue
        labels = shown.get(after.person, {})
        frames = [f for f in range(after.first, after.last + 1) if labels.get(f)]
        right = {f: all(label == after.label for label in labels[f]) for f in frames}
        latency = None
        for k, f in enumerate(frames):
            window = [g for g in frames[k:] if g <= f + hold]
            if all(right[g] for g in window):
                latency = round((f - after.first) / fps, 3)
                break
        flickers = sum(1 for a, b in zip(frames, frames[1:], strict=False) if right[a] and not right[b])
        out.append(ChangeShown(after.person, after.first, after.label, latency, flickers))
    return out


def change_summary(changes: list[ChangeShown]) -> dict:
    """Totals over changes: how many, how many shown (and within :data:`FAST_S`), the median and worst latency (a
    change never shown counts as infinitely late: the worst is then None, as the median may be), the flickers."""
    if not changes:
        return {
            "label_changes": 0,
            "changes_shown": None,
            "changes_shown_fast": None,
            "median_change_latency_s": None,
            "max_change_latency_s": None,
            "change_flickers": None,
        }
    latencies = sorted(c.latency_s if c.latency_s is not None else float("inf") for c in changes)
    mid = len(latencies) // 2
    median = latencies[mid] if len(latencies) % 2 else (latencies[mid - 1] + latencies[mid]) / 2
    return {
        "label_changes": len(changes),
        "changes_shown": sum(1 for c in changes if c.latency_s is not None),
        "changes_shown_fast": sum(1 for v in latencies if v <= FAST_S),
        "median_change_latency_s": round(median, 3) if median != float("inf") else None,
        "max_change_latency_s": latencies[-1] if latencies[-1] != float("inf") else None,
        "change_flickers": sum(c.flickers for c in changes),
    }
