"""KATO's three ways of writing a moment; each answer uses the one KATO uses there."""

from __future__ import annotations

from datetime import UTC, datetime


def with_offset(timestamp: float) -> str:
    """`2026-11-25T12:38:21.298645+00:00`: /health and the pushed session events."""
    return datetime.fromtimestamp(timestamp, UTC).isoformat(timespec="microseconds")


def naive(timestamp: float) -> str:
    """`2026-11-25T12:39:10.474746`: the push snapshot (KATO's `datetime.now()`, no offset)."""
    return (
        datetime.fromtimestamp(timestamp, UTC)
        .replace(tzinfo=None)
        .isoformat(timespec="microseconds")
    )


def zulu(timestamp: float) -> str:
    """`2026-11-25T12:37:55.472852Z`: a SessionResponse's `created_at` and `expires_at`."""
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
