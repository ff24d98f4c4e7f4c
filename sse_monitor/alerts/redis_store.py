"""The alerts of a cluster, in the Redis all its nodes share: the producer saves them, any node
lists and acknowledges them. Same calls and results as the SQLite store (store.py).

Keys, all under `{prefix}:alerts`:

- `:alert:{id}`: a hash, one field per column of the alert (alerts/columns.py) that is not empty.
- `:started:{state}:{severity}`: a sorted set (every score 0) of `started_at|id`, for each filter a
  page can ask for, `any` where it does not filter (`:started:any:any` holds every alert).
  `started_at` has a fixed width, so the members' text order is (started_at, id) order, and a
  page is one ZREVRANGEBYLEX from its cursor, however many alerts its filter leaves out.
- `:resolved`: a sorted set of `resolved_at|id` of the resolved alerts, oldest first, for prune.

Every write is one Lua script, so atomic in Redis: an ack sets the ack fields only where none
are set (the first ack wins, on whichever node), and a save never writes the ack fields of an
alert already acknowledged (the producer's copy may not have an ack made on another node). The
scripts find an alert's key from the prefix: one Redis server, not a Redis Cluster.

Every call is bounded by `timeout` (by default the client's socket timeout), for a redis-py
client may retry a call several times; a failure raises StoreUnavailable.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping
from datetime import datetime
from functools import partial
from typing import Any, TypeVar

import redis.asyncio as redis
from redis.exceptions import RedisError

from sse_monitor.alerts.alert import Alert, stamp
from sse_monitor.alerts.columns import COLUMNS, from_columns, to_columns
from sse_monitor.alerts.store import StoreUnavailable
from sse_monitor.cluster.connection import bounded

T = TypeVar("T")

FALLBACK_TIMEOUT = 2.0  # seconds, for a client without a socket timeout
PRUNE_BATCH = 500  # alerts deleted by one script: Redis serves nothing else while it runs

# Shared by the scripts that write: ARGV[1] is the prefix of every alert key.
INDEXING = """
local base = ARGV[1]
local function filters(state, severity)
  return {
    base .. ':started:any:any',
    base .. ':started:' .. state .. ':any',
    base .. ':started:any:' .. severity,
    base .. ':started:' .. state .. ':' .. severity,
  }
end
local function unindex(id, key)
  local old = redis.call('HMGET', key, 'started_at', 'state', 'severity', 'resolved_at')
  if old[1] then
    for _, set in ipairs(filters(old[2], old[3])) do
      redis.call('ZREM', set, old[1] .. '|' .. id)
    end
  end
  if old[4] then
    redis.call('ZREM', base .. ':resolved', old[4] .. '|' .. id)
  end
end
local function index(id, key)
  local new = redis.call('HMGET', key, 'started_at', 'state', 'severity', 'resolved_at')
  for _, set in ipairs(filters(new[2], new[3])) do
    redis.call('ZADD', set, 0, new[1] .. '|' .. id)
  end
  if new[2] == 'resolved' and new[4] then
    redis.call('ZADD', base .. ':resolved', 0, new[4] .. '|' .. id)
  end
end
"""

# ARGV: the prefix, n (the number of columns), the n column names (the id first), then n values
# per alert, each '' for an empty column or '=' followed by its text.
SAVE = (
    INDEXING
    + """
local n = tonumber(ARGV[2])
local ack = {acknowledged_by = true, acknowledged_at = true, ack_note = true}
for first = 3 + n, #ARGV, n do
  local id = string.sub(ARGV[first], 2)
  local key = base .. ':alert:' .. id
  unindex(id, key)
  local acknowledged = redis.call('HEXISTS', key, 'acknowledged_at') == 1
  for column = 1, n do
    local name, value = ARGV[2 + column], ARGV[first + column - 1]
    if not (acknowledged and ack[name]) then
      if value == '' then
        redis.call('HDEL', key, name)
      else
        redis.call('HSET', key, name, string.sub(value, 2))
      end
    end
  end
  index(id, key)
end
return 0
"""
)

# KEYS[1]: the alert. ARGV: by, at, the note ('' for none, else '=' followed by it).
# Returns nil for no such alert, else {1 if this call acknowledged it, its fields}.
ACKNOWLEDGE = """
if redis.call('EXISTS', KEYS[1]) == 0 then
  return false
end
local changed = 0
if redis.call('HEXISTS', KEYS[1], 'acknowledged_at') == 0 then
  redis.call('HSET', KEYS[1], 'acknowledged_by', ARGV[1], 'acknowledged_at', ARGV[2])
  if ARGV[3] == '' then
    redis.call('HDEL', KEYS[1], 'ack_note')
  else
    redis.call('HSET', KEYS[1], 'ack_note', string.sub(ARGV[3], 2))
  end
  changed = 1
end
return {changed, redis.call('HGETALL', KEYS[1])}
"""

# KEYS[1]: an index. ARGV: the prefix, ZRANGEBYLEX or ZREVRANGEBYLEX, its two bounds, the
# count (-1: all). The fields of each alert listed, in the index's order.
READ = """
local base = ARGV[1]
local members = redis.call(ARGV[2], KEYS[1], ARGV[3], ARGV[4], 'LIMIT', 0, ARGV[5])
local alerts = {}
for _, member in ipairs(members) do
  local fields = redis.call('HGETALL', base .. ':alert:' .. string.match(member, '|(.*)$'))
  if #fields > 0 then
    alerts[#alerts + 1] = fields
  end
end
return alerts
"""

# KEYS[1]: the index of resolved alerts. ARGV: the prefix, the upper bound, the batch size.
# Returns {the members looked at, the alerts deleted}.
PRUNE = (
    INDEXING
    + """
local members = redis.call('ZRANGEBYLEX', KEYS[1], '-', ARGV[2], 'LIMIT', 0, ARGV[3])
local removed = 0
for _, member in ipairs(members) do
  local id = string.match(member, '|(.*)$')
  local key = base .. ':alert:' .. id
  if redis.call('HGET', key, 'state') == 'resolved' then
    unindex(id, key)
    redis.call('DEL', key)
    removed = removed + 1
  else
    redis.call('ZREM', KEYS[1], member)
  end
end
return {#members, removed}
"""
)


class RedisAlertStore:
    """The alerts under `{prefix}:alerts` in the Redis of `client`, which the caller made and
    closes: `RedisAlertStore(client, prefix=settings.cluster)`."""

    def __init__(self, client: redis.Redis, prefix: str, *, timeout: float | None = None) -> None:
        self._redis = client
        self._base = f"{prefix}:alerts"
        connection = client.connection_pool.connection_kwargs
        self.timeout = timeout or connection.get("socket_timeout") or FALLBACK_TIMEOUT
        self.path = f"{_where(connection)} {self._base}:*"
        self._save = client.register_script(SAVE)
        self._acknowledge = client.register_script(ACKNOWLEDGE)
        self._read = client.register_script(READ)
        self._prune = client.register_script(PRUNE)

    async def open(self) -> None:
        """Nothing to open, and no call to Redis: a node starts while Redis is away (the
        cluster's log says so), and each call meanwhile raises StoreUnavailable."""

    async def save(self, alerts: Iterable[Alert]) -> None:
        values = [_argument(value) for alert in alerts for value in to_columns(alert)]
        if values:
            arguments = [self._base, len(COLUMNS), *COLUMNS, *values]
            await self._call("save", partial(self._save, args=arguments))

    async def firing(self) -> list[Alert]:
        return await self._list(self._index("firing", None), "ZRANGEBYLEX", "-", "+", -1)

    async def get(self, alert_id: str) -> Alert | None:
        fields = await self._call("get", partial(self._redis.hgetall, self._key(alert_id)))
        return _alert(fields) if fields else None

    async def acknowledge(
        self, alert_id: str, by: str, note: str | None, at: datetime
    ) -> tuple[Alert, bool] | None:
        """The alert after the ack, and whether this call changed it (the first ack wins)."""
        found = await self._call(
            "acknowledge",
            partial(
                self._acknowledge,
                keys=[self._key(alert_id)],
                args=[by, stamp(at), _argument(note)],
            ),
        )
        if found is None:
            return None
        changed, fields = found
        return _alert(_pairs(fields)), changed == 1

    async def page(
        self,
        *,
        state: str | None,
        severity: str | None,
        limit: int,
        before: tuple[str, str] | None,
    ) -> list[Alert]:
        """Newest first by start time; `before` is the (started_at, id) the page starts after."""
        start = "+" if before is None else f"({before[0]}|{before[1]}"
        return await self._list(self._index(state, severity), "ZREVRANGEBYLEX", start, "-", limit)

    async def prune(self, resolved_before: datetime) -> int:
        """Delete resolved alerts older than the retention; firing ones are always kept."""
        bound = f"({stamp(resolved_before)}"
        removed = 0
        while True:
            looked_at, deleted = await self._call(
                "prune",
                partial(
                    self._prune,
                    keys=[f"{self._base}:resolved"],
                    args=[self._base, bound, PRUNE_BATCH],
                ),
            )
            removed += deleted
            if looked_at < PRUNE_BATCH:
                return removed

    async def aclose(self) -> None:
        """Nothing to close: the client is its maker's."""

    async def _list(self, index: str, *range_by_lex: str | int) -> list[Alert]:
        """The alerts in `index`: `range_by_lex` is the command and its bounds and count."""
        arguments = [self._base, *range_by_lex]
        found = await self._call("read", partial(self._read, keys=[index], args=arguments))
        return [_alert(_pairs(fields)) for fields in found]

    async def _call(self, what: str, command: Callable[[], Awaitable[T]]) -> T:
        """`command()`, within the timeout (see cluster/connection.py's `bounded`)."""
        try:
            return await bounded(command, within=self.timeout)
        except TimeoutError:
            raise StoreUnavailable(
                f"the alert store {self.path} did not answer {what} within {self.timeout} s"
            ) from None
        except (RedisError, OSError) as exc:
            raise StoreUnavailable(
                f"the alert store {self.path} failed {what}: {type(exc).__name__}: {exc}"
            ) from None

    def _key(self, alert_id: str) -> str:
        return f"{self._base}:alert:{alert_id}"

    def _index(self, state: str | None, severity: str | None) -> str:
        return f"{self._base}:started:{state or 'any'}:{severity or 'any'}"


def _argument(value: str | None) -> str:
    """A column as the scripts take it: '' when empty, else '=' and its text."""
    return "" if value is None else f"={value}"


def _where(connection: Mapping[str, Any]) -> str:
    """The server, without a password, for the log."""
    if "path" in connection:
        return f"unix://{connection['path']}?db={connection.get('db', 0)}"
    return f"redis://{connection.get('host')}:{connection.get('port')}/{connection.get('db', 0)}"


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _pairs(fields: list[Any]) -> dict[Any, Any]:
    return dict(zip(fields[::2], fields[1::2], strict=True))


def _alert(fields: Mapping[Any, Any]) -> Alert:
    """The alert from its hash (bytes or text, as the client decodes); a missing field is empty."""
    text = {_text(name): _text(value) for name, value in fields.items()}
    return from_columns({column: text.get(column) for column in COLUMNS})
