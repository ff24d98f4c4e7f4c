"""The history's contract: what the producer's recorder writes to and /api/history reads from.
SQLite keeps it for one process (sqlite_store.py), Redis for a cluster (redis_store.py), with
the same tiers and the same answers."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from sse_monitor.history.buckets import Row, Tier
from sse_monitor.history.markers import Marker
from sse_monitor.history.recorder import HistoryWriter


class HistoryReader(Protocol):
    tiers: tuple[Tier, ...]

    async def points(
        self, series: Sequence[str], since: float, until: float, step: float
    ) -> dict[str, list[Row]]: ...
    async def markers(self, since: float, until: float, limit: int) -> list[Marker]: ...
    async def series(self) -> list[str]: ...


class HistoryStore(HistoryReader, HistoryWriter, Protocol):
    """A store: `record` never waits, the reads may (a Redis that does not answer raises
    StoreUnavailable), `flush` waits for what was recorded to be written."""

    write_failures: int  # ticks that could not be written (a full disk, Redis away)

    async def open(self) -> None: ...
    async def flush(self) -> None: ...
    async def aclose(self) -> None: ...
