"""Cluster mode's benchmarks (issue 14), one subcommand each; every table is printed and saved
under bench/results/ (the .md, and a .json with every figure).

    python bench/cluster.py log-cost   # the Redis log against the in-memory one, 1,000 and 5,000
    python bench/cluster.py scale      # serve --workers 2 against nchan with 2 workers, 10k, 20k
    python bench/cluster.py failover   # kill -9 of the producer to the next one's first event
    python bench/cluster.py storm      # kill -9 of a node holding 5,000 clients behind nginx

`log-cost` and `scale` are runs of bench/fanout.py (same load client, same run, servers taking
turns), with the issue's targets checked on its medians; options they do not know are passed
on to it (--duration, --grace, --per-process, ...). `failover` and `storm` start the cluster of
the tests (tests/support/cluster.py): redis-server, a simulated KATO, gateway nodes.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import tempfile
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(1, str(ROOT))  # tests.support, and this checkout's sse_monitor
# The gateway nodes run this checkout too, and log their GC pauses when a storm asks
# (bench/gc_site/sitecustomize.py, idle otherwise).
os.environ["PYTHONPATH"] = os.pathsep.join([str(ROOT), str(BENCH / "gc_site")])

import fanout  # noqa: E402
from cluster_failover import failover_table, rounds_table, run_failovers  # noqa: E402
from cluster_storm import StormSettings, commands_table, run_storm, storm_table  # noqa: E402

RESULTS = BENCH / "results"
LOG_COST_TARGETS = {"latency_p50_ms": 2.0, "latency_p99_ms": 10.0}  # ms Redis may add
SCALE_TARGETS = {"latency_p99_ms": 1.5, "kib_per_client": 2.0}  # at most this x nchan's


def numbers(text: str) -> list[int]:
    return [int(n) for n in text.split(",") if n.strip()]


def nginx_change(text: str) -> tuple[str, str]:
    old, arrow, new = text.partition("=>")
    if not arrow or not old:
        raise argparse.ArgumentTypeError("OLD=>NEW")
    return old, new


def seconds(text: str) -> list[float]:
    return [float(n) for n in text.split(",") if n.strip()]


# log-cost and scale: runs of fanout.py, then the targets


def fanout_runs(argv: list[str], out: Path) -> tuple[int, list[fanout.Run]]:
    status = fanout.main([*argv, "--out", str(out)])
    data = json.loads(out.with_suffix(".json").read_text())
    runs = [fanout.Run(r["server"], r["clients"], r["run"], r) for r in data["runs"]]
    return status, [r for r in runs if "error" not in r.summary]


def median(runs: list[fanout.Run], server: str, n: int, key: str) -> float | None:
    return fanout.median_of([r for r in runs if r.server == server and r.clients == n], key)


def log_cost(args: argparse.Namespace, passed_on: list[str]) -> tuple[int, str]:
    argv = ["--servers", "redis,gateway", "--clients", args.clients, "--repeat", str(args.repeat)]
    status, runs = fanout_runs([*argv, *passed_on], args.out)
    lines = [
        "| N | figure | Redis log | memory log | Redis adds (ms) | target (ms) | met |",
        "|---:|---|---:|---:|---:|---:|---|",
    ]
    for n in numbers(args.clients):
        for key, label in (
            ("latency_p50_ms", "publish to arrival p50"),
            ("latency_p99_ms", "publish to arrival p99"),
            ("latency_first_p50_ms", "publish to the first client, median"),
        ):
            redis, memory = median(runs, "redis", n, key), median(runs, "gateway", n, key)
            if redis is None or memory is None:
                continue
            target = LOG_COST_TARGETS.get(key)
            met = "-" if target is None else ("yes" if redis - memory <= target else "NO")
            lines.append(
                f"| {n:,} | {label} | {redis:.2f} | {memory:.2f} | {redis - memory:+.2f} | "
                f"{target if target is not None else '-'} | {met} |"
            )
    return status, "## The log's cost: medians, the issue's targets\n\n" + "\n".join(lines)


def scale(args: argparse.Namespace, passed_on: list[str]) -> tuple[int, str]:
    argv = ["--servers", "workers,nchan", "--clients", args.clients, "--repeat", str(args.repeat)]
    argv += ["--workers", str(args.workers), "--nchan-workers", str(args.nchan_workers)]
    status, runs = fanout_runs([*argv, *passed_on], args.out)
    lines = [
        "| N | figure | workers | nchan | workers/nchan | target | met |",
        "|---:|---|---:|---:|---:|---|---|",
    ]
    for n in numbers(args.clients):
        every = [
            r.summary["delivery_percent"] for r in runs if r.server == "workers" and r.clients == n
        ]
        met = "yes" if every and min(every) == 100 else "NO"
        lines.append(
            f"| {n:,} | every client got every event (%), lowest run | "
            f"{min(every, default=0):.3f} | - | - | 100 | {met} |"
        )
        for key, label in (
            ("latency_p99_ms", "fan-out latency p99 (ms)"),
            ("kib_per_client", "memory per client (KiB)"),
        ):
            ours, nchan = median(runs, "workers", n, key), median(runs, "nchan", n, key)
            if ours is None or not nchan:
                continue
            ratio, most = ours / nchan, SCALE_TARGETS[key]
            lines.append(
                f"| {n:,} | {label} | {ours:.2f} | {nchan:.2f} | {ratio:.2f} | ≤ {most}x | "
                f"{'yes' if ratio <= most else 'NO'} |"
            )
    return status, "## Scale: medians, the issue's targets\n\n" + "\n".join(lines)


# failover and storm: a cluster of the bench's own


def failover(args: argparse.Namespace, workdir: Path) -> tuple[dict[str, Any], str]:
    results = {
        ttl: run_failovers(
            workdir / f"ttl-{ttl:g}", ttl, args.interval, args.rounds, args.nodes, args.seed
        )
        for ttl in seconds(args.ttls)
    }
    text = "\n\n".join(
        [
            f"{args.nodes} nodes, polling every {args.interval:g} s; each round kills the "
            "producer at a random moment of a tick and times the first `metrics` event "
            "published after the kill, on a stream held on every other node.",
            failover_table(results, args.interval),
            "Every round:",
            rounds_table(results),
        ]
    )
    return {str(ttl): samples for ttl, samples in results.items()}, text


def storm(args: argparse.Namespace, workdir: Path) -> tuple[dict[str, Any], str]:
    children = fanout.Children(workdir)
    runs = []
    try:
        for clients in numbers(args.clients):
            settings = StormSettings(
                clients=clients,
                nodes=args.nodes,
                victim=args.victim,
                interval=args.interval,
                per_process=args.per_process,
                nginx_workers=args.nginx_workers,
                sessions_before=args.sessions_before,
                sessions_during=args.sessions_during,
                session_every=args.session_every,
                jitter=args.jitter,
                nginx_changes=tuple(args.nginx_change),
            )
            runs.append(run_storm(workdir / f"storm-{clients}", children, settings))
    finally:
        children.stop_all()
    text = "\n\n".join(
        [
            f"{args.nodes} nodes behind nginx (deploy/nginx.conf, {args.nginx_workers} worker "
            f"processes), polling every {args.interval:g} s; {args.sessions_before} sessions "
            f"created before the kill, {args.sessions_during} during the storm (one every "
            f"{args.session_every:g} s from the kill), the same again in the quiet window, "
            "one more at the end.",
            *experiments(args),
            storm_table(runs),
            "Redis commands (INFO commandstats), from the kill until every client is back "
            "(+1 s), and in a quiet window as long afterwards (the same session changes, no "
            "storm):",
            commands_table(runs),
        ]
    )
    return {"runs": runs}, text


def experiments(args: argparse.Namespace) -> list[str]:
    """What a storm changed from the shipped setup, said above its table."""
    said = [f"`{old}` → `{new}`" for old, new in args.nginx_change]
    if args.jitter:
        said.append(f"each client waits `retry:` plus up to {args.jitter:g} s at random")
    return [f"**Experiment**, not the shipped setup: {'; '.join(said)}."] if said else []


# Reports


def header(title: str, started: datetime, command: str, loadavg: tuple[float, ...]) -> str:
    info = fanout.machine()
    return "\n".join(
        [
            f"# {title}",
            "",
            f"- date: {started.strftime('%Y-%m-%d %H:%M UTC')}",
            f"- machine: {info['nproc']} CPUs ({info['cpu'] or 'unknown'}), "
            f"{info['memory_gib']} GiB, Python {info['python']}, {info['platform']}",
            f"- command: `{command}`",
            f"- 1-minute load average before: {loadavg[0]:.2f} (other work on this shared "
            "machine shows here)",
            "",
        ]
    )


def parse_args(argv: list[str] | None) -> tuple[argparse.Namespace, list[str]]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)

    cost = commands.add_parser("log-cost", help="Redis log against in-memory log (fanout.py)")
    cost.add_argument("--clients", default="1000,5000")
    cost.add_argument("--repeat", type=int, default=3)
    cost.add_argument("--out", type=Path, default=RESULTS / "cluster-log-cost.md")

    sc = commands.add_parser("scale", help="serve --workers against nchan (fanout.py)")
    sc.add_argument("--clients", default="10000,20000")
    sc.add_argument("--repeat", type=int, default=2)
    sc.add_argument("--workers", type=int, default=2)
    sc.add_argument("--nchan-workers", type=int, default=2)
    sc.add_argument("--out", type=Path, default=RESULTS / "cluster-scale.md")

    fo = commands.add_parser("failover", help="kill -9 of the producer to the next one's event")
    fo.add_argument("--ttls", default="5,2", help="leases to measure, in s (default 5,2)")
    fo.add_argument("--interval", type=float, default=3.0, help="poll interval (default 3 s)")
    fo.add_argument("--rounds", type=int, default=5)
    fo.add_argument("--nodes", type=int, default=3)
    fo.add_argument("--seed", type=int, default=14)
    fo.add_argument("--out", type=Path, default=RESULTS / "cluster-failover.md")

    st = commands.add_parser("storm", help="kill -9 of a node with thousands of clients")
    st.add_argument("--clients", default="3000,15000", help="clients in all, one storm each")
    st.add_argument("--nodes", type=int, default=3)
    st.add_argument("--victim", choices=("edge", "producer"), default="edge")
    st.add_argument("--interval", type=float, default=3.0, help="poll interval (default 3 s)")
    st.add_argument("--per-process", type=int, default=5000, help="clients per load process")
    st.add_argument("--nginx-workers", type=int, default=4)
    st.add_argument("--sessions-before", type=int, default=3)
    st.add_argument("--sessions-during", type=int, default=8)
    st.add_argument("--session-every", type=float, default=0.5)
    st.add_argument(
        "--jitter", type=float, default=0.0, help="s each client adds at random to retry:"
    )
    st.add_argument(
        "--nginx-change",
        type=nginx_change,
        action="append",
        default=[],
        metavar="OLD=>NEW",
        help="an experiment: replace OLD by NEW in deploy/nginx.conf as the storm runs it",
    )
    st.add_argument("--out", type=Path, default=RESULTS / "cluster-storm.md")
    return parser.parse_known_args(argv)


RUNNERS: dict[str, tuple[str, Callable[..., tuple[Any, str]]]] = {
    "failover": ("Failover: kill -9 of the producer to the next one's first event", failover),
    "storm": ("Reconnect storm: kill -9 of a node behind nginx", storm),
}


def main(argv: list[str] | None = None) -> int:
    args, passed_on = parse_args(argv)
    command = shlex.join(["python", "bench/cluster.py", *(argv or sys.argv[1:])])
    started, loadavg = datetime.now(UTC), os.getloadavg()
    if args.command in ("log-cost", "scale"):
        status, text = (log_cost if args.command == "log-cost" else scale)(args, passed_on)
        text = f"\n{text}\n\n(`{command}`)\n"
        print(text)
        with args.out.open("a") as out:
            out.write(text)
        return status
    if passed_on:
        print(f"unknown options: {' '.join(passed_on)}", file=sys.stderr)
        return 2
    title, runner = RUNNERS[args.command]
    with (
        tempfile.TemporaryDirectory(prefix=f"cluster-{args.command}-") as tmp,
        fanout.sigterm_as_interrupt(),
    ):
        try:
            data, text = runner(args, Path(tmp))
        except KeyboardInterrupt:
            fanout.log("interrupted: stopping every process started")
            return 130
    report = header(title, started, command, loadavg) + "\n" + text + "\n"
    print(report)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(report)
    meta = {"date": started.isoformat(), "command": command, "machine": fanout.machine()}
    args.out.with_suffix(".json").write_text(json.dumps({**meta, **data}, indent=2) + "\n")
    fanout.log(f"wrote {args.out} and {args.out.with_suffix('.json')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
