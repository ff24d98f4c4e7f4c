"""The failed-token lockout for a whole cluster: wrong tokens counted in its Redis.

Each address has a sorted set `<cluster>:failures:<address>` of its wrong tokens, scored by
Redis's own clock in milliseconds (so the nodes' clocks cannot disagree about a window), kept to
the newest `limit` and expiring `window` after the last one. N wrong tokens spread over any nodes
lock the address on every node, as long as the in-process `Lockout` would lock it on one. Each
step is one Lua script, one atomic round trip: CHECK (how long must this address still wait?) on
every token presented, and RECORD (add one: is this the one that locks?) on a wrong one, so when
failures race on several nodes exactly one of them reports the lock.

This node's own `Lockout` counts every wrong token it sees as well, and decides alone while Redis
does not answer (see `redis_calls`): then each node locks an address after `limit` wrong tokens
of its own.
"""

from __future__ import annotations

import math
import secrets
from functools import partial
from typing import TYPE_CHECKING

from sse_monitor.web.lockout import Lockout, TooManyFailures
from sse_monitor.web.redis_calls import RETRY_INTERVAL, RedisCalls, Unanswered

if TYPE_CHECKING:
    from redis.asyncio import Redis

# KEYS[1]: the address's failures; ARGV: the window (ms), the limit.
# Returns -1 when the address may present a token, else the milliseconds it must still wait:
# until the oldest of its newest `limit` failures leaves the window.
CHECK = """
local time = redis.call('TIME')
local now = time[1] * 1000 + math.floor(time[2] / 1000)
local window, limit = tonumber(ARGV[1]), tonumber(ARGV[2])
local after = string.format('(%d', now - window)
local count = redis.call('ZCOUNT', KEYS[1], after, '+inf')
if count < limit then
    return -1
end
local oldest = redis.call('ZRANGEBYSCORE', KEYS[1], after, '+inf', 'WITHSCORES',
                          'LIMIT', count - limit, 1)
return tonumber(oldest[2]) + window - now
"""

# KEYS[1]: the address's failures; ARGV: the window (ms), the limit, a unique member.
# Returns how many failures are in the window with this one (before trimming to the limit).
RECORD = """
local time = redis.call('TIME')
local now = time[1] * 1000 + math.floor(time[2] / 1000)
local window, limit = tonumber(ARGV[1]), tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
redis.call('ZADD', KEYS[1], now, ARGV[3])
local count = redis.call('ZCARD', KEYS[1])
if count > limit then
    redis.call('ZREMRANGEBYRANK', KEYS[1], 0, count - limit - 1)
end
redis.call('PEXPIRE', KEYS[1], window)
return count
"""


class RedisLockout:
    def __init__(
        self,
        redis: Redis,
        prefix: str,
        local: Lockout,
        *,
        timeout: float,
        retry_interval: float = RETRY_INTERVAL,
    ) -> None:
        self.limit = local.limit
        self.window = local.window
        self._local = local
        self._prefix = f"{prefix}:failures:"
        self._window_ms = max(1, round(local.window * 1000))
        self._check = redis.register_script(CHECK)
        self._record = redis.register_script(RECORD)
        self._calls = RedisCalls(
            "lockout",
            "this node's own count of wrong tokens",
            timeout=timeout,
            retry_interval=retry_interval,
        )

    async def check(self, address: str) -> None:
        key, args = self._prefix + address, [self._window_ms, self.limit]
        try:
            wait_ms = await self._calls.run(partial(self._check, keys=[key], args=args))
        except Unanswered:
            await self._local.check(address)
            return
        if wait_ms >= 0:
            raise TooManyFailures(max(1, math.ceil(wait_ms / 1000)))

    async def record_failure(self, address: str) -> bool:
        """Count a wrong token; True when this one locks the address (in the cluster, or while
        Redis does not answer, on this node)."""
        locks_here = await self._local.record_failure(address)
        member = secrets.token_hex(8)  # two failures in one millisecond are two
        key, args = self._prefix + address, [self._window_ms, self.limit, member]
        try:
            count = await self._calls.run(partial(self._record, keys=[key], args=args))
        except Unanswered:
            return locks_here
        return count == self.limit
