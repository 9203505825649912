"""A source that wraps another reads its status from the wrapped one, live (no stale copies)."""

from __future__ import annotations

from maskwatch.capture.base import RawFrame, Source
from maskwatch.runner.lanes import NamedSource


class Inner(Source):
    name, is_live, finite, fps, frame_count = "inner", True, False, 12.5, None

    def read(self) -> RawFrame | None:
        return None

    def close(self) -> None:
        pass


def test_a_named_source_forwards_what_the_wrapped_source_reports_now() -> None:
    inner = Inner()
    named = NamedSource(inner, "door")
    assert (named.name, named.fps, named.is_live, named.outages, named.frames_lost) == ("door", 12.5, True, 0, 0)
    inner.outages, inner.frames_lost, inner.truncated = 2, 7, True
    assert (named.outages, named.frames_lost, named.truncated) == (2, 7, True)
    assert named.connected and named.downtime_s == 0.0
