"""Downsampling, as a round-robin database does it: points folded into min / mean / max buckets.

History keeps every point for the last hour, then one bucket a minute for a day, then one every
15 minutes for 30 days (`TIERS`). A bucket of a coarser tier is folded from the finer tier's
buckets, never from the raw points again: its mean is weighted by the points each finer bucket
holds, so it equals the mean of the raw points it covers, whichever way it was reached.

A tick where a figure was unknown (KATO unreachable) is recorded as a gap (`None`), not as a
point: it counts in no bucket, and a bucket with nothing but gaps is not made, so a chart shows
an outage as a break rather than a line drawn across it.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Tier:
    """One resolution of the history: buckets of `step` seconds (0: every point as it came),
    kept for `retention` seconds."""

    name: str
    step: float
    retention: float


TIERS = (
    Tier("raw", 0, 3600),
    Tier("1m", 60, 24 * 3600),
    Tier("15m", 900, 30 * 24 * 3600),
)


def tiers_of(retention: tuple[float, float, float]) -> tuple[Tier, ...]:
    """The tiers with these retentions (SSE_MONITOR_CHART_RETENTION)."""
    return tuple(
        Tier(tier.name, tier.step, seconds) for tier, seconds in zip(TIERS, retention, strict=True)
    )


# A series' row as the store answers it: (time, min, mean, max, count): a point (min = mean =
# max, count 1), a bucket, or a gap (count 0, no values)
Row = tuple[float, float | None, float | None, float | None, int]


@dataclass(frozen=True, slots=True)
class Bucket:
    """The points of one series within [start, start + step): their least, mean and greatest
    value, and how many there were (what a coarser bucket weighs this one by)."""

    start: float
    min: float
    mean: float
    max: float
    count: int


def bucket_start(moment: float, step: float) -> float:
    """The start of the bucket of `step` seconds holding `moment` (buckets align to the epoch,
    so every node and every restart cuts them at the same instants)."""
    return math.floor(moment / step) * step


def downsample(points: Iterable[tuple[float, float | None]], step: float) -> list[Bucket]:
    """Raw points (time, value or None for a gap), in time order, as buckets of `step` s."""
    return list(_fold(((t, v, v, v, 1) for t, v in points if v is not None), step))


def merge(buckets: Iterable[Bucket], step: float) -> list[Bucket]:
    """Finer buckets, in time order, as buckets of `step` s (a multiple of theirs)."""
    return list(_fold(((b.start, b.min, b.mean, b.max, b.count) for b in buckets), step))


def _fold(parts: Iterable[tuple[float, float, float, float, int]], step: float) -> Iterator[Bucket]:
    """Consecutive parts (start or time, min, mean, max, count) gathered by bucket."""
    current: float | None = None
    low = high = total = 0.0
    count = 0
    for moment, part_min, part_mean, part_max, part_count in parts:
        start = bucket_start(moment, step)
        if start != current:
            if current is not None:
                yield Bucket(current, low, total / count, high, count)
            current, low, high, total, count = start, part_min, part_max, 0.0, 0
        low, high = min(low, part_min), max(high, part_max)
        total += part_mean * part_count
        count += part_count
    if current is not None:
        yield Bucket(current, low, total / count, high, count)
