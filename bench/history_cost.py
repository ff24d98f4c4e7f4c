"""What the charts' history costs: per tick on the event loop and in the store's thread, on disk
per day, and the answer time of GET /api/history for 24 h and 7 d.

1. Tick cost. The producer's `append` with the history (HistoryRecorder over the log's append and
   a SqliteHistory on a real file) against the log's append alone, tick by tick in alternation
   (the machine is shared and noisy), at the default series count (KATO's 4 containers: 23
   series) and at 50 containers (207 series). A tick is its `containers` and `metrics` events;
   each tick's moment is 3 s after the one before, so the store folds a minute every 20 ticks
   as it would live. Between ticks the store's thread finishes its write (it is idle between
   real ticks).
2. Storage. A day of ticks at the default set, then rows per tier and bytes per row of the file
   (after VACUUM): the size of each tier at its retention and per day.
3. Answer time. A file seeded with 7 days (the last day every 3 s, the six before every 60 s:
   whole buckets either way), a real gateway (`python -m sse_monitor serve`) on it, and
   GET /api/history for 24 h and 7 d, every series and one, alternating with GET /healthz as the
   reference (the same server, client and connection: what the history adds).

    python bench/history_cost.py                     # about 3 minutes on 2 cores
    python bench/history_cost.py --ticks 300 --requests 10   # a quick check that it works
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from sse_monitor.bus.event import Event
from sse_monitor.bus.memory import MemoryLog
from sse_monitor.history.buckets import TIERS
from sse_monitor.history.recorder import HistoryRecorder
from sse_monitor.history.sqlite_store import SqliteHistory

RESULTS = Path(__file__).resolve().parent / "results"
TICK_SECONDS = 3.0
DAY = 86_400.0


def tick_events(moment: float, containers: int, rng: random.Random) -> list[Event]:
    """One tick as the producer appends it: the containers snapshot, then the metrics."""
    stamp = datetime.fromtimestamp(moment, UTC).isoformat()
    snapshot = {
        "available": True,
        "timestamp": stamp,
        "containers": [
            {
                "name": f"kato-{index}",
                "cpu_percent": rng.uniform(0, 100),
                "memory": {"used": rng.randrange(1 << 20, 1 << 31), "limit": 1 << 31},
                "network": {"rx_rate": rng.uniform(0, 1e6), "tx_rate": rng.uniform(0, 1e6)},
            }
            for index in range(containers)
        ],
    }
    metrics = {
        "timestamp": stamp,
        "stale": False,
        "kato": {
            "status": "healthy",
            "resources": {f: rng.uniform(0, 100) for f in ("cpu_percent", "memory_percent")}
            | {"disk_percent": 40.0},
            "rates": {"requests_per_second": rng.uniform(0, 500)},
            "performance": {
                "average_response_time": rng.uniform(5, 80),
                "error_rate": rng.uniform(0, 0.05),
            },
        },
        "sessions": {"active_count": rng.randrange(0, 50)},
    }
    return [Event("containers", snapshot), Event("metrics", metrics)]


def moments(start: float, end: float, step: float) -> Iterator[float]:
    moment = start
    while moment < end:
        yield moment
        moment += step


async def tick_cost(containers: int, ticks: int, folder: Path) -> dict[str, Any]:
    """Loop time per tick with and without the history (alternating), and the store thread's
    CPU time per tick."""
    rng = random.Random(containers)
    store = SqliteHistory(str(folder / f"ticks-{containers}.db"))
    await store.open()
    plain, recorded = MemoryLog(history_size=1000), MemoryLog(history_size=1000)
    appends: dict[str, Callable[[Event], None]] = {
        "log alone": plain.append,
        "log and history": HistoryRecorder(recorded.append, store),
    }
    loop_ns: dict[str, list[int]] = {name: [] for name in appends}
    thread_s: list[float] = []
    now = time.time()
    for index, moment in enumerate(moments(now - ticks * TICK_SECONDS, now, TICK_SECONDS)):
        events = tick_events(moment, containers, rng)
        order = list(appends.items()) if index % 2 else list(appends.items())[::-1]
        before_thread = await store._run(time.thread_time)
        for name, append in order:
            started = time.perf_counter_ns()
            for event in events:
                append(event)
            loop_ns[name].append(time.perf_counter_ns() - started)
        thread_s.append(await store._run(time.thread_time) - before_thread)
    series = len(await store.series())
    await store.aclose()
    return {
        "containers": containers,
        "series": series,
        "ticks": ticks,
        "loop_us": {name: summary(values, 1e-3) for name, values in loop_ns.items()},
        "thread_us": summary(thread_s, 1e6),
    }


def summary(values: list[float] | list[int], scale: float) -> dict[str, float]:
    ordered = sorted(value * scale for value in values)
    return {
        "median": statistics.median(ordered),
        "p99": ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))],
        "mean": statistics.fmean(ordered),
    }


async def seed(path: Path, end: float, *, days: float, fine_hours: float) -> int:
    """Ticks for `days` up to `end`: every 3 s for the last `fine_hours`, every 60 s before."""
    rng = random.Random(7)
    store = SqliteHistory(str(path))
    await store.open()
    fine_start = end - fine_hours * 3600
    count = 0
    for moment in [
        *moments(end - days * DAY, fine_start, 60.0),
        *moments(fine_start, end, TICK_SECONDS),
    ]:
        recorder = HistoryRecorder(lambda event: None, store)
        for event in tick_events(moment, 4, rng):
            recorder(event)
        count += 1
        if count % 500 == 0:
            await store.flush()  # keep the thread's queue short
    await store.flush()
    await store.aclose()
    return count


def storage(path: Path) -> dict[str, Any]:
    """Rows per tier and the file's bytes per row, after VACUUM."""
    import sqlite3

    db = sqlite3.connect(path)
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.execute("VACUUM")
    rows = dict(db.execute("SELECT step, count(*) FROM history_points GROUP BY step").fetchall())
    series = db.execute("SELECT count(DISTINCT series) FROM history_points").fetchone()[0]
    markers = db.execute("SELECT count(*) FROM history_markers").fetchone()[0]
    db.close()
    size = path.stat().st_size
    per_row = size / max(1, sum(rows.values()))
    tiers = []
    for tier in TIERS:
        per_series_per_day = DAY / (tier.step or TICK_SECONDS)
        kept_days = tier.retention / DAY
        tiers.append(
            {
                "tier": tier.name,
                "rows_now": rows.get(tier.step, 0),
                "rows_per_series_per_day": per_series_per_day,
                "bytes_per_day": per_series_per_day * series * per_row,
                "bytes_at_retention": per_series_per_day * kept_days * series * per_row,
            }
        )
    return {
        "series": series,
        "markers": markers,
        "bytes": size,
        "bytes_per_row": per_row,
        "tiers": tiers,
    }


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def answer_times(path: Path, requests: int) -> dict[str, Any]:
    """GET /api/history against GET /healthz on a real gateway over the seeded file."""
    port = free_port()
    env = {
        **os.environ,
        "SSE_MONITOR_DB": str(path),
        "KATO_URL": f"http://127.0.0.1:{free_port()}",  # nobody: gaps, no load
        "SSE_MONITOR_CONTAINER_STATS": "false",
        "SSE_MONITOR_LOG_LEVEL": "warning",
    }
    command = [sys.executable, "-m", "sse_monitor", "serve", "--port", str(port)]
    server = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        base = f"http://127.0.0.1:{port}"
        with httpx.Client(base_url=base, timeout=60) as client:
            wait_until_up(client, server)
            now = time.time()
            asks = {
                "24 h, every series": {"since": now - DAY},
                "24 h, one series": {"since": now - DAY, "series": "kato.cpu_percent"},
                "7 d, every series": {"since": now - 7 * DAY},
                "7 d, one series": {"since": now - 7 * DAY, "series": "kato.cpu_percent"},
            }
            times: dict[str, list[float]] = {name: [] for name in [*asks, "healthz"]}
            shapes: dict[str, Any] = {}
            for _ in range(requests):
                for name, params in asks.items():
                    started = time.perf_counter()
                    answer = client.get("/api/history", params=params)
                    times[name].append(time.perf_counter() - started)
                    answer.raise_for_status()
                    body = answer.json()
                    shapes[name] = {
                        "step": body["step"],
                        "series": len(body["series"]),
                        "points": sum(len(points) for points in body["series"].values()),
                        "bytes": len(answer.content),
                    }
                    started = time.perf_counter()
                    client.get("/healthz").raise_for_status()
                    times["healthz"].append(time.perf_counter() - started)
    finally:
        server.terminate()
        server.wait(timeout=30)
    return {
        "requests": requests,
        "ms": {name: summary(values, 1e3) for name, values in times.items()},
        "shapes": shapes,
    }


def wait_until_up(client: httpx.Client, server: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"the gateway exited:\n{server.stderr.read().decode()[-3000:]}")
        try:
            if client.get("/healthz").status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise RuntimeError("the gateway did not answer /healthz within 60 s")


def report(
    costs: list[dict[str, Any]],
    disk: dict[str, Any],
    answers: dict[str, Any],
    command: str,
    loadavg: float,
) -> str:
    lines = [
        "# What the charts' history costs",
        "",
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, `{command}`, {os.cpu_count()} CPUs, Python "
        f"{platform.python_version()}, SQLite {__import__('sqlite3').sqlite_version}, "
        f"1-minute load average before: {loadavg:.2f}.",
        "",
        "## Per tick (µs; the loop's time for the tick's two appends, alternating)",
        "",
        "| containers | series | ticks | log alone: median / p99 | log and history: median / p99 "
        "| added on the loop (median) | store thread CPU: median / p99 / mean |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for cost in costs:
        alone, both = cost["loop_us"]["log alone"], cost["loop_us"]["log and history"]
        thread = cost["thread_us"]
        lines.append(
            f"| {cost['containers']} | {cost['series']} | {cost['ticks']} "
            f"| {alone['median']:.1f} / {alone['p99']:.1f} | {both['median']:.1f} / "
            f"{both['p99']:.1f} | {both['median'] - alone['median']:+.1f} "
            f"({both['median'] / alone['median']:.2f}x) | {thread['median']:.0f} / "
            f"{thread['p99']:.0f} / {thread['mean']:.0f} |"
        )
    lines += [
        "",
        f"## Storage (default set: {disk['series']} series; a day of ticks; "
        f"{disk['bytes_per_row']:.0f} bytes per row after VACUUM)",
        "",
        "| tier | rows after a day | rows per series per day | size at its retention |",
        "|---|---:|---:|---:|",
    ]
    for tier in disk["tiers"]:
        lines.append(
            f"| {tier['tier']} | {tier['rows_now']:,} | {tier['rows_per_series_per_day']:,.0f} "
            f"| {tier['bytes_at_retention'] / 1e6:.2f} MB |"
        )
    first_day = sum(min(t["bytes_per_day"], t["bytes_at_retention"]) for t in disk["tiers"])
    total = sum(tier["bytes_at_retention"] for tier in disk["tiers"])
    lines += [
        "",
        f"The first day: {first_day / 1e6:.1f} MB (the hour of ticks, the day of 1-minute "
        f"buckets, a day of 15-minute buckets); each further day adds "
        f"{disk['tiers'][-1]['bytes_per_day'] / 1e6:.2f} MB (15-minute buckets) up to "
        f"{total / 1e6:.1f} MB once 30 days are kept. Markers (session changes, alert "
        "transitions) come on top, one row each.",
        "",
        f"## GET /api/history (ms over loopback, {answers['requests']} requests each, "
        "alternating with GET /healthz)",
        "",
        "| ask | step (s) | series | points | bytes | median | p99 | median / healthz |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    healthz = answers["ms"]["healthz"]["median"]
    for name, shape in answers["shapes"].items():
        ms = answers["ms"][name]
        lines.append(
            f"| {name} | {shape['step']:g} | {shape['series']} | {shape['points']:,} "
            f"| {shape['bytes']:,} | {ms['median']:.1f} | {ms['p99']:.1f} "
            f"| {ms['median'] / healthz:.1f}x |"
        )
    lines.append(
        f"| GET /healthz (reference) | | | | | {healthz:.2f} | "
        f"{answers['ms']['healthz']['p99']:.2f} | 1.0x |"
    )
    return "\n".join(lines) + "\n"


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--containers", default="4,50", help="comma-separated (default 4,50)")
    parser.add_argument("--ticks", type=int, default=1200, help="per count (default 1200)")
    parser.add_argument("--requests", type=int, default=30, help="per ask (default 30)")
    parser.add_argument("--out", type=Path, default=RESULTS / "history-cost.md")
    options = parser.parse_args()
    loadavg = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="history-bench-") as temporary:
        folder = Path(temporary)
        costs = [
            await tick_cost(int(count), options.ticks, folder)
            for count in options.containers.split(",")
        ]
        day = folder / "day.db"
        await seed(day, time.time(), days=1, fine_hours=24)
        disk = storage(day)
        week = folder / "week.db"
        await seed(week, time.time(), days=7, fine_hours=24)
        answers = answer_times(week, options.requests)
    text = report(costs, disk, answers, " ".join(["python", *sys.argv]), loadavg)
    print(text)
    options.out.parent.mkdir(parents=True, exist_ok=True)
    options.out.write_text(text)


if __name__ == "__main__":
    asyncio.run(main())
