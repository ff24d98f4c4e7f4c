"""What the charts' history costs in Redis (cluster mode), for the default series: measured, not
estimated. A redis-server of its own; the real store (sse_monitor/history/redis_store.py)
records ticks whose times are simulated (a day takes a minute, not a day); then MEMORY USAGE of
every key, by tier, and INFO's used_memory before and after.

    python bench/history_redis_memory.py           # prints the table, saves it under results/

Two runs, each on a prefix of its own:

- a day and an hour of ticks every 3 s (the default interval): the full-resolution hour and the
  day of 1-minute buckets as the store keeps them at any time, and one day of 15-minute buckets;
- 30 days and an hour of ticks every 60 s: the 15-minute tier full (its buckets do not depend on
  the ticks' rate, as long as each bucket has one).

The default series: KATO's six figures, sessions.active, and four figures of each of the four
default containers (23 series); values shaped as the sources give them (percentages to 0.01,
rates to 0.1, memory in whole bytes), a session change marker every 10 minutes.
"""

from __future__ import annotations

import asyncio
import random
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(1, str(ROOT))  # tests.support, and this checkout's sse_monitor

import redis  # noqa: E402
import redis.asyncio as aioredis  # noqa: E402

from sse_monitor.history.figures import CONTAINER_FIGURES, SERIES_FROM_KATO, SESSIONS_ACTIVE  # noqa: E402
from sse_monitor.history.markers import Marker  # noqa: E402
from sse_monitor.history.redis_store import RedisHistory  # noqa: E402
from sse_monitor.settings import DEFAULT_CONTAINERS  # noqa: E402
from tests.support.redis_server import RedisServerProcess  # noqa: E402

RESULTS = BENCH / "results"
START = 1_796_000_400.0  # an hour boundary; the times are simulated
DAY = 86400.0
BATCH = 200  # ticks recorded before each flush (the store writes at most 100 a call)


def series_names() -> list[str]:
    containers = [
        f"container.{name}.{figure}" for name in DEFAULT_CONTAINERS for figure in CONTAINER_FIGURES
    ]
    return [*SERIES_FROM_KATO, SESSIONS_ACTIVE, *containers]


def figures(rng: random.Random, names: list[str]) -> dict[str, float | None]:
    values: dict[str, float | None] = {}
    for name in names:
        if name.endswith("memory_used"):
            values[name] = float(rng.randrange(50_000_000, 900_000_000))
        elif name.endswith(("rx_rate", "tx_rate")):
            values[name] = round(rng.uniform(0, 200_000), 1)
        elif name == SESSIONS_ACTIVE:
            values[name] = float(rng.randrange(0, 40))
        else:
            values[name] = round(rng.uniform(0, 100), 2)
    return values


async def record(store: RedisHistory, seconds: float, interval: float) -> int:
    rng, names = random.Random(15), series_names()
    ticks = int(seconds / interval)
    for n in range(ticks):
        moment = START + n * interval
        markers = []
        if n % int(600 / interval) == 0:
            markers = [Marker(moment, "session_created", {"count": n % 40, "delta": 1})]
        store.record(moment, figures(rng, names), markers)
        if n % BATCH == BATCH - 1:
            await store.flush()
    await store.flush()
    assert store.write_failures == 0
    return ticks


async def usage(client: aioredis.Redis, prefix: str) -> dict[str, tuple[int, int]]:
    """Bytes and members by kind of key: each tier, the markers, the rest."""
    found: dict[str, tuple[int, int]] = {}
    async for key in client.scan_iter(match=f"{prefix}:history:*", count=1000):
        name = key.decode().removeprefix(f"{prefix}:history:")
        kind = name.split(":")[0]
        kind = {"0": "raw", "60": "1m", "900": "15m", "markers": "markers"}.get(kind, "other")
        size = await client.memory_usage(key, samples=0) or 0
        members = await client.zcard(key) if kind != "other" else 0
        total, count = found.get(kind, (0, 0))
        found[kind] = (total + size, count + members)
    return found


async def measure(url: str) -> dict[str, Any]:
    client = aioredis.from_url(url)
    before = (await client.info("memory"))["used_memory"]
    day = RedisHistory(client, "day", timeout=30)
    await day.open()
    started = time.monotonic()
    day_ticks = await record(day, DAY + 3600, 3.0)
    day_seconds = time.monotonic() - started
    await day.aclose()
    after_day = (await client.info("memory"))["used_memory"]
    month = RedisHistory(client, "month", timeout=30)
    await month.open()
    await record(month, 30 * DAY + 3600, 60.0)
    await month.aclose()
    answer = {
        "day": await usage(client, "day"),
        "month": await usage(client, "month"),
        "used_memory_day": after_day - before,
        "day_ticks": day_ticks,
        "day_seconds": day_seconds,
        "series": len(series_names()),
    }
    await client.aclose()
    return answer


def table(found: dict[str, Any]) -> str:
    day, month = found["day"], found["month"]
    quarter_day = day.get("15m", (0, 0))
    quarter_month = month["15m"]
    mib = 1024 * 1024
    kept = day["raw"][0] + day["1m"][0] + quarter_month[0] + month.get("markers", (0, 0))[0]
    rows = [
        ("every tick, the last hour (fixed)", day["raw"]),
        ("1-minute buckets, the last day (fixed)", day["1m"]),
        ("15-minute buckets, one day", quarter_day),
        ("15-minute buckets, 30 days (full)", quarter_month),
        ("markers, 30 days (one every 10 minutes)", month.get("markers", (0, 0))),
    ]
    lines = [
        f"History in Redis, {found['series']} series (the default set), "
        f"{datetime.now(UTC):%Y-%m-%d}, redis-server {found['redis_version']}",
        "",
        "| what | members | MEMORY USAGE (KiB) | bytes per member |",
        "|---|---:|---:|---:|",
    ]
    for label, (size, members) in rows:
        per = size / members if members else 0
        lines.append(f"| {label} | {members:,} | {size / 1024:,.1f} | {per:.0f} |")
    lines += [
        "",
        f"Kept at any time once 30 days have passed: {kept / mib:.1f} MiB "
        f"(the first day: {(day['raw'][0] + day['1m'][0] + quarter_day[0]) / mib:.1f} MiB; "
        f"then {quarter_month[0] / 30 / 1024:.0f} KiB a day more, up to the 30 days).",
        f"INFO used_memory grew {found['used_memory_day'] / mib:.1f} MiB over the first run "
        f"({found['day_ticks']:,} ticks recorded in {found['day_seconds']:.0f} s).",
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    with tempfile.TemporaryDirectory() as folder, RedisServerProcess(Path(folder)) as server:
        found = asyncio.run(measure(server.url))
        with redis.Redis.from_url(server.url) as client:
            found["redis_version"] = client.info("server")["redis_version"]
    text = table(found)
    print(text)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "history-redis-memory.md").write_text(text)


if __name__ == "__main__":
    main()
