"""How long to wait before trying a lost connection again: doubling, capped, with jitter."""

from __future__ import annotations

import random


class Backoff:
    """Delays that double from `first` up to `most`, each moved by up to ±`jitter` of itself,
    so that many clients cut off at once do not all come back at once. `reset` after a success."""

    def __init__(self, first: float, most: float, *, jitter: float = 0.2) -> None:
        self._first = first
        self._most = most
        self._jitter = jitter
        self._next = first

    def delay(self) -> float:
        """The wait before the next attempt; the one after it is twice as long."""
        delay = self._next * random.uniform(1 - self._jitter, 1 + self._jitter)
        self._next = min(self._next * 2, self._most)
        return delay

    def reset(self) -> None:
        self._next = self._first
