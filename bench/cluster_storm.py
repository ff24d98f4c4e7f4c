"""A reconnect storm: kill -9 a node holding thousands of clients behind nginx; they come back.

`nodes` nodes behind nginx (deploy/nginx.conf, least_conn), and `clients` storm_client.py
clients on nginx's /events, so that each node holds about clients / nodes of them. Sessions are
created in the simulated KATO before the kill and while the clients come back. The node killed
is an edge (or, with `victim="producer"`, the producer, which adds a failover). Measured:

- each cut client's resume (its new connection's first frame) after the kill, and the attempts
  it took: an EventSource waits the stream's `retry:` and comes back through nginx;
- Redis's INFO commandstats from the kill until every client is back (+1 s), and over a quiet
  window of the same length afterwards with the same session changes: a node answers a replay
  from its own copy of the log, so the storm should add nothing there;
- for every client, the `session_event`s it got over all its connections: their counts must
  chain (each one's previous_count is the last one's current_count) from the count before the
  first session to KATO's count at the end, with no event twice and no `reset`.
"""

from __future__ import annotations

import json
import re
import statistics
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import redis
from cluster_nodes import Cluster, ClusterNode, StreamsNginx, bench_env, producer_of, readyz
from fanout import BENCH, Child, Children, log, percentile, read_ready_lines, split

SESSION_TTL_SECONDS = 3600  # no session expires during a run
STORM_TIMEOUT_SECONDS = 90.0  # the survivors should hold every stream by then


@dataclass
class StormSettings:
    clients: int
    nodes: int
    victim: str  # "edge" or "producer"
    interval: float  # the nodes' poll interval
    per_process: int
    nginx_workers: int
    sessions_before: int
    sessions_during: int
    session_every: float  # seconds between the sessions created during the storm
    jitter: float = 0.0  # seconds a client adds at random to `retry:` (an experiment)
    nginx_changes: tuple[tuple[str, str], ...] = ()  # to deploy/nginx.conf (experiments)


def run_storm(root: Path, children: Children, settings: StormSettings) -> dict[str, Any]:
    """One storm on a fresh cluster; every figure of it."""
    gc_folder = root / "gc"  # each node's collections (bench/gc_site/sitecustomize.py)
    gc_folder.mkdir(parents=True)
    env = bench_env(POLL_INTERVAL=f"{settings.interval:g}", LOG_LEVEL="warning")
    env["SSE_BENCH_GC_TRACE"] = str(gc_folder)
    with (
        Cluster(root, nodes=settings.nodes, env=env, nginx=False) as cluster,
        StreamsNginx(
            [n.port for n in cluster.nodes], settings.nginx_workers, settings.nginx_changes
        ) as nginx,
    ):
        assert cluster.kato is not None
        kato = cluster.kato.url
        loaders, outs = [], []
        for first, count in split(settings.clients, settings.per_process):
            name = f"storm-{settings.clients}-{first}"
            outs.append(children.workdir / f"{name}.json")
            argv = [sys.executable, str(BENCH / "storm_client.py"), "--url", f"{nginx.url}/events"]
            argv += ["--clients", str(count), "--first-index", str(first), "--out", str(outs[-1])]
            argv += ["--jitter", f"{settings.jitter:g}"]
            loaders.append(children.start(name, argv, pipes=True))
        ready = read_ready_lines(loaders, 120 + settings.clients / 20)
        connected = sum(r["connected"] for r in ready)
        if wait_streams(cluster.nodes, connected, timeout=60 + connected / 50) is None:
            raise TimeoutError("the nodes do not hold every stream the load clients opened")
        count_before = cluster.kato.state.active_count()
        create_sessions(kato, settings.sessions_before, settings.interval)
        time.sleep(2 * settings.interval)  # announced to every client

        producer = producer_of(cluster.nodes)
        edges = [n for n in cluster.nodes if n is not producer]
        victim = producer if settings.victim == "producer" else max(edges, key=streams_of)
        victim_streams = streams_of(victim)
        survivors = [n for n in cluster.nodes if n is not victim]
        counter = redis.Redis.from_url(cluster.redis.url)

        log(f"storm: kill -9 {victim.name} holding {victim_streams} of {connected} streams")
        storm_before, tcp_before = commandstats(counter), tcp_counters()
        killed_at = time.time()
        victim.kill()
        during = sessions_in_background(kato, settings.sessions_during, settings.session_every)
        readyz_slowest: dict[str, float] = {}
        back_at = wait_streams(survivors, connected, STORM_TIMEOUT_SECONDS, readyz_slowest)
        time.sleep(1.0)
        storm_after, storm_end = commandstats(counter), time.time()
        tcp_after = tcp_counters()
        during.join()
        window = storm_end - killed_at

        time.sleep(2 * settings.interval)  # the storm's replays and session events are over
        quiet_before, quiet_start = commandstats(counter), time.time()
        sessions_in_background(kato, settings.sessions_during, settings.session_every).join()
        time.sleep(max(0.0, quiet_start + window - time.time()))
        quiet_after = commandstats(counter)

        create_sessions(kato, 1, 0)  # one more after the storm: every client must get it too
        time.sleep(2 * settings.interval + 1)
        count_after = cluster.kato.state.active_count()
        landed = {n.name: streams_of(n) for n in survivors}
        results = stop_loaders(children, loaders, outs)
        counter.close()
        streams_logged = nginx.upstreams("/events")  # each ended stream: status, nodes tried
        nginx_errors = error_kinds(nginx.error_log())
        node_lines = Counter(
            line.get("event", "?") + (f" ({line['why']})" if "why" in line else "")
            for node in survivors
            for line in node.lines()
        )

    clients = [c for result in results for c in result["clients"]]
    figures = {
        "clients": settings.clients,
        "connected": connected,
        "nodes": settings.nodes,
        "victim": settings.victim,
        "victim_streams": victim_streams,
        "streams_after": landed,
        "readyz_slowest_s": readyz_slowest,
        "all_back_s": round(back_at - killed_at, 3) if back_at is not None else None,
        "window_s": round(window, 3),
        "session_count_before": count_before,
        "session_count_after": count_after,
        "connect_errors": sum_counts(r["connect_errors"] for r in results),
        "nginx_events_statuses": dict(Counter(status for status, _ in streams_logged)),
        "nginx_passed_over_a_node": sum(1 for _, tried in streams_logged if len(tried) > 1),
        "nginx_errors": nginx_errors,
        "survivors_log": dict(node_lines),
        "tcp_during_storm": commands_between(tcp_before, tcp_after),
        **gc_pauses(gc_folder, killed_at, storm_end),
        "redis_storm": commands_between(storm_before, storm_after),
        "redis_quiet": commands_between(quiet_before, quiet_after),
        **resumes(clients, killed_at),
        "silent_at_end": silent_streams(clients, 2 * settings.interval + 1),
        **session_checks(clients, count_before, count_after),
    }
    log(f"storm with {settings.clients} clients: {figures}")
    return figures


def streams_of(node: ClusterNode) -> int:
    return int(readyz(node)["streams"])


def wait_streams(
    nodes: list[ClusterNode],
    expected: int,
    timeout: float,
    slowest: dict[str, float] | None = None,
) -> float | None:
    """Until `nodes` hold `expected` streams between them: the time they did (None: not within
    `timeout`). `slowest` gets each node's longest wait for /readyz meanwhile: how long its
    event loop was too busy to answer."""
    deadline = time.monotonic() + timeout
    held = 0
    while True:
        held = 0
        for node in nodes:
            asked = time.monotonic()
            try:
                held += streams_of(node)
            except httpx.HTTPError:  # a node busy with the storm may not answer in time
                held = -expected
            if slowest is not None:
                waited = time.monotonic() - asked
                slowest[node.name] = max(slowest.get(node.name, 0.0), round(waited, 3))
        if held >= expected:
            return time.time()
        if time.monotonic() > deadline:
            log(f"{held} streams of {expected} after {timeout:.0f} s")
            return None
        time.sleep(0.1)


def create_sessions(kato_url: str, count: int, every: float) -> None:
    for number in range(count):
        if number:
            time.sleep(every)
        body = {"node_id": "bench-storm", "ttl_seconds": SESSION_TTL_SECONDS}
        httpx.post(f"{kato_url}/sessions", json=body, timeout=10).raise_for_status()


def sessions_in_background(kato_url: str, count: int, every: float) -> threading.Thread:
    """`count` sessions, one every `every` s from `every` s from now, in a thread."""

    def create() -> None:
        time.sleep(every)
        create_sessions(kato_url, count, every)

    thread = threading.Thread(target=create, name="sessions", daemon=True)
    thread.start()
    return thread


def commandstats(client: redis.Redis) -> dict[str, int]:
    """Calls of each Redis command so far (INFO itself left out: it is ours)."""
    stats = client.info("commandstats")
    return {
        name.removeprefix("cmdstat_"): int(fields["calls"])
        for name, fields in stats.items()
        if name != "cmdstat_info"
    }


TCP_COUNTERS = ("ListenOverflows", "ListenDrops", "TCPSynRetrans", "SyncookiesSent")


def tcp_counters() -> dict[str, int]:
    """The kernel's TCP counters of connections refused or retried (the whole machine's): a
    full listen queue drops a SYN, and its client sends it again 1 s, 3 s, 7 s later."""
    lines = [line.split() for line in Path("/proc/net/netstat").read_text().splitlines()]
    names, values = [line for line in lines if line[0] == "TcpExt:"][:2]
    counters = dict(zip(names[1:], values[1:], strict=True))
    return {name: int(counters.get(name, 0)) for name in TCP_COUNTERS}


def commands_between(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    changed = {name: calls - before.get(name, 0) for name, calls in after.items()}
    return {name: calls for name, calls in sorted(changed.items()) if calls}


def stop_loaders(
    children: Children, loaders: list[Child], outs: list[Path]
) -> list[dict[str, Any]]:
    """Tell the storm clients to stop; what each wrote."""
    for loader in loaders:
        assert loader.popen.stdin is not None
        loader.popen.stdin.write(b"stop\n")
        loader.popen.stdin.close()
    results = []
    for loader, out in zip(loaders, outs, strict=True):
        loader.popen.wait(120)
        if loader.popen.returncode != 0 or not out.exists():
            raise RuntimeError(f"{loader.name} failed:\n{loader.log_tail()}")
        results.append(json.loads(out.read_text()))
        children.stop(loader)
    return results


def sum_counts(counts: Any) -> dict[str, int]:
    total: Counter[str] = Counter()
    for count in counts:
        total.update(count)
    return dict(total)


def resumes(clients: list[dict[str, Any]], killed_at: float) -> dict[str, Any]:
    """Who was cut by the kill, when each was back (its new stream's first frame), and from
    which id each resumed."""
    back, retry_waits, attempts, positions, never_back, stalled = [], [], [], set(), 0, 0
    for client in clients:
        connections = client["connections"]
        cut = [i for i, c in enumerate(connections) if c["by_server"] and c["closed"] >= killed_at]
        if not cut:
            continue
        after = connections[cut[0] + 1 :]
        resumed = next((c for c in after if c["first_frame"] is not None), None)
        if resumed is None:
            never_back += 1
            stalled += any(c["closed"] is None for c in after)  # answered, but no frame since
            continue
        back.append(resumed["first_frame"] - killed_at)
        retry_waits.append(resumed["opened"] - connections[cut[0]]["closed"])
        attempts.append(1 + client["failed_attempts"])
        positions.add(resumed["resumed_from"])
    back.sort()
    # A SYN a full listen queue dropped is sent again 1 s, 3 s, 7 s later: counted at each step.
    first = back[0] if back else 0.0
    marks = [round(first + extra, 1) for extra in (0.5, 1.5, 3.5, 7.5)]
    return {
        "back_by_s": {f"{at:g}": sum(1 for b in back if b <= at) for at in marks},
        "cut": len(back) + never_back,
        "never_back": never_back,
        "never_back_but_answered": stalled,
        "back_p50_s": _round(percentile(back, 50)),
        "back_p99_s": _round(percentile(back, 99)),
        "back_max_s": _round(back[-1] if back else None),
        "first_back_s": _round(back[0] if back else None),
        "reconnect_wait_p50_s": _round(statistics.median(retry_waits) if retry_waits else None),
        "retry_ms": sorted({c["retry_ms"] for c in clients}),
        "attempts_max": max(attempts, default=0),
        "clients_more_than_one_attempt": sum(1 for a in attempts if a > 1),
        "distinct_resume_ids": len(positions),
    }


NGINX_ERROR = re.compile(r"\[(?P<level>\w+)\] \d+#\d+: \*?\d* ?(?P<what>[^,]*)")


def error_kinds(text: str) -> dict[str, int]:
    """nginx's error log as counts of each kind of line (its message without the numbers)."""
    kinds: Counter[str] = Counter()
    for line in text.splitlines():
        if match := NGINX_ERROR.search(line):
            kinds[f"[{match['level']}] {re.sub(r'[0-9]+', 'N', match['what'])}"] += 1
    return dict(kinds.most_common(10))


def gc_pauses(folder: Path, start: float, end: float) -> dict[str, Any]:
    """The nodes' garbage collections that ended between `start` and `end` (the victim's
    stopped at the kill): full ones (generation 2) and the longest of the others."""
    full, longest_young = [], 0.0
    for trace in folder.glob("*.txt"):
        for line in trace.read_text().splitlines():
            at, generation, pause_ms = line.split()
            if not start <= float(at) <= end:
                continue
            if generation == "2":
                full.append(float(pause_ms))
            else:
                longest_young = max(longest_young, float(pause_ms))
    return {
        "full_gc_pauses_ms": sorted((round(p) for p in full), reverse=True),
        "longest_young_gc_ms": round(longest_young),
    }


def silent_streams(clients: list[dict[str, Any]], quiet: float) -> int:
    """Clients whose open stream got nothing in the last `quiet` s before the end, while the
    others got the `metrics` of every tick: a stream that went dead without being closed."""
    last = [
        (c["connections"][-1], c["connections"][-1]["last_frame"] or 0.0)
        for c in clients
        if c["connections"]
    ]
    end = max((at for _, at in last), default=0.0)
    return sum(1 for record, at in last if record["closed"] is None and at < end - quiet)


def session_checks(
    clients: list[dict[str, Any]], count_before: int, count_after: int
) -> dict[str, Any]:
    """Every client's session events against the chain from `count_before` to `count_after`."""
    gapped = repeats = short = resets = 0
    for client in clients:
        resets += bool(client["resets"])
        seen: set[str] = set()
        last, gaps = count_before, 0
        for event_id, previous, current in client["sessions"]:
            if event_id in seen or previous < last:
                repeats += 1
                continue
            seen.add(event_id)
            gaps += previous != last
            last = current
        gapped += gaps > 0
        short += last != count_after
    received = [len(c["sessions"]) for c in clients]
    return {
        "session_events_per_client": sorted(set(received)),
        "clients_with_a_gap": gapped,
        "repeated_events": repeats,
        "clients_missing_the_last": short,
        "clients_reset": resets,
    }


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


ROWS = (
    ("streams on each node before the kill (about)", lambda f: f"{f['connected'] // f['nodes']:,}"),
    ("streams on the node killed", lambda f: f"{f['victim_streams']:,} ({f['victim']})"),
    ("clients cut by the kill", lambda f: f"{f['cut']:,}"),
    ("clients never back", lambda f: f"{f['never_back']:,}"),
    ("of them, answered 200 but sent no frame", lambda f: f"{f['never_back_but_answered']:,}"),
    ("open streams silent at the end (no tick's event)", lambda f: f"{f['silent_at_end']:,}"),
    (
        "streams on the survivors after",
        lambda f: ", ".join(f"{n:,}" for n in f["streams_after"].values()),
    ),
    ("`retry:` the streams said (ms)", lambda f: ", ".join(map(str, f["retry_ms"]))),
    ("cut → new request, median (s)", lambda f: _s(f["reconnect_wait_p50_s"])),
    ("kill → first client back (s)", lambda f: _s(f["first_back_s"])),
    ("kill → half of them back (s)", lambda f: _s(f["back_p50_s"])),
    ("kill → 99 % back (s)", lambda f: _s(f["back_p99_s"])),
    ("kill → every client back (s)", lambda f: _s(f["back_max_s"])),
    ("kill → survivors hold every stream (s)", lambda f: _s(f["all_back_s"])),
    (
        "full GCs on the survivors meanwhile (pause, ms)",
        lambda f: ", ".join(f"{ms:,}" for ms in f["full_gc_pauses_ms"]) or "none",
    ),
    ("longest younger GC meanwhile (ms)", lambda f: f"{f['longest_young_gc_ms']:,}"),
    (
        "longest /readyz answer of each survivor meanwhile (s)",
        lambda f: ", ".join(f"{v:.2f}" for v in f["readyz_slowest_s"].values()),
    ),
    ("clients back by t s after the kill", lambda f: _back_by(f)),
    (
        "clients that needed more than one attempt",
        lambda f: f"{f['clients_more_than_one_attempt']:,}",
    ),
    ("distinct Last-Event-IDs resumed from", lambda f: f"{f['distinct_resume_ids']:,}"),
    ("`/events` answers logged by nginx (status: count)", lambda f: _statuses(f)),
    ("TCP counters during the storm (the whole machine's)", lambda f: _tcp(f)),
    (
        "of them, requests nginx passed on from a node",
        lambda f: f"{f['nginx_passed_over_a_node']:,}",
    ),
    ("nginx's error log (kind: lines)", lambda f: _counts(f["nginx_errors"])),
    ("the survivors' log (event: lines, warnings and up)", lambda f: _counts(f["survivors_log"])),
    (
        "sessions: count before → after",
        lambda f: f"{f['session_count_before']} → {f['session_count_after']}",
    ),
    ("session events per client", lambda f: ", ".join(map(str, f["session_events_per_client"]))),
    ("clients with a gap in their session counts", lambda f: f"{f['clients_with_a_gap']:,}"),
    ("session events received twice", lambda f: f"{f['repeated_events']:,}"),
    ("clients without the last session", lambda f: f"{f['clients_missing_the_last']:,}"),
    ("clients that got a `reset`", lambda f: f"{f['clients_reset']:,}"),
    (
        "Redis commands, kill → all back + 1 s",
        lambda f: f"{sum(f['redis_storm'].values()):,} in {f['window_s']:.1f} s",
    ),
    ("Redis commands, a quiet window as long", lambda f: f"{sum(f['redis_quiet'].values()):,}"),
)


def storm_table(runs: list[dict[str, Any]]) -> str:
    """One column per storm (by its number of clients), one row per figure."""
    head = " | ".join(f"{f['clients']:,} clients" for f in runs)
    lines = [f"| figure | {head} |", "|---|" + "---:|" * len(runs)]
    lines += [f"| {label} | " + " | ".join(cell(f) for f in runs) + " |" for label, cell in ROWS]
    return "\n".join(lines)


def commands_table(runs: list[dict[str, Any]]) -> str:
    """Each Redis command's calls in each storm and in its quiet window."""
    names = sorted({n for f in runs for key in ("redis_storm", "redis_quiet") for n in f[key]})
    head = " | ".join(f"storm, {f['clients']:,} | quiet, {f['clients']:,}" for f in runs)
    lines = [f"| command | {head} |", "|---|" + "---:|" * 2 * len(runs)]
    for name in names:
        cells = [f"{f[key].get(name, 0):,}" for f in runs for key in ("redis_storm", "redis_quiet")]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _s(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def _counts(counts: dict[str, int]) -> str:
    return "; ".join(f"{kind}: {n:,}" for kind, n in counts.items()) or "none"


def _back_by(figures: dict[str, Any]) -> str:
    return ", ".join(f"{n:,} by {at}" for at, n in figures["back_by_s"].items())


def _tcp(figures: dict[str, Any]) -> str:
    counts = figures["tcp_during_storm"]
    return ", ".join(f"{name} {counts.get(name, 0):,}" for name in TCP_COUNTERS)


def _statuses(figures: dict[str, Any]) -> str:
    return ", ".join(f"{s}: {n:,}" for s, n in sorted(figures["nginx_events_statuses"].items()))
