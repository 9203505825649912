"""Parsing and checking the HTTP view's bind address."""

from __future__ import annotations

import ipaddress

from maskwatch.errors import ConfigError


def parse_bind(text: str) -> tuple[str, int]:
    """``HOST:PORT``, ``[v6]:PORT``, ``:PORT`` or ``PORT`` (host 127.0.0.1) → (host, port)."""
    text = text.strip()
    host, port = "127.0.0.1", text
    if text.startswith("["):
        host, _, port = text[1:].partition("]")
        port = port.removeprefix(":")
    elif ":" in text:
        host, _, port = text.rpartition(":")
        host = host or "127.0.0.1"
    if not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ConfigError(f"--http must be HOST:PORT (e.g. 127.0.0.1:8080), got '{text}'")
    return host, int(port)


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and ``localhost``."""
    host = host.strip().strip("[]").lower()
    try:
        return host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
