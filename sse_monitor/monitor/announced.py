"""What clients were last told, read back from the log: where a producer starts from.

A producer that starts (after a restart, or on taking over a cluster's lease) compares its first
readings with these figures, not with nothing: a session created while no producer ran is then
announced once by the first poll (`source: "poll"`), and an upstream state that did not change
is not announced again.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sse_monitor.bus.log import Frame, LogReader


@dataclass(frozen=True, slots=True)
class Announced:
    session_count: int | None = None  # None: never announced (a first start)
    kato_reachable: bool | None = None


async def read_announced(log: LogReader, history_size: int) -> Announced:
    """The newest session count and KATO reachability the log holds."""
    metrics = next((f for f in await log.current() if f.event.name == "metrics"), None)
    count, reachable = _from_metrics(metrics)
    seq = metrics.seq if metrics is not None else 0
    count_found = reachable_found = False
    for frame in reversed(await log.recent(history_size)):
        if frame.seq < seq or (count_found and reachable_found):
            break
        data: Any = frame.event.data
        if frame.event.name == "session_event" and not count_found:
            count_found = True
            count = _count(data.get("data", {}).get("current_count"))
        elif frame.event.name == "upstream" and not reachable_found:
            reachable_found = True
            reachable = data.get("reachable") if isinstance(data.get("reachable"), bool) else None
    return Announced(count, reachable)


def _from_metrics(frame: Frame | None) -> tuple[int | None, bool | None]:
    if frame is None:
        return None, None
    data: Any = frame.event.data
    count = _count(data.get("sessions", {}).get("active_count"))
    status = data.get("kato", {}).get("status")
    return count, (status != "unreachable") if isinstance(status, str) else None


def _count(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None
