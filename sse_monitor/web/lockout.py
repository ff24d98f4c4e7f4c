"""Failed-token lockout: an address that presents too many wrong tokens waits before trying again.

Tokens are long and random, so guessing one is already hopeless; this keeps a guesser from
trying at line rate, and makes the attempts visible (a log line and a Prometheus counter).
The window slides: an address is locked while `limit` of its failures fall within the last
`window` seconds, and may try again when the oldest of them leaves it.

`Lockout` counts in this process. `AddressLockout` is what `Access` asks of a lockout, so that in
cluster mode `RedisLockout` (`sse_monitor.web.lockout_redis`) counts for every node instead; its
answers may take a call to Redis, hence the coroutines.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable
from typing import Protocol

# Enough for every client of a busy gateway; past it the address seen least recently is
# forgotten, so an attacker rotating addresses costs bounded memory.
MAX_ADDRESSES = 10_000


class TooManyFailures(Exception):
    """This address is locked out: 429 with Retry-After."""

    def __init__(self, retry_after: int) -> None:
        super().__init__(f"too many wrong tokens from this address: try again in {retry_after} s")
        self.retry_after = retry_after


class AddressLockout(Protocol):
    limit: int
    window: float

    async def check(self, address: str) -> None:
        """Raise TooManyFailures while this address is locked out."""

    async def record_failure(self, address: str) -> bool:
        """Count a wrong token; True when this one locks the address."""


class Lockout:
    def __init__(
        self,
        limit: int,
        window: float,
        *,
        max_addresses: int = MAX_ADDRESSES,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.limit = limit
        self.window = window
        self._max_addresses = max_addresses
        self._clock = clock
        self._failures: dict[str, deque[float]] = {}

    def retry_after(self, address: str) -> int | None:
        """Seconds until this address may present a token again; None if it may now."""
        failures = self._recent(address)
        if failures is None or len(failures) < self.limit:
            return None
        return max(1, math.ceil(failures[0] + self.window - self._clock()))

    async def check(self, address: str) -> None:
        wait = self.retry_after(address)
        if wait is not None:
            raise TooManyFailures(wait)

    async def record_failure(self, address: str) -> bool:
        """Count a wrong token; True when this one locks the address."""
        failures = self._recent(address)
        if failures is None:
            if len(self._failures) >= self._max_addresses:
                del self._failures[next(iter(self._failures))]
            failures = self._failures[address] = deque(maxlen=self.limit)
        else:
            self._failures[address] = self._failures.pop(address)  # now the most recent
        failures.append(self._clock())
        return len(failures) == self.limit

    def _recent(self, address: str) -> deque[float] | None:
        """This address's failures inside the window (older ones dropped), or None."""
        failures = self._failures.get(address)
        if failures is None:
            return None
        horizon = self._clock() - self.window
        while failures and failures[0] <= horizon:
            failures.popleft()
        if not failures:
            del self._failures[address]
            return None
        return failures
