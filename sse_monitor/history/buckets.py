"""Downsampling, as a round-robin database does it: points folded into min / mean / max buckets.

History keeps every point for the last hour, then one bucket a minute for a day, then one every
15 minutes for 30 days (`TIERS`). A bucket of a coarser tier is folded from the finer tier's
buckets, never from the raw points again: its mean is weighted by the points each finer bucket
holds, so it equals the mean of the raw points it covers, whichever way it was reached.

A tick where a figure was unknown (KATO unreachable) is recorded as a gap (`None`), not as a
point: it counts in no bucket, and a bucket with nothing but gaps is not made, so a chart shows
an outage as a break rather than a line drawn across it.

Both stores (SQLite for one process, Redis for a cluster) take from here which buckets a tick
folds and how an answer shows gaps, so that they agree.
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


# A tick may be written a little after its time: a bucket is folded once this long has passed
# since it ended, so that its last points are in.
FOLD_GRACE_SECONDS = 10.0

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


def fold(rows: Iterable[Row], step: float) -> list[Bucket]:
    """A finer tier's rows (points or buckets), in time order, as buckets of `step` s; gaps
    count in none."""
    return list(_fold(_values(rows), step))


def fold_range(tier: Tier, now: float, folded: float | None) -> tuple[float, float] | None:
    """The buckets of `tier` to fold at a tick of time `now`, [start, end), given where the
    last fold ended (None: never, so as far back as the tier keeps); None if none has ended
    (with its grace) since."""
    ended = bucket_start(now - FOLD_GRACE_SECONDS, tier.step)
    start = folded if folded is not None else ended - tier.retention
    return (start, ended) if ended > start else None


def with_gaps(rows: list[Row], step: float) -> list[Row]:
    """A series' rows as a store answers them: with a gap where buckets are missing between
    two (an outage), and consecutive gaps as one."""
    answer: list[Row] = []
    for row in rows:
        if step and answer and row[0] - answer[-1][0] > step and answer[-1][4]:
            answer.append((answer[-1][0] + step, None, None, None, 0))
        if row[4] == 0 and answer and answer[-1][4] == 0:
            continue
        answer.append(row)
    return answer


def _values(rows: Iterable[Row]) -> Iterator[tuple[float, float, float, float, int]]:
    """The rows that hold values: every one but the gaps."""
    for t, low, mean, high, count in rows:
        if count and low is not None and mean is not None and high is not None:
            yield t, low, mean, high, count


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
