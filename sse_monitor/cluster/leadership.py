"""Who produces: the node holding the lease runs a producer for exactly as long as it holds it.

Every node runs this loop. A node without the lease tries to take it every third of its TTL; the
holder renews it at the same pace. A term starts once this node has read the whole log (the new
producer starts from what clients were last told, so its first poll announces what changed
while nobody produced) and ends when a renewal is refused, when the writer reports an append
refused by the fence, or when renewals have failed for most of the TTL (Redis unreachable: by
then the lease may have lapsed, and the fence would refuse our appends anyway).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from typing import Protocol

import structlog
from redis.exceptions import RedisError

from sse_monitor.cluster.lease import Lease

log = structlog.get_logger("sse_monitor.cluster.leadership")

# Renewals may fail for this share of the TTL before this node stops producing: the lease
# itself lapses at the whole TTL, so another node can only take over after we stopped.
GIVE_UP_SHARE = 0.8


class Term(Protocol):
    """A producer's life, from election to the end of the lease."""

    async def aclose(self) -> None: ...


class Leadership:
    def __init__(
        self,
        lease: Lease,
        *,
        ttl: float,
        begin: Callable[[str], Awaitable[Term]],
        node: str,
    ) -> None:
        """`begin(token)` starts a producer whose appends carry `token`."""
        self._lease = lease
        self._ttl = ttl
        self._begin = begin
        self.node = node
        self.token: str | None = None
        self._term: Term | None = None
        self._renewed_at = 0.0  # when the last renewal (or the acquisition) was sent
        self._failing = False  # the last renewal failed
        self._retry_in = ttl / 3  # a candidate's wait before its next try
        self._fenced = asyncio.Event()
        self.changes = 0  # terms this node began or ended
        self.holder: str | None = None  # the lease's holder as last read (None: nobody)
        self.elected_at: float | None = None  # time.time() this node's term began

    @property
    def role(self) -> str:
        return "producer" if self.token is not None else "edge"

    def fenced(self, token: str) -> None:
        """The writer's report: an append of `token` was refused by the fence."""
        if token == self.token:
            self._fenced.set()

    async def run(self) -> None:
        while True:
            try:
                await self._step()
            except asyncio.CancelledError:
                raise
            except (RedisError, OSError) as exc:  # OSError: TimeoutError at the give-up time
                await self._failed(exc)
            except Exception:
                # A bug, not Redis: logged, and the loop goes on (a node that stopped taking
                # part in the election would never produce again).
                log.exception("leader.step_failed", node=self.node)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._fenced.wait(), self._pause())
            if self._fenced.is_set():
                self._fenced.clear()
                await self._end("fenced")

    async def aclose(self) -> None:
        """Stop producing and hand the lease back at once, so another node need not wait."""
        token = self.token
        await self._end("stopping")
        if token is not None:
            with contextlib.suppress(RedisError, OSError):
                await self._lease.release(token)

    def _give_up_at(self) -> float:
        return self._renewed_at + self._ttl * GIVE_UP_SHARE

    def _pause(self) -> float:
        """Until the next step: a third of the TTL. A holder renews a third of the TTL after its
        last renewal (at once after a slow start); while renewals fail it tries again a third
        later, and wakes at its give-up time rather than after it."""
        interval = self._ttl / 3
        if self.token is None:  # a candidate tries just after the holder's lease would lapse
            retry_in, self._retry_in = self._retry_in, interval
            return min(interval, retry_in)
        now = time.monotonic()
        due = now + interval if self._failing else self._renewed_at + interval
        return max(0.0, min(due, self._give_up_at()) - now)

    async def _step(self) -> None:
        # The lease runs from when Redis took the call: from no earlier than its sending.
        sent = time.monotonic()
        if self.token is None:
            token = await self._lease.acquire()
            if token is None:
                self.holder, left = await self._lease.holder()
                self._retry_in = left + 0.01
                return
            self._renewed_at, self._failing = sent, False
            await self._start(token)
            return
        # A renewal still unanswered at the give-up time has failed: the lease may lapse soon.
        renewing = self._lease.renew(self.token)
        if await asyncio.wait_for(renewing, max(0.0, self._give_up_at() - sent)):
            self._renewed_at, self._failing = sent, False
        else:
            await self._end("lost")

    async def _start(self, token: str) -> None:
        self.token, self.holder = token, token
        try:
            self._term = await self._begin(token)
        except BaseException:
            self.token = None
            with contextlib.suppress(RedisError, OSError):
                await self._lease.release(token)  # another node need not wait for the TTL
            raise
        self.changes += 1
        self.elected_at = time.time()
        log.info("leader.elected", node=self.node, token=token)

    async def _failed(self, exc: BaseException) -> None:
        if self.token is None:
            return
        self._failing = True
        if time.monotonic() >= self._give_up_at():
            log.warning("leader.lease_unconfirmed", node=self.node, error=repr(exc)[:200])
            await self._end("unconfirmed")

    async def _end(self, why: str) -> None:
        term, token = self._term, self.token
        self._term, self.token, self.elected_at = None, None, None
        if token is not None:
            self.changes += 1
            log.warning("leader.deposed", node=self.node, token=token, why=why)
        if term is not None:
            await term.aclose()
