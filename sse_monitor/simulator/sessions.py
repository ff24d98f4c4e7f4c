"""The sessions every KATO worker shares (as through KATO's Redis): TTLs, sliding, the index."""

from __future__ import annotations

import random
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sse_monitor.simulator.timestamps import zulu

DEFAULT_TTL_SECONDS = 3600


@dataclass
class Session:
    session_id: str
    node_id: str
    created_at: float
    expires_at: float
    ttl_seconds: int
    metadata: dict[str, Any]
    config: dict[str, Any]


def session_response(session: Session, ttl_seconds: int) -> dict[str, Any]:
    """KATO's SessionResponse body (also what it writes into Redis)."""
    return {
        "session_id": session.session_id,
        "node_id": session.node_id,
        "created_at": zulu(session.created_at),
        "expires_at": zulu(session.expires_at),
        "ttl_seconds": ttl_seconds,
        "metadata": dict(session.metadata),
        "session_config": dict(session.config),
    }


class SessionStore:
    """Live sessions, purged when read past their TTL rather than by a timer.

    `indexed=True` is KATO's Redis backend: its `_active_index` set loses an id only on an
    explicit DELETE, so a session that expired by TTL is still counted.
    """

    def __init__(self, clock: Callable[[], float], rng: random.Random, *, indexed: bool) -> None:
        self._clock = clock
        self._rng = rng
        self._indexed = indexed
        self._sessions: dict[str, Session] = {}
        self._index: set[str] = set()

    def create(
        self,
        node_id: str,
        ttl_seconds: int | None = None,
        metadata: dict[str, Any] | None = None,
        config: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Create a session and return KATO's SessionResponse for it."""
        ttl = ttl_seconds or DEFAULT_TTL_SECONDS  # KATO treats 0 as "not given"
        if ttl < 0:
            raise ValueError("ttl_seconds must not be negative")
        now = self._clock()
        token = uuid.UUID(int=self._rng.getrandbits(128), version=4).hex
        session = Session(
            session_id=f"session-{token}-{int(now * 1000)}",
            node_id=node_id,
            created_at=now,
            expires_at=now + ttl,
            ttl_seconds=ttl,
            metadata=dict(metadata or {}),
            config=dict(config or {}),
        )
        self._sessions[session.session_id] = session
        if self._indexed:
            self._index.add(session.session_id)
        return session_response(session, ttl)

    def get(self, session_id: str) -> dict[str, Any] | None:
        """Return a live session's SessionResponse, sliding its TTL as KATO's Redis mode does."""
        session = self._live(session_id)
        if session is None:
            return None
        now = self._clock()
        session.expires_at = now + session.ttl_seconds
        return session_response(session, max(0, int(session.expires_at - now)))

    def delete(self, session_id: str) -> bool:
        """Delete a live session; False if it does not exist or has expired."""
        if self._live(session_id) is None:
            return False
        del self._sessions[session_id]
        self._index.discard(session_id)
        return True

    def expire(self, session_id: str) -> bool:
        """Make a live session expire now, as a TTL would: no DELETE, no event, still indexed."""
        session = self._live(session_id)
        if session is None:
            return False
        session.expires_at = self._clock()
        return True

    def stored(self, session_id: str) -> Session | None:
        """The session as stored, not purged first: for the effects right after a change."""
        return self._sessions.get(session_id)

    def active_count(self) -> int:
        """The count KATO reports: live sessions, or with the index, its size."""
        live = self.live_count()
        return len(self._index) if self._indexed else live

    def live_count(self) -> int:
        self._purge()
        return len(self._sessions)

    def live_ids(self) -> list[str]:
        self._purge()
        return sorted(self._sessions)

    def clear(self) -> None:
        self._sessions.clear()
        self._index.clear()

    def _live(self, session_id: str) -> Session | None:
        self._purge()
        return self._sessions.get(session_id)

    def _purge(self) -> None:
        now = self._clock()
        expired = [sid for sid, s in self._sessions.items() if s.expires_at <= now]
        for session_id in expired:
            del self._sessions[session_id]
