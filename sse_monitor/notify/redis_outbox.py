"""The notification outbox of a cluster, in the Redis its nodes share: the producer gathers
transitions and records messages there before anything is sent, and the next producer resumes
them after a failover. Same results as the SQLite outbox of one process (sqlite_outbox.py).

Keys, all under `{prefix}:notify`:

- `:entry:{id}`: a hash per entry: id, receiver, idempotency_key, body (base64: any byte
  round-trips, whether the client decodes answers or not), headers and alerts (JSON), created,
  next_attempt, attempts, state, last_error (absent while there is none).
- `:next_entry`: the counter of entry ids (INCR).
- `:entries`: every entry's id, scored by it (for `recent`).
- `:keys:{receiver}`: a hash, idempotency key -> entry id (one entry per key and receiver).
- `:queue:{receiver}`: the receiver's pending entries' ids, scored by id.
- `:heads`: the oldest pending entry of each receiver, scored by its next_attempt; a member is
  the id zero-padded to 20 digits, so that entries due at the same time come in id order.
- `:done`: the delivered or failed entries' ids, scored by when they were created (for prune).
- `:transition:{n}`: a hash per gathered transition: receiver, alert, kind, transition (JSON:
  the alert as it was), recorded, due, and entry once its group closed.
- `:next_transition`: the counter of transitions (INCR): `n` is their order gathered.
- `:seen:{receiver}`: a hash, `{kind}:{alert id}` -> n: each is gathered once.
- `:gathering:{receiver}`: the transitions not closed yet, scored by their due.
- `:closing`: each receiver with transitions gathering, scored by its group's earliest due.
- `:alert:{alert id}`: the alert's transitions, scored by n (for `notices`).
- `:recorded`: every transition, scored by when it was gathered (for prune).

Each write is one Lua script (prune: one per batch), so atomic in Redis. A producer's outbox
holds its fencing token: each write script first checks it against the lease's value (as the
log's append does, bus/redis_log.py), writes nothing if it does not hold, and the call raises
OutboxFenced; so does `due`, which writes nothing but hands out messages to send, so that a
producer that lost the lease unawares (paused, then resumed) sends none of its successor's.
`delivered` alone is unfenced: a receiver's 2xx is a fact whoever saw it, and it only ever
stops a resend. Each round trip is bounded by `timeout` (close_group makes two,
prune one per batch); a Redis that fails or does not answer raises OutboxUnavailable. The
scripts find their keys from the prefix: one Redis server, not a Redis Cluster.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Awaitable, Callable, Collection, Iterable, Mapping, Sequence
from functools import partial
from typing import Any, TypeVar

from redis.asyncio import Redis
from redis.commands.core import AsyncScript

from sse_monitor.cluster.connection import answered
from sse_monitor.notify.outbox import (
    GATHERING,
    BuildEntry,
    Delivery,
    Gathered,
    NewDelivery,
    Notice,
    OutboxFenced,
    OutboxUnavailable,
    transition_from_json,
    transition_to_json,
)

T = TypeVar("T")

PRUNE_BATCH = 500  # entries, or transitions, looked at by one script: Redis waits meanwhile

# The opening of every write script. KEYS[1]: the lease; ARGV[1]: the token ('': unfenced),
# ARGV[2]: the base of every key. A token that does not hold the lease writes nothing (nil).
FENCED = """
if ARGV[1] ~= '' and redis.call('GET', KEYS[1]) ~= ARGV[1] then return false end
local base = ARGV[2]
local function head(id)
  return string.format('%020d', id)
end
"""

# Records an entry, due at once, unless its receiver has one with its key: the id either way.
ADDING = """
local function add_entry(receiver, key, body, headers, alerts, now)
  local keys = base .. ':keys:' .. receiver
  local found = redis.call('HGET', keys, key)
  if found then return tonumber(found) end
  local id = redis.call('INCR', base .. ':next_entry')
  redis.call('HSET', base .. ':entry:' .. id, 'id', id, 'receiver', receiver,
             'idempotency_key', key, 'body', body, 'headers', headers, 'alerts', alerts,
             'created', now, 'next_attempt', now, 'attempts', 0, 'state', 'pending')
  redis.call('HSET', keys, key, id)
  redis.call('ZADD', base .. ':entries', id, id)
  local queue = base .. ':queue:' .. receiver
  redis.call('ZADD', queue, id, id)
  if redis.call('ZCARD', queue) == 1 then
    redis.call('ZADD', base .. ':heads', now, head(id))
  end
  return id
end
"""

# ARGV[3]: now; then (receiver, alert id, kind, transition, due) per item. Returns the
# positions (from 0) of the items that were new.
GATHER = (
    FENCED
    + """
local now, new = ARGV[3], {}
for i = 4, #ARGV, 5 do
  local receiver, alert, kind, due = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 4]
  local seen = base .. ':seen:' .. receiver
  if redis.call('HEXISTS', seen, kind .. ':' .. alert) == 0 then
    local n = redis.call('INCR', base .. ':next_transition')
    redis.call('HSET', seen, kind .. ':' .. alert, n)
    redis.call('HSET', base .. ':transition:' .. n, 'receiver', receiver, 'alert', alert,
               'kind', kind, 'transition', ARGV[i + 3], 'recorded', now, 'due', due)
    redis.call('ZADD', base .. ':gathering:' .. receiver, due, n)
    local closes = redis.call('ZSCORE', base .. ':closing', receiver)
    if not closes or tonumber(due) < tonumber(closes) then
      redis.call('ZADD', base .. ':closing', due, receiver)
    end
    redis.call('ZADD', base .. ':alert:' .. alert, n, n)
    redis.call('ZADD', base .. ':recorded', now, n)
    new[#new + 1] = (i - 4) / 5
  end
end
return new
"""
)

# ARGV: the base, the receiver. Its gathered transitions in the order gathered, as (n, JSON).
GATHERED = """
local base = ARGV[1]
local found = redis.call('ZRANGE', base .. ':gathering:' .. ARGV[2], 0, -1)
table.sort(found, function(a, b) return tonumber(a) < tonumber(b) end)
local answer = {}
for _, n in ipairs(found) do
  answer[#answer + 1] = n
  answer[#answer + 1] = redis.call('HGET', base .. ':transition:' .. n, 'transition')
end
return answer
"""

# ARGV[3]: now, then the receiver, idempotency key, body, headers and alerts of the entry, then
# the transitions it was built of. Returns {} if one of them is no longer gathering (closed
# meanwhile into another entry: read and build again), else {the entry's id}. Run twice (a reply
# lost), it finds them closed into its own entry, and answers that again.
CLOSE = (
    FENCED
    + ADDING
    + """
local now, receiver, key = ARGV[3], ARGV[4], ARGV[5]
local gathering = base .. ':gathering:' .. receiver
local existing = redis.call('HGET', base .. ':keys:' .. receiver, key)
local closing = {}
for i = 9, #ARGV do
  if redis.call('ZSCORE', gathering, ARGV[i]) then
    closing[#closing + 1] = ARGV[i]
  elseif not existing
      or redis.call('HGET', base .. ':transition:' .. ARGV[i], 'entry') ~= existing then
    return {}
  end
end
local id = add_entry(receiver, key, ARGV[6], ARGV[7], ARGV[8], now)
for _, n in ipairs(closing) do
  redis.call('HSET', base .. ':transition:' .. n, 'entry', id)
  redis.call('ZREM', gathering, n)
end
local earliest = redis.call('ZRANGE', gathering, 0, 0, 'WITHSCORES')
if earliest[2] then
  redis.call('ZADD', base .. ':closing', earliest[2], receiver)
else
  redis.call('ZREM', base .. ':closing', receiver)
end
return {id}
"""
)

# ARGV[3]: now; then (receiver, idempotency key, body, headers, alerts) per entry. Their ids.
ADD = (
    FENCED
    + ADDING
    + """
local ids = {}
for i = 4, #ARGV, 5 do
  ids[#ids + 1] = add_entry(ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3], ARGV[i + 4], ARGV[3])
end
return ids
"""
)

# ARGV[3]: the entry's id, then its new state, the next attempt and the error ('' for none, else
# '=' and the value). One attempt more; only a pending entry changes. When a receiver's head is
# done, its next pending entry becomes its head, due at its own next attempt.
RECORD = (
    FENCED
    + """
local id, state = ARGV[3], ARGV[4]
local entry = base .. ':entry:' .. id
if redis.call('HGET', entry, 'state') ~= 'pending' then return 0 end
redis.call('HINCRBY', entry, 'attempts', 1)
redis.call('HSET', entry, 'state', state)
if ARGV[5] ~= '' then redis.call('HSET', entry, 'next_attempt', string.sub(ARGV[5], 2)) end
if ARGV[6] ~= '' then redis.call('HSET', entry, 'last_error', string.sub(ARGV[6], 2)) end
local receiver, created, next_attempt = unpack(
  redis.call('HMGET', entry, 'receiver', 'created', 'next_attempt'))
local heads = base .. ':heads'
if state == 'pending' then
  if redis.call('ZSCORE', heads, head(id)) then
    redis.call('ZADD', heads, next_attempt, head(id))
  end
  return 1
end
local queue = base .. ':queue:' .. receiver
redis.call('ZREM', queue, id)
redis.call('ZADD', base .. ':done', created, id)
if redis.call('ZREM', heads, head(id)) == 1 then
  local following = redis.call('ZRANGE', queue, 0, 0)[1]
  if following then
    local due = redis.call('HGET', base .. ':entry:' .. following, 'next_attempt')
    redis.call('ZADD', heads, due, head(following))
  end
end
return 1
"""
)

# ARGV[3]: the time bound, ARGV[4]: the limit. The fields of the heads due by then, soonest
# first. Fenced although it writes nothing: a producer that lost the lease (paused, then
# resumed) must not take its successor's messages for its own to send.
DUE = (
    FENCED
    + """
local heads = redis.call('ZRANGEBYSCORE', base .. ':heads', '-inf', ARGV[3], 'LIMIT', 0, ARGV[4])
local found = {}
for _, member in ipairs(heads) do
  found[#found + 1] = redis.call('HGETALL', base .. ':entry:' .. string.match(member, '^0*(.+)$'))
end
return found
"""
)

# ARGV: the base, the limit. The fields of the newest entries, newest first.
RECENT = """
local base = ARGV[1]
local ids = redis.call('ZREVRANGEBYSCORE', base .. ':entries', '+inf', '-inf', 'LIMIT', 0, ARGV[2])
local found = {}
for _, id in ipairs(ids) do
  found[#found + 1] = redis.call('HGETALL', base .. ':entry:' .. id)
end
return found
"""

# ARGV: the base, then alert ids. For each, its transitions in the order gathered, each as
# {n, receiver, kind, state, attempts, last_error}: the last three nil while it gathers.
NOTICES = """
local base = ARGV[1]
local answer = {}
for i = 2, #ARGV do
  local found = {}
  for _, n in ipairs(redis.call('ZRANGE', base .. ':alert:' .. ARGV[i], 0, -1)) do
    local t = redis.call('HMGET', base .. ':transition:' .. n, 'receiver', 'kind', 'entry')
    local e = {false, false, false}
    if t[3] then
      e = redis.call('HMGET', base .. ':entry:' .. t[3], 'state', 'attempts', 'last_error')
    end
    -- an entry pruned (a long-firing alert's old message) is not shown as gathering
    if not t[3] or e[1] then
      found[#found + 1] = {n, t[1], t[2], e[1], e[2], e[3]}
    end
  end
  answer[#answer + 1] = found
end
return answer
"""

# ARGV[3]: the time bound, ARGV[4]: the batch size. Deletes up to a batch of the entries
# delivered or failed that were created before the bound; how many.
PRUNE_ENTRIES = (
    FENCED
    + """
local done = base .. ':done'
local ids = redis.call('ZRANGEBYSCORE', done, '-inf', '(' .. ARGV[3], 'LIMIT', 0, ARGV[4])
for _, id in ipairs(ids) do
  local entry = base .. ':entry:' .. id
  local receiver, key = unpack(redis.call('HMGET', entry, 'receiver', 'idempotency_key'))
  redis.call('HDEL', base .. ':keys:' .. receiver, key)
  redis.call('DEL', entry)
  redis.call('ZREM', done, id)
  redis.call('ZREM', base .. ':entries', id)
end
return #ids
"""
)

# ARGV[3]: the time bound, ARGV[4]: the batch size, ARGV[5]: how many of the transitions
# recorded before the bound to skip (kept by an earlier batch), then the alert ids to keep.
# Deletes those of the batch whose alert is not kept and whose entry is gone. Returns {how
# many were looked at, how many of those are kept}.
PRUNE_TRANSITIONS = (
    FENCED
    + """
local keep = {}
for i = 6, #ARGV do keep[ARGV[i]] = true end
local recorded = base .. ':recorded'
local found = redis.call('ZRANGEBYSCORE', recorded, '-inf', '(' .. ARGV[3],
                         'LIMIT', ARGV[5], ARGV[4])
local kept = 0
for _, n in ipairs(found) do
  local transition = base .. ':transition:' .. n
  local receiver, alert, kind, entry = unpack(
    redis.call('HMGET', transition, 'receiver', 'alert', 'kind', 'entry'))
  if keep[alert] or not entry or redis.call('EXISTS', base .. ':entry:' .. entry) == 1 then
    kept = kept + 1
  else
    redis.call('HDEL', base .. ':seen:' .. receiver, kind .. ':' .. alert)
    redis.call('ZREM', base .. ':alert:' .. alert, n)
    redis.call('ZREM', recorded, n)
    redis.call('DEL', transition)
  end
end
return {#found, kept}
"""
)


class RedisOutbox:
    """The outbox under `{prefix}:notify` in the Redis of `redis`, which the caller made and
    closes. `token` is the producer's fencing token (None: unfenced, for a node that only reads,
    and for tests)."""

    def __init__(
        self,
        redis: Redis,
        prefix: str,
        *,
        token: str | None,
        timeout: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.path = f"redis {prefix}:notify"
        self.timeout = timeout
        self._redis = redis
        self._base = f"{prefix}:notify"
        self._lease = f"{prefix}:leader"  # cluster/lease.py's key
        self._token = token or ""
        self._clock = clock
        self._gather = redis.register_script(GATHER)
        self._gathered = redis.register_script(GATHERED)
        self._close = redis.register_script(CLOSE)
        self._add = redis.register_script(ADD)
        self._record = redis.register_script(RECORD)
        self._due = redis.register_script(DUE)
        self._recent = redis.register_script(RECENT)
        self._notices = redis.register_script(NOTICES)
        self._prune_entries = redis.register_script(PRUNE_ENTRIES)
        self._prune_transitions = redis.register_script(PRUNE_TRANSITIONS)

    async def open(self) -> None:
        """Nothing to open, and no call to Redis: a node starts while Redis is away."""

    async def aclose(self) -> None:
        """Nothing to close: the client is its maker's."""

    async def gather(self, items: Iterable[Gathered]) -> list[Gathered]:
        items = list(items)
        if not items:
            return []
        arguments: list[Any] = [repr(self._clock())]
        for item in items:
            receiver, alert_id, kind = item.key
            arguments += [receiver, alert_id, kind, transition_to_json(item.transition)]
            arguments.append(repr(item.due))
        new = await self._write("gather", self._gather, arguments)
        return [items[int(position)] for position in new]

    async def closing(self) -> dict[str, float]:
        reading = partial(self._redis.zrange, f"{self._base}:closing", 0, -1, withscores=True)
        found = await self._call("closing", reading)
        return {_text(receiver): float(due) for receiver, due in found}

    async def close_group(self, receiver: str, build: BuildEntry) -> int | None:
        """As SqliteOutbox.close_group. The transitions are read, the entry built here, then
        written by one script that closes exactly those read: one gathered meanwhile stays
        gathering; if one was closed meanwhile (another close), it reads and builds again."""
        while True:
            reading = partial(self._gathered, args=[self._base, receiver])
            found = await self._call("close_group", reading)
            if not found:
                return None
            numbers = [_text(n) for n in found[::2]]
            entry = build(receiver, [transition_from_json(text) for text in found[1::2]])
            arguments = [repr(self._clock()), *_entry_arguments(entry), *numbers]
            closed = await self._write("close_group", self._close, arguments)
            if closed:
                return int(closed[0])

    async def add(self, entries: Iterable[NewDelivery]) -> list[int]:
        """Record the entries, all or none, due at once; their ids, in order. An entry whose
        receiver and idempotency key are already recorded is not added again (its id is)."""
        arguments = [part for entry in entries for part in _entry_arguments(entry)]
        if not arguments:
            return []
        ids = await self._write("add", self._add, [repr(self._clock()), *arguments])
        return [int(entry_id) for entry_id in ids]

    async def due(self, now: float, limit: int) -> list[Delivery]:
        """Entries to send now, at most one per receiver (its oldest pending), soonest first."""
        found = await self._write("due", self._due, [repr(now), limit])
        return [_delivery(_pairs(fields)) for fields in found]

    async def next_attempt(self) -> float | None:
        """When the next entry is due (possibly already past), or None when none is pending."""
        reading = partial(self._redis.zrange, f"{self._base}:heads", 0, 0, withscores=True)
        found = await self._call("next_attempt", reading)
        return float(found[0][1]) if found else None

    async def delivered(self, entry_id: int) -> None:
        """Unfenced: whoever saw the receiver's 2xx may record it; it only prevents a resend."""
        arguments = ["", self._base, entry_id, "delivered", "", ""]
        recording = partial(self._record, keys=[self._lease], args=arguments)
        await self._call("delivered", recording)

    async def retry_at(self, entry_id: int, when: float, error: str) -> None:
        arguments = [entry_id, "pending", f"={when!r}", f"={error}"]
        await self._write("retry_at", self._record, arguments)

    async def failed(self, entry_id: int, error: str) -> None:
        """Given up for good: a permanent refusal, or retried for too long."""
        await self._write("failed", self._record, [entry_id, "failed", "", f"={error}"])

    async def get(self, entry_id: int) -> Delivery | None:
        reading = partial(self._redis.hgetall, f"{self._base}:entry:{entry_id}")
        found = await self._call("get", reading)
        return _delivery(found) if found else None

    async def recent(self, limit: int) -> list[Delivery]:
        """The newest entries first, whatever their state (for the API)."""
        found = await self._call("recent", partial(self._recent, args=[self._base, limit]))
        return [_delivery(_pairs(fields)) for fields in found]

    async def notices(self, alert_ids: Collection[str]) -> dict[str, list[Notice]]:
        ids = list(dict.fromkeys(alert_ids))
        if not ids:
            return {}
        found = await self._call("notices", partial(self._notices, args=[self._base, *ids]))
        answered = {alert_id: rows for alert_id, rows in zip(ids, found, strict=True) if rows}
        # As SQLite answers: the alerts in the order of their first transition gathered.
        order = sorted(answered, key=lambda alert_id: int(answered[alert_id][0][0]))
        return {alert_id: [_notice(row) for row in answered[alert_id]] for alert_id in order}

    async def prune(self, before: float, keep: Collection[str]) -> int:
        """As SqliteOutbox.prune, in batches of PRUNE_BATCH: the entries first, then the
        transitions (whose entries may just have gone)."""
        removed = 0
        while True:
            batch = [repr(before), PRUNE_BATCH]
            deleted = int(await self._write("prune", self._prune_entries, batch))
            removed += deleted
            if deleted < PRUNE_BATCH:
                break
        skipped = 0
        while True:
            batch = [repr(before), PRUNE_BATCH, skipped, *keep]
            looked_at, kept = await self._write("prune", self._prune_transitions, batch)
            skipped += int(kept)
            if int(looked_at) < PRUNE_BATCH:
                return removed

    async def _write(self, what: str, script: AsyncScript, arguments: Sequence[Any]) -> Any:
        """A write script's answer, fenced by the token; OutboxFenced if it does not hold."""
        writing = partial(script, keys=[self._lease], args=[self._token, self._base, *arguments])
        answer = await self._call(what, writing)
        if answer is None:
            raise OutboxFenced(
                f"the notification outbox ({self.path}) refused {what}: "
                "this producer no longer holds the lease"
            )
        return answer

    async def _call(self, what: str, command: Callable[[], Awaitable[T]]) -> T:
        """`command()` within the timeout, or OutboxUnavailable."""
        failing = f"the notification outbox ({self.path}) failed {what}"
        return await answered(command, self.timeout, OutboxUnavailable, failing)


def _entry_arguments(entry: NewDelivery) -> list[str]:
    """An entry as the scripts take it: receiver, idempotency key, body, headers, alerts."""
    return [
        entry.receiver,
        entry.idempotency_key,
        base64.b64encode(entry.body).decode(),
        json.dumps(dict(entry.headers)),
        json.dumps([list(pair) for pair in entry.alerts]),
    ]


def _text(value: bytes | str) -> str:
    """An answer as text, whether the client decodes answers or not."""
    return value.decode() if isinstance(value, bytes) else value


def _pairs(fields: list[Any]) -> dict[Any, Any]:
    """HGETALL's answer within a script: names and values in turn."""
    return dict(zip(fields[::2], fields[1::2], strict=True))


def _delivery(fields: Mapping[Any, Any]) -> Delivery:
    """An entry from its hash."""
    found = {_text(name): _text(value) for name, value in fields.items()}
    last_error = found.get("last_error")
    return Delivery(
        id=int(found["id"]),
        receiver=found["receiver"],
        idempotency_key=found["idempotency_key"],
        body=base64.b64decode(found["body"]),
        headers=json.loads(found["headers"]),
        created=float(found["created"]),
        next_attempt=float(found["next_attempt"]),
        attempts=int(found["attempts"]),
        state=found["state"],
        last_error=last_error,
        alerts=tuple((alert_id, kind) for alert_id, kind in json.loads(found["alerts"])),
    )


def _notice(row: list[Any]) -> Notice:
    """NOTICES' row: n, receiver, kind, then the entry's state, attempts and last error."""
    _, receiver, kind, state, attempts, last_error = row
    return Notice(
        _text(receiver),
        _text(kind),
        _text(state) if state is not None else GATHERING,
        int(attempts) if attempts is not None else 0,
        _text(last_error) if last_error is not None else None,
    )
