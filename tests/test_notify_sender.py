"""The notification sender against real HTTP receivers on loopback (uvicorn in a thread): 2xx
delivered once, 5xx and an unreachable receiver retried with a growing backoff, 429 waiting for
its Retry-After, other 4xx refused at once and logged once without the URL's secrets, and an
outbox resumed after a restart without sending a delivered entry again."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from email.utils import formatdate
from pathlib import Path
from typing import Any

from structlog.testing import capture_logs

from sse_monitor.notify.outbox import Delivery, NewDelivery, Outbox
from sse_monitor.notify.receivers import Receiver
from sse_monitor.notify.sender import Sender, backoff_delay, full_jitter, retry_after_seconds
from sse_monitor.notify.sqlite_outbox import SqliteOutbox
from tests.support.notify_receiver import Answer, RecordingReceiver
from tests.support.servers import ThreadedServer
from tests.support.waiting import eventually


def no_jitter(ceiling: float) -> float:
    """The backoff's ceiling itself: the delays a test can predict."""
    return ceiling


def message(key: str) -> NewDelivery:
    return NewDelivery("ops", key, b'{"alert": "cpu"}', {"idempotency-key": key})


@asynccontextmanager
async def sending(
    path: Path,
    url: str | None,
    clock: Callable[[], float] = time.time,
    timeout: float = 10.0,
    **options: Any,
) -> AsyncIterator[tuple[Outbox, Sender]]:
    """An outbox on `path` and a running sender delivering receiver "ops" to `url` (None: no
    receiver is configured)."""
    outbox = SqliteOutbox(str(path), clock=clock)
    await outbox.open()
    options.setdefault("first_delay", 0.05)
    receivers = [] if url is None else [Receiver("ops", "webhook", url, timeout=timeout)]
    sender = Sender(outbox, receivers, clock=clock, **options)
    sender.start()
    try:
        yield outbox, sender
    finally:
        await sender.aclose()
        await outbox.aclose()


async def settled(outbox: Outbox, entry_id: int, state: str, timeout: float = 20) -> Delivery:
    async def reached() -> Delivery | None:
        found = await outbox.get(entry_id)
        return found if found is not None and found.state == state else None

    return await eventually(reached, timeout, f"delivery {entry_id} {state}")


async def add(outbox: Outbox, sender: Sender, *keys: str) -> list[int]:
    ids = await outbox.add([message(key) for key in keys])
    sender.wake()
    return ids


async def delivered_once(
    receiver: RecordingReceiver, path: Path, **options: Any
) -> tuple[Delivery, Sender]:
    """Message "k1" sent to `receiver` on loopback until delivered: its record, and the sender."""
    with ThreadedServer(receiver.app) as server:
        async with sending(path, f"{server.url}/hook", **options) as (outbox, sender):
            [entry_id] = await add(outbox, sender, "k1")
            return await settled(outbox, entry_id, "delivered"), sender


async def test_500_five_times_then_200_is_delivered_once_after_growing_delays(
    tmp_path: Path,
) -> None:
    receiver = RecordingReceiver(500, 500, 500, 500, 500)
    done, sender = await delivered_once(
        receiver, tmp_path / "n.db", first_delay=0.1, jitter=no_jitter
    )
    assert receiver.keys() == ["k1"] * 6
    assert receiver.keys(200) == ["k1"]
    assert (done.attempts, done.last_error) == (6, "HTTP 500")
    assert (sender.sent, sender.retried, sender.failed) == (1, 5, 0)
    arrivals = [r.at for r in receiver.received]
    gaps = [later - earlier for earlier, later in itertools.pairwise(arrivals)]
    for gap, planned in zip(gaps, [0.1, 0.2, 0.4, 0.8, 1.6], strict=True):
        assert gap >= planned - 0.02, gaps


async def test_429_waits_for_its_retry_after(tmp_path: Path) -> None:
    receiver = RecordingReceiver(Answer(429, {"Retry-After": "2"}))
    done, sender = await delivered_once(receiver, tmp_path / "n.db", first_delay=0.01)
    first, second = receiver.received
    assert [first.status, second.status] == [429, 200]
    assert second.at - first.at >= 2 - 0.02
    assert (done.attempts, done.last_error, sender.retried) == (2, "HTTP 429", 1)


async def test_a_retry_after_of_zero_or_in_the_past_still_backs_off(tmp_path: Path) -> None:
    """Retry-After is the receiver's least wait, never a reason to hammer it: `0`, or a date
    gone by, still waits the growing backoff (else: an attempt, a write to the outbox and an
    event on the stream as fast as the receiver answers, for a day)."""
    past = formatdate(time.time() - 3600, usegmt=True)
    receiver = RecordingReceiver(
        *(Answer(429, {"Retry-After": value}) for value in ("0", past, "0"))
    )
    done, _ = await delivered_once(receiver, tmp_path / "n.db", first_delay=0.2, jitter=no_jitter)
    assert [r.status for r in receiver.received] == [429, 429, 429, 200]
    arrivals = [r.at for r in receiver.received]
    gaps = [later - earlier for earlier, later in itertools.pairwise(arrivals)]
    for gap, planned in zip(gaps, [0.2, 0.4, 0.8], strict=True):
        assert gap >= planned - 0.02, gaps
    assert done.attempts == 4


async def test_a_retry_after_of_a_digit_that_is_no_number_is_ignored(tmp_path: Path) -> None:
    """`²` is a digit to str.isdigit() but no number to float(): a receiver sending it (as
    Latin-1, like any header byte) gets the usual backoff, and the attempt is recorded."""
    receiver = RecordingReceiver(Answer(503, {"Retry-After": "\u00b2"}))
    done, sender = await delivered_once(receiver, tmp_path / "n.db", first_delay=0.05)
    assert [r.status for r in receiver.received] == [503, 200]
    assert (done.attempts, done.last_error, sender.retried) == (2, "HTTP 503", 1)


def test_retry_after_is_read_in_seconds_or_as_an_http_date() -> None:
    now = time.time()
    assert retry_after_seconds("2", now) == 2
    assert retry_after_seconds(" 120 ", now) == 120
    in_ten = retry_after_seconds(formatdate(now + 10, usegmt=True), now)
    assert in_ten is not None and 8.5 < in_ten <= 10
    assert retry_after_seconds(formatdate(now - 60, usegmt=True), now) == 0
    assert retry_after_seconds("soon", now) is None
    assert retry_after_seconds("-3", now) is None
    assert retry_after_seconds("\u00b2", now) is None  # a digit, not a number
    assert retry_after_seconds("\u0663", now) is None  # an Arabic-Indic 3: not HTTP's digits
    assert retry_after_seconds(None, now) is None


def test_backoff_doubles_to_its_cap_with_full_jitter() -> None:
    ceilings = [backoff_delay(n, first=1, most=300, jitter=no_jitter) for n in (1, 2, 3, 9, 10)]
    assert ceilings == [1, 2, 4, 256, 300]
    assert backoff_delay(10_000, first=1, most=300, jitter=no_jitter) == 300
    delays = [backoff_delay(4, first=1, most=300, jitter=full_jitter) for _ in range(200)]
    assert all(0 <= delay <= 8 for delay in delays)
    assert min(delays) < 2 and max(delays) > 6  # spread over the whole range


async def test_an_attempt_lasts_at_most_the_receivers_timeout(tmp_path: Path) -> None:
    receiver = RecordingReceiver(Answer(200, delay=1.0))
    done, _ = await delivered_once(receiver, tmp_path / "n.db", timeout=0.2)
    assert (done.last_error or "").startswith("no answer within 0.2 s"), done.last_error
    assert done.attempts == 2
    # the receiver got it twice: the repeat the idempotency key is for
    assert receiver.keys() == ["k1", "k1"]


async def test_a_receiver_down_gets_it_when_it_comes_back(tmp_path: Path) -> None:
    receiver = RecordingReceiver()
    down = ThreadedServer(receiver.app).start()
    port = down.port
    down.stop()  # nothing listens on the port now
    url = f"http://127.0.0.1:{port}/hook"
    async with sending(tmp_path / "n.db", url, most_delay=0.2) as (outbox, sender):
        [entry_id] = await add(outbox, sender, "k1")

        async def refused_twice() -> bool:
            found = await outbox.get(entry_id)
            return found is not None and found.attempts >= 2

        await eventually(refused_twice, 10, "two refused connections")
        pending = await outbox.get(entry_id)
        assert pending is not None and pending.state == "pending"
        assert (pending.last_error or "").startswith("ConnectError"), pending.last_error
        with ThreadedServer(receiver.app, port=port):
            done = await settled(outbox, entry_id, "delivered")
    assert receiver.keys() == ["k1"]
    assert done.attempts >= 3 and sender.sent == 1


async def test_a_restart_resumes_pending_entries_and_never_resends_delivered_ones(
    tmp_path: Path,
) -> None:
    receiver = RecordingReceiver()
    path = tmp_path / "n.db"
    with ThreadedServer(receiver.app) as server:
        url = f"{server.url}/hook"
        async with sending(path, url) as (outbox, sender):
            [first] = await add(outbox, sender, "first")
            await settled(outbox, first, "delivered")
            receiver.otherwise = 503
            [second] = await add(outbox, sender, "second")

            async def tried() -> bool:
                found = await outbox.get(second)
                return found is not None and found.attempts >= 1

            await eventually(tried, 10, "a failed attempt")
        # the gateway stopped with "second" pending; it starts again with the receiver well
        receiver.otherwise = 200
        async with sending(path, url) as (outbox, sender):
            # "first" would be due before "second" (one receiver's entries go in order)
            done = await settled(outbox, second, "delivered")
            [third] = await add(outbox, sender, "third")
            await settled(outbox, third, "delivered")
    assert receiver.keys(200) == ["first", "second", "third"]
    assert receiver.keys().count("first") == 1
    assert done.attempts >= 2 and sender.sent == 2


async def test_400_fails_at_once_logged_once_without_the_urls_secret(tmp_path: Path) -> None:
    receiver = RecordingReceiver(400)
    with ThreadedServer(receiver.app) as server, capture_logs() as logs:
        url = f"http://alerts:s3cret-pass@127.0.0.1:{server.port}/hook/s3cret-path"
        async with sending(tmp_path / "n.db", url) as (outbox, sender):
            refused, after = await add(outbox, sender, "refused", "after")
            # "after" waits behind "refused": once it is delivered, "refused" is settled
            await settled(outbox, after, "delivered")
            failed = await outbox.get(refused)
    assert receiver.keys() == ["refused", "after"]
    assert failed is not None
    assert (failed.state, failed.attempts, failed.last_error) == ("failed", 1, "HTTP 400")
    assert (sender.sent, sender.retried, sender.failed) == (1, 0, 1)
    warnings = [log for log in logs if log["event"] == "notify.failed"]
    assert len(warnings) == 1
    assert warnings[0]["log_level"] == "warning"
    assert warnings[0]["url"] == f"http://127.0.0.1:{server.port}/***"
    assert warnings[0]["receiver"] == "ops"
    assert "s3cret" not in repr(logs)
    assert not [log for log in logs if log["log_level"] in ("error", "critical")]


async def test_retries_end_failed_at_the_give_up_age(tmp_path: Path) -> None:
    receiver = RecordingReceiver()
    receiver.otherwise = 500
    skipped = [0.0]

    def clock() -> float:
        return time.time() + skipped[0]

    with ThreadedServer(receiver.app) as server:
        async with sending(
            tmp_path / "n.db", f"{server.url}/hook", clock, give_up_after=600, most_delay=0.1
        ) as (outbox, sender):
            [entry_id] = await add(outbox, sender, "k1")
            await eventually(lambda: receiver.count() >= 2, 10, "two attempts")
            skipped[0] = 601  # ten minutes later
            done = await settled(outbox, entry_id, "failed")
    assert (done.last_error or "").startswith("gave up after 600 s: HTTP 500"), done.last_error
    assert receiver.count() == done.attempts
    assert sender.failed == 1 and sender.retried == done.attempts - 1


async def test_an_entry_for_an_unknown_receiver_fails(tmp_path: Path) -> None:
    async with sending(tmp_path / "n.db", None) as (outbox, sender):
        [entry_id] = await add(outbox, sender, "k1")
        done = await settled(outbox, entry_id, "failed")
    assert done.last_error == "receiver 'ops' is not configured"


async def test_closing_the_sender_mid_retry_leaves_the_entry_pending(tmp_path: Path) -> None:
    url = "http://127.0.0.1:1/hook"  # nothing listens on port 1
    async with sending(tmp_path / "n.db", url, first_delay=60) as (outbox, sender):
        [entry_id] = await add(outbox, sender, "k1")
        await eventually(lambda: sender.retried == 1, 10, "a retry planned")
    reopened = SqliteOutbox(str(tmp_path / "n.db"))
    await reopened.open()
    try:
        found = await reopened.get(entry_id)
    finally:
        await reopened.aclose()
    assert found is not None and found.state == "pending" and found.attempts == 1


async def test_a_receiver_trickling_its_answer_is_cut_at_its_timeout(tmp_path: Path) -> None:
    """A status line, then a header byte every 0.1 s, forever: each read is quick, the whole
    never ends. The attempt still ends at the receiver's timeout."""
    stop = asyncio.Event()

    async def trickle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nX-Slow: ")
        with contextlib.suppress(ConnectionError):
            while not stop.is_set():
                writer.write(b"a")
                await writer.drain()
                await asyncio.sleep(0.1)
        writer.close()

    server = await asyncio.start_server(trickle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        async with sending(tmp_path / "n.db", f"http://127.0.0.1:{port}/hook", timeout=0.5) as (
            outbox,
            sender,
        ):
            [entry_id] = await add(outbox, sender, "k1")

            async def tried() -> Delivery | None:
                found = await outbox.get(entry_id)
                return found if found is not None and found.attempts >= 1 else None

            done = await eventually(tried, 10, "one attempt cut short")  # else: never
    finally:
        stop.set()
        server.close()
    assert done.state == "pending" and done.last_error == "no answer within 0.5 s", done


async def test_a_slow_receiver_holds_back_only_its_own_messages(tmp_path: Path) -> None:
    slow, fast = RecordingReceiver(Answer(200, delay=4.0)), RecordingReceiver()
    outbox = SqliteOutbox(str(tmp_path / "n.db"))
    await outbox.open()
    with ThreadedServer(slow.app) as held, ThreadedServer(fast.app) as quick:
        receivers = [
            Receiver("slow", "webhook", f"{held.url}/hook", timeout=10),
            Receiver("fast", "webhook", f"{quick.url}/hook", timeout=10),
        ]
        sender = Sender(outbox, receivers, first_delay=0.05)
        sender.start()
        try:
            [stuck] = await outbox.add(
                [NewDelivery("slow", "s1", b"{}", {"idempotency-key": "s1"})]
            )
            sender.wake()
            ids = await outbox.add(
                [
                    NewDelivery("fast", f"f{n}", b"{}", {"idempotency-key": f"f{n}"})
                    for n in range(3)
                ]
            )
            sender.wake()
            for entry_id in ids:
                await settled(outbox, entry_id, "delivered", timeout=3.5)
            # all three went while the slow receiver still held its first request
            waiting = await outbox.get(stuck)
            assert waiting is not None and (waiting.state, waiting.attempts) == ("pending", 0)
            assert fast.keys() == ["f0", "f1", "f2"]
            await settled(outbox, stuck, "delivered", timeout=15)
        finally:
            await sender.aclose()
            await outbox.aclose()
