"""Ids, history, replay after an id, and per-subscriber buffers."""

import asyncio

import pytest

from sse_monitor.bus.event import Event
from sse_monitor.bus.fanout import Broadcaster, parse_event_id


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


def test_ids_name_the_process_and_count_up() -> None:
    broadcaster = Broadcaster(history_size=10, client_buffer=10, boot_id="0a0b0c0d")
    first = broadcaster.publish(metrics(1))
    second = broadcaster.publish(durable(2))
    assert (first.id, second.id) == ("0a0b0c0d-1", "0a0b0c0d-2")
    assert parse_event_id(second.id) == ("0a0b0c0d", 2)
    assert parse_event_id("not-an-id") is None
    assert first.data == b'id: 0a0b0c0d-1\nevent: metrics\ndata: {"n":1}\n\n'


def test_frames_are_encoded_once_and_shared() -> None:
    broadcaster = Broadcaster(history_size=10, client_buffer=10)
    subscriptions = [broadcaster.subscribe() for _ in range(3)]
    frame = broadcaster.publish(durable(1))
    pending = [list(s._pending) for s in subscriptions]
    assert all(p == [frame] for p in pending)
    assert all(p[0].data is frame.data for p in pending)


async def test_new_subscriber_gets_latest_state_only() -> None:
    broadcaster = Broadcaster(history_size=10, client_buffer=10)
    broadcaster.publish(durable(1))
    broadcaster.publish(metrics(2))
    broadcaster.publish(metrics(3))
    subscription = broadcaster.subscribe()
    chunk = await subscription.next_chunk()
    assert names_and_data(chunk) == [("metrics", '{"n":3}')]


async def test_resume_replays_every_durable_event_after_the_id_in_order() -> None:
    broadcaster = Broadcaster(history_size=10, client_buffer=10)
    seen = broadcaster.publish(durable(1))
    broadcaster.publish(metrics(2))
    broadcaster.publish(durable(3))
    broadcaster.publish(durable(4))
    broadcaster.publish(metrics(5))
    subscription = broadcaster.subscribe(seen.id)
    chunk = await subscription.next_chunk()
    assert names_and_data(chunk) == [
        ("session_event", '{"n":3}'),
        ("session_event", '{"n":4}'),
        ("metrics", '{"n":5}'),
    ]
    # then live events, with nothing replayed twice
    broadcaster.publish(durable(6))
    assert names_and_data(await subscription.next_chunk()) == [("session_event", '{"n":6}')]


async def test_resume_at_the_head_replays_nothing() -> None:
    broadcaster = Broadcaster(history_size=10, client_buffer=10)
    broadcaster.publish(durable(1))
    head = broadcaster.publish(metrics(2))
    subscription = broadcaster.subscribe(head.id)
    assert subscription.backlog == 0


@pytest.mark.parametrize("last_id", ["ffffffff-1", "garbage", "0a0b0c0d-99"])
async def test_unknown_id_gets_reset_and_current_state(last_id: str) -> None:
    broadcaster = Broadcaster(history_size=10, client_buffer=10, boot_id="0a0b0c0d")
    broadcaster.publish(durable(1))
    broadcaster.publish(metrics(2))
    subscription = broadcaster.subscribe(last_id)
    events = names_and_data(await subscription.next_chunk())
    assert [name for name, _ in events] == ["reset", "metrics"]
    assert '"reason":"unknown_id"' in events[0][1]


async def test_id_older_than_the_history_gets_reset() -> None:
    broadcaster = Broadcaster(history_size=3, client_buffer=10)
    old = broadcaster.publish(durable(1))
    kept = broadcaster.publish(durable(2))
    for n in range(3, 6):
        broadcaster.publish(durable(n))
    events = names_and_data(await broadcaster.subscribe(old.id).next_chunk())
    assert events[0][0] == "reset" and '"reason":"too_old"' in events[0][1]
    # an id whose successors are all still kept resumes normally
    _, reason = broadcaster.frames_after(kept.id)
    assert reason is None


async def test_slow_subscriber_coalesces_state_to_the_newest() -> None:
    broadcaster = Broadcaster(history_size=100, client_buffer=5)
    subscription = broadcaster.subscribe()
    for n in range(50):
        broadcaster.publish(metrics(n))
    broadcaster.publish(durable(100))
    broadcaster.publish(metrics(101))
    assert subscription.backlog == 2
    assert names_and_data(await subscription.next_chunk()) == [
        ("session_event", '{"n":100}'),
        ("metrics", '{"n":101}'),
    ]


async def test_durable_overflow_closes_the_subscription() -> None:
    broadcaster = Broadcaster(history_size=100, client_buffer=3)
    subscription = broadcaster.subscribe()
    other = broadcaster.subscribe()
    for n in range(3):
        broadcaster.publish(durable(n))
    assert len(names_and_data(await other.next_chunk())) == 3  # this one keeps up
    broadcaster.publish(durable(3))
    assert subscription.closed_reason == "overflow"
    assert subscription.backlog == 0  # its memory is released at once
    assert await subscription.next_chunk() is None
    # the subscriber that reads is not affected
    assert other.closed_reason is None
    assert names_and_data(await other.next_chunk()) == [("session_event", '{"n":3}')]


async def test_next_chunk_waits_for_a_publish() -> None:
    broadcaster = Broadcaster(history_size=10, client_buffer=10)
    subscription = broadcaster.subscribe()
    waiter = asyncio.create_task(subscription.next_chunk())
    await asyncio.sleep(0)
    assert not waiter.done()
    broadcaster.publish(durable(1))
    chunk = await asyncio.wait_for(waiter, timeout=1)
    assert names_and_data(chunk) == [("session_event", '{"n":1}')]


async def test_close_all_ends_subscriptions_after_pending_frames() -> None:
    broadcaster = Broadcaster(history_size=10, client_buffer=10)
    subscription = broadcaster.subscribe()
    broadcaster.publish(durable(1))
    broadcaster.close_all()
    assert names_and_data(await subscription.next_chunk()) == [("session_event", '{"n":1}')]
    assert await subscription.next_chunk() is None


def test_unsubscribe_stops_delivery() -> None:
    broadcaster = Broadcaster(history_size=10, client_buffer=10)
    subscription = broadcaster.subscribe()
    broadcaster.unsubscribe(subscription)
    broadcaster.publish(durable(1))
    assert subscription.backlog == 0
    assert broadcaster.subscriber_count == 0


def test_an_idle_stream_takes_frames_directly_and_falls_back_to_its_queue() -> None:
    broadcaster = Broadcaster(history_size=10, client_buffer=10)
    subscription = broadcaster.subscribe()
    subscription._pending.clear()
    written: list[bytes] = []
    socket_full = False

    def write(data: bytes) -> bool:
        if socket_full:
            return False
        written.append(data)
        return True

    subscription.write_through = write
    first = broadcaster.publish(Event("session_event", {"n": 1}, durable=True))
    assert written == [first.data] and subscription.backlog == 0
    assert broadcaster.stats.frames_sent == 1
    socket_full = True
    second = broadcaster.publish(Event("session_event", {"n": 2}, durable=True))
    third = broadcaster.publish(Event("session_event", {"n": 3}, durable=True))
    # Not written: queued, in order, and no more direct writes until the stream is idle again.
    assert subscription.write_through is None
    assert [f.data for f in subscription._pending] == [second.data, third.data]
    assert written == [first.data]
