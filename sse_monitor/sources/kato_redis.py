"""KATO's session list, read from KATO's own Redis: read-only, and bounded work per request.

KATO keeps each session as a JSON string `kato:session:<session_id>` whose Redis TTL is the
session's. Listing them is a SCAN over `kato:session:session-*` (never KEYS, which blocks Redis),
then GET and PTTL in pipelined batches. One listing serves every request for a couple of seconds,
and concurrent requests share it, so many open pages do not multiply the load on KATO's Redis.
Nothing here writes: only SCAN, GET and PTTL are sent.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import redis.asyncio as redis
import structlog
from redis.exceptions import RedisError

from sse_monitor.clock import iso, utc_now
from sse_monitor.redact import redact_url
from sse_monitor.sources.kato import kato_time

log = structlog.get_logger("sse_monitor.kato_redis")

KEY_PATTERN = "kato:session:session-*"
KEY_PREFIX = "kato:session:"
SCAN_COUNT = 500
BATCH = 500


class SessionListError(Exception):
    """KATO's Redis cannot be read; the message says why, with no password in it."""


@dataclass(frozen=True, slots=True)
class SessionListing:
    sessions: list[dict[str, Any]]  # newest first
    truncated: bool  # more keys than the cap: the list shows the first ones found
    read_at: datetime


class SessionList:
    """KATO's sessions, read (never written) from the Redis KATO keeps them in."""

    def __init__(
        self,
        url: str,
        *,
        max_keys: int = 10_000,
        cache_seconds: float = 2.0,
        timeout: float = 3.0,
    ) -> None:
        self.url = url
        self._max_keys = max_keys
        self._cache_seconds = cache_seconds
        self._client = redis.from_url(
            url,
            decode_responses=True,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            client_name="sse-monitor",
        )
        self._cached: tuple[float, SessionListing] | None = None
        self._lock = asyncio.Lock()

    async def listing(self) -> SessionListing:
        """The current listing, read again at most every `cache_seconds`."""
        async with self._lock:  # concurrent requests wait for the one read in flight
            if (
                self._cached is not None
                and time.monotonic() - self._cached[0] < self._cache_seconds
            ):
                return self._cached[1]
            try:
                listing = await self._read()
            except (RedisError, OSError) as exc:
                raise SessionListError(
                    f"KATO's Redis at {redact_url(self.url)} cannot be read: {type(exc).__name__}"
                ) from None
            self._cached = (time.monotonic(), listing)
            return listing

    async def aclose(self) -> None:
        await self._client.aclose()

    async def _read(self) -> SessionListing:
        keys: list[str] = []
        truncated = False
        async for key in self._client.scan_iter(match=KEY_PATTERN, count=SCAN_COUNT):
            if len(keys) >= self._max_keys:
                truncated = True
                break
            keys.append(key)
        sessions = []
        for start in range(0, len(keys), BATCH):
            batch = keys[start : start + BATCH]
            pipe = self._client.pipeline(transaction=False)
            for key in batch:
                pipe.get(key)
                pipe.pttl(key)
            answers = await pipe.execute()
            for index, key in enumerate(batch):
                session = _session(key, answers[2 * index], answers[2 * index + 1])
                if session is not None:
                    sessions.append(session)
        sessions.sort(key=_newest_first)
        return SessionListing(sessions, truncated, utc_now())


def _session(key: str, raw: Any, pttl: Any) -> dict[str, Any] | None:
    """One session as the API shows it; None for a key gone meanwhile or not KATO's JSON."""
    if raw is None or not isinstance(pttl, int) or pttl == -2:
        return None
    try:
        body = json.loads(raw)
    except ValueError:
        return None
    if not isinstance(body, dict):
        return None
    session_id = body.get("session_id") if isinstance(body.get("session_id"), str) else None
    return {
        "session_id": session_id or key.removeprefix(KEY_PREFIX),
        "node_id": _text(body.get("node_id")),
        "created_at": _time(body.get("created_at")),
        "expires_at": _time(body.get("expires_at")),
        "ttl_remaining_seconds": round(pttl / 1000, 1) if pttl >= 0 else None,
    }


def _newest_first(session: dict[str, Any]) -> tuple[int, float, str]:
    created = session["created_at"]
    stamp = datetime.fromisoformat(created).timestamp() if created else 0.0
    return (0 if created else 1, -stamp, session["session_id"])


def _time(value: Any) -> str | None:
    moment = kato_time(value)
    return iso(moment) if moment is not None else None


def _text(value: Any) -> str | None:
    return value[:200] if isinstance(value, str) else None
