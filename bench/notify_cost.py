"""What notifications cost the tick, and how soon they reach a receiver.

Two gateway processes side by side on one simulated KATO, each polling every `--interval`
seconds with the same `--rules` rules on `kato.status == "degraded"` (each fires at the first
poll where it holds and resolves at the first where it does not):

- `notifying`: three receivers routed every alert with group_wait 0. One answers at once, one
  holds every request 30 s (its timeout is 10 s: every attempt times out, and is retried), one
  refuses connections (nothing listens: retried).
- `reference`: the same rules and no receiver.

KATO flips between degraded and healthy every `--flip` seconds for `--rounds` rounds: each
flip is `--rules` transitions on each gateway, each one a notification to three receivers.

1. The tick, on each gateway's own stream: the gaps between its `metrics` events (median, p99,
   max) side by side; sending (to a slow, a dead and a fast receiver) must not stretch them.
2. Delivery: from the moment the bench's stream client has the first `alert` event of a flip
   to the moment the fast receiver has the message naming it (the same process, one clock).
3. The fast receiver's count: every transition once.

    python bench/notify_cost.py                 # about 2 minutes
    python bench/notify_cost.py --rounds 4      # a quick check that it works
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(1, str(ROOT))  # tests.support, and this checkout's sse_monitor

from tests.support.alert_rules import status_rule  # noqa: E402
from tests.support.gateway import GatewayProcess  # noqa: E402
from tests.support.kato import Kato, running_kato  # noqa: E402
from tests.support.notify_receiver import Answer, RecordingReceiver  # noqa: E402
from tests.support.servers import ThreadedServer  # noqa: E402
from tests.support.sse_client import SSEStream  # noqa: E402

RESULTS = BENCH / "results"


def rules_text(count: int) -> str:
    return "".join(
        status_rule(f"degraded_{n}", "degraded", "warning", message=f"degraded {n}")
        for n in range(count)
    )


def receivers_text(urls: dict[str, str]) -> str:
    text = ""
    for name, url in urls.items():
        text += f'[[receiver]]\nname = "{name}"\nkind = "webhook"\nurl = "{url}"\n'
        text += 'timeout = "10s"\n' if name == "slow" else ""
        text += f'[[route]]\nreceiver = "{name}"\ngroup_wait = "0s"\n'
    return text


@contextmanager
def receivers() -> Iterator[tuple[RecordingReceiver, dict[str, str]]]:
    """The fast receiver, and the three URLs: fast, slow (30 s an answer), down."""
    fast, slow = RecordingReceiver(), RecordingReceiver()
    slow.otherwise = 200
    slow.script = [Answer(200, delay=30.0) for _ in range(10_000)]
    with (
        ThreadedServer(fast.app) as up,
        ThreadedServer(slow.app, timeout_graceful_shutdown=1, log_level="critical") as held,
    ):
        gone = ThreadedServer(RecordingReceiver().app).start()
        gone.stop()
        yield (
            fast,
            {
                "fast": f"{up.url}/hook",
                "slow": f"{held.url}/hook",
                "down": f"{gone.url}/hook",
            },
        )


def gaps(stream: SSEStream) -> list[float]:
    arrivals = [event.arrived for event in stream.of("metrics")]
    return [later - earlier for earlier, later in itertools.pairwise(arrivals)]


def received(fast: RecordingReceiver) -> list[tuple[float, tuple[str, str]]]:
    """Each transition the fast receiver got: when, and (alert id, transition)."""
    return [
        (r.at, (t["alert"]["id"], t["transition"]))
        for r in list(fast.received)
        for t in json.loads(r.body)["transitions"]
    ]


async def received_at(fast: RecordingReceiver, key: tuple[str, str]) -> float:
    """When the fast receiver got the message naming this transition (waiting for it)."""
    deadline = time.monotonic() + 30
    while True:
        found = [at for at, pair in received(fast) if pair == key]
        if found:
            return found[0]
        if time.monotonic() > deadline:
            raise TimeoutError(f"{key} never reached the fast receiver")
        await asyncio.sleep(0.005)


def summary(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    return {
        "count": len(ordered),
        "median": statistics.median(ordered),
        "p99": ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))],
        "max": ordered[-1],
    }


async def run(
    kato: Kato,
    notifying: GatewayProcess,
    reference: GatewayProcess,
    fast: RecordingReceiver,
    args: argparse.Namespace,
) -> dict[str, object]:
    latencies: list[float] = []
    async with (
        SSEStream(f"{notifying.url}/events") as mine,
        SSEStream(f"{reference.url}/events") as theirs,
    ):
        await mine.wait_for_event("metrics")
        await theirs.wait_for_event("metrics")
        first_tick = len(mine.of("metrics")), len(theirs.of("metrics"))
        for round_number in range(args.rounds):
            mode = "degraded" if round_number % 2 == 0 else "ok"
            kind = "fired" if mode == "degraded" else "resolved"
            seen = len(mine.of("alert"))
            await kato.fault("health", mode)
            await mine.wait_for(
                lambda _, seen=seen: len(mine.of("alert")) >= seen + args.rules, timeout=30
            )
            first = next(e for e in mine.of("alert")[seen:] if e.json()["transition"] == kind)
            key = (first.json()["id"], kind)
            arrived = await received_at(fast, key)
            latencies.append(arrived - first.arrived)
            await asyncio.sleep(args.flip)
        mine_gaps = gaps(mine)[first_tick[0] :]
        theirs_gaps = gaps(theirs)[first_tick[1] :]
    transitions = [pair for _, pair in received(fast)]
    return {
        "tick_gaps_notifying": summary(mine_gaps),
        "tick_gaps_reference": summary(theirs_gaps),
        "delivery_latency": summary(latencies),
        "fast_receiver": {
            "messages": fast.count(),
            "transitions": len(transitions),
            "distinct": len(set(transitions)),
            "expected": args.rules * args.rounds,
        },
    }


def report(result: dict[str, object], args: argparse.Namespace) -> str:
    mine, theirs = result["tick_gaps_notifying"], result["tick_gaps_reference"]
    latency, fast = result["delivery_latency"], result["fast_receiver"]
    assert isinstance(mine, dict) and isinstance(theirs, dict)
    assert isinstance(latency, dict) and isinstance(fast, dict)
    lines = [
        f"# Notifications' cost ({time.strftime('%Y-%m-%d')}, {platform.node()}, "
        f"python {platform.python_version()})",
        "",
        f"`python bench/notify_cost.py --rounds {args.rounds} --rules {args.rules} "
        f"--interval {args.interval} --flip {args.flip}`",
        "",
        "| Gaps between ticks (s) | notifying | reference | ratio |",
        "|---|---|---|---|",
    ]
    for key in ("median", "p99", "max"):
        ratio = mine[key] / theirs[key] if theirs[key] else float("nan")
        lines.append(f"| {key} | {mine[key]:.3f} | {theirs[key]:.3f} | {ratio:.2f} |")
    lines += [
        f"| ticks | {mine['count']} | {theirs['count']} | |",
        "",
        f"Delivery to the fast receiver, from the `alert` event on the stream: median "
        f"{latency['median'] * 1000:.1f} ms, p99 {latency['p99'] * 1000:.1f} ms, max "
        f"{latency['max'] * 1000:.1f} ms over {latency['count']} flips of {args.rules} alerts.",
        "",
        f"Fast receiver: {fast['messages']} messages naming {fast['transitions']} transitions "
        f"({fast['distinct']} distinct; {fast['expected']} expected).",
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=20, help="KATO flips (default 20)")
    parser.add_argument("--rules", type=int, default=50, help="alerts per flip (default 50)")
    parser.add_argument("--interval", type=float, default=0.5, help="poll interval (s)")
    parser.add_argument("--flip", type=float, default=3.0, help="seconds between flips")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder, ExitStack() as stack:
        kato = stack.enter_context(running_kato())
        fast, urls = stack.enter_context(receivers())
        rules = rules_text(args.rules)
        env = {"SSE_MONITOR_POLL_INTERVAL": str(args.interval), "SSE_MONITOR_LOG_LEVEL": "warning"}
        with_receivers = Path(folder) / "notifying.toml"
        with_receivers.write_text(rules + receivers_text(urls))
        without = Path(folder) / "reference.toml"
        without.write_text(rules)
        notifying = stack.enter_context(
            GatewayProcess(kato.url, env={**env, "SSE_MONITOR_ALERT_RULES": str(with_receivers)})
        )
        reference = stack.enter_context(
            GatewayProcess(kato.url, env={**env, "SSE_MONITOR_ALERT_RULES": str(without)})
        )
        result = asyncio.run(run(kato, notifying, reference, fast, args))
    text = report(result, args)
    print(text)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "notify-cost.md").write_text(text)
    (RESULTS / "notify-cost.json").write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
