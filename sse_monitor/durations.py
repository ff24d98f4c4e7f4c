"""Durations as people write them in settings and rules: 90, "90s", "5m", "2h", "30d"."""

from __future__ import annotations

import math
import re
from typing import Any

_DURATION = re.compile(r"^(?P<amount>\d+(?:\.\d+)?)\s*(?P<unit>ms|s|m|h|d)?$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
MAX_SECONDS = 3650 * 86400.0


def parse_duration(raw: Any) -> float:
    """Seconds from a number of seconds, or a number with a unit (ms, s, m, h, d)."""
    if isinstance(raw, bool):
        raise ValueError(f"{raw!r} is not a duration")
    if isinstance(raw, int | float):
        seconds = float(raw)
    elif isinstance(raw, str) and (match := _DURATION.match(raw.strip())):
        seconds = float(match["amount"]) * _UNIT_SECONDS[match["unit"] or "s"]
    else:
        raise ValueError(f"{raw!r} is not a duration (seconds, or e.g. 30s, 5m, 1h, 7d)")
    if not math.isfinite(seconds) or not 0 <= seconds <= MAX_SECONDS:
        raise ValueError(f"{raw!r} is out of range (0 to 3650 days)")
    return seconds
