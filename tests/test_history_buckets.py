"""Downsampling (sse_monitor/history/buckets.py): every bucket is the min / mean / max of the raw
points it covers, whether folded from the points or from finer buckets; gaps make no bucket."""

from __future__ import annotations

import itertools
import math

from hypothesis import given
from hypothesis import strategies as st

from sse_monitor.history.buckets import TIERS, Bucket, bucket_start, downsample, merge

# A day of ticks at most, at irregular spacing (a tick can be late), some of them gaps.
values = st.one_of(st.none(), st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False))
gaps = st.floats(0.5, 400.0, allow_nan=False)
series = st.lists(st.tuples(gaps, values), max_size=300)


def points_of(steps: list[tuple[float, float | None]]) -> list[tuple[float, float | None]]:
    """Time-ordered points from the gaps between them, starting at an arbitrary epoch time."""
    moment, points = 1_796_000_000.0, []
    for gap, value in steps:
        moment += gap
        points.append((moment, value))
    return points


def expected(points: list[tuple[float, float | None]], step: float) -> list[Bucket]:
    """The buckets by definition: the raw points grouped by bucket, each group's min/mean/max."""
    groups: dict[float, list[float]] = {}
    for moment, value in points:
        if value is not None:
            groups.setdefault(bucket_start(moment, step), []).append(value)
    return [
        Bucket(start, min(vs), math.fsum(vs) / len(vs), max(vs), len(vs))
        for start, vs in sorted(groups.items())
    ]


def assert_same(got: list[Bucket], want: list[Bucket]) -> None:
    assert [(b.start, b.min, b.max, b.count) for b in got] == [
        (b.start, b.min, b.max, b.count) for b in want
    ]
    for a, b in zip(got, want, strict=True):
        assert math.isclose(a.mean, b.mean, rel_tol=1e-9, abs_tol=1e-6), (a, b)


@given(series)
def test_each_minute_bucket_is_the_min_mean_max_of_its_points(steps: list) -> None:
    points = points_of(steps)
    assert_same(downsample(points, 60), expected(points, 60))


@given(series)
def test_a_coarse_bucket_folded_from_finer_ones_equals_one_folded_from_the_points(
    steps: list,
) -> None:
    points = points_of(steps)
    assert_same(merge(downsample(points, 60), 900), expected(points, 900))


def test_gaps_make_no_bucket_so_an_outage_stays_a_break() -> None:
    minute = 1_796_000_040.0  # a minute's start
    start = minute + 40
    points = [(start, 1.0), (start + 30, None), (start + 60, None), (start + 90, 3.0)]
    buckets = downsample(points, 60)
    # the minute holding only the two gaps has no bucket: a break between the other two
    assert [b.start for b in buckets] == [minute, minute + 120]
    assert downsample([(start, None)], 60) == []


def test_the_default_tiers_say_the_issue_s_retention() -> None:
    assert [(t.name, t.step, t.retention) for t in TIERS] == [
        ("raw", 0, 3600),
        ("1m", 60, 86400),
        ("15m", 900, 30 * 86400),
    ]
    for finer, coarser in itertools.pairwise(TIERS[1:]):
        assert coarser.step % finer.step == 0  # a coarse bucket is whole finer ones
