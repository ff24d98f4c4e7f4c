"""The history of a cluster, in the Redis its nodes share: the producer records it, any node
answers /api/history from it, and it outlives a restart or a failover. Same tiers, folds and
answers as the SQLite store of one process (sqlite_store.py).

Keys, all under `{prefix}:history`:

- `:{step}:{series}`: a sorted set per series and tier (step 0: every tick; 60 and 900:
  buckets), scored by time. A member is `t:value` for a point, `t:` for a gap (a tick without
  the figure), `t:min:mean:max:count` for a bucket; at most one member per time.
- `:series`: the series that have something kept.
- `:markers`: a sorted set of markers scored by time, each member the JSON `[t, kind, data]`
  (the same marker recorded twice is kept once).
- `:folded:{step}`: where the last fold of that tier ended.

`record` queues and never waits. One task writes: every tick queued meanwhile in one script
call (one round trip), which also answers where each tier's last fold ended. Once a bucket has
ended (with its grace, timed by the ticks), the task reads the finer tier over it, folds it
with history/buckets.py and writes the buckets, the new fold position and the prune of every
tier past its retention in a second call: two more round trips a minute, two more every 15.

A producer writes through `writer(token)`: each write script checks the token against the
lease's value, as the log's append does (bus/redis_log.py), so a producer that lost its lease
writes nothing more, whatever it still believes. `record` alone is unfenced (tests, tools).

Every call is bounded by `timeout`. While Redis fails, ticks are dropped (counted in
`write_failures`; one warning when the writes start failing, one info line when they succeed
again) and reads raise StoreUnavailable (a 503 from the API). The scripts find their keys from
the prefix: one Redis server, not a Redis Cluster.
"""

from __future__ import annotations

import asyncio
import json
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Sequence
from functools import partial
from typing import Any, NamedTuple, TypeVar

import structlog
from redis.asyncio import Redis

from sse_monitor.alerts.store import StoreUnavailable
from sse_monitor.cluster.connection import answered
from sse_monitor.history.buckets import TIERS, Bucket, Row, Tier, fold, fold_range, with_gaps
from sse_monitor.history.markers import Marker
from sse_monitor.tasks import cancel_and_wait

log = structlog.get_logger("sse_monitor.history.redis_store")
T = TypeVar("T")

MAX_BATCH = 100  # ticks in one write
MAX_QUEUE = 1000  # ticks waiting for Redis; past it new ones are dropped (and counted)

# KEYS[1]: the lease. ARGV: the token ('': unfenced), the base, k, the k coarser tiers' steps,
# p, p points as (series, time, member), then the markers as (time, member). Returns false if
# the token does not hold the lease, else where each of the k tiers' last fold ended ('': never).
RECORD = """
if ARGV[1] ~= '' and redis.call('GET', KEYS[1]) ~= ARGV[1] then return false end
local base, k = ARGV[2], tonumber(ARGV[3])
local first, p = 5 + k, tonumber(ARGV[4 + k])
for i = first, first + 3 * p - 1, 3 do
  local key = base .. ':0:' .. ARGV[i]
  redis.call('ZREMRANGEBYSCORE', key, ARGV[i + 1], ARGV[i + 1])
  redis.call('ZADD', key, ARGV[i + 1], ARGV[i + 2])
  redis.call('SADD', base .. ':series', ARGV[i])
end
for i = first + 3 * p, #ARGV, 2 do
  redis.call('ZADD', base .. ':markers', ARGV[i], ARGV[i + 1])
end
local folded = {}
for i = 1, k do
  folded[i] = redis.call('GET', base .. ':folded:' .. ARGV[3 + i]) or ''
end
return folded
"""

# KEYS[1]: the lease. ARGV: the token, the base, the tier's step, where this fold ended, b, b
# buckets as (series, time, member), then (step, the time before which it keeps nothing) for
# each tier, and last the time before which no marker is kept. Returns 0 if fenced, else 1.
FOLD = """
if ARGV[1] ~= '' and redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
local base, step, b = ARGV[2], ARGV[3], tonumber(ARGV[5])
for i = 6, 5 + 3 * b, 3 do
  local key = base .. ':' .. step .. ':' .. ARGV[i]
  redis.call('ZREMRANGEBYSCORE', key, ARGV[i + 1], ARGV[i + 1])
  redis.call('ZADD', key, ARGV[i + 1], ARGV[i + 2])
end
redis.call('SET', base .. ':folded:' .. step, ARGV[4])
for _, series in ipairs(redis.call('SMEMBERS', base .. ':series')) do
  local kept = 0
  for i = 6 + 3 * b, #ARGV - 1, 2 do
    local key = base .. ':' .. ARGV[i] .. ':' .. series
    redis.call('ZREMRANGEBYSCORE', key, '-inf', '(' .. ARGV[i + 1])
    kept = kept + redis.call('ZCARD', key)
  end
  if kept == 0 then redis.call('SREM', base .. ':series', series) end
end
redis.call('ZREMRANGEBYSCORE', base .. ':markers', '-inf', '(' .. ARGV[#ARGV])
return 1
"""

# ARGV: the base, the step, ZRANGEBYSCORE's two bounds, then the series (none: every one kept).
# Returns each series followed by its members.
READ = """
local base, step = ARGV[1], ARGV[2]
local names = {}
for i = 5, #ARGV do names[#names + 1] = ARGV[i] end
if #names == 0 then names = redis.call('SMEMBERS', base .. ':series') end
local answer = {}
for _, name in ipairs(names) do
  local key = base .. ':' .. step .. ':' .. name
  answer[#answer + 1] = name
  answer[#answer + 1] = redis.call('ZRANGEBYSCORE', key, ARGV[3], ARGV[4])
end
return answer
"""


class Tick(NamedTuple):
    """What one `record` call queued, and the token it is fenced by."""

    token: str
    moment: float
    figures: dict[str, float | None]
    markers: tuple[Marker, ...]


class RedisHistory:
    """The history under `{prefix}:history` in the Redis of `client`, which the caller made and
    closes: `RedisHistory(client, prefix=settings.cluster, timeout=settings.redis_timeout)`."""

    def __init__(
        self, client: Redis, prefix: str, tiers: Sequence[Tier] = TIERS, *, timeout: float
    ) -> None:
        self.tiers = tuple(tiers)
        self.timeout = timeout
        self._base = f"{prefix}:history"
        self._lease = f"{prefix}:leader"  # cluster/lease.py's key
        self._record = client.register_script(RECORD)
        self._fold = client.register_script(FOLD)
        self._read = client.register_script(READ)
        self._redis = client
        self._queue: deque[Tick] = deque()
        self._wake = asyncio.Event()
        self._drained = asyncio.Event()
        self._drained.set()
        self._task: asyncio.Task[None] | None = None
        self.writing = True  # as far as we know: the first failure is the first change
        self.write_failures = 0  # ticks dropped: Redis failed them, or too many waited
        self.refused = 0  # ticks of a producer whose lease was gone

    async def open(self) -> None:
        """Start the writer. No call to Redis: a node starts while Redis is away."""
        self._task = asyncio.create_task(self._write(), name="history-writer")

    def record(
        self, moment: float, figures: dict[str, float | None], markers: Iterable[Marker] = ()
    ) -> None:
        """One tick's figures (None: a gap) and markers, unfenced; never waits."""
        self._enqueue(Tick("", moment, figures, tuple(markers)))

    def writer(self, token: str) -> FencedWriter:
        """`record` for the producer holding `token`: refused by Redis once it does not."""
        return FencedWriter(self, token)

    async def points(
        self, series: Sequence[str], since: float, until: float, step: float
    ) -> dict[str, list[Row]]:
        """As SqliteHistory.points: each series' rows within [since, until], oldest first."""
        if not series:
            return {}
        found = await self._rows("read", step, repr(since), repr(until), series)
        return {name: with_gaps(found.get(name, []), step) for name in series}

    async def markers(self, since: float, until: float, limit: int) -> list[Marker]:
        key = f"{self._base}:markers"
        # past the limit, the newest
        reading = partial(self._redis.zrevrangebyscore, key, until, since, start=0, num=limit)
        members = await self._call("markers", reading)
        return [Marker(*json.loads(member)) for member in reversed(members)]

    async def series(self) -> list[str]:
        """Every series with a point or bucket kept."""
        names = await self._call("series", partial(self._redis.smembers, f"{self._base}:series"))
        return sorted(_text(name) for name in names)

    async def flush(self) -> None:
        """Wait for what was recorded so far to be written, or dropped (tests, a clean stop)."""
        await self._drained.wait()

    async def aclose(self) -> None:
        """Write what is queued (for at most the timeout), then stop the writer."""
        if self._task is None:
            return
        try:
            await asyncio.wait_for(self.flush(), self.timeout)
        except TimeoutError:
            self.write_failures += len(self._queue)
        await cancel_and_wait([self._task])
        self._task = None

    # Writing, in the writer task

    def _enqueue(self, tick: Tick) -> None:
        """Queue `tick` for the writer (nothing, if it has nothing to record)."""
        if not tick.figures and not tick.markers:
            return
        if len(self._queue) >= MAX_QUEUE:
            self.write_failures += 1
            return
        self._queue.append(tick)
        self._drained.clear()
        self._wake.set()

    async def _write(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._queue:
                batch = self._batch()
                try:
                    await self._send(batch)
                except Exception:  # a bug, not Redis: logged, and the writer goes on
                    self.write_failures += len(batch)
                    log.exception("history.write_failed", history=self._base)
            self._drained.set()

    def _batch(self) -> list[Tick]:
        """The oldest ticks queued, as many as share the first one's token (up to MAX_BATCH)."""
        batch = [self._queue.popleft()]
        while self._queue and len(batch) < MAX_BATCH and self._queue[0].token == batch[0].token:
            batch.append(self._queue.popleft())
        return batch

    async def _send(self, batch: list[Tick]) -> None:
        token = batch[0].token
        try:
            recording = partial(self._record, keys=[self._lease], args=self._recording(batch))
            folded = await self._call("record", recording)
        except StoreUnavailable as exc:
            self.write_failures += len(batch)
            self._writing(False, exc)
            return
        if folded is None:
            self._fenced(token, len(batch))
            return
        moments = [tick.moment for tick in batch if tick.figures]
        try:
            if moments and not await self._fold_ended(token, max(moments), folded):
                self._fenced(token, 0)
                return
        except StoreUnavailable as exc:  # the next tick folds it
            self._writing(False, exc)
            return
        self._writing(True)

    def _recording(self, batch: list[Tick]) -> list[Any]:
        steps = [_step(tier.step) for tier in self.tiers[1:]]
        points = [
            (name, repr(tick.moment), _point_member(tick.moment, value))
            for tick in batch
            for name, value in tick.figures.items()
        ]
        markers = [(repr(m.time), _marker_member(m)) for tick in batch for m in tick.markers]
        arguments = [batch[0].token, self._base, len(steps), *steps, len(points)]
        arguments += [part for point in points for part in point]
        arguments += [part for marker in markers for part in marker]
        return arguments

    async def _fold_ended(self, token: str, now: float, folded: list[bytes | str]) -> bool:
        """Fold every bucket that ended since each tier's last fold, tier by tier (a coarser
        one from the finer one's buckets), and prune; False if the fence refused it."""
        for source, tier, position in zip(self.tiers[:-1], self.tiers[1:], folded, strict=True):
            due = fold_range(tier, now, float(position) if position else None)
            if due is None:
                continue
            start, ended = due
            found = await self._rows("fold", source.step, repr(start), f"({ended!r}", ())
            buckets = {name: fold(rows, tier.step) for name, rows in found.items()}
            arguments = [token, self._base, _step(tier.step), repr(ended)]
            arguments += self._bucket_arguments(buckets)
            arguments += self._prune_arguments(now)
            folding = partial(self._fold, keys=[self._lease], args=arguments)
            if not await self._call("fold", folding):
                return False
        return True

    def _bucket_arguments(self, buckets: dict[str, list[Bucket]]) -> list[Any]:
        found = [(name, bucket) for name, folded in buckets.items() for bucket in folded]
        arguments: list[Any] = [len(found)]
        for name, bucket in found:
            arguments += [name, repr(bucket.start), _bucket_member(bucket)]
        return arguments

    def _prune_arguments(self, now: float) -> list[Any]:
        arguments: list[Any] = []
        for tier in self.tiers:
            arguments += [_step(tier.step), repr(now - tier.retention)]
        longest = max(tier.retention for tier in self.tiers)
        return [*arguments, repr(now - longest)]

    def _fenced(self, token: str, refused: int) -> None:
        """Redis refused `token`'s write: its lease is gone, and so is all it queued."""
        kept = deque(tick for tick in self._queue if tick.token != token)
        refused += len(self._queue) - len(kept)
        self._queue = kept
        self.refused += refused
        log.warning("history.write_fenced", token=token, dropped=refused)

    def _writing(self, writing: bool, error: BaseException | None = None) -> None:
        """One log line per change of state, not per tick; never an error: the app goes on."""
        if writing == self.writing:
            return
        self.writing = writing
        if writing:
            log.info("history.writing", history=self._base)
        else:
            log.warning("history.not_writing", history=self._base, error=str(error))

    # Reading and calls

    async def _rows(
        self, what: str, step: float, low: str, high: str, series: Iterable[str]
    ) -> dict[str, list[Row]]:
        arguments = [self._base, _step(step), low, high, *series]
        found = await self._call(what, partial(self._read, args=arguments))
        # Tens of thousands of members are parsed in a worker thread, not on the loop that
        # feeds every stream (the reply itself is parsed by hiredis, in C).
        return await asyncio.to_thread(_rows_of, found)

    async def _call(self, what: str, command: Callable[[], Awaitable[T]]) -> T:
        """`command()` within the timeout, or StoreUnavailable."""
        failing = f"the history in Redis ({self._base}:*) failed {what}"
        return await answered(command, self.timeout, StoreUnavailable, failing)


class FencedWriter:
    """The history's `record` for the producer holding `token` (see RedisHistory.writer)."""

    def __init__(self, history: RedisHistory, token: str) -> None:
        self._history = history
        self._token = token

    def record(
        self, moment: float, figures: dict[str, float | None], markers: Iterable[Marker] = ()
    ) -> None:
        self._history._enqueue(Tick(self._token, moment, figures, tuple(markers)))


def _step(step: float) -> str:
    """A tier's step as its keys name it: 0, 60, 900."""
    return f"{step:g}"


def _point_member(moment: float, value: float | None) -> str:
    return f"{moment!r}:" if value is None else f"{moment!r}:{float(value)!r}"


def _bucket_member(bucket: Bucket) -> str:
    return f"{bucket.start!r}:{bucket.min!r}:{bucket.mean!r}:{bucket.max!r}:{bucket.count}"


def _marker_member(marker: Marker) -> str:
    return json.dumps([marker.time, marker.kind, marker.data], separators=(",", ":"))


def _text(value: bytes | str) -> str:
    """A name or member as text, whether the client decodes answers or not."""
    return value.decode() if isinstance(value, bytes) else value


def _rows_of(found: list[Any]) -> dict[str, list[Row]]:
    """The READ script's answer: each series' name, then its members."""
    return {
        _text(name): [_row(member) for member in members]
        for name, members in zip(found[::2], found[1::2], strict=True)
    }


def _row(member: bytes | str) -> Row:
    """A member read back: (time, min, mean, max, count)."""
    t, *values = _text(member).split(":")
    if len(values) == 4:
        return float(t), float(values[0]), float(values[1]), float(values[2]), int(values[3])
    if values[0] == "":
        return float(t), None, None, None, 0
    value = float(values[0])
    return float(t), value, value, value, 1
