"""The container collector: samples the watched containers and follows their lifecycle.

Every SDK call runs in a worker thread, never on the event loop. Sampling runs in the
background at the poll interval with one-shot stats reads (the previous sample of each container
is kept to compute CPU and network rates), so the producer's tick only reads the latest snapshot
and never waits for the engine. A separate thread follows the engine's event stream and
appends a durable `container_event` the moment a container starts, dies, restarts, runs out of
memory or changes health.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

import docker.errors
import structlog

from sse_monitor.backoff import Backoff
from sse_monitor.bus.event import Event
from sse_monitor.clock import iso, utc_now
from sse_monitor.monitor.ticker import run_every
from sse_monitor.sources.docker import DockerEngine, EngineUnavailable, Selection, iter_events
from sse_monitor.sources.docker_figures import (
    NO_FIGURES,
    STATE_KEYS,
    block_io_bytes,
    container_name,
    cpu_percent,
    describe,
    event_nano,
    mapping,
    memory,
    missing,
    network_bytes,
    network_rate,
    online_cpus,
    pids,
    text,
    totals,
)

log = structlog.get_logger("sse_monitor.monitor.containers")

# Engine actions published as container events; the status each one leaves the container in.
LIFECYCLE: dict[str, str | None] = {
    "create": "created",
    "start": "running",
    "restart": "running",
    "unpause": "running",
    "pause": "paused",
    "die": "exited",
    "stop": "exited",
    "oom": None,  # followed by die
    "health_status": None,  # the status stays; the health changes
    "destroy": "missing",
}
MAX_BACKOFF_SECONDS = 10.0


class ContainerCollector:
    """Owns the latest container figures; publishes lifecycle events as they happen."""

    def __init__(
        self,
        engine: DockerEngine,
        selection: Selection,
        *,
        interval: float,
        append: Callable[[Event], None],
        max_workers: int = 16,
    ) -> None:
        self._engine = engine
        self._selection = selection
        self._interval = interval
        self._append = append
        self._executor = ThreadPoolExecutor(max_workers, thread_name_prefix="docker")
        self._containers: dict[str, dict[str, Any]] = {}
        self._previous: dict[str, dict[str, Any]] = {}  # container id -> its last stats sample
        self._available: bool | None = None  # None until the first round ends
        self._error: str | None = None
        self._sampled_at: datetime | None = None
        self._stopping = threading.Event()
        self._stream: Any = None
        self._stream_lock = threading.Lock()
        self._events_thread: threading.Thread | None = None
        self._events_since: datetime | None = None  # the events thread's alone
        self._last_event_nano = 0
        self._out_of_memory: set[str] = set()  # containers whose OOM was already announced
        self._refreshes: set[asyncio.Task[None]] = set()  # held: the loop keeps only weak refs

    # The sampling loop

    async def run(self) -> None:
        """Sample at a fixed rate until cancelled; engine trouble is reported, never raised."""
        loop = asyncio.get_running_loop()
        self._events_thread = threading.Thread(
            target=self._follow_events, args=(loop,), name="docker-events", daemon=True
        )
        self._events_thread.start()
        await run_every(self._interval, self._sample_logged, name="containers")

    async def _sample_logged(self) -> None:
        try:
            await self.sample()
        except Exception:
            log.exception("containers.sample_failed")

    async def sample(self) -> None:
        """One round: list the watched containers, then inspect and read each, in parallel."""
        loop = asyncio.get_running_loop()
        try:
            entries = await loop.run_in_executor(
                self._executor, self._engine.containers, self._selection
            )
        except EngineUnavailable as exc:
            self._set_available(False, str(exc))
            return
        reads = await asyncio.gather(
            *(loop.run_in_executor(self._executor, self._read, entry) for entry in entries),
            return_exceptions=True,
        )
        containers: dict[str, dict[str, Any]] = {}
        for entry, result in zip(entries, reads, strict=True):
            if isinstance(result, EngineUnavailable):
                self._set_available(False, str(result))
                return
            if isinstance(result, BaseException):
                continue  # removed between the list and the read: the next round tells
            inspected, stats = result
            try:
                figures = self._figures(entry, inspected, stats)
            except Exception as exc:  # an answer no reader foresaw: this container is unknown
                log.warning("containers.odd_answer", id=entry["Id"][:12], error=repr(exc)[:200])
                figures = {**missing(container_name(entry)), "status": "unknown"}
            containers[figures["name"]] = figures
        for name in self._selection.names:
            containers.setdefault(name, missing(name))
        self._containers = containers
        self._sampled_at = utc_now()
        self._set_available(True, None)

    def _read(self, entry: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any] | None]:
        """In a worker thread: inspect, and stats for a container that has a live process."""
        inspected = mapping(self._engine.inspect(entry["Id"]))
        state = mapping(inspected.get("State"))
        stats = None
        if state.get("Running") is True and not state.get("Restarting"):
            with contextlib.suppress(docker.errors.APIError):
                stats = self._engine.stats(entry["Id"])
        return inspected, stats if isinstance(stats, Mapping) else None

    def _figures(
        self,
        entry: Mapping[str, Any],
        inspected: Mapping[str, Any],
        stats: Mapping[str, Any] | None,
    ) -> dict[str, Any]:
        container_id = text(inspected.get("Id"), 128) or entry["Id"]
        figures = describe(entry, inspected)
        if stats is None:
            self._previous.pop(container_id, None)
            return figures
        previous = self._previous.get(container_id)
        self._previous[container_id] = dict(stats)
        received, sent = network_bytes(stats)
        read, written = block_io_bytes(stats)
        cpu = cpu_percent(stats, previous) if previous else None
        # Of what it may use: its --cpus limit, or without one every CPU of the host.
        cores = figures["cpu_limit"] or online_cpus(stats)
        figures.update(
            cpu_percent=cpu,
            cpu_limit_percent=round(cpu / cores, 2) if cpu is not None else None,
            memory=memory(stats),
            network={
                "rx_bytes": received,
                "tx_bytes": sent,
                "rx_rate": network_rate(stats, previous, 0),
                "tx_rate": network_rate(stats, previous, 1),
            },
            block_io={"read_bytes": read, "write_bytes": written},
            pids=pids(stats),
        )
        return figures

    def _set_available(self, available: bool, error: str | None) -> None:
        if available != self._available:
            if available:
                log.info("docker.available")
            else:
                log.warning("docker.unavailable", error=error)
                self._previous.clear()
        self._available, self._error = available, error

    # What the producer appends each tick

    def snapshot(self) -> dict[str, Any] | None:
        """The `containers` event's data: the latest figures, or why there are none; None
        before the first round has ended (nothing is known yet, not even the engine's state)."""
        if self._available is None:
            return None
        containers = sorted(self._containers.values(), key=lambda c: c["name"])
        if not self._available:
            containers = []
        return {
            "timestamp": iso(utc_now()),
            "available": bool(self._available),
            "error": self._error,
            "sampled_at": iso(self._sampled_at) if self._sampled_at else None,
            "containers": containers,
            "totals": totals(containers) if self._available else None,
        }

    # Lifecycle events, from the engine's event stream

    def _follow_events(self, loop: asyncio.AbstractEventLoop) -> None:
        """In its own thread: follow the event stream until closed, reconnecting with backoff.

        After a reconnect it asks for the events since the last one seen, so a short outage of
        the stream loses nothing the engine still remembers.
        """
        backoff = Backoff(0.5, MAX_BACKOFF_SECONDS)
        while not self._stopping.is_set():
            try:
                self._read_events(loop)
                backoff.reset()
            except EngineUnavailable:
                pass
            except Exception:
                if not self._stopping.is_set():
                    log.warning("docker.events_failed", exc_info=True)
            if self._stopping.wait(backoff.delay()):
                break

    def _read_events(self, loop: asyncio.AbstractEventLoop) -> None:
        """Read one event stream to its end (the engine went away, or we closed it)."""
        stream = self._engine.events(since=self._events_since)
        with self._stream_lock:
            if self._stopping.is_set():
                stream.close()
                return
            self._stream = stream
        try:
            for raw in iter_events(stream):
                if not isinstance(raw, Mapping):
                    continue  # not an event: nothing to publish
                nano = event_nano(raw)
                if nano and nano <= self._last_event_nano:
                    continue  # seen before the reconnect
                if nano:
                    self._last_event_nano = nano
                    self._events_since = datetime.fromtimestamp(nano / 1e9, UTC)
                loop.call_soon_threadsafe(self._on_engine_event, raw)
        finally:
            with self._stream_lock:
                self._stream = None
            with contextlib.suppress(Exception):
                stream.close()

    def _on_engine_event(self, raw: Mapping[str, Any]) -> None:
        """On the event loop: publish a watched container's lifecycle change at once."""
        # `Action`, or the older `status` when there is none; an odd one is no event at all
        kind = text(raw.get("Action") if raw.get("Action") is not None else raw.get("status"), 64)
        action, _, detail = (kind or "").partition(":")
        if action not in LIFECYCLE:
            return
        actor = mapping(raw.get("Actor"))
        attributes = mapping(actor.get("Attributes"))
        name = text(attributes.get("name"), 128) or ""
        if not name or not self._selection.matches(name, attributes):
            return
        if action == "oom":
            # The engine reports one oom per killed process, often dozens in a row.
            if name in self._out_of_memory:
                return
            self._out_of_memory.add(name)
        elif action in ("start", "restart"):
            self._out_of_memory.discard(name)
        nano = event_nano(raw)
        moment = datetime.fromtimestamp(nano / 1e9, UTC) if nano else utc_now()
        status = LIFECYCLE[action]
        health = detail.strip() if action == "health_status" else None
        exit_code = text(attributes.get("exitCode"), 12) or ""
        data = {
            "timestamp": iso(moment),
            "container": name,
            "id": text(actor.get("ID"), 12) or text(raw.get("id"), 12) or "",
            "image": text(attributes.get("image"), 256),
            "action": action,
            "status": status,
            "health": health,
            "exit_code": int(exit_code) if exit_code.lstrip("-").isdigit() else None,
        }
        self._append(Event("container_event", data, durable=True))
        self._apply_event(name, status, health)

    def _apply_event(self, name: str, status: str | None, health: str | None) -> None:
        """Make the next `containers` event reflect the change, then refresh the details."""
        current = self._containers.get(name)
        if status == "missing":
            if name in self._selection.names:
                self._containers[name] = missing(name)
            else:
                self._containers.pop(name, None)
            return
        if current is not None:
            current = dict(current)
            if status is not None:
                current["status"] = status
                if status != "running":
                    current.update(NO_FIGURES)
            if health is not None:
                current["health"] = health
            self._containers[name] = current
        task = asyncio.get_running_loop().create_task(self._refresh(name))
        self._refreshes.add(task)
        task.add_done_callback(self._refreshes.discard)

    async def _refresh(self, name: str) -> None:
        """Re-read one container's state (restart count, health, start time) after an event."""
        loop = asyncio.get_running_loop()
        try:
            answer = await loop.run_in_executor(self._executor, self._engine.inspect, name)
        except (EngineUnavailable, docker.errors.APIError):
            return
        inspected = mapping(answer)
        fresh = describe({"Names": [f"/{name}"], "Id": inspected.get("Id")}, inspected)
        current = self._containers.get(name)
        if current is None:
            self._containers[name] = fresh
        else:
            self._containers[name] = {**current, **{key: fresh[key] for key in STATE_KEYS}}

    async def aclose(self) -> None:
        """Stop following events and release the worker threads."""
        self._stopping.set()
        for task in list(self._refreshes):
            task.cancel()
        with self._stream_lock:
            stream, self._stream = self._stream, None
        if stream is not None:
            with contextlib.suppress(Exception):
                stream.close()
        thread = self._events_thread
        if thread is not None:
            await asyncio.get_running_loop().run_in_executor(None, thread.join, 5)
        self._executor.shutdown(wait=False, cancel_futures=True)
        self._engine.close()
