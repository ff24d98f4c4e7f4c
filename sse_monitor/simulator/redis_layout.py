"""How KATO keeps sessions in its Redis: the keys, written as KATO writes them (a mirror).

With a `redis_url` the simulator writes every session there, so the gateway's session list can
be tried against a real Redis. TTLs there are real seconds, whatever the simulator's clock says.
"""

from __future__ import annotations

import json

from sse_monitor.simulator.sessions import Session, session_response

#: KATO's keys in its Redis: `<prefix><session_id>` holds the session, the index is a SET.
SESSION_KEY_PREFIX = "kato:session:"
ACTIVE_INDEX_KEY = "kato:session:_active_index"
_REDIS_TIMEOUT = 5.0  # a stuck Redis fails the request (as in KATO) instead of hanging it


def _session_key(session_id: str) -> str:
    return f"{SESSION_KEY_PREFIX}{session_id}"


class RedisSessionMirror:
    """KATO's session keys in a real Redis, written as KATO writes them, for its readers."""

    def __init__(self, url: str) -> None:
        import redis.asyncio  # only needed with a redis_url

        self._client: redis.asyncio.Redis = redis.asyncio.Redis.from_url(
            url, socket_timeout=_REDIS_TIMEOUT, socket_connect_timeout=_REDIS_TIMEOUT
        )

    @classmethod
    async def connect(cls, url: str) -> RedisSessionMirror:
        """A mirror whose Redis has answered a PING; fails fast (and closes) if it does not."""
        mirror = cls(url)
        try:
            await mirror._client.ping()
        except BaseException:
            await mirror.close()
            raise
        return mirror

    async def save(self, session: Session) -> None:
        body = json.dumps(session_response(session, session.ttl_seconds))
        await self._client.set(_session_key(session.session_id), body, ex=session.ttl_seconds)
        await self._client.sadd(ACTIVE_INDEX_KEY, session.session_id)

    async def remove(self, session_id: str) -> None:
        await self._client.delete(_session_key(session_id))
        await self._client.srem(ACTIVE_INDEX_KEY, session_id)

    async def slide(self, session_id: str, ttl_seconds: int) -> None:
        await self._client.expire(_session_key(session_id), ttl_seconds)

    async def expire(self, session_id: str) -> None:
        await self._client.delete(_session_key(session_id))

    async def clear(self) -> None:
        """Drop every KATO session key and the index (the simulator owns this namespace)."""
        keys = [key async for key in self._client.scan_iter(match=f"{SESSION_KEY_PREFIX}*")]
        if keys:
            await self._client.delete(*keys)

    async def close(self) -> None:
        await self._client.aclose()
