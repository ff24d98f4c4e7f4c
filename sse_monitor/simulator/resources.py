"""The whole-machine figures KATO reports (psutil's): a random walk, pins, the CPU warm-up."""

from __future__ import annotations

import random
from collections.abc import Mapping

_CPU_WARMUP_SECONDS = 10.0  # psutil's first CPU sample: KATO reports 0.0 until then
# name -> (low, high, random-walk step)
_RESOURCE_WALK = {
    "cpu_percent": (0.5, 95.0, 4.0),
    "memory_percent": (1.0, 90.0, 0.6),
    "disk_percent": (5.0, 95.0, 0.05),
}


class MachineResources:
    """CPU, memory and disk percentages: they wander for the demo, or stay where a test pins."""

    def __init__(self, rng: random.Random) -> None:
        self._rng = rng
        self._values = {
            "cpu_percent": round(rng.uniform(2.0, 8.0), 1),
            "memory_percent": round(rng.uniform(2.0, 6.0), 1),
            "disk_percent": round(rng.uniform(15.0, 40.0), 1),
        }
        self._pinned: dict[str, float] = {}

    def pin(self, values: Mapping[str, float | None]) -> None:
        """Hold figures where a test wants them; None lets a figure move again."""
        for name, value in values.items():
            if name not in _RESOURCE_WALK:
                raise ValueError(f"unknown resource {name!r}")
            if value is not None and (
                isinstance(value, bool)
                or not isinstance(value, int | float)
                or not 0.0 <= value <= 100.0
            ):
                raise ValueError(f"{name} must be a number from 0 to 100, or null")
        for name, value in values.items():
            if value is None:
                self._pinned.pop(name, None)
            else:
                self._pinned[name] = float(value)

    def unpin_all(self) -> None:
        self._pinned.clear()

    def current(self) -> dict[str, float]:
        """The figures as they stand (pinned ones included, no CPU warm-up)."""
        return {**self._values, **self._pinned}

    def reported(self, uptime: float) -> dict[str, float]:
        """What a worker up for `uptime` seconds reports: CPU 0.0 before psutil's first sample."""
        figures = self.current()
        if uptime < _CPU_WARMUP_SECONDS and "cpu_percent" not in self._pinned:
            figures["cpu_percent"] = 0.0
        return figures

    def walk(self) -> None:
        """One step of the random walk, reflected off each figure's bounds."""
        for name, (low, high, step) in _RESOURCE_WALK.items():
            value = self._values[name] + self._rng.gauss(0.0, step)
            if value < low:  # reflect off the bounds so figures do not stick to them
                value = 2 * low - value
            elif value > high:
                value = 2 * high - value
            self._values[name] = round(min(high, max(low, value)), 1)
