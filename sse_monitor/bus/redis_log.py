"""The cluster's event log: Redis Streams, shared by every gateway process of one cluster.

Keys (all under `<cluster>:`):

- `log`: the stream every node tails, all events in order (trimmed to `log_size`, roughly).
- `history`: the durable events alone, the same ids, exactly `history_size` of them.
- `state`: a hash of the newest state event of each name (`<id> <json>`).
- `evicted`: the id of the newest durable event that left `history`.
- `epoch`: the name of this life of the log. Redis flushed or restarted without its data has
  none; the first node to see that names a new one, and every id of the old one gets `reset`.
- `applied:<node>`: the last batch a node's writer appended, so a batch retried after a lost
  reply is not appended twice.

Appends are queued (`append` never waits) and sent in order, in batches, by one writer task.
A producer's appends carry its fencing token, and the append script refuses a batch whose token
is not the lease's value at that moment (see cluster/lease.py): a producer that lost its lease
appends nothing more, whatever it still believes.

Reading never goes to Redis per client: each node keeps the frames (`Frames`: the newest state
and the durable history) fed by its tail of `log`, and answers replays, the current state and
the history from memory. A thousand clients resuming at once cost Redis nothing.
Ids are `<epoch>-<ms>-<n>` (the entry's stream id), valid on every node of the cluster.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import secrets
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import structlog
from redis.asyncio import Redis
from redis.exceptions import RedisError

from sse_monitor.backoff import Backoff
from sse_monitor.bus.event import Event, topic_of
from sse_monitor.bus.frames import Frames, reset_frame
from sse_monitor.bus.log import Frame, Replay
from sse_monitor.bus.sse import encode_frame, to_json
from sse_monitor.clock import iso, utc_now
from sse_monitor.tasks import cancel_and_wait

log = structlog.get_logger("sse_monitor.bus.redis_log")

_EVENT_ID = re.compile(r"^(?P<epoch>[0-9a-f]{8,32})-(?P<ms>[0-9]{1,15})-(?P<n>[0-9]{1,7})$")
_N_BITS = 20  # a stream id's sequence part within one millisecond, below the milliseconds
MAX_BATCH = 200  # events in one append script
MAX_OUTBOX = 10_000  # events waiting for Redis; past it new ones are dropped (and counted)
BLOCK_MS = 1000  # one XREAD waits at most this long, then the tail checks the epoch
CATCH_UP_SECONDS = 2.0  # how long a replay waits for this node's tail to reach a newer id

_APPEND = """
local token, epoch, history_size, log_size, batch = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
if token ~= '' and redis.call('GET', KEYS[1]) ~= token then return 'fenced' end
if redis.call('GET', KEYS[6]) ~= epoch then return 'epoch' end
if tonumber(redis.call('GET', KEYS[7]) or '0') >= tonumber(batch) then return 'applied' end
redis.call('SET', KEYS[7], batch, 'EX', 86400)
local size = tonumber(history_size)
for i = 6, #ARGV, 3 do
  local name, data, durable = ARGV[i], ARGV[i + 1], ARGV[i + 2]
  local id = redis.call('XADD', KEYS[2], 'MAXLEN', '~', log_size, '*',
                        'e', name, 'd', data, 'k', durable, 'p', epoch)
  if durable == '1' then
    local length = redis.call('XLEN', KEYS[3])
    if length >= size then
      local old = redis.call('XRANGE', KEYS[3], '-', '+', 'COUNT', length - size + 1)
      redis.call('SET', KEYS[5], old[#old][1])
    end
    redis.call('XADD', KEYS[3], 'MAXLEN', size, id, 'e', name, 'd', data, 'k', durable)
  else
    redis.call('HSET', KEYS[4], name, id .. ' ' .. data)
  end
end
return 'ok'
"""
# A node whose last seen entry is gone from a stream that still reaches back past it: Redis
# lost data (restarted from an older snapshot). The log is named anew, once, for every node.
_RENAME_EPOCH = """
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('SET', KEYS[1], ARGV[2]) end
return redis.call('GET', KEYS[1])
"""


class LogKeys:
    def __init__(self, prefix: str) -> None:
        self.leader = f"{prefix}:leader"
        self.log = f"{prefix}:log"
        self.history = f"{prefix}:history"
        self.state = f"{prefix}:state"
        self.evicted = f"{prefix}:evicted"
        self.epoch = f"{prefix}:epoch"
        self.prefix = prefix

    def applied(self, node: str) -> str:
        return f"{self.prefix}:applied:{node}"


class RedisLog:
    """The cluster's log: appends through Redis, reads from this node's copy of it."""

    def __init__(
        self,
        redis: Redis,
        tail: Redis,
        *,
        prefix: str,
        history_size: int,
        node: str,
        log_size: int | None = None,
        observe_lag: Callable[[float], None] | None = None,
    ) -> None:
        """`redis` serves the writes and checks; `tail` (its sockets wait BLOCK_MS longer)
        is used by the tail alone."""
        self._redis = redis
        self._tail_client = tail
        self._keys = LogKeys(prefix)
        self._history_size = history_size
        self._log_size = log_size or max(10_000, 10 * history_size)
        self._node = node
        self._observe_lag = observe_lag
        self._frames = Frames(history_size)
        self._epoch = ""
        self._last_id = "0-0"  # the newest entry of `log` this node has read
        self._outbox: deque[tuple[str, Event]] = deque()
        self._wake = asyncio.Event()
        self._advanced = asyncio.Event()  # set each time the tail reads something
        self._loaded = asyncio.Event()
        self._batch = 0
        self._append_script = redis.register_script(_APPEND)
        self._rename_script = redis.register_script(_RENAME_EPOCH)
        self._tasks: list[asyncio.Task[None]] = []
        self.available: bool | None = None  # None until Redis first answers or fails
        self._news: Frame | None = None  # the last `cluster` event this node told its clients
        self.on_fenced: Callable[[str], None] | None = None
        self.appends_refused = 0  # fenced, or the outbox was full
        self.resets = 0  # times this node's copy was reloaded with a `reset` for its clients

    @property
    def epoch(self) -> str:
        return self._epoch

    @property
    def head(self) -> Frame | None:
        return self._frames.head

    @property
    def outbox_size(self) -> int:
        return len(self._outbox)

    async def open(self, wait: float) -> None:
        """Start tailing; wait up to `wait` s for the first load (Redis may be down: the tail
        keeps trying, and the log says so)."""
        self._tasks = [
            asyncio.create_task(self._tail(), name="log-tail"),
            asyncio.create_task(self._write(), name="log-writer"),
        ]
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._loaded.wait(), wait)

    async def aclose(self) -> None:
        await cancel_and_wait(self._tasks)

    # Writing

    def appender(self, token: str) -> Callable[[Event], None]:
        """`append` for the producer holding `token`: each event is checked against the lease
        when it reaches Redis."""

        def append(event: Event) -> None:
            self._queue(token, event)

        return append

    def append(self, event: Event) -> None:
        """An append no lease guards: what any node may say (an acknowledgement)."""
        self._queue("", event)

    def drop(self, token: str) -> int:
        """Forget what `token` queued (its lease is gone); how many events that was."""
        kept = deque(entry for entry in self._outbox if entry[0] != token)
        dropped = len(self._outbox) - len(kept)
        self._outbox = kept
        self.appends_refused += dropped
        return dropped

    def _queue(self, token: str, event: Event) -> None:
        if len(self._outbox) >= MAX_OUTBOX:
            self.appends_refused += 1
            log.warning("log.outbox_full", dropped=event.name, waiting=len(self._outbox))
            return
        self._outbox.append((token, event))
        self._wake.set()

    async def _write(self) -> None:
        backoff = Backoff(0.05, 2.0)
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._outbox:
                token = self._outbox[0][0]
                batch: list[Event] = []
                for entry_token, event in self._outbox:
                    if entry_token != token or len(batch) == MAX_BATCH:
                        break
                    batch.append(event)
                try:
                    outcome = await self._send(token, batch)
                except (RedisError, OSError) as exc:
                    self._set_available(False, exc)
                    await asyncio.sleep(backoff.delay())
                    continue
                backoff.reset()
                if outcome in ("ok", "applied"):
                    for _ in batch:
                        self._outbox.popleft()
                elif outcome == "fenced" or (outcome == "epoch" and token):
                    dropped = self.drop(token)
                    log.warning("log.append_fenced", token=token, dropped=dropped, why=outcome)
                    if self.on_fenced is not None:
                        self.on_fenced(token)
                else:  # an acknowledgement written while the log was renamed: send it again
                    await asyncio.sleep(0.05)

    async def _send(self, token: str, batch: list[Event]) -> str:
        """One atomic append of `batch`; the batch number makes a retry harmless."""
        self._batch += 1
        args: list[Any] = [token, self._epoch, self._history_size, self._log_size, self._batch]
        for event in batch:
            args.extend((event.name, to_json(event.data), "1" if event.durable else "0"))
        keys = [
            self._keys.leader,
            self._keys.log,
            self._keys.history,
            self._keys.state,
            self._keys.evicted,
            self._keys.epoch,
            self._keys.applied(self._node),
        ]
        try:
            outcome = await self._append_script(keys=keys, args=args)
        except (RedisError, OSError):
            self._batch -= 1  # not known to be applied: the retry reuses the number
            raise
        return outcome.decode() if isinstance(outcome, bytes) else str(outcome)

    # Reading

    def follow(self, deliver: Callable[[Frame], None]) -> None:
        self._frames.follow(deliver)

    async def current(self) -> list[Frame]:
        return self._frames.current()

    async def recent(self, limit: int) -> list[Frame]:
        return self._frames.recent(limit)

    async def replay(self, after: str | None) -> Replay:
        replay = await self._resume(after)
        if self.available is False and self._news is not None:
            replay.frames.append(self._news)  # a client joining while Redis is away hears it
        return replay

    async def _resume(self, after: str | None) -> Replay:
        if after is None:
            return Replay(self._frames.current(), self._frames.seq)
        match = _EVENT_ID.match(after)
        if match is None or match["epoch"] != self._epoch or int(match["n"]) >> _N_BITS:
            return self._reset("unknown_id")
        seq = _seq(int(match["ms"]), int(match["n"]))
        if seq > self._frames.seq and not await self._reach(seq):
            return self._reset("unknown_id")
        return self._frames.after(seq) or self._reset("too_old")

    async def caught_up(self, within: float) -> bool:
        """Whether this node's copy reached the newest entry Redis holds now (a new producer
        starts from what clients were told, so it must have read all of it)."""
        newest = await self._redis.xrevrange(self._keys.log, "+", "-", count=1)
        if not newest:
            return True
        ms, n = _parts(newest[0][0])
        return await self._reach(_seq(ms, n), within)

    async def _reach(self, seq: int, within: float = CATCH_UP_SECONDS) -> bool:
        """Wait for the tail to read up to `seq` (an id another node already sent)."""
        deadline = time.monotonic() + within
        while self._frames.seq < seq:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            self._advanced.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._advanced.wait(), left)
        return True

    def _reset(self, reason: str) -> Replay:
        return self._frames.reset(reason, self._epoch, self._id_of(self._frames.seq))

    def _id_of(self, seq: int) -> str:
        return f"{self._epoch}-{seq >> _N_BITS}-{seq & ((1 << _N_BITS) - 1)}"

    # The tail

    async def _tail(self) -> None:
        backoff = Backoff(0.1, 2.0)
        check = True  # the epoch and our position, before reading on
        while True:
            try:
                if check:
                    await self._check()
                    self._set_available(True)
                    check = False
                found = await self._tail_client.xread(
                    {self._keys.log: self._last_id}, count=1000, block=BLOCK_MS
                )
                self._set_available(True)
                backoff.reset()
                if not found:
                    check = True  # quiet for a second: is the log still the one we read?
                    continue
                for entry_id, fields in found[0][1]:
                    if fields.get(b"p", b"").decode() != self._epoch:
                        check = True  # appended in a new epoch: Redis lost the log meanwhile
                        break
                    self._take(entry_id, fields)
                self._advanced.set()
            except asyncio.CancelledError:
                raise
            except (RedisError, OSError) as exc:
                self._set_available(False, exc)
                check = True
                await asyncio.sleep(backoff.delay())

    async def _check(self) -> None:
        """Load the log if it was never loaded or was renamed; notice lost entries."""
        epoch = await self._redis.get(self._keys.epoch)
        if epoch is None:
            await self._redis.set(self._keys.epoch, secrets.token_hex(4), nx=True)
            epoch = await self._redis.get(self._keys.epoch)
        name = epoch.decode()
        if name == self._epoch and self._last_id != "0-0":
            kept = await self._redis.xrange(self._keys.log, self._last_id, self._last_id)
            if kept:
                return
            oldest = await self._redis.xrange(self._keys.log, "-", "+", count=1)
            if oldest and _parts(oldest[0][0]) < _parts(self._last_id.encode()):
                renamed = await self._rename_script(
                    keys=[self._keys.epoch], args=[name, secrets.token_hex(4)]
                )
                log.warning("log.entries_lost", epoch=name, new_epoch=renamed.decode())
            else:
                log.warning("log.fell_behind", epoch=name, last_id=self._last_id)
            await self._load("too_old")
        elif name != self._epoch:
            await self._load("unknown_id" if self._epoch else None)

    async def _load(self, reset: str | None) -> None:
        """Read the whole log (history, state, position) into this node's copy, in one
        transaction; with `reset`, tell every client of this node to start again."""
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.get(self._keys.epoch)
            pipe.xrange(self._keys.history, "-", "+")
            pipe.hgetall(self._keys.state)
            pipe.get(self._keys.evicted)
            pipe.xrevrange(self._keys.log, "+", "-", count=1)
            epoch, history, state, evicted, newest = await pipe.execute()
        if epoch is None:
            return  # flushed meanwhile: the next check names a new epoch
        self._epoch = epoch.decode()
        frames: list[Frame] = [self._frame(entry_id, fields) for entry_id, fields in history]
        for name, value in state.items():
            entry_id, _, data = value.partition(b" ")
            frames.append(self._frame(entry_id, {b"e": name, b"d": data, b"k": b"0"}))
        self._frames.clear()
        for frame in sorted(frames, key=lambda frame: frame.seq):
            self._frames.keep(frame)
        if evicted is not None:
            self._frames.evicted_through = _seq(*_parts(evicted))
        self._last_id = newest[0][0].decode() if newest else "0-0"
        if newest:
            self._frames.seq = max(self._frames.seq, _seq(*_parts(newest[0][0])))
        self._loaded.set()
        self._advanced.set()
        log.info("log.loaded", epoch=self._epoch, durable=len(history), reset=reset)
        if reset is not None:
            self._announce_reset(reset)

    def _announce_reset(self, reason: str) -> None:
        """Tell every client of this node to start again. After a new epoch whose history is
        whole, from its start (each event of the new epoch once); else from the head."""
        self.resets += 1
        whole = reason == "unknown_id" and self._frames.evicted_through == 0
        position = 0 if whole else self._frames.seq
        self._frames.announce(reset_frame(reason, self._epoch, self._id_of(position), position))
        replay = self._frames.after(position) if whole else None
        for frame in replay.frames if replay is not None else self._frames.current():
            self._frames.announce(frame)

    def _take(self, entry_id: bytes, fields: dict[bytes, bytes]) -> None:
        frame = self._frame(entry_id, fields)
        self._last_id = entry_id.decode()
        if frame.seq <= self._frames.seq:
            return  # loaded already
        self._frames.add(frame)
        if self._observe_lag is not None:
            self._observe_lag(max(0.0, time.time() - (frame.seq >> _N_BITS) / 1000))

    def _frame(self, entry_id: bytes, fields: dict[bytes, bytes]) -> Frame:
        ms, n = _parts(entry_id)
        name, data = fields[b"e"].decode(), fields[b"d"].decode()
        event = Event(name, json.loads(data), durable=fields.get(b"k") == b"1")
        event_id = f"{self._epoch}-{ms}-{n}"
        frame_bytes = encode_frame(id=event_id, event=name, data=data)
        age = max(0.0, time.time() - ms / 1000)
        seq = _seq(ms, n)
        return Frame(seq, event_id, event, frame_bytes, topic_of(name), time.monotonic() - age)

    def _set_available(self, available: bool, error: BaseException | None = None) -> None:
        """One log line per change of state, not per failed call, and a `cluster` event to
        this node's clients (no id: it is this node's news, not the log's)."""
        if available == self.available:
            return
        first = self.available is None
        self.available = available
        if available:
            log.info("log.available", epoch=self._epoch)
        else:
            log.warning("log.unavailable", error=repr(error)[:200], epoch=self._epoch)
        if not (first and available):
            self._news = self._log_state(available, error)
            self._frames.announce(self._news)

    def _log_state(self, available: bool, error: BaseException | None) -> Frame:
        data = {
            "timestamp": iso(utc_now()),
            "log": "available" if available else "unavailable",
            "node": self._node,
            "error": None if available else type(error).__name__,
        }
        event = Event("cluster", data)
        frame_bytes = encode_frame(event="cluster", data=to_json(data))
        return Frame(self._frames.seq, "", event, frame_bytes, None, time.monotonic())


def _parts(entry_id: bytes) -> tuple[int, int]:
    ms, _, n = entry_id.partition(b"-")
    return int(ms), int(n or 0)


def _seq(ms: int, n: int) -> int:
    return (ms << _N_BITS) | min(n, (1 << _N_BITS) - 1)
