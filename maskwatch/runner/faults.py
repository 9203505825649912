"""Faults of outputs at run time (a broker away, a full disk, a missing player): counted per output for
``/metrics`` and logged, at most once a minute per output, so a fault never stops the monitor nor floods the log."""

from __future__ import annotations

import threading
import time

from loguru import logger

_lock = threading.Lock()
_counts: dict[str, int] = {}
_last_logged: dict[str, float] = {}
LOG_EVERY_S = 60.0


def record_fault(output: str, message: str) -> None:
    """Count a fault of ``output`` (``clips``, ``history``, ``alarm.sound``...) and log ``message`` (rate-limited)."""
    now = time.monotonic()
    with _lock:
        _counts[output] = _counts.get(output, 0) + 1
        count = _counts[output]
        due = now - _last_logged.get(output, -LOG_EVERY_S) >= LOG_EVERY_S
        if due:
            _last_logged[output] = now
    if due:
        more = f" ({count} so far)" if count > 1 else ""
        logger.warning(f"{output}: {message}{more}")


def fault_counts() -> dict[str, int]:
    """Faults per output since the process started (``maskwatch_output_faults_total{output=...}``)."""
    with _lock:
        return dict(_counts)


def reset_faults() -> None:
    """Forget all counts (tests)."""
    with _lock:
        _counts.clear()
        _last_logged.clear()
