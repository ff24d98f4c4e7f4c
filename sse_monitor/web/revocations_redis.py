"""Logged-out login cookies for a whole cluster, kept in its Redis.

A logout writes `<cluster>:revoked:<signature>`, the cookie's expiry (epoch seconds) as its value
and as the key's own expiry (EXAT), so Redis forgets it when the cookie would be refused anyway.
Every node asks Redis (one GET) on each request a login cookie authenticates, unless it already
knows that cookie is revoked: a logout answered on node A is refused on node B from B's next
request on, with no refresh to wait for. A request with a token never asks (`Access` does not
look at its cookies).

What this node knows answers first, and alone while Redis does not answer (see `redis_calls`):
the revocations it loaded at start-up, its own logouts and those Redis has told it of since. A
cookie logged out on another node meanwhile is accepted here until Redis answers again; a logout
made here meanwhile is refused here at once, and written to Redis when it answers again.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING

import structlog

from sse_monitor.web.redis_calls import RETRY_INTERVAL, RedisCalls, Unanswered
from sse_monitor.web.revocations import MAX_REVOKED, RevokedSet

if TYPE_CHECKING:
    from redis.asyncio import Redis

log = structlog.get_logger("sse_monitor.web.revocations_redis")

SCAN_COUNT = 1000  # keys asked for per SCAN at start-up: each call stays short


class RedisRevocations:
    def __init__(
        self,
        redis: Redis,
        prefix: str,
        *,
        timeout: float,
        max_revoked: int = MAX_REVOKED,
        retry_interval: float = RETRY_INTERVAL,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._redis = redis
        self._prefix = f"{prefix}:revoked:"
        self._clock = clock
        self._known = RevokedSet(max_revoked)
        self._unwritten: dict[str, int] = {}  # logouts made here that Redis has not had yet
        self._calls = RedisCalls(
            "revocations",
            "this node's own logouts and those it has loaded",
            timeout=timeout,
            retry_interval=retry_interval,
        )

    async def open(self) -> None:
        """Load the revocations in force (up to the cap), to refuse them even while Redis does
        not answer. Redis down at start-up is logged, not raised: the node starts without them."""
        loaded: dict[str, int] = {}
        cursor = 0
        try:
            while len(loaded) < self._known.max_revoked:
                scan = partial(self._redis.scan, cursor, match=f"{self._prefix}*", count=SCAN_COUNT)
                cursor, keys = await self._calls.run(scan)
                if keys:
                    values = await self._calls.run(partial(self._redis.mget, keys))
                    loaded.update(self._entries(keys, values))
                if cursor == 0:
                    break
        except Unanswered:
            pass  # keep what was read
        self._known.load(dict(list(loaded.items())[: self._known.max_revoked]))
        log.info("revocations.loaded", count=len(self._known), store="redis")

    async def is_revoked(self, signature: str) -> bool:
        if signature in self._known:
            return True
        try:
            expires = await self._calls.run(partial(self._redis.get, self._prefix + signature))
        except Unanswered:
            return False
        await self._write_unwritten()
        if expires is None:
            return False
        if expires.isdigit():  # ours always is; a key of any other shape still revokes
            self._known.add(signature, int(expires), int(self._clock()))
        return True

    async def revoke(self, signature: str, expires: int) -> None:
        """Refused here at once, and on every node once Redis has it: when this returns, unless
        Redis does not answer (then when it answers again)."""
        now = int(self._clock())
        if expires < now:
            return
        self._known.add(signature, expires, now)
        self._unwritten[signature] = expires
        await self._write_unwritten()

    async def aclose(self) -> None:
        """The Redis client is the app's to close; only say what Redis never had."""
        if self._unwritten:
            log.warning("revocations.unwritten", count=len(self._unwritten))

    async def _write_unwritten(self) -> None:
        if not self._unwritten:
            return
        now = int(self._clock())
        # Only what is still refused here, and not yet expired: bounded by the cap.
        self._unwritten = {
            signature: expires
            for signature, expires in self._unwritten.items()
            if signature in self._known and expires >= now
        }
        writing = dict(self._unwritten)
        try:
            await self._calls.run(partial(self._write, writing))
        except Unanswered:
            return
        for signature in writing:
            self._unwritten.pop(signature, None)

    async def _write(self, expiries: dict[str, int]) -> None:
        async with self._redis.pipeline(transaction=False) as pipe:
            for signature, expires in expiries.items():
                pipe.set(self._prefix + signature, expires, exat=expires)
            await pipe.execute()

    def _entries(self, keys: list[bytes | str], values: list[bytes | str | None]) -> dict[str, int]:
        """Signature -> expiry, from our keys and their values (a key gone meanwhile skipped).
        Bytes or text: whichever the app's client decodes to."""
        entries = {}
        for key, value in zip(keys, values, strict=True):
            if value is not None and value.isdigit():
                name = key.decode(errors="replace") if isinstance(key, bytes) else key
                entries[name[len(self._prefix) :]] = int(value)
        return entries
