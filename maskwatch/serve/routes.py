"""Pages added to the HTTP view by the features that own them (the door display, history, the zone editor).

A page is a function of a :class:`Request` that returns a :class:`Reply`; :meth:`WebView.add_route` mounts it on
a path. The view checks the token before any page runs. A reply with ``stream`` is sent chunk by chunk as the
iterator yields (server-sent events); the iterator should end when the view closes (``view.wait_closed``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field

TEXT = "text/plain; charset=utf-8"
HTML = "text/html; charset=utf-8"


@dataclass(frozen=True)
class Request:
    """What a page sees of a request: the path, the parsed query, the headers and the client's address."""

    path: str
    query: Mapping[str, list[str]]
    headers: Mapping[str, str]
    client: str
    method: str = "GET"
    body: bytes = b""

    def arg(self, name: str, default: str | None = None) -> str | None:
        """The first value of query parameter ``name``."""
        values = self.query.get(name)
        return values[0] if values else default


@dataclass(frozen=True)
class Reply:
    """A page's answer; ``stream`` (if set) replaces ``body`` and is written as it yields."""

    body: bytes = b""
    ctype: str = TEXT
    code: int = 200
    headers: Mapping[str, str] = field(default_factory=dict)
    stream: Iterator[bytes] | None = None


Page = Callable[[Request], Reply]
