"""KATO's sessions written into a Redis as KATO writes them (`kato:session:<id>` with a TTL,
and the `kato:session:_active_index` set), for the tests of the session list."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import redis

T0 = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


def seed(url: str, count: int) -> list[str]:
    """`count` sessions as KATO writes them, created a minute apart; returns ids newest first."""
    client = redis.Redis.from_url(url, decode_responses=True)
    ids = []
    for index in range(count):
        created = T0 + timedelta(minutes=index)
        session_id = f"session-{index:032x}-{int(created.timestamp() * 1000)}"
        body = {
            "session_id": session_id,
            "node_id": f"node-{index % 3}",
            "created_at": created.isoformat().replace("+00:00", "Z"),
            "expires_at": (created + timedelta(hours=1)).isoformat().replace("+00:00", "Z"),
            "ttl_seconds": 3600,
            "metadata": {},
        }
        client.set(f"kato:session:{session_id}", json.dumps(body), ex=600 + index)
        client.sadd("kato:session:_active_index", session_id)
        ids.append(session_id)
    # KATO's other keys under the prefix are not sessions.
    client.set("kato:session:_meta", "x")
    client.close()
    return ids[::-1]
