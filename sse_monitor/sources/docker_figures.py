"""The Docker engine's answers as figures: pure functions, no SDK, no I/O.

They follow the Docker CLI's own formulas (cli/command/container/stats_helpers.go), so that what
we show agrees with `docker stats`. The engine's answers are read defensively: a missing key, a
wrong type or an impossible number makes that figure None (unknown), never an exception and never
a made-up 0.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from sse_monitor.clock import iso

MAX_CPUS = 4096  # more "online CPUs" than any host has is not a reading
MAX_NAME_CHARS = 128


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


NO_FIGURES = {
    "cpu_percent": None,
    "cpu_limit_percent": None,
    "memory": None,
    "network": None,
    "block_io": None,
    "pids": None,
}
STATE_KEYS = ("status", "health", "restart_count", "started_at", "oom_killed")


def container_name(entry: Mapping[str, Any]) -> str:
    names = entry.get("Names")
    if isinstance(names, list) and names and isinstance(names[0], str):
        return names[0].lstrip("/")[:MAX_NAME_CHARS]
    return text(entry.get("Id"), 12) or ""


def describe(entry: Mapping[str, Any], inspected: Mapping[str, Any]) -> dict[str, Any]:
    """A container's identity and state, with no resource figures yet."""
    state = mapping(inspected.get("State"))
    config = mapping(inspected.get("Config"))
    host = mapping(inspected.get("HostConfig"))
    status = text(state.get("Status"), 32) or "unknown"
    if state.get("Restarting") is True:
        status = "restarting"
    return {
        "name": container_name(entry) if entry.get("Names") else _inspected_name(inspected),
        "id": text(inspected.get("Id"), 12) or text(entry.get("Id"), 12) or "",
        "image": text(config.get("Image"), 256) or text(entry.get("Image"), 256),
        "status": status,
        "health": text(mapping(state.get("Health")).get("Status"), 32),
        "restart_count": count(inspected.get("RestartCount")),
        "started_at": engine_time(state.get("StartedAt")),
        "oom_killed": state.get("OOMKilled") is True,
        "cpu_limit": _cpu_limit(host),
        **NO_FIGURES,
    }


def missing(name: str) -> dict[str, Any]:
    """A watched name the engine does not have: listed, never silently dropped."""
    return {
        "name": name,
        "id": None,
        "image": None,
        "status": "missing",
        "health": None,
        "restart_count": None,
        "started_at": None,
        "oom_killed": False,
        "cpu_limit": None,
        **NO_FIGURES,
    }


def totals(containers: list[dict[str, Any]]) -> dict[str, Any]:
    def total(pick: Callable[[dict[str, Any]], Any]) -> float | int:
        return sum(value for c in containers if (value := pick(c)) is not None)

    return {
        "watched": len(containers),
        "running": sum(1 for c in containers if c["status"] == "running"),
        "cpu_percent": round(total(lambda c: c["cpu_percent"]), 2),
        "memory_used": total(lambda c: (c["memory"] or {}).get("used")),
        "rx_rate": round(total(lambda c: (c["network"] or {}).get("rx_rate")), 1),
        "tx_rate": round(total(lambda c: (c["network"] or {}).get("tx_rate")), 1),
        "rx_bytes": total(lambda c: (c["network"] or {}).get("rx_bytes")),
        "tx_bytes": total(lambda c: (c["network"] or {}).get("tx_bytes")),
        "block_read_bytes": total(lambda c: (c["block_io"] or {}).get("read_bytes")),
        "block_write_bytes": total(lambda c: (c["block_io"] or {}).get("write_bytes")),
        "pids": total(lambda c: c["pids"]),
    }


def network_rate(
    current: Mapping[str, Any], previous: Mapping[str, Any] | None, index: int
) -> float | None:
    """Bytes per second between two samples, timed by the engine's own read stamps."""
    if previous is None:
        return None
    now, before = _read_seconds(current), _read_seconds(previous)
    after, earlier = network_bytes(current)[index], network_bytes(previous)[index]
    if now is None or before is None or now <= before or after is None or earlier is None:
        return None  # no clock, or no counters
    if after < earlier:
        return None  # a counter reset (the container restarted)
    return round((after - earlier) / (now - before), 1)


def _read_seconds(sample: Mapping[str, Any]) -> float | None:
    stamp = engine_time(sample.get("read"))
    return datetime.fromisoformat(stamp).timestamp() if stamp else None


def engine_time(value: Any) -> str | None:
    """The engine's RFC 3339 nanosecond times as ISO-8601 with an offset; its zero time is None."""
    if not isinstance(value, str) or not value or len(value) > 64 or value.startswith("0001-01-01"):
        return None
    text = value.replace("Z", "+00:00")
    head, dot, rest = text.partition(".")
    if dot:
        digits = "".join(ch for ch in rest if ch.isdigit())
        offset = rest[len(digits) :]
        text = f"{head}.{digits[:6].ljust(6, '0')}{offset}"
    try:
        return iso(datetime.fromisoformat(text).astimezone(UTC))
    except (ValueError, OverflowError):
        return None


def event_nano(raw: Mapping[str, Any]) -> int:
    """The event's time in nanoseconds since the epoch; 0 (unknown) unless a real moment."""
    nano = count(raw.get("timeNano"))
    return nano if nano is not None and nano < _YEAR_9999_NANO else 0


_YEAR_9999_NANO = 253_402_300_799 * 10**9


def _cpu_limit(host: Mapping[str, Any]) -> float | None:
    """The container's CPU limit in cores (`--cpus`, or a CFS quota), None when unlimited."""
    nano = count(host.get("NanoCpus"))
    if nano:
        return nano / 1e9
    quota, period = count(host.get("CpuQuota")), count(host.get("CpuPeriod"))
    if quota and period:
        return round(quota / period, 3)
    return None


def _inspected_name(inspected: Mapping[str, Any]) -> str:
    name = (text(inspected.get("Name"), 128) or "").lstrip("/")
    return name or text(inspected.get("Id"), 12) or ""
