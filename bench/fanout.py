"""Fan-out benchmark: the gateway against a naive sse-starlette server, at N clients each.

For each N and each server, as real processes on 127.0.0.1: a simulated KATO, the server, and
load clients (bench/load_client.py) holding N SSE streams. Once the server reports N streams,
the server's CPU time and RSS are read over a fixed window; the clients time every `metrics`
event from its `timestamp` (publish time) to its arrival. Both servers run in one invocation,
their order alternating between N values, because this machine is shared and noisy: read the
ratios and the medians, not single figures.

    python bench/fanout.py --clients 1000,5000 --duration 15
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import platform
import queue
import resource
import shlex
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

import httpx
import psutil

BENCH = Path(__file__).resolve().parent
RESULTS = BENCH / "results"
SERVERS = ("gateway", "naive")
IDLE_SETTLE_SECONDS = 2.0  # after ready, before the idle RSS is read
SAMPLE_SECONDS = 0.25  # RSS sampling period
BETWEEN_RUNS_SECONDS = 2.0


def log(message: str) -> None:
    print(f"[fanout {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# Processes


@dataclass
class Child:
    name: str
    popen: subprocess.Popen[bytes]
    log_path: Path

    def log_tail(self, lines: int = 20) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


class Children:
    """Every process this benchmark starts, so that all of them are stopped whatever happens.

    Each child gets a session of its own, so a Ctrl-C reaches only this process, which then
    stops the children in order: load clients first, then servers, then the simulated KATO.
    """

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.running: list[Child] = []

    def start(
        self,
        name: str,
        argv: Sequence[str],
        *,
        env: dict[str, str] | None = None,
        pipes: bool = False,
    ) -> Child:
        log_path = self.workdir / f"{name}.log"
        with log_path.open("ab") as log_file:
            popen = subprocess.Popen(
                list(argv),
                env={**os.environ, **(env or {})},
                stdin=subprocess.PIPE if pipes else subprocess.DEVNULL,
                stdout=subprocess.PIPE if pipes else log_file,
                stderr=log_file,
                start_new_session=True,
                cwd=BENCH.parent,
            )
        child = Child(name, popen, log_path)
        self.running.append(child)
        return child

    def stop(self, child: Child, timeout: float = 10.0) -> int | None:
        """SIGTERM (the servers drain their streams), then SIGKILL after the timeout."""
        popen = child.popen
        if popen.stdin is not None:
            with contextlib.suppress(OSError):
                popen.stdin.close()
        if popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                popen.terminate()
            try:
                popen.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    popen.kill()
                popen.wait()
        if popen.stdout is not None:
            popen.stdout.close()
        if child in self.running:
            self.running.remove(child)
        return popen.returncode

    def stop_all(self) -> None:
        for child in reversed(list(self.running)):
            self.stop(child, timeout=5.0)


def wait_http_ok(child: Child, url: str, timeout: float) -> dict[str, Any]:
    """Poll a URL until it answers 200; fail early if the process died."""
    deadline = time.monotonic() + timeout
    while True:
        if child.popen.poll() is not None:
            raise RuntimeError(
                f"{child.name} exited with {child.popen.returncode}:\n{child.log_tail()}"
            )
        with contextlib.suppress(httpx.HTTPError, ValueError):
            response = httpx.get(url, timeout=2)
            if response.status_code == 200:
                body: dict[str, Any] = response.json()
                return body
        if time.monotonic() > deadline:
            raise TimeoutError(
                f"{child.name}: {url} not 200 within {timeout} s:\n{child.log_tail()}"
            )
        time.sleep(0.1)


def server_streams(url: str) -> int | None:
    """The `streams` figure of /readyz (200 or 503, both carry it), None if it cannot be read."""
    try:
        streams = httpx.get(f"{url}/readyz", timeout=10).json().get("streams")
    except (httpx.HTTPError, ValueError):
        return None
    return int(streams) if isinstance(streams, int) else None


# Measurements


def tree(pid: int) -> list[psutil.Process]:
    process = psutil.Process(pid)
    return [process, *process.children(recursive=True)]


def tree_rss(pid: int) -> int:
    total = 0
    for process in tree(pid):
        with contextlib.suppress(psutil.Error):
            total += process.memory_info().rss
    return total


def tree_cpu_seconds(pid: int) -> float:
    total = 0.0
    for process in tree(pid):
        with contextlib.suppress(psutil.Error):
            times = process.cpu_times()
            total += times.user + times.system
    return total


class RssSampler(threading.Thread):
    """Samples a process tree's RSS in the background, for the steady and peak figures."""

    def __init__(self, pid: int) -> None:
        super().__init__(name="rss-sampler", daemon=True)
        self.pid = pid
        self.samples: list[tuple[float, int]] = []
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.is_set():
            with contextlib.suppress(psutil.Error):
                self.samples.append((time.time(), tree_rss(self.pid)))
            self._stop_event.wait(SAMPLE_SECONDS)

    def stop(self) -> None:
        self._stop_event.set()
        self.join(5)

    def between(self, start: float, end: float) -> list[int]:
        return [rss for at, rss in self.samples if start <= at <= end]


def percentile(sorted_values: Sequence[float], p: float) -> float | None:
    """Nearest-rank percentile of already sorted values."""
    if not sorted_values:
        return None
    rank = max(1, math.ceil(p / 100 * len(sorted_values)))
    return sorted_values[rank - 1]


# One run: one server at one N


@dataclass
class Run:
    server: str
    clients: int
    order: int
    summary: dict[str, Any] = field(default_factory=dict)
    latencies_ms: list[float] = field(default_factory=list)


def start_kato(children: Children, tag: str) -> tuple[Child, str]:
    port = free_port()
    child = children.start(
        f"kato-{tag}",
        [sys.executable, "-m", "sse_monitor", "simulator", "--port", str(port), "--quiet"],
        env={"SSE_MONITOR_LOG_LEVEL": "warning", "SSE_MONITOR_LOG_FORMAT": "json"},
    )
    url = f"http://127.0.0.1:{port}"
    wait_http_ok(child, f"{url}/health", timeout=30)
    return child, url


def start_server(
    children: Children,
    server: str,
    tag: str,
    kato_url: str,
    interval: float,
    gc_trace: Path | None = None,
) -> tuple[Child, str]:
    port = free_port()
    python = [sys.executable]
    if gc_trace is not None:
        python += [str(BENCH / "gc_trace.py"), str(gc_trace)]
    if server == "gateway":
        argv = [*python, "-m", "sse_monitor", "serve", "--port", str(port)]
        argv += ["--kato-url", kato_url]
        env = {
            "SSE_MONITOR_POLL_INTERVAL": f"{interval:g}",
            "SSE_MONITOR_LOG_FORMAT": "json",
            "SSE_MONITOR_LOG_LEVEL": "warning",
            # the reference has no containers event: compare like with like
            "SSE_MONITOR_CONTAINER_STATS": "off",
            "SSE_MONITOR_MAX_STREAMS": "1000000",  # every load client comes from 127.0.0.1
            "SSE_MONITOR_MAX_STREAMS_PER_CLIENT": "1000000",
        }
    else:
        argv = [*python, str(BENCH / "naive_server.py"), "--port", str(port)]
        argv += ["--interval", f"{interval:g}", "--kato-url", kato_url]
        env = {}
    child = children.start(f"{server}-{tag}", argv, env=env)
    url = f"http://127.0.0.1:{port}"
    wait_http_ok(child, f"{url}/readyz", timeout=60)
    return child, url


def split(total: int, per_process: int) -> list[tuple[int, int]]:
    """(first index, count) for each load client process, as even as possible."""
    processes = max(1, math.ceil(total / per_process))
    base, extra = divmod(total, processes)
    shares, first = [], 0
    for i in range(processes):
        count = base + (1 if i < extra else 0)
        shares.append((first, count))
        first += count
    return shares


def read_ready_lines(loaders: list[Child], timeout: float) -> list[dict[str, Any]]:
    """Each load client prints one JSON line once its clients are connected."""
    lines: queue.Queue[tuple[int, bytes]] = queue.Queue()

    def reader(index: int, stream: IO[bytes]) -> None:
        lines.put((index, stream.readline()))

    for index, loader in enumerate(loaders):
        assert loader.popen.stdout is not None
        threading.Thread(target=reader, args=(index, loader.popen.stdout), daemon=True).start()
    ready: dict[int, dict[str, Any]] = {}
    deadline = time.monotonic() + timeout
    while len(ready) < len(loaders):
        try:
            index, line = lines.get(timeout=max(0.1, deadline - time.monotonic()))
        except queue.Empty:
            raise TimeoutError(f"load clients not connected within {timeout:.0f} s") from None
        if not line:
            loader = loaders[index]
            raise RuntimeError(f"{loader.name} ended before connecting:\n{loader.log_tail()}")
        ready[index] = json.loads(line)
    return [ready[i] for i in range(len(loaders))]


def run_one(
    children: Children,
    args: argparse.Namespace,
    server: str,
    clients: int,
    order: int,
    tag: str,
) -> Run:
    run = Run(server, clients, order)
    log(f"{server} with {clients} clients: starting")
    kato, kato_url = start_kato(children, tag)
    gc_trace = children.workdir / f"gc-{tag}.txt" if args.gc_trace else None
    srv, url = start_server(children, server, tag, kato_url, args.interval, gc_trace)
    sampler = RssSampler(srv.popen.pid)
    sampler.start()
    loaders: list[Child] = []
    try:
        time.sleep(IDLE_SETTLE_SECONDS)
        idle_rss = statistics.median(rss for _, rss in sampler.samples[-4:])
        idle_cpu = tree_cpu_seconds(srv.popen.pid)

        connect_started = time.time()
        settle = max(2.0, 2 * args.interval)
        bound = settle + args.duration + args.grace + 600
        for first, count in split(clients, args.per_process):
            argv = [sys.executable, str(BENCH / "load_client.py"), "--url", f"{url}/events"]
            argv += ["--clients", str(count), "--first-index", str(first)]
            argv += ["--duration", f"{bound:g}", "--batch", str(args.batch), "--wait-stdin"]
            argv += ["--out", str(children.workdir / f"load-{tag}-{first}.json")]
            loaders.append(children.start(f"load-{tag}-{first}", argv, pipes=True))
        ready = read_ready_lines(loaders, timeout=120 + clients / 20)
        connected = sum(r["connected"] for r in ready)
        connect_seconds = max(r["at"] for r in ready) - connect_started

        deadline = time.monotonic() + 60 + clients / 50
        while (streams := server_streams(url)) != connected:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{server}: {streams} streams, expected {connected}")
            time.sleep(0.5)
        connected_cpu = tree_cpu_seconds(srv.popen.pid)

        time.sleep(settle)
        cpu0, t0 = tree_cpu_seconds(srv.popen.pid), time.time()
        time.sleep(args.duration)
        cpu1, t1 = tree_cpu_seconds(srv.popen.pid), time.time()
        time.sleep(args.grace)  # events of the window still on their way
        streams_after = server_streams(url)

        for loader in loaders:
            assert loader.popen.stdin is not None
            with contextlib.suppress(OSError):
                loader.popen.stdin.write(b"stop\n")
                loader.popen.stdin.close()
        results = []
        for loader in loaders:
            loader.popen.wait(120)
            out = children.workdir / f"{loader.name}.json"
            if loader.popen.returncode != 0 or not out.exists():
                raise RuntimeError(f"{loader.name} failed:\n{loader.log_tail()}")
            results.append(json.loads(out.read_text()))
            children.stop(loader)
        sampler.stop()
        peak_rss = max(rss for _, rss in sampler.samples)
        window_rss = sampler.between(t0, t1) or [sampler.samples[-1][1]]
    finally:
        sampler.stop()
        for loader in loaders:
            children.stop(loader)
        server_log = srv.log_path
        children.stop(srv)
        children.stop(kato)

    summary, latencies = analyse(results, t0, t1)
    server_lines = server_log.read_text(errors="replace").splitlines()
    delivered = summary["deliveries_received"]
    steady_rss = statistics.median(window_rss)
    summary.update(
        connect_seconds=round(connect_seconds, 2),
        connect_cpu_seconds=round(connected_cpu - idle_cpu, 3),
        streams_after_window=streams_after,
        window_seconds=round(t1 - t0, 3),
        cpu_seconds=round(cpu1 - cpu0, 3),
        cpu_percent=round((cpu1 - cpu0) / (t1 - t0) * 100, 1),
        cpu_ms_per_frame=round((cpu1 - cpu0) * 1000 / delivered, 4) if delivered else None,
        rss_idle_mib=round(idle_rss / 2**20, 1),
        rss_steady_mib=round(steady_rss / 2**20, 1),
        rss_peak_mib=round(peak_rss / 2**20, 1),
        kib_per_client=(
            round((steady_rss - idle_rss) / 1024 / summary["connected"], 2)
            if summary["connected"]
            else None
        ),
        server_log_lines=len(server_lines),
        server_log_sample=server_lines[:5],
    )
    if gc_trace is not None:
        summary.update(full_gcs(gc_trace, t0, t1))
    run.summary, run.latencies_ms = summary, latencies
    log(
        f"{server} with {clients} clients: {summary['connected']} connected, "
        f"{summary['deliveries_received']}/{summary['deliveries_expected']} deliveries, "
        f"p50 {summary['latency_p50_ms']} ms, p99 {summary['latency_p99_ms']} ms, "
        f"CPU {summary['cpu_percent']} %, {summary['kib_per_client']} KiB/client"
    )
    return run


def analyse(
    results: list[dict[str, Any]], t0: float, t1: float
) -> tuple[dict[str, Any], list[float]]:
    """Deliveries and latencies of the events published in [t0, t1), from all load clients."""
    published: dict[str, float] = {}
    for result in results:
        published.update(result["published"])
    window = {eid for eid, ts in published.items() if t0 <= ts < t1}
    connected = sum(r["connected"] for r in results)
    received_by_event = dict.fromkeys(window, 0)
    by_event: dict[str, list[float]] = {eid: [] for eid in window}
    latencies: list[float] = []
    clients_missing = 0
    duplicates = 0
    for result in results:
        for client in result["received"]:
            seen: set[str] = set()
            for eid, arrival in zip(client["ids"], client["arrivals"], strict=True):
                if eid not in window:
                    continue
                if eid in seen:
                    duplicates += 1
                    continue
                seen.add(eid)
                received_by_event[eid] += 1
                latency = (arrival - published[eid]) * 1000
                latencies.append(latency)
                by_event[eid].append(latency)
            if len(seen) < len(window):
                clients_missing += 1
    latencies.sort()
    errors: dict[str, int] = {}
    for result in results:
        for name, count in result["connect_errors"].items():
            errors[name] = errors.get(name, 0) + count
    received = sum(received_by_event.values())
    summary = {
        "connected": connected,
        "failed": sum(len(r["failed"]) for r in results),
        "connect_errors": errors,
        "closed_by_server": sum(r["closed_by_server"] for r in results),
        "events": len(window),
        "deliveries_expected": len(window) * connected,
        "deliveries_received": received,
        "delivery_percent": round(100 * received / (len(window) * connected), 3)
        if window and connected
        else None,
        "events_incomplete": sum(1 for n in received_by_event.values() if n < connected),
        "clients_missing_events": clients_missing,
        "duplicates": duplicates,
        "bad_frames": sum(r["bad_frames"] for r in results),
        "client_cpu_percent": round(
            100 * max(r["cpu_seconds"] / (r["stopped_at"] - r["connected_at"]) for r in results), 1
        ),
        "latency_p50_ms": _round(percentile(latencies, 50)),
        "latency_p90_ms": _round(percentile(latencies, 90)),
        "latency_p99_ms": _round(percentile(latencies, 99)),
        "latency_max_ms": _round(latencies[-1] if latencies else None),
        # A pause of the server (a full garbage collection, say) delays the rest of one event's
        # fan-out: without that event, is the tail still there?
        "latency_p99_but_slowest_ms": _round(p99_without_slowest(by_event)),
    }
    return summary, latencies


def full_gcs(trace: Path, t0: float, t1: float) -> dict[str, Any]:
    """The server's full (generation 2) collections that ended in the window, from gc_trace.py."""
    pauses = []
    with contextlib.suppress(OSError):
        for line in trace.read_text().splitlines():
            at, generation, pause_ms = line.split()
            if generation == "2" and t0 <= float(at) <= t1:
                pauses.append(float(pause_ms))
    return {
        "full_gc_count": len(pauses),
        "full_gc_total_ms": round(sum(pauses), 1),
        "full_gc_max_ms": round(max(pauses, default=0.0), 1),
    }


def p99_without_slowest(by_event: dict[str, list[float]]) -> float | None:
    """The p99 of every sample except those of the event with the slowest delivery."""
    events = [samples for samples in by_event.values() if samples]
    if len(events) < 2:
        return None
    slowest = max(events, key=max)
    return percentile(
        sorted(x for samples in events if samples is not slowest for x in samples), 99
    )


def _round(value: float | None, digits: int = 2) -> float | None:
    return None if value is None else round(value, digits)


# Report


@dataclass(frozen=True)
class Figure:
    label: str
    key: str
    ratio: bool = True  # gateway/naive is meaningful
    fmt: Callable[[float], str] = lambda v: f"{v:,.2f}"


FIGURES = (
    Figure("connected clients", "connected", fmt=lambda v: f"{v:,.0f}"),
    Figure("connect failures", "failed", ratio=False, fmt=lambda v: f"{v:,.0f}"),
    Figure("events in window", "events", ratio=False, fmt=lambda v: f"{v:,.0f}"),
    Figure("deliveries expected", "deliveries_expected", ratio=False, fmt=lambda v: f"{v:,.0f}"),
    Figure("deliveries received", "deliveries_received", fmt=lambda v: f"{v:,.0f}"),
    Figure("every client got every event (%)", "delivery_percent", fmt=lambda v: f"{v:.2f}"),
    Figure("clients missing an event", "clients_missing_events", False, lambda v: f"{v:,.0f}"),
    Figure("fan-out latency p50 (ms)", "latency_p50_ms"),
    Figure("fan-out latency p99 (ms)", "latency_p99_ms"),
    Figure("fan-out latency max (ms)", "latency_max_ms"),
    Figure("fan-out latency p99 without the slowest event (ms)", "latency_p99_but_slowest_ms"),
    Figure("server RSS idle (MiB)", "rss_idle_mib", fmt=lambda v: f"{v:,.1f}"),
    Figure("server RSS with N clients (MiB)", "rss_steady_mib", fmt=lambda v: f"{v:,.1f}"),
    Figure("server RSS peak (MiB)", "rss_peak_mib", fmt=lambda v: f"{v:,.1f}"),
    Figure("server memory per client (KiB)", "kib_per_client"),
    Figure("server CPU in window (% of a core)", "cpu_percent", fmt=lambda v: f"{v:,.1f}"),
    Figure("server CPU per delivered frame (ms)", "cpu_ms_per_frame", fmt=lambda v: f"{v:.4f}"),
    Figure("full GCs of the server in window", "full_gc_count", False, lambda v: f"{v:.0f}"),
    Figure("full GC pauses in window, total (ms)", "full_gc_total_ms", fmt=lambda v: f"{v:,.0f}"),
    Figure(
        "busiest load client CPU (% of a core)", "client_cpu_percent", False, lambda v: f"{v:.1f}"
    ),
)


def median_of(runs: list[Run], key: str) -> float | None:
    values = [r.summary[key] for r in runs if r.summary.get(key) is not None]
    return statistics.median(values) if values else None


def table(runs: list[Run], clients: list[int], repeat: int) -> str:
    suffix = f" (median of {repeat})" if repeat > 1 else ""
    lines = [
        f"| N | figure | gateway{suffix} | naive{suffix} | gateway/naive |",
        "|---:|---|---:|---:|---:|",
    ]
    for n in clients:
        for figure in FIGURES:
            if not any(figure.key in r.summary for r in runs):
                continue  # e.g. the GC figures, without --gc-trace
            values = {
                server: median_of(
                    [r for r in runs if r.server == server and r.clients == n], figure.key
                )
                for server in SERVERS
            }
            cells = [figure.fmt(v) if v is not None else "-" for v in values.values()]
            gateway, naive = values["gateway"], values["naive"]
            ratio = "-"
            if figure.ratio and gateway is not None and naive:
                ratio = f"{gateway / naive:.2f}"
            lines.append(f"| {n:,} | {figure.label} | {cells[0]} | {cells[1]} | {ratio} |")
    return "\n".join(lines)


def machine() -> dict[str, Any]:
    model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    versions = {}
    for package in ("uvicorn", "uvloop", "httptools", "sse-starlette", "starlette"):
        with contextlib.suppress(Exception):
            from importlib.metadata import version

            versions[package] = version(package)
    return {
        "nproc": os.cpu_count(),
        "cpu": model,
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "open_files": resource.getrlimit(resource.RLIMIT_NOFILE)[0],
        "packages": versions,
    }


def notes(runs: list[Run]) -> list[str]:
    """Anything a reader of the table should know: failures, drops, lost events, logs."""
    found = []
    for run in runs:
        s = run.summary
        where = f"{run.server}, N={run.clients:,} (run {run.order})"
        if s["failed"] or s["connect_errors"]:
            found.append(
                f"{where}: {s['failed']} clients never connected; errors {s['connect_errors']}"
            )
        if s["closed_by_server"]:
            found.append(f"{where}: {s['closed_by_server']} streams closed by the server")
        if s["events_incomplete"]:
            found.append(
                f"{where}: {s['events_incomplete']} of {s['events']} events missed by some client "
                f"({s['clients_missing_events']} clients missed at least one)"
            )
        if s["duplicates"] or s["bad_frames"]:
            found.append(f"{where}: {s['duplicates']} duplicates, {s['bad_frames']} bad frames")
        if s["server_log_lines"]:
            found.append(
                f"{where}: server logged {s['server_log_lines']} lines, "
                f"e.g. {s['server_log_sample'][:2]}"
            )
    return found


def plot(runs: list[Run], path: Path) -> bool:
    """Latency CDFs, when matplotlib is installed; the benchmark never needs it."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    fig, ax = plt.subplots(figsize=(8, 5))
    for run in runs:
        if not run.latencies_ms:
            continue
        ys = [(i + 1) / len(run.latencies_ms) for i in range(len(run.latencies_ms))]
        style = "-" if run.server == "gateway" else "--"
        ax.plot(run.latencies_ms, ys, style, label=f"{run.server}, N={run.clients:,} #{run.order}")
    ax.set_xscale("log")
    ax.set_xlabel("fan-out latency: publish timestamp to arrival (ms)")
    ax.set_ylabel("fraction of deliveries")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def report(args: argparse.Namespace, runs: list[Run], started: datetime, command: str) -> str:
    info = machine()
    lines = [
        "# Fan-out benchmark: gateway vs naive sse-starlette server",
        "",
        f"- date: {started.strftime('%Y-%m-%d %H:%M UTC')}",
        f"- machine: {info['nproc']} CPUs ({info['cpu'] or 'unknown'}), "
        f"{info['memory_gib']} GiB, Python {info['python']}, {info['platform']}",
        f"- packages: {', '.join(f'{k} {v}' for k, v in info['packages'].items())}",
        f"- command: `{command}`",
        f"- event interval {args.interval:g} s, window {args.duration:g} s per run, "
        f"{args.repeat} run(s) per server and N, at most {args.per_process:,} clients per "
        "load-client process; server order alternates between N values",
        "- ratio = gateway/naive: below 1 the gateway is better for latency, memory and CPU; "
        "for connected and received, 1 means as many",
        "",
        table(runs, args.clients, args.repeat),
        "",
    ]
    found = notes(runs)
    if found:
        lines += ["Notes:", "", *(f"- {note}" for note in found), ""]
    lines += ["See bench/README.md for what each figure means."]
    return "\n".join(lines) + "\n"


# Main


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--clients",
        type=lambda text: [int(n) for n in text.split(",") if n.strip()],
        default=[1000, 5000],
        help="comma-separated numbers of clients (default 1000,5000)",
    )
    parser.add_argument("--duration", type=float, default=15.0, help="measured seconds per run")
    parser.add_argument("--interval", type=float, default=1.0, help="seconds between events")
    parser.add_argument("--repeat", type=int, default=1, help="runs per server and N")
    parser.add_argument("--grace", type=float, default=5.0, help="seconds for late deliveries")
    parser.add_argument("--per-process", type=int, default=5000, help="clients per load process")
    parser.add_argument("--batch", type=int, default=250, help="connections opened at once")
    parser.add_argument(
        "--gc-trace",
        action="store_true",
        help="run each server under bench/gc_trace.py and count its full GC pauses",
    )
    parser.add_argument("--out", type=Path, default=RESULTS / "fanout-latest.md")
    return parser.parse_args(argv)


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM stops the benchmark like Ctrl-C: through the finally blocks that clean up.

    SIGINT is handled explicitly too, since a shell starting a background job ignores it.
    """

    def handler(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    previous_term = signal.signal(signal.SIGTERM, handler)
    previous_int = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous_term)
        signal.signal(signal.SIGINT, previous_int)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    command = shlex.join(["python", os.path.relpath(__file__), *(argv or sys.argv[1:])])
    started = datetime.now(UTC)
    runs: list[Run] = []
    with tempfile.TemporaryDirectory(prefix="fanout-") as tmp, sigterm_as_interrupt():
        children = Children(Path(tmp))
        try:
            for i, n in enumerate(args.clients):
                for r in range(args.repeat):
                    order = SERVERS if (i + r) % 2 == 0 else SERVERS[::-1]
                    for server in order:
                        tag = f"{server}-{n}-{r}"
                        runs.append(run_one(children, args, server, n, r + 1, tag))
                        time.sleep(BETWEEN_RUNS_SECONDS)
        except KeyboardInterrupt:
            log("interrupted: stopping every process started")
            return 130
        finally:
            children.stop_all()

    text = report(args, runs, started, command)
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    data = {
        "date": started.isoformat(),
        "command": command,
        "machine": machine(),
        "parameters": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "runs": [
            {"server": r.server, "clients": r.clients, "run": r.order, **r.summary} for r in runs
        ],
    }
    args.out.with_suffix(".json").write_text(json.dumps(data, indent=2) + "\n")
    if plot(runs, args.out.with_suffix(".png")):
        log(f"plot: {args.out.with_suffix('.png')}")
    log(f"wrote {args.out} and {args.out.with_suffix('.json')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
