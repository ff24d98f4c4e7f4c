"""What publishing one event costs, with and without topics, in-process (no sockets).

The same N subscribers, and the same `alert` event published again and again: once with every
subscriber on every topic (the cost before topics existed: every client touched), once with
all but one on `metrics` only (the alert touches one). Each run is timed side by side, and the
medians and their ratio are printed.

    python bench/topic_publish.py --subscribers 10000 --events 200 --repeat 5
"""

from __future__ import annotations

import argparse
import statistics
import time

from sse_monitor.bus.event import Event
from sse_monitor.bus.fanout import FanOut
from sse_monitor.bus.memory import MemoryLog

ALERT = Event("alert", {"id": "3f9a0c1d2e4b5a69", "state": "firing", "message": "x" * 200})


def publish_seconds(subscribers: int, events: int, *, topics: tuple[str, ...] | None) -> float:
    log = MemoryLog(history_size=100)
    fanout = FanOut(client_buffer=events + 10)
    log.follow(fanout.deliver)
    for _ in range(subscribers - 1):
        if topics is None:
            fanout.subscribe()
        else:
            fanout.subscribe(topics=topics)
    fanout.subscribe(topics=("alerts",))  # one client that does want alerts
    started = time.perf_counter()
    for _ in range(events):
        log.append(ALERT)
    return (time.perf_counter() - started) / events


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subscribers", type=int, default=10_000)
    parser.add_argument("--events", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    everyone, metrics_only = [], []
    for _ in range(args.repeat):  # interleaved, so both see the same machine
        everyone.append(publish_seconds(args.subscribers, args.events, topics=None))
        metrics_only.append(publish_seconds(args.subscribers, args.events, topics=("metrics",)))
    all_topics, one_topic = statistics.median(everyone), statistics.median(metrics_only)
    print(
        f"{args.subscribers} subscribers, one `alert` published {args.events} times, "
        f"median of {args.repeat}:"
    )
    print(f"  every subscriber on every topic : {all_topics * 1e6:10.1f} µs per publish")
    print(f"  all but one on `metrics` only   : {one_topic * 1e6:10.1f} µs per publish")
    print(f"  ratio                           : {all_topics / one_topic:10.0f}x")


if __name__ == "__main__":
    main()
