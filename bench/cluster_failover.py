"""Failover time: from `kill -9` of the producer to the first event of the next one.

A cluster of `nodes` nodes (no nginx), polling every `interval` s with a lease of `ttl` s. Each
round: find the producer, hold one `metrics` stream on every other node (load_client.py's
connection), wait a random part of a tick (so the kill falls at any phase of the tick and of the
lease's renewal), kill -9 the producer, and wait for the first `metrics` event published after
the kill (its `timestamp`, the poll's time, is past the kill: only the new producer can have
made it) to reach any of those streams. The killed node is then started again, as a new node,
for the next round. Also read: when the new producer logged `leader.elected`, and the silence
the streams saw (the last event before the kill to the first after it).
"""

from __future__ import annotations

import asyncio
import random
import statistics
import time
from collections import Counter
from pathlib import Path
from typing import Any

from cluster_nodes import Cluster, ClusterNode, bench_env, logged_at, producer_of
from load_client import Shared, SSEConnection, connect, request_bytes

ROUND_TIMEOUT_TICKS = 4  # past the lease, how many ticks a round waits for the next producer


def failover_env(ttl: float, interval: float) -> dict[str, str]:
    # Every Redis call must end within half the lease (the settings check it): 2 s by default.
    timeout = min(2.0, ttl / 4)
    return bench_env(
        POLL_INTERVAL=f"{interval:g}",
        LEADER_TTL=f"{ttl:g}s",
        REDIS_TIMEOUT=f"{timeout:g}s",
        LOG_LEVEL="info",  # leader.elected is an info line
    )


def run_failovers(
    root: Path, ttl: float, interval: float, rounds: int, nodes: int, seed: int
) -> list[dict[str, Any]]:
    """`rounds` failovers of one cluster, each as `one_failover` measures it."""
    rng = random.Random(seed)
    with Cluster(root, nodes=nodes, env=failover_env(ttl, interval), nginx=False) as cluster:
        samples = []
        for number in range(1, rounds + 1):
            sample = asyncio.run(one_failover(cluster.nodes, interval, ttl, rng))
            sample["round"] = number
            samples.append(sample)
            print(f"[failover] ttl {ttl:g} s, round {number}: {sample}", flush=True)
        return samples


async def one_failover(
    nodes: list[ClusterNode], interval: float, ttl: float, rng: random.Random
) -> dict[str, Any]:
    producer = await asyncio.to_thread(producer_of, nodes)
    others = [node for node in nodes if node is not producer]
    shared = Shared()
    errors: Counter[str] = Counter()
    watchers = []
    for index, node in enumerate(others):
        request = request_bytes(f"{node.url}/events?topics=metrics")
        conn = await connect(index, "127.0.0.1", node.port, request, shared, errors)
        if conn is None:
            raise RuntimeError(f"no stream on {node.name}: {dict(errors)}")
        watchers.append(conn)
    await asyncio.sleep(interval + rng.uniform(0, interval))  # a live event first, any phase
    killed_at = time.time()
    producer.kill()
    try:
        async with asyncio.timeout(ttl + ROUND_TIMEOUT_TICKS * interval):
            first = await first_event_after(watchers, shared, killed_at)
    finally:
        for conn in watchers:
            conn.close()
    last_before = max(
        (at for conn in watchers for eid, at in conn.received if shared.published[eid] < killed_at),
        default=None,
    )
    elected = [
        (logged_at(line), node)
        for node in others
        for line in node.lines()
        if line.get("event") == "leader.elected" and logged_at(line) > killed_at
    ]
    elected_at, new_producer = min(elected, key=lambda pair: pair[0])
    await asyncio.to_thread(producer.restart)  # a new node on its port, for the next round
    return {
        "killed": producer.name,
        "new_producer": new_producer.name,
        "elected_s": round(elected_at - killed_at, 3),
        "first_event_s": round(first - killed_at, 3),
        "silence_s": round(first - last_before, 3) if last_before is not None else None,
    }


async def first_event_after(watchers: list[SSEConnection], shared: Shared, moment: float) -> float:
    """The arrival of the first `metrics` event published after `moment`, on any stream."""
    while True:
        arrivals = [
            at
            for conn in watchers
            for eid, at in conn.received
            if shared.published.get(eid, 0.0) > moment
        ]
        if arrivals:
            return min(arrivals)
        await asyncio.sleep(0.01)


def failover_table(results: dict[float, list[dict[str, Any]]], interval: float) -> str:
    """One row per lease: the medians and ranges of the rounds, against lease + one tick."""
    lines = [
        "| lease (s) | tick (s) | rounds | kill → first event, median (s) | min - max (s) | "
        "kill → `leader.elected`, median (s) | silence on the streams, median (s) | "
        "lease + one tick (s) | every round within it |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for ttl, samples in results.items():
        first = [s["first_event_s"] for s in samples]
        elected = [s["elected_s"] for s in samples]
        silence = [s["silence_s"] for s in samples if s["silence_s"] is not None]
        bound = ttl + interval
        lines.append(
            f"| {ttl:g} | {interval:g} | {len(samples)} | {statistics.median(first):.2f} | "
            f"{min(first):.2f} - {max(first):.2f} | {statistics.median(elected):.2f} | "
            f"{statistics.median(silence):.2f} | {bound:g} | "
            f"{'yes' if max(first) <= bound else 'NO'} |"
        )
    return "\n".join(lines)


def rounds_table(results: dict[float, list[dict[str, Any]]]) -> str:
    lines = [
        "| lease (s) | round | kill → `leader.elected` (s) | kill → first event (s) | "
        "silence on the streams (s) |",
        "|---:|---:|---:|---:|---:|",
    ]
    for ttl, samples in results.items():
        for s in samples:
            lines.append(
                f"| {ttl:g} | {s['round']} | {s['elected_s']:.2f} | {s['first_event_s']:.2f} | "
                f"{s['silence_s'] if s['silence_s'] is not None else '-'} |"
            )
    return "\n".join(lines)
