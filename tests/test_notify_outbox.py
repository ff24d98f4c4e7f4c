"""The notification outbox on a real SQLite file: entries recorded before sending, their fate
recorded after, one receiver's entries in order, and all of it kept across a reopen."""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from sse_monitor.notify.outbox import NewDelivery, Outbox

NOW = 1_800_000_000.0


class Clock:
    """Wall-clock seconds a test sets."""

    def __init__(self, now: float = NOW) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def entry(receiver: str, key: str, body: bytes = b"{}") -> NewDelivery:
    return NewDelivery(receiver, key, body, {"content-type": "application/json"})


@pytest.fixture
async def outbox(tmp_path: Path) -> AsyncIterator[Outbox]:
    outbox = Outbox(str(tmp_path / "n.db"), clock=Clock())
    await outbox.open()
    yield outbox
    await outbox.aclose()


async def test_an_entry_is_recorded_pending_and_due_at_once(outbox: Outbox) -> None:
    body = b'{"alert": "cpu", "bytes": "\xff\x00"}'
    [entry_id] = await outbox.add(
        [NewDelivery("ops", "key-1", body, {"x-signature": "sha256=ab", "content-type": "a/b"})]
    )
    [due] = await outbox.due(NOW, 10)
    assert due.id == entry_id
    assert (due.receiver, due.idempotency_key, due.body) == ("ops", "key-1", body)
    assert due.headers == {"x-signature": "sha256=ab", "content-type": "a/b"}
    assert (due.created, due.next_attempt, due.attempts) == (NOW, NOW, 0)
    assert (due.state, due.last_error) == ("pending", None)
    assert await outbox.due(NOW - 1, 10) == []


async def test_the_same_key_for_the_same_receiver_is_recorded_once(outbox: Outbox) -> None:
    first = await outbox.add([entry("ops", "k"), entry("chat", "k")])
    again = await outbox.add([entry("ops", "k")])
    assert again == first[:1]
    assert len(set(first)) == 2
    assert len(await outbox.recent(10)) == 2


async def test_each_receiver_is_due_its_oldest_pending_entry_only(outbox: Outbox) -> None:
    ops1, chat1, ops2 = await outbox.add([entry("ops", "1"), entry("chat", "1"), entry("ops", "2")])
    assert [d.id for d in await outbox.due(NOW, 10)] == [ops1, chat1]
    await outbox.retry_at(ops1, NOW + 30, "HTTP 500")
    # ops2 waits behind ops1: a resolve never overtakes its firing
    assert [d.id for d in await outbox.due(NOW, 10)] == [chat1]
    assert await outbox.next_attempt() == NOW
    await outbox.delivered(chat1)
    assert await outbox.next_attempt() == NOW + 30
    assert [d.id for d in await outbox.due(NOW + 30, 10)] == [ops1]
    await outbox.failed(ops1, "HTTP 400")
    assert [d.id for d in await outbox.due(NOW, 10)] == [ops2]
    assert [d.id for d in await outbox.due(NOW, 1)] == [ops2]


async def test_outcomes_count_attempts_and_keep_the_last_error(outbox: Outbox) -> None:
    a, b = await outbox.add([entry("ops", "a"), entry("chat", "b")])
    await outbox.retry_at(a, NOW + 1, "HTTP 503")
    await outbox.retry_at(a, NOW + 3, "ConnectError: refused")
    await outbox.delivered(a)
    await outbox.failed(b, "HTTP 404")
    await outbox.delivered(b)  # too late: failed stays failed
    await outbox.retry_at(a, NOW + 9, "late")  # delivered stays delivered
    got_a, got_b = await outbox.get(a), await outbox.get(b)
    assert got_a is not None and got_b is not None
    assert (got_a.state, got_a.attempts, got_a.last_error) == (
        "delivered",
        3,
        "ConnectError: refused",
    )
    assert got_a.next_attempt == NOW + 3
    assert (got_b.state, got_b.attempts, got_b.last_error) == ("failed", 1, "HTTP 404")
    assert [d.id for d in await outbox.recent(10)] == [b, a]
    assert [d.id for d in await outbox.recent(1)] == [b]
    assert await outbox.next_attempt() is None
    assert await outbox.get(a + b) is None


async def test_entries_and_their_fate_survive_a_reopen(tmp_path: Path) -> None:
    path = str(tmp_path / "n.db")
    outbox = Outbox(path, clock=Clock())
    await outbox.open()
    sent, waiting, refused = await outbox.add([entry("a", "1"), entry("b", "1"), entry("c", "1")])
    await outbox.delivered(sent)
    await outbox.retry_at(waiting, NOW + 5, "HTTP 500")
    await outbox.failed(refused, "HTTP 400")
    await outbox.aclose()

    reopened = Outbox(path, clock=Clock())
    await reopened.open()
    try:
        assert await reopened.due(NOW + 4, 10) == []
        assert [d.id for d in await reopened.due(NOW + 5, 10)] == [waiting]
        states = {d.id: (d.state, d.attempts) for d in await reopened.recent(10)}
        assert states == {
            sent: ("delivered", 1),
            waiting: ("pending", 1),
            refused: ("failed", 1),
        }
        [later] = await reopened.add([entry("a", "2")])
        assert later > refused
    finally:
        await reopened.aclose()


async def test_every_statement_runs_in_the_store_thread_with_full_sync(tmp_path: Path) -> None:
    outbox = Outbox(str(tmp_path / "n.db"), clock=Clock())
    await outbox.open()
    assert outbox._db is not None
    threads: set[str] = set()
    await outbox._thread.run(
        outbox._db.set_trace_callback, lambda _: threads.add(threading.current_thread().name)
    )
    [entry_id] = await outbox.add([entry("ops", "1")])
    await outbox.due(NOW, 10)
    await outbox.retry_at(entry_id, NOW, "x")
    await outbox.next_attempt()
    await outbox.delivered(entry_id)
    await outbox.recent(10)
    synchronous = await outbox._thread.run(
        lambda: outbox._connection().execute("PRAGMA synchronous").fetchone()[0]
    )
    await outbox.aclose()
    assert synchronous == 2  # FULL
    assert threads and all(name.startswith("notify-outbox") for name in threads), threads
    assert threading.current_thread().name not in threads
