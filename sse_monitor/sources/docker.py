"""Talk to the Docker engine through the docker SDK, and turn its stats into figures.

The SDK is synchronous: every method of `DockerEngine` blocks and is meant to run in a worker
thread, never on the event loop. The figure functions are pure, and follow the Docker CLI's own
formulas so that what we show agrees with `docker stats`.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import docker
import docker.errors
import requests.exceptions
import urllib3.exceptions

from sse_monitor.redact import scrub

MAX_CPUS = 4096  # more "online CPUs" than any host has is not a reading
MAX_NAME_CHARS = 128


class EngineUnavailable(Exception):
    """The engine cannot be reached: no socket, permission denied, stopped, or failing."""


@dataclass(frozen=True, slots=True)
class Selection:
    """Which containers to watch: some names, those with a label, or all of them."""

    names: tuple[str, ...] = ()
    label: str | None = None

    @property
    def everything(self) -> bool:
        return not self.names and self.label is None

    def matches(self, name: str, labels: Mapping[str, str]) -> bool:
        if self.label is not None:
            key, _, value = self.label.partition("=")
            return key in labels and (not value or labels[key] == value)
        return self.everything or name in self.names


class DockerEngine:
    """One SDK client, created on first use and again after the engine has failed."""

    def __init__(self, *, base_url: str | None = None, timeout: float = 5.0) -> None:
        self._base_url = base_url
        self._timeout = timeout
        self._client: docker.DockerClient | None = None
        self._lock = threading.Lock()

    def containers(self, selection: Selection) -> list[dict[str, Any]]:
        """The engine's list entries (running or not) of the selected containers."""
        filters = {"label": selection.label} if selection.label else None
        entries = self._call(lambda api: api.containers(all=True, filters=filters))
        if not isinstance(entries, list):
            return []
        return [
            entry
            for entry in entries
            if isinstance(entry, Mapping)
            and isinstance(entry.get("Id"), str)
            and selection.matches(container_name(entry), mapping(entry.get("Labels")))
        ]

    def inspect(self, container_id: str) -> dict[str, Any]:
        return self._call(lambda api: api.inspect_container(container_id))

    def stats(self, container_id: str) -> dict[str, Any]:
        """One sample, without the engine's second sampling pass (API 1.41+)."""
        return self._call(lambda api: api.stats(container_id, stream=False, one_shot=True))

    def events(self, since: datetime | None) -> Any:
        """The engine's container events as a blocking iterator with a close() method."""
        return self._call(
            lambda api: api.events(since=since, filters={"type": "container"}, decode=True)
        )

    def close(self) -> None:
        with self._lock:
            client, self._client = self._client, None
        if client is not None:
            client.close()

    def _call(self, operation: Any) -> Any:
        try:
            return operation(self._api())
        except docker.errors.APIError as exc:
            if exc.status_code is not None and exc.status_code < 500:
                raise  # about one container (gone, not running): the engine is fine
            self.close()
            raise EngineUnavailable(engine_error(exc)) from None
        except (docker.errors.DockerException, requests.exceptions.RequestException) as exc:
            self.close()  # a fresh client next time: the engine may have restarted
            raise EngineUnavailable(engine_error(exc)) from None
        except OSError as exc:
            self.close()
            raise EngineUnavailable(engine_error(exc)) from None

    def _api(self) -> docker.APIClient:
        with self._lock:
            if self._client is None:
                if self._base_url:
                    self._client = docker.DockerClient(
                        base_url=self._base_url, timeout=self._timeout, version="auto"
                    )
                else:
                    self._client = docker.from_env(timeout=self._timeout, version="auto")
            return self._client.api


def engine_error(exc: BaseException) -> str:
    """A short reason an operator can act on, from the SDK's long exception texts."""
    text = str(exc)
    lowered = text.lower()
    if "permission denied" in lowered:
        reason = "permission denied on the Docker socket"
    elif "no such file" in lowered or "filenotfound" in lowered:
        reason = "no Docker socket (is the engine running? is DOCKER_HOST right?)"
    elif "connection refused" in lowered or "connection aborted" in lowered:
        reason = "the Docker engine refused the connection"
    elif "timed out" in lowered or "timeout" in lowered:
        reason = "the Docker engine did not answer in time"
    else:
        reason = f"{type(exc).__name__}: {text[:200]}"
    return scrub(reason)


def container_name(entry: Mapping[str, Any]) -> str:
    names = entry.get("Names")
    if isinstance(names, list) and names and isinstance(names[0], str):
        return names[0].lstrip("/")[:MAX_NAME_CHARS]
    return text(entry.get("Id"), 12) or ""


def iter_events(stream: Any) -> Iterator[dict[str, Any]]:
    """Events from an SDK events stream; ends quietly when the connection goes away (the
    engine stopped, or the stream was closed under it)."""
    try:
        yield from stream
    except (requests.exceptions.RequestException, urllib3.exceptions.HTTPError, OSError):
        return


# Figures, as the Docker CLI computes them (cli/command/container/stats_helpers.go). The engine's
# answers are read defensively: a missing key, a wrong type or an impossible number makes that
# figure None (unknown), never an exception and never a made-up 0.


def cpu_percent(current: Mapping[str, Any], previous: Mapping[str, Any]) -> float | None:
    """CPU delta / system delta x online CPUs x 100, between two samples; 100 = one core."""
    cpu_now, cpu_before = _cpu_total(current), _cpu_total(previous)
    system_now, system_before = _system_total(current), _system_total(previous)
    if cpu_now is None or cpu_before is None or system_now is None or system_before is None:
        return None
    cpu_delta = cpu_now - cpu_before
    system_delta = system_now - system_before
    if system_delta <= 0 or cpu_delta < 0:
        return None
    return round(cpu_delta / system_delta * online_cpus(current) * 100.0, 2)


def online_cpus(sample: Mapping[str, Any]) -> int:
    cpu_stats = mapping(sample.get("cpu_stats"))
    online = count(cpu_stats.get("online_cpus"))
    if online is not None and 0 < online <= MAX_CPUS:
        return online
    percpu = mapping(cpu_stats.get("cpu_usage")).get("percpu_usage")
    return min(len(percpu), MAX_CPUS) if isinstance(percpu, list) and percpu else 1


def memory(sample: Mapping[str, Any]) -> dict[str, float | int | None]:
    """Used memory without the page cache, as `docker stats` shows it, with limit and %."""
    stats = mapping(sample.get("memory_stats"))
    usage = count(stats.get("usage"))
    limit = count(stats.get("limit"))
    if usage is None:
        return {"used": None, "limit": limit, "percent": None}
    detail = mapping(stats.get("stats"))
    used = usage
    # cgroup v1 reports total_inactive_file, v2 inactive_file; subtracting `cache` is wrong on v2
    inactive = count(detail.get("total_inactive_file", detail.get("inactive_file")))
    if inactive is not None and inactive < usage:
        used = usage - inactive
    percent = round(used / limit * 100.0, 2) if limit else None
    return {"used": used, "limit": limit, "percent": percent}


def network_bytes(sample: Mapping[str, Any]) -> tuple[int | None, int | None]:
    """Received and sent bytes, summed over the container's interfaces (cumulative); None
    when the engine's answer has no readable interfaces."""
    networks = sample.get("networks")
    if networks is None:
        return 0, 0  # no interfaces (--network none): nothing sent, as `docker stats` says
    interfaces = list(networks.values()) if isinstance(networks, Mapping) else [None]
    if not all(isinstance(n, Mapping) for n in interfaces):
        return None, None
    return _sum(n.get("rx_bytes") for n in interfaces), _sum(n.get("tx_bytes") for n in interfaces)


def block_io_bytes(sample: Mapping[str, Any]) -> tuple[int | None, int | None]:
    """Bytes read and written, summed by operation (case differs between cgroup versions)."""
    entries = mapping(sample.get("blkio_stats")).get("io_service_bytes_recursive") or []
    if not isinstance(entries, list) or not all(isinstance(e, Mapping) for e in entries):
        return None, None
    rows: list[Mapping[str, Any]] = entries

    def total(op: str) -> int | None:
        return _sum(e.get("value") for e in rows if (text(e.get("op"), 8) or "").lower() == op)

    return total("read"), total("write")


def pids(sample: Mapping[str, Any]) -> int | None:
    return count(mapping(sample.get("pids_stats")).get("current"))


def count(value: Any) -> int | None:
    """A non-negative integer the engine could have sent (a uint64), or None."""
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2**64:
        return value
    return None


def mapping(value: Any) -> Mapping[str, Any]:
    """A JSON object, or an empty one in place of anything else."""
    return value if isinstance(value, Mapping) else {}


def text(value: Any, limit: int) -> str | None:
    """A string the engine sent, cut to `limit` characters; None for anything else."""
    return value[:limit] if isinstance(value, str) else None


def _sum(values: Iterable[Any]) -> int | None:
    """The sum of counters, None if any of them is unreadable (a partial sum would be wrong);
    a missing counter counts 0, as the engine omits zeros."""
    total = 0
    for value in values:
        number = 0 if value is None else count(value)
        if number is None:
            return None
        total += number
    return total


def _cpu_total(sample: Mapping[str, Any]) -> int | None:
    return count(mapping(mapping(sample.get("cpu_stats")).get("cpu_usage")).get("total_usage"))


def _system_total(sample: Mapping[str, Any]) -> int | None:
    return count(mapping(sample.get("cpu_stats")).get("system_cpu_usage"))
