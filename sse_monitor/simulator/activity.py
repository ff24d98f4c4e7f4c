"""The demo's sessions: created and destroyed at random, in bursts, between a floor and a cap."""

from __future__ import annotations

import random

from sse_monitor.simulator.sessions import SessionStore

_DEMO_MAX_SESSIONS = 12


class DemoSessions:
    """Makes sessions come and go, so that a live dashboard has changes to show."""

    def __init__(self, sessions: SessionStore, rng: random.Random) -> None:
        self._sessions = sessions
        self._rng = rng
        self._created = 0  # numbers the demo's node ids

    def move(self) -> list[tuple[str, str]]:
        """One tick's changes, as ("created" or "destroyed", session_id) pairs (often none)."""
        rng = self._rng
        if rng.random() < 0.3:
            return []  # a quiet tick
        # Live sessions, not the reported count: in redis mode that one also holds expired ids.
        count = self._sessions.live_count()
        burst = 1 if rng.random() < 0.7 else rng.randint(2, 4)
        create_bias = 0.8 if count < 3 else 0.2 if count > _DEMO_MAX_SESSIONS - 3 else 0.5
        changes: list[tuple[str, str]] = []
        if rng.random() < create_bias:
            for _ in range(min(burst, _DEMO_MAX_SESSIONS - count)):
                self._created += 1
                ttl = rng.randint(30, 300)
                session = self._sessions.create(f"demo-{self._created}", ttl_seconds=ttl)
                changes.append(("created", session["session_id"]))
        else:
            for session_id in rng.sample(self._sessions.live_ids(), min(burst, count)):
                self._sessions.delete(session_id)
                changes.append(("destroyed", session_id))
        return changes
