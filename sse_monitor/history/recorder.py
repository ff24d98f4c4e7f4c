"""Between the producer and the log: every event goes on to the log unchanged, and what the
charts need is also handed to the history store. Once per tick, at the `metrics` event (the
tick's last figures: the `containers` snapshot is appended before it), the figures of both; and
a marker for each session change and alert transition."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, Protocol

from sse_monitor.bus.event import Event
from sse_monitor.history.figures import figures_of
from sse_monitor.history.markers import Marker, marker_of, seconds_of


class HistoryWriter(Protocol):
    def record(
        self, moment: float, figures: dict[str, float | None], markers: Iterable[Marker] = ()
    ) -> None: ...


class HistoryRecorder:
    """An `append` for the producer: the log's, plus the history's record."""

    def __init__(self, append: Callable[[Event], None], history: HistoryWriter) -> None:
        self._append = append
        self._history = history
        self._containers: dict[str, Any] | None = None

    def __call__(self, event: Event) -> None:
        self._append(event)  # first: the history never delays a client
        if event.name == "containers":
            self._containers = event.data
        elif event.name == "metrics":
            moment = seconds_of(event.data.get("timestamp"))
            if moment is not None:
                self._history.record(moment, figures_of(event.data, self._containers))
        elif (marker := marker_of(event)) is not None:
            self._history.record(marker.time, {}, [marker])
