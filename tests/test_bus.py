"""The memory log (ids, history, replay after an id) and the fan-out it feeds (per-subscriber
buffers, write-through, and replay-then-live when reading the log awaits)."""

import asyncio

import pytest

from sse_monitor.bus.event import TOPICS, Event
from sse_monitor.bus.fanout import FanOut, Subscription
from sse_monitor.bus.log import Frame, Replay
from sse_monitor.bus.memory import MemoryLog


def bus(history: int, buffer: int, *, epoch: str | None = None) -> tuple[MemoryLog, FanOut]:
    """A log and the fan-out it feeds, as the app wires them."""
    log = MemoryLog(history_size=history, epoch=epoch)
    fanout = FanOut(client_buffer=buffer)
    log.follow(fanout.deliver)
    return log, fanout


def append(log: MemoryLog, event: Event) -> Frame:
    log.append(event)
    assert log.head is not None
    return log.head


async def subscribe(
    log: MemoryLog, fanout: FanOut, last_id: str | None = None, topics: tuple[str, ...] = TOPICS
) -> Subscription:
    """As a stream does: subscribe first, then replay, then start."""
    subscription = fanout.subscribe(topics)
    subscription.start(await log.replay(last_id))
    return subscription


def durable(n: int) -> Event:
    return Event("session_event", {"n": n}, durable=True)


def metrics(n: int) -> Event:
    return Event("metrics", {"n": n})


def names_and_data(chunk: bytes) -> list[tuple[str, str]]:
    frames = [block for block in chunk.decode().split("\n\n") if block.strip()]
    out = []
    for block in frames:
        fields = dict(line.split(": ", 1) for line in block.split("\n") if not line.startswith(":"))
        if "event" in fields:
            out.append((fields["event"], fields["data"]))
    return out


async def test_ids_name_the_process_and_count_up() -> None:
    log, _ = bus(10, 10, epoch="0a0b0c0d")
    first = append(log, metrics(1))
    second = append(log, durable(2))
    assert (first.id, second.id) == ("0a0b0c0d-1", "0a0b0c0d-2")
    assert first.data == b'id: 0a0b0c0d-1\nevent: metrics\ndata: {"n":1}\n\n'


async def test_frames_are_encoded_once_and_shared() -> None:
    log, fanout = bus(10, 10)
    subscriptions = [await subscribe(log, fanout) for _ in range(3)]
    frame = append(log, durable(1))
    pending = [list(s._pending) for s in subscriptions]
    assert all(p == [frame] for p in pending)
    assert all(p[0].data is frame.data for p in pending)


async def test_new_subscriber_gets_latest_state_only() -> None:
    log, fanout = bus(10, 10)
    append(log, durable(1))
    append(log, metrics(2))
    append(log, metrics(3))
    subscription = await subscribe(log, fanout)
    chunk = await subscription.next_chunk()
    assert names_and_data(chunk) == [("metrics", '{"n":3}')]


async def test_resume_replays_every_durable_event_after_the_id_in_order() -> None:
    log, fanout = bus(10, 10)
    seen = append(log, durable(1))
    append(log, metrics(2))
    append(log, durable(3))
    append(log, durable(4))
    append(log, metrics(5))
    subscription = await subscribe(log, fanout, seen.id)
    chunk = await subscription.next_chunk()
    assert names_and_data(chunk) == [
        ("session_event", '{"n":3}'),
        ("session_event", '{"n":4}'),
        ("metrics", '{"n":5}'),
    ]
    # then live events, with nothing replayed twice
    append(log, durable(6))
    assert names_and_data(await subscription.next_chunk()) == [("session_event", '{"n":6}')]


async def test_resume_at_the_head_replays_nothing() -> None:
    log, fanout = bus(10, 10)
    append(log, durable(1))
    head = append(log, metrics(2))
    subscription = await subscribe(log, fanout, head.id)
    assert subscription.backlog == 0


@pytest.mark.parametrize("last_id", ["ffffffff-1", "garbage", "0a0b0c0d-99"])
async def test_unknown_id_gets_reset_and_current_state(last_id: str) -> None:
    log, fanout = bus(10, 10, epoch="0a0b0c0d")
    append(log, durable(1))
    append(log, metrics(2))
    subscription = await subscribe(log, fanout, last_id)
    events = names_and_data(await subscription.next_chunk())
    assert [name for name, _ in events] == ["reset", "metrics"]
    assert '"reason":"unknown_id"' in events[0][1]


async def test_id_older_than_the_history_gets_reset() -> None:
    log, fanout = bus(3, 10)
    old = append(log, durable(1))
    kept = append(log, durable(2))
    for n in range(3, 6):
        append(log, durable(n))
    events = names_and_data(await (await subscribe(log, fanout, old.id)).next_chunk())
    assert events[0][0] == "reset" and '"reason":"too_old"' in events[0][1]
    # an id whose successors are all still kept resumes normally
    assert (await log.replay(kept.id)).reset is None


async def test_slow_subscriber_coalesces_state_to_the_newest() -> None:
    log, fanout = bus(100, 5)
    subscription = await subscribe(log, fanout)
    for n in range(50):
        append(log, metrics(n))
    append(log, durable(100))
    append(log, metrics(101))
    assert subscription.backlog == 2
    assert names_and_data(await subscription.next_chunk()) == [
        ("session_event", '{"n":100}'),
        ("metrics", '{"n":101}'),
    ]


async def test_durable_overflow_closes_the_subscription() -> None:
    log, fanout = bus(100, 3)
    subscription = await subscribe(log, fanout)
    other = await subscribe(log, fanout)
    for n in range(3):
        append(log, durable(n))
    assert len(names_and_data(await other.next_chunk())) == 3  # this one keeps up
    append(log, durable(3))
    assert subscription.closed_reason == "overflow"
    assert subscription.backlog == 0  # its memory is released at once
    assert await subscription.next_chunk() is None
    # the subscriber that reads is not affected
    assert other.closed_reason is None
    assert names_and_data(await other.next_chunk()) == [("session_event", '{"n":3}')]


async def test_next_chunk_waits_for_a_publish() -> None:
    log, fanout = bus(10, 10)
    subscription = await subscribe(log, fanout)
    waiter = asyncio.create_task(subscription.next_chunk())
    await asyncio.sleep(0)
    assert not waiter.done()
    append(log, durable(1))
    chunk = await asyncio.wait_for(waiter, timeout=1)
    assert names_and_data(chunk) == [("session_event", '{"n":1}')]


async def test_close_all_ends_subscriptions_after_pending_frames() -> None:
    log, fanout = bus(10, 10)
    subscription = await subscribe(log, fanout)
    append(log, durable(1))
    fanout.close_all()
    assert names_and_data(await subscription.next_chunk()) == [("session_event", '{"n":1}')]
    assert await subscription.next_chunk() is None


async def test_unsubscribe_stops_delivery() -> None:
    log, fanout = bus(10, 10)
    subscription = await subscribe(log, fanout)
    fanout.unsubscribe(subscription)
    append(log, durable(1))
    assert subscription.backlog == 0
    assert fanout.subscriber_count == 0


async def test_an_idle_stream_takes_frames_directly_and_falls_back_to_its_queue() -> None:
    log, fanout = bus(10, 10)
    subscription = await subscribe(log, fanout)
    subscription._pending.clear()
    written: list[bytes] = []
    socket_full = False

    def write(frame: Frame) -> bool:
        if socket_full:
            return False
        written.append(frame.data)
        return True

    subscription.write_through = write
    first = append(log, Event("session_event", {"n": 1}, durable=True))
    assert written == [first.data] and subscription.backlog == 0
    assert fanout.stats.frames_sent == 1
    socket_full = True
    second = append(log, Event("session_event", {"n": 2}, durable=True))
    third = append(log, Event("session_event", {"n": 3}, durable=True))
    # Not written: queued, in order, and no more direct writes until the stream is idle again.
    assert subscription.write_through is None
    assert [f.data for f in subscription._pending] == [second.data, third.data]
    assert written == [first.data]


async def test_a_keep_alive_goes_to_streams_pushed_nothing_for_a_whole_sweep() -> None:
    log, fanout = bus(10, 10)
    busy = await subscribe(log, fanout, topics=("sessions",))
    silent = await subscribe(log, fanout, topics=("metrics",))
    for subscription in (busy, silent):
        subscription._pending.clear()

    def ping() -> Frame:
        return Frame(0, "", Event("ping", {}), b": ping\n\n")

    def pinged(subscription: Subscription) -> int:
        return sum(frame.event.name == "ping" for frame in subscription._pending)

    assert fanout.keep_alive(ping()) == 0  # both just started: nothing is due yet
    append(log, Event("session_event", {"n": 1}, durable=True))
    assert fanout.keep_alive(ping()) == 1  # nothing for silent since the last sweep
    assert (pinged(silent), pinged(busy)) == (1, 0)
    assert fanout.keep_alive(ping()) == 1  # now nothing for busy either; silent was pinged
    assert (pinged(silent), pinged(busy)) == (1, 1)
    # A silent stream is pinged every other sweep; queued pings coalesce, as state frames do.
    assert fanout.keep_alive(ping()) == 1
    assert fanout.keep_alive(ping()) == 1
    assert (pinged(silent), pinged(busy)) == (1, 1)
    assert [f.event.name for f in busy._pending] == ["session_event", "ping"]


async def test_a_broken_socket_ends_its_stream_and_the_others_still_get_the_frame() -> None:
    log, fanout = bus(10, 10)
    broken, healthy = await subscribe(log, fanout), await subscribe(log, fanout)
    written: list[bytes] = []

    def fail(frame: Frame) -> bool:
        raise RuntimeError("the handler is closed")

    def write(frame: Frame) -> bool:
        written.append(frame.data)
        return True

    for subscription, writer in ((broken, fail), (healthy, write)):
        subscription._pending.clear()
        subscription.write_through = writer
    sent = append(log, Event("session_event", {"n": 1}, durable=True))
    assert broken.closed_reason == "client"
    assert written == [sent.data]


async def test_keep_alives_are_not_counted_as_frames() -> None:
    log, fanout = bus(10, 10)
    subscription = await subscribe(log, fanout)
    subscription._pending.clear()
    subscription.write_through = lambda frame: True
    ping = Frame(0, "", Event("ping", {}), b": ping\n\n")
    for _ in range(4):
        fanout.keep_alive(ping)
    subscription.write_through = None  # a stuck stream: pings queue, and coalesce
    for _ in range(4):
        fanout.keep_alive(ping)
    assert subscription.backlog == 1
    assert fanout.stats.frames_sent == 0 and fanout.stats.frames_coalesced == 0
    assert fanout.stats.write_through_refused == 0


class AwaitingLog:
    """A memory log whose replay awaits until let go, as a remote log's read does: events
    appended meanwhile reach the subscription through the tail before the replay returns."""

    def __init__(self, log: MemoryLog) -> None:
        self.log = log
        self.reading = asyncio.Event()
        self.let_go = asyncio.Event()

    async def replay(self, after: str | None) -> Replay:
        self.reading.set()
        await self.let_go.wait()
        return await self.log.replay(after)


async def subscribe_while(
    log: MemoryLog, fanout: FanOut, last_id: str | None, meanwhile: list[Event]
) -> Subscription:
    """Subscribe, and append `meanwhile` while the replay is being read."""
    awaiting = AwaitingLog(log)
    subscription = fanout.subscribe()

    async def start() -> None:
        subscription.start(await awaiting.replay(last_id))

    starting = asyncio.create_task(start())
    await asyncio.wait_for(awaiting.reading.wait(), timeout=1)
    for event in meanwhile:
        log.append(event)
    awaiting.let_go.set()
    await asyncio.wait_for(starting, timeout=1)
    return subscription


async def test_replay_then_live_sends_each_frame_once_when_the_replay_awaits() -> None:
    log, fanout = bus(100, 100)
    seen = append(log, durable(1))
    append(log, durable(2))
    append(log, metrics(3))
    subscription = await subscribe_while(log, fanout, seen.id, [durable(4), metrics(5)])
    # durable 4 and metrics 5 came through the tail while the replay was read, and the replay
    # (read after them) holds them too: each is sent once, in the log's order.
    assert names_and_data(await subscription.next_chunk()) == [
        ("session_event", '{"n":2}'),
        ("session_event", '{"n":4}'),
        ("metrics", '{"n":5}'),
    ]
    append(log, durable(6))
    assert names_and_data(await subscription.next_chunk()) == [("session_event", '{"n":6}')]


async def test_frames_after_the_replay_was_read_are_kept_from_the_tail() -> None:
    log, fanout = bus(100, 100)
    seen = append(log, durable(1))
    awaiting = AwaitingLog(log)
    subscription = fanout.subscribe()
    awaiting.let_go.set()
    replay = await awaiting.replay(seen.id)  # read now: covers nothing newer than durable 1
    append(log, durable(2))  # reaches the subscription through the tail only
    append(log, metrics(3))
    subscription.start(replay)
    assert names_and_data(await subscription.next_chunk()) == [
        ("session_event", '{"n":2}'),
        ("metrics", '{"n":3}'),
    ]


async def test_a_reset_during_an_awaiting_replay_still_sends_later_frames_once() -> None:
    log, fanout = bus(100, 100)
    append(log, metrics(1))
    subscription = await subscribe_while(log, fanout, "ffffffff-1", [durable(2), metrics(3)])
    events = names_and_data(await subscription.next_chunk())
    assert [name for name, _ in events] == ["reset", "metrics"]
    assert events[1] == ("metrics", '{"n":3}')
    # durable 2 was appended before the replay's read, and a reset replays no durable event: it
    # is covered by the reset (the client is told it may have missed events), not sent late.
    append(log, durable(4))
    assert names_and_data(await subscription.next_chunk()) == [("session_event", '{"n":4}')]


async def test_nothing_is_handed_over_before_the_replay_is_queued() -> None:
    log, fanout = bus(100, 100)
    subscription = fanout.subscribe()
    append(log, metrics(1))
    assert subscription.backlog == 1  # held, not handed to anyone
    waiter = asyncio.create_task(subscription.next_chunk())
    await asyncio.sleep(0)
    assert not waiter.done()  # the stream waits for its replay
    subscription.start(await log.replay(None))
    # the replay holds metrics 1 too: it is sent once
    assert names_and_data(await asyncio.wait_for(waiter, timeout=1)) == [("metrics", '{"n":1}')]


async def test_a_client_that_overflows_while_its_replay_is_read_is_closed() -> None:
    log, fanout = bus(100, 2)
    events = [durable(n) for n in range(3)]
    subscription = await subscribe_while(log, fanout, None, events)
    assert subscription.closed_reason == "overflow"
    assert await subscription.next_chunk() is None


async def test_delivering_touches_only_the_subscribers_of_the_topic() -> None:
    log, fanout = bus(10, 10)
    metrics_only = [await subscribe(log, fanout, topics=("metrics",)) for _ in range(100)]
    alerts_only = await subscribe(log, fanout, topics=("alerts",))
    everyone = await subscribe(log, fanout)
    for subscription in [*metrics_only, alerts_only, everyone]:
        assert subscription.backlog == 0  # nothing yet: the log has no state
    log.append(Event("alert", {"id": "x"}, durable=True))
    assert all(s.backlog == 0 for s in metrics_only)
    assert alerts_only.backlog == everyone.backlog == 1
    assert fanout.subscribers_by_topic() == {
        "metrics": 101,
        "containers": 1,
        "sessions": 1,
        "alerts": 2,
    }
    log.append(Event("upstream", {"reachable": False}, durable=True))
    assert all(s.backlog == 1 for s in metrics_only)  # no topic: everyone
    fanout.unsubscribe(everyone)
    assert fanout.subscribers_by_topic()["containers"] == 0
