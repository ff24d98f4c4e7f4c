"""The wall clock, and how its moments are written: UTC, ISO-8601, with an explicit offset."""

from __future__ import annotations

from datetime import UTC, datetime


def utc_now() -> datetime:
    return datetime.now(UTC)


def iso(moment: datetime) -> str:
    """ISO-8601 in UTC with an explicit offset, e.g. 2026-11-25T12:00:00.123456+00:00."""
    return moment.astimezone(UTC).isoformat()
