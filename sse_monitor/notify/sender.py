"""Deliver the outbox: POST each due entry to its receiver, and record what came of it.

2xx is delivered (recorded at once, so that it is never sent again). 408, 429, 5xx and a
receiver that cannot be reached are tried again after an exponential backoff with full jitter
(no sooner than the receiver's Retry-After), until the entry is `give_up_after` old; any other
answer is a permanent refusal, logged once as a warning (the receiver's URL redacted: scheme
and host). The sender is a task of its own and every outbox call runs in the outbox's thread:
a slow or dead receiver never holds up the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from functools import partial

import httpx
import structlog

from sse_monitor.notify.outbox import Delivery, Outbox
from sse_monitor.notify.receivers import Receiver
from sse_monitor.redact import scrub
from sse_monitor.tasks import cancel_and_wait

log = structlog.get_logger("sse_monitor.notify")

FIRST_DELAY_SECONDS = 1.0
MOST_DELAY_SECONDS = 300.0
GIVE_UP_SECONDS = 24 * 3600.0
BATCH = 20  # attempts started in one look at the outbox at most (more start as others end)
IDLE_SECONDS = 5.0  # the longest sleep between looks at the outbox (an entry added elsewhere)
FAR_AHEAD_SECONDS = 10 * 365 * 86400.0  # every pending entry is due before this

RETRY_STATUSES = frozenset({408, 429})


def full_jitter(ceiling: float) -> float:
    """Anywhere from 0 to the ceiling: receivers coming back are not hit by every retry at once."""
    return random.uniform(0, ceiling)


def backoff_delay(
    attempts: int, *, first: float, most: float, jitter: Callable[[float], float]
) -> float:
    """The wait after the `attempts`-th failed attempt: `first` doubled each time, up to `most`,
    jittered."""
    ceiling = min(most, first * 2 ** min(attempts - 1, 62))
    return jitter(ceiling)


def retry_after_seconds(value: str | None, now: float) -> float | None:
    """A Retry-After header (seconds, or an HTTP date) as seconds from `now`; None if absent or
    unreadable."""
    if value is None:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():  # "²" and "٣" are digits to isdigit(), not to HTTP
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:  # an HTTP date is GMT
        return None
    return max(0.0, when.timestamp() - now)


@dataclass
class DeliveryCounts:
    """Attempts' outcomes since the process started, for Prometheus: shared by the senders of
    successive terms in a cluster node, so the counters only ever grow."""

    sent: int = 0
    retried: int = 0
    failed: int = 0


Outcome = Callable[[Delivery, str, str | None], None]  # (entry, its new state, the error)


class Sender:
    """An entry goes to the receiver of its name, at that receiver's URL and within its
    timeout. `outcome(entry, state, error)`, if given, hears of every attempt's result (the
    alerts panel shows it live)."""

    def __init__(
        self,
        outbox: Outbox,
        receivers: Iterable[Receiver],
        *,
        clock: Callable[[], float] = time.time,
        first_delay: float = FIRST_DELAY_SECONDS,
        most_delay: float = MOST_DELAY_SECONDS,
        give_up_after: float = GIVE_UP_SECONDS,
        jitter: Callable[[float], float] = full_jitter,
        counts: DeliveryCounts | None = None,
        outcome: Outcome | None = None,
    ) -> None:
        self._outbox = outbox
        self._receivers = {receiver.name: receiver for receiver in receivers}
        self._clock = clock
        self._first_delay = first_delay
        self._most_delay = most_delay
        self._give_up_after = give_up_after
        self._jitter = jitter
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._held: dict[str, float] = {}  # receiver -> monotonic time it may be tried again
        self._outbox_failing = False
        self.counts = counts if counts is not None else DeliveryCounts()
        self._outcome = outcome

    @property
    def sent(self) -> int:
        return self.counts.sent

    @property
    def retried(self) -> int:
        return self.counts.retried

    @property
    def failed(self) -> int:
        return self.counts.failed

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="notify-sender")

    def wake(self) -> None:
        """Look at the outbox now: entries were added."""
        self._wake.set()

    async def aclose(self) -> None:
        if self._task is not None:
            await cancel_and_wait([self._task])
            self._task = None

    async def _run(self) -> None:
        """Start an attempt for each receiver whose oldest entry is due, each in a task of its
        own: a slow receiver (up to its timeout an attempt) holds back only its own entries."""
        in_flight: dict[str, asyncio.Task[None]] = {}  # receiver -> its attempt
        async with httpx.AsyncClient() as client:
            try:
                while True:
                    self._wake.clear()
                    try:
                        wait = await self._start_due(client, in_flight)
                        self._outbox_answers()
                    except Exception as exc:  # the outbox's disk, or Redis: try again later
                        self._outbox_failed(exc)
                        wait = IDLE_SECONDS
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._wake.wait(), wait)
            finally:
                await cancel_and_wait(list(in_flight.values()))

    async def _start_due(
        self, client: httpx.AsyncClient, in_flight: dict[str, asyncio.Task[None]]
    ) -> float:
        """Start what is due; the seconds until the next entry not in flight is (at most
        IDLE_SECONDS: an entry another process added)."""
        now = self._clock()
        # Every receiver's oldest pending entry, soonest first, however far ahead.
        heads = await self._outbox.due(now + FAR_AHEAD_SECONDS, BATCH + len(in_flight))
        wait = IDLE_SECONDS
        for entry in heads:
            if entry.receiver in in_flight:
                continue
            held = self._held.get(entry.receiver, 0.0) - time.monotonic()
            if entry.next_attempt > now or held > 0:
                wait = min(wait, max(entry.next_attempt - now, held))
                continue
            task = asyncio.create_task(self._attempt(client, entry), name="notify-attempt")
            in_flight[entry.receiver] = task
            task.add_done_callback(partial(self._attempt_done, in_flight, entry.receiver))
        return wait

    def _attempt_done(
        self, in_flight: dict[str, asyncio.Task[None]], receiver: str, _: asyncio.Task[None]
    ) -> None:
        in_flight.pop(receiver, None)
        self._wake.set()

    async def _attempt(self, client: httpx.AsyncClient, entry: Delivery) -> None:
        """One attempt and its record. A record the outbox refused (Redis away, or this
        producer deposed) leaves the entry as it was: its receiver is held back a while rather
        than sent the same message again at once."""
        try:
            await self._deliver(client, entry)
        except Exception as exc:
            self._held[entry.receiver] = time.monotonic() + IDLE_SECONDS
            self._outbox_failed(exc)

    def _outbox_failed(self, exc: Exception) -> None:
        if not self._outbox_failing:
            self._outbox_failing = True
            log.warning("notify.outbox_failed", store=self._outbox.path, error=str(exc))

    def _outbox_answers(self) -> None:
        if self._outbox_failing:
            self._outbox_failing = False
            log.info("notify.outbox_answers", store=self._outbox.path)

    async def _deliver(self, client: httpx.AsyncClient, entry: Delivery) -> None:
        receiver = self._receivers.get(entry.receiver)
        if receiver is None:
            await self._refused(entry, None, f"receiver {entry.receiver!r} is not configured")
            return
        try:
            status, retry_after_header = await _post(client, receiver, entry)
        except (TimeoutError, httpx.TimeoutException) as exc:  # no (whole) answer: try again
            error = f"no answer within {receiver.timeout:g} s"
            if isinstance(exc, httpx.TimeoutException):
                error += f" ({type(exc).__name__})"
            await self._failed_attempt(entry, receiver, error, None)
            return
        except httpx.TransportError as exc:  # unreachable, reset, timed out: try again
            await self._failed_attempt(entry, receiver, _error(exc, receiver), None)
            return
        except (httpx.InvalidURL, ValueError) as exc:  # never going to work
            await self._refused(entry, receiver, _error(exc, receiver))
            return
        if 200 <= status < 300:
            # Shielded: once the receiver has it, a cancellation must not lose the record.
            await asyncio.shield(self._outbox.delivered(entry.id))
            self.counts.sent += 1
            self._tell(entry, "delivered", None)
        elif status in RETRY_STATUSES or status >= 500:
            retry_after = retry_after_seconds(retry_after_header, self._clock())
            await self._failed_attempt(entry, receiver, f"HTTP {status}", retry_after)
        else:
            await self._refused(entry, receiver, f"HTTP {status}")

    async def _failed_attempt(
        self, entry: Delivery, receiver: Receiver, error: str, retry_after: float | None
    ) -> None:
        """Try again later, or give up if the entry is too old."""
        now = self._clock()
        if now - entry.created >= self._give_up_after:
            error = f"gave up after {self._give_up_after:g} s: {error}"
            await self._refused(entry, receiver, error)
            return
        delay = backoff_delay(
            entry.attempts + 1, first=self._first_delay, most=self._most_delay, jitter=self._jitter
        )
        if retry_after is not None:  # the receiver's least wait: "0" is no reason to hammer it
            delay = max(delay, retry_after)
        when = min(now + delay, entry.created + self._give_up_after)
        await self._outbox.retry_at(entry.id, when, error)
        self.counts.retried += 1
        self._tell(entry, "pending", error)

    async def _refused(self, entry: Delivery, receiver: Receiver | None, error: str) -> None:
        await self._outbox.failed(entry.id, error)
        self.counts.failed += 1
        self._tell(entry, "failed", error)
        log.warning(
            "notify.failed",
            receiver=entry.receiver,
            url=receiver.redacted_url if receiver else None,
            delivery=entry.id,
            attempts=entry.attempts + 1,
            error=error,
        )

    def _tell(self, entry: Delivery, state: str, error: str | None) -> None:
        if self._outcome is not None:
            self._outcome(entry, state, error)


async def _post(
    client: httpx.AsyncClient, receiver: Receiver, entry: Delivery
) -> tuple[int, str | None]:
    """The receiver's status and Retry-After. Its body is never read (a hostile receiver could
    send gigabytes), and the whole attempt, a trickle of headers included, is bounded by the
    receiver's timeout (httpx's bounds each read, not the sum). Redirects are not followed: a
    3xx is a refusal, like any status that is not 2xx, 408, 429 or 5xx."""
    async with asyncio.timeout(receiver.timeout):
        request = client.build_request(
            "POST",
            receiver.url,
            content=entry.body,
            headers=entry.headers,
            timeout=receiver.timeout,
        )
        response = await client.send(request, stream=True)
        try:
            return response.status_code, response.headers.get("retry-after")
        finally:
            await response.aclose()


def _error(exc: Exception, receiver: Receiver) -> str:
    """What went wrong, for the outbox and the log, without the receiver's URL."""
    return scrub(f"{type(exc).__name__}: {exc}".replace(receiver.url, receiver.redacted_url))
