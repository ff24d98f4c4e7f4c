"""The notification outbox, on a real SQLite file and on a real redis-server: entries recorded
before sending, their fate recorded after, one receiver's entries in order, and all of it kept
across a reopen (a restart, or another node of the cluster)."""

from __future__ import annotations

import json
import threading
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import pytest

from sse_monitor.alerts.lifecycle import Transition
from sse_monitor.notify.outbox import NewDelivery, Notice, Outbox
from sse_monitor.notify.sqlite_outbox import SqliteOutbox
from tests.support.outboxes import NOW, Clock, Outboxes, build, entry, gathered
from tests.support.store_backends import KINDS, backend_of


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture(params=KINDS)
async def outboxes(
    request: pytest.FixtureRequest, tmp_path: Path, clock: Clock
) -> AsyncIterator[Outboxes]:
    """Outboxes on a SQLite file of the test's, or on the session's Redis (emptied)."""
    async with Outboxes(request.param, backend_of(request, tmp_path, "n.db"), clock) as made:
        yield made


@pytest.fixture
async def outbox(outboxes: Outboxes) -> Outbox:
    return await outboxes.opened()


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


async def test_entries_and_their_fate_survive_a_reopen(outboxes: Outboxes) -> None:
    """A restarted process reopens its file; another node of the cluster opens the same prefix."""
    outbox = await outboxes.opened()
    sent, waiting, refused = await outbox.add([entry("a", "1"), entry("b", "1"), entry("c", "1")])
    await outbox.delivered(sent)
    await outbox.retry_at(waiting, NOW + 5, "HTTP 500")
    await outbox.failed(refused, "HTTP 400")
    await outbox.gather([gathered("ops", "a1"), gathered("chat", "a1", due=NOW + 3)])
    group = await outbox.close_group("ops", build)
    await outbox.aclose()

    reopened = await outboxes.opened()
    assert [d.id for d in await reopened.due(NOW + 4, 10)] == [group]
    assert [d.id for d in await reopened.due(NOW + 5, 10)] == [group, waiting]
    states = {d.id: (d.state, d.attempts) for d in await reopened.recent(10)}
    assert states == {
        sent: ("delivered", 1),
        waiting: ("pending", 1),
        refused: ("failed", 1),
        group: ("pending", 0),
    }
    assert await reopened.closing() == {"chat": NOW + 3}
    assert await reopened.notices(["a1"]) == {
        "a1": [Notice("ops", "fired", "pending"), Notice("chat", "fired", "gathering")]
    }
    assert await reopened.gather([gathered("ops", "a1"), gathered("chat", "a1")]) == []
    [later] = await reopened.add([entry("a", "2")])
    assert group is not None and later > group > refused


async def test_every_statement_runs_in_the_store_thread_with_full_sync(tmp_path: Path) -> None:
    """SQLite alone: its file is FULL sync, and every statement runs in the store's thread."""
    outbox = SqliteOutbox(str(tmp_path / "n.db"), clock=Clock())
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


async def test_a_transition_is_gathered_once_per_receiver(outbox: Outbox) -> None:
    first = [gathered("ops", "a1"), gathered("chat", "a1"), gathered("ops", "a2")]
    assert await outbox.gather(first) == first
    again = [gathered("ops", "a1"), gathered("ops", "a1", "resolved"), gathered("chat", "a1")]
    assert await outbox.gather(again) == [again[1]]
    assert await outbox.gather([]) == []


async def test_a_receivers_group_closes_at_its_earliest_due(outbox: Outbox) -> None:
    assert await outbox.closing() == {}
    await outbox.gather([gathered("ops", "a1", due=NOW + 10), gathered("chat", "a1", due=NOW + 3)])
    await outbox.gather([gathered("ops", "a2", due=NOW + 2)])
    assert await outbox.closing() == {"ops": NOW + 2, "chat": NOW + 3}


async def test_closing_a_group_makes_one_entry_of_its_transitions_in_order(
    outbox: Outbox,
) -> None:
    await outbox.gather([gathered("ops", "a1"), gathered("chat", "a1")])
    await outbox.gather([gathered("ops", "a2"), gathered("ops", "a1", "resolved")])
    entry_id = await outbox.close_group("ops", build)
    assert entry_id is not None
    assert await outbox.close_group("ops", build) is None  # nothing gathered any more
    assert await outbox.closing() == {"chat": NOW}
    found = await outbox.get(entry_id)
    assert found is not None
    assert found.alerts == (("a1", "fired"), ("a2", "fired"), ("a1", "resolved"))
    assert json.loads(found.body) == [
        ["a1", "fired", "cpu_high a1 fired"],
        ["a2", "fired", "cpu_high a2 fired"],
        ["a1", "resolved", "cpu_high a1 resolved"],
    ]
    assert [d.id for d in await outbox.due(NOW, 10)] == [entry_id]
    # gathered again after its group closed: still once
    assert await outbox.gather([gathered("ops", "a2")]) == []


async def test_a_group_whose_body_cannot_be_built_stays_gathered(outbox: Outbox) -> None:
    await outbox.gather([gathered("ops", "a1")])

    def broken(receiver: str, transitions: Sequence[Transition]) -> NewDelivery:
        raise RuntimeError("no body")

    with pytest.raises(RuntimeError):
        await outbox.close_group("ops", broken)
    assert await outbox.closing() == {"ops": NOW}
    assert await outbox.recent(10) == []
    assert await outbox.close_group("ops", build) is not None


async def test_notices_say_where_each_alert_went_and_how_it_went(outbox: Outbox) -> None:
    await outbox.gather([gathered("ops", "a1"), gathered("chat", "a1"), gathered("ops", "a2")])
    ops = await outbox.close_group("ops", build)
    assert ops is not None
    await outbox.retry_at(ops, NOW + 5, "HTTP 503")
    notices = await outbox.notices(["a1", "a2", "a3"])
    assert notices == {
        "a1": [
            Notice("ops", "fired", "pending", 1, "HTTP 503"),
            Notice("chat", "fired", "gathering"),
        ],
        "a2": [Notice("ops", "fired", "pending", 1, "HTTP 503")],
    }
    await outbox.delivered(ops)
    [a2] = (await outbox.notices(["a2"]))["a2"]
    assert (a2.state, a2.attempts) == ("delivered", 2)
    assert await outbox.notices([]) == {}


async def test_pruning_forgets_old_outcomes_but_not_what_still_fires_or_waits(
    outbox: Outbox, clock: Clock
) -> None:
    await outbox.gather([gathered("ops", "old"), gathered("ops", "firing")])
    sent = await outbox.close_group("ops", build)
    assert sent is not None
    await outbox.delivered(sent)
    await outbox.gather([gathered("pager", "waiting")])  # still gathering
    [stuck] = await outbox.add([entry("chat", "stuck")])  # pending
    clock.now = NOW + 100
    await outbox.gather([gathered("ops", "new")])
    new = await outbox.close_group("ops", build)
    assert new is not None
    await outbox.delivered(new)

    assert await outbox.prune(NOW + 50, keep={"firing"}) == 1
    assert {d.id for d in await outbox.recent(10)} == {stuck, new}
    # the still-firing alert's transition is still known: offered again, it is not new
    assert await outbox.gather([gathered("ops", "firing")]) == []
    # and its message, forgotten, is not shown as still gathering
    assert await outbox.notices(["firing"]) == {}
    assert await outbox.closing() == {"pager": NOW}  # what waits is kept
    # the forgotten alert's is not
    assert await outbox.gather([gathered("ops", "old")]) != []
    assert await outbox.prune(NOW + 50, keep=set()) == 0
