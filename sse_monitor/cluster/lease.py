"""The producer's lease: one Redis key with a TTL, and a fencing token per holder.

Each acquisition takes the next number of a counter; the token (`<number>:<node>:<nonce>`) is the
lease key's value while it is held. Every append of a producer is checked against that value
inside Redis (see bus/redis_log.py), so a producer that was paused or cut off past its lease,
and comes back, cannot append anything once another holds it, or once it lapsed.
"""

from __future__ import annotations

import secrets

from redis.asyncio import Redis

_ACQUIRE = """
if redis.call('EXISTS', KEYS[1]) == 1 then return false end
local token = redis.call('INCR', KEYS[2]) .. ':' .. ARGV[1] .. ':' .. ARGV[3]
redis.call('SET', KEYS[1], token, 'PX', ARGV[2])
return token
"""
_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class Lease:
    """Acquire, renew and release the lease; every call is one round trip, atomic in Redis."""

    def __init__(self, redis: Redis, *, prefix: str, node: str, ttl: float) -> None:
        self.key = f"{prefix}:leader"
        self._fence_key = f"{prefix}:fence"
        self._node = node
        self._ttl_ms = max(1, round(ttl * 1000))
        self._acquire = redis.register_script(_ACQUIRE)
        self._renew = redis.register_script(_RENEW)
        self._release = redis.register_script(_RELEASE)
        self._redis = redis

    async def acquire(self) -> str | None:
        """A new token if nobody holds the lease, else None."""
        # The nonce keeps each term's token unique even when the counter starts again (Redis
        # lost its data): no append queued in an earlier term can pass for this one's.
        nonce = secrets.token_hex(4)
        token = await self._acquire(
            keys=[self.key, self._fence_key], args=[self._node, self._ttl_ms, nonce]
        )
        return token.decode() if token is not None else None

    async def renew(self, token: str) -> bool:
        """True if `token` still holds the lease (now for a whole TTL again)."""
        return bool(await self._renew(keys=[self.key], args=[token, self._ttl_ms]))

    async def release(self, token: str) -> None:
        await self._release(keys=[self.key], args=[token])

    async def holder(self) -> tuple[str | None, float]:
        """The holder's token (None: nobody) and the seconds its lease has left."""
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.get(self.key)
            pipe.pttl(self.key)
            token, left_ms = await pipe.execute()
        return (token.decode() if token is not None else None), max(0, left_ms) / 1000
