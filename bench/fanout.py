"""Fan-out benchmark: the gateway against nchan (and a naive sse-starlette server), at N clients.

For each N and each server, as real processes on 127.0.0.1: a simulated KATO, the server, and
load clients (bench/load_client.py) holding N SSE streams. Once the server reports N streams,
the server's CPU time and RSS are read over a fixed window; the clients time every `metrics`
event from its `timestamp` (publish time) to its arrival. nchan (a C pub/sub module of nginx)
is the reference point for how fast fan-out can be: bench/nchan_publisher.py POSTs it the same
payload at the same rate. All servers run in one invocation, their order alternating between N
values, because this machine is shared and noisy: read the ratios and the medians, not single
figures.

    python bench/fanout.py --servers gateway,nchan --clients 1000,5000,10000 --duration 15
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
import shutil
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
SERVERS = ("gateway", "baseline", "redis", "workers", "nchan", "naive")
GATEWAYS = ("gateway", "baseline", "redis", "workers")  # the gateway, run by its own CLI
CLUSTERED = ("redis", "workers")  # cluster mode: the log in a redis-server of the run's own
DEFAULT_SERVERS = ("gateway", "nchan")
NCHAN_MODULE = Path("/usr/lib/nginx/modules/ngx_nchan_module.so")
FD_RESERVE = 200  # descriptors a load-client process needs besides its sockets
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


JSON_ACCEPT = {"Accept": "application/json"}  # nchan's channel info is text/plain otherwise


def wait_http_ok(children: Sequence[Child], url: str, timeout: float) -> dict[str, Any]:
    """Poll a URL until it answers 200 with JSON; fail early if one of the processes died."""
    deadline = time.monotonic() + timeout
    while True:
        for child in children:
            if child.popen.poll() is not None:
                raise RuntimeError(
                    f"{child.name} exited with {child.popen.returncode}:\n{child.log_tail()}"
                )
        with contextlib.suppress(httpx.HTTPError, ValueError):
            response = httpx.get(url, headers=JSON_ACCEPT, timeout=2)
            if response.status_code == 200:
                body: dict[str, Any] = response.json()
                return body
        if time.monotonic() > deadline:
            tails = "\n".join(f"{c.name}:\n{c.log_tail()}" for c in children)
            raise TimeoutError(f"{url} not 200 within {timeout} s:\n{tails}")
        time.sleep(0.1)


def json_int(url: str, key: str) -> int | None:
    """One integer of a JSON answer (200 or 503, both carry it), None if it cannot be read."""
    try:
        value = httpx.get(url, headers=JSON_ACCEPT, timeout=10).json().get(key)
    except (httpx.HTTPError, ValueError, AttributeError):
        return None
    return int(value) if isinstance(value, int) else None


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


CpuTimes = dict[tuple[int, int], float]  # (pid, thread id) -> CPU seconds


def tree_cpu(pid: int) -> CpuTimes:
    """CPU time (user + system) of every thread of a process tree.

    psutil's figures come in clock ticks (10 ms): too coarse for a server as lean as nchan over a
    15 s window. Each thread's /proc/<pid>/task/<tid>/schedstat has its run time in ns; psutil is
    the fallback where it cannot be read.
    """
    times: CpuTimes = {}
    for process in tree(pid):
        try:
            tids = os.listdir(f"/proc/{process.pid}/task")
        except OSError:
            tids = []
        read = False
        for tid in tids:
            with contextlib.suppress(OSError, ValueError, IndexError):  # a thread just ended
                with open(f"/proc/{process.pid}/task/{tid}/schedstat") as stat:
                    times[(process.pid, int(tid))] = int(stat.read().split()[0]) / 1e9
                read = True
        if not read:
            with contextlib.suppress(psutil.Error):
                cpu = process.cpu_times()
                times[(process.pid, -1)] = cpu.user + cpu.system
    return times


def tree_system_share(pid: int) -> tuple[float, float]:
    """(user, system) seconds of a process tree, in clock ticks: only for the kernel's share."""
    user = system = 0.0
    for process in tree(pid):
        with contextlib.suppress(psutil.Error):
            cpu = process.cpu_times()
            user, system = user + cpu.user, system + cpu.system
    return user, system


def cpu_seconds(before: CpuTimes, after: CpuTimes) -> float:
    """CPU time spent between two readings of tree_cpu.

    A thread that ended in between loses its share (the servers here keep their threads); a new
    one counts from its start.
    """
    return sum(seconds - before.get(key, 0.0) for key, seconds in after.items())


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
    wait_http_ok([child], f"{url}/health", timeout=30)
    return child, url


@dataclass
class Server:
    """A server under test: the process tree measured, its stream URL, how it counts streams."""

    name: str
    child: Child  # its tree's CPU and RSS are the server's figures
    events_url: str
    streams: Callable[[], int | None]
    logs: list[Path]
    port: int  # where it listens: its processes' connections to it are its streams
    helpers: list[Child] = field(default_factory=list)  # not measured, stopped first
    backing: list[Child] = field(default_factory=list)  # its Redis: measured apart, stopped last


def start_server(
    children: Children,
    server: str,
    tag: str,
    kato_url: str,
    interval: float,
    gc_trace: Path | None = None,
    baseline: Path | None = None,
    workers: int = 1,
) -> Server:
    """A server on a free port, ready; `workers` is `serve --workers` (the `workers` server)
    or nginx's worker_processes (nchan)."""
    if server == "nchan":
        return start_nchan(children, tag, kato_url, interval, workers)
    port = free_port()
    python = [sys.executable]
    if server in GATEWAYS:
        # -P: the bench's own checkout is not put first on the path, so that `baseline` runs
        # the gateway of another checkout (--baseline) through PYTHONPATH.
        python.append("-P")
    if gc_trace is not None:
        python += [str(BENCH / "gc_trace.py"), str(gc_trace)]
    backing: list[Child] = []
    if server in GATEWAYS:
        argv = [*python, "-m", "sse_monitor", "serve", "--port", str(port)]
        argv += ["--kato-url", kato_url]
        source = baseline if server == "baseline" else BENCH.parent
        env = {
            "PYTHONPATH": str(source),
            "SSE_MONITOR_POLL_INTERVAL": f"{interval:g}",
            "SSE_MONITOR_LOG_FORMAT": "json",
            "SSE_MONITOR_LOG_LEVEL": "warning",
            # the references have no containers event: compare like with like
            "SSE_MONITOR_CONTAINER_STATS": "off",
            "SSE_MONITOR_MAX_STREAMS": "1000000",  # every load client comes from 127.0.0.1
            "SSE_MONITOR_MAX_STREAMS_PER_CLIENT": "1000000",
            "SSE_MONITOR_DB": ":memory:",  # no alert store left in the checkout
        }
        path = "/events?topics=metrics"  # only what the references send
        if server in CLUSTERED:
            redis, redis_port = start_redis(children, tag)
            backing.append(redis)
            env["SSE_MONITOR_REDIS_URL"] = f"redis://127.0.0.1:{redis_port}/0"
            env["SSE_MONITOR_CLUSTER"] = f"bench-{tag}"
        if server == "workers":
            argv += ["--workers", str(workers)]
    else:
        argv = [*python, str(BENCH / "naive_server.py"), "--port", str(port)]
        argv += ["--interval", f"{interval:g}", "--kato-url", kato_url]
        env = {}
        path = "/events"
    child = children.start(f"{server}-{tag}", argv, env=env)
    url = f"http://127.0.0.1:{port}"
    wait_http_ok([child, *backing], f"{url}/readyz", timeout=60)

    def streams() -> int | None:
        if server != "workers":
            return json_int(f"{url}/readyz", "streams")
        # /readyz counts the streams of whichever worker answers it: count every worker's
        return sum(streams_by_process(child.popen.pid, port).values())

    if server == "workers":
        wait_workers(child, workers, redis_port, timeout=60)
    return Server(server, child, url + path, streams, [child.log_path], port, backing=backing)


def start_redis(children: Children, tag: str) -> tuple[Child, int]:
    """A redis-server of this run alone (nothing saved to disk), answering PING: the gateway's
    log in cluster mode. Its port."""
    import redis

    port = free_port()
    argv = ["redis-server", "--port", str(port), "--bind", "127.0.0.1"]
    argv += ["--save", "", "--appendonly", "no", "--dir", str(children.workdir)]
    child = children.start(f"redis-server-{tag}", argv)
    client = redis.Redis(port=port, socket_timeout=1, socket_connect_timeout=1)
    deadline = time.monotonic() + 30
    try:
        while True:
            with contextlib.suppress(redis.ConnectionError, redis.TimeoutError):
                if client.ping():
                    return child, port
            if child.popen.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"redis-server did not answer:\n{child.log_tail()}")
            time.sleep(0.05)
    finally:
        client.close()


def streams_by_process(pid: int, port: int) -> dict[int, int]:
    """Open connections to `port` held by each worker of a tree: the processes other than its
    root that listen on it (the workers of `serve --workers N`, or of nginx, share the root's
    listening socket). Empty for a server of one process."""
    counts = {}
    for process in tree(pid)[1:]:
        with contextlib.suppress(psutil.Error):
            conns = process.net_connections("tcp")
            if any(c.status == psutil.CONN_LISTEN and c.laddr.port == port for c in conns):
                counts[process.pid] = sum(
                    1 for c in conns if c.status == psutil.CONN_ESTABLISHED and c.laddr.port == port
                )
    return counts


def wait_workers(child: Child, workers: int, redis_port: int, timeout: float) -> None:
    """Until every worker of `serve --workers N` talks to Redis (its app has started): the first
    /readyz answers from whichever worker is ready first, and a worker still starting takes no
    connection, which would leave every client on the others."""
    deadline = time.monotonic() + timeout
    while True:
        started = 0
        for process in tree(child.popen.pid)[1:]:
            with contextlib.suppress(psutil.Error):
                conns = process.net_connections("tcp")
                started += any(c.raddr and c.raddr.port == redis_port for c in conns)
        if started >= workers:
            return
        if child.popen.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"{started} of {workers} workers started:\n{child.log_tail()}")
        time.sleep(0.2)


NGINX_CONF = """\
load_module {module};
daemon off;
worker_processes {workers};
worker_rlimit_nofile {nofile};
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{ worker_connections {connections}; }}
http {{
    access_log off;
    client_body_temp_path {prefix}/client_body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
    server {{
        listen 127.0.0.1:{port} backlog=2048;  # uvicorn's default backlog
        location = /pub {{
            nchan_publisher;
            nchan_channel_id metrics;
            nchan_message_buffer_length 10;
        }}
        location = /sub {{
            nchan_subscriber eventsource;
            nchan_channel_id metrics;
            nchan_eventsource_event metrics;  # `event: metrics`, as the gateway's frames
            nchan_subscriber_first_message -1;  # the latest first, as the gateway's first frame
            nchan_eventsource_ping_interval 15;  # a `:ping` comment, as the gateway's keep-alive
            nchan_eventsource_ping_comment ping;
            nchan_eventsource_ping_event "";
        }}
    }}
}}
"""


def nchan_missing() -> str | None:
    """Why nchan cannot run here, or None."""
    if shutil.which("nginx") is None or not NCHAN_MODULE.exists():
        return f"nchan needs nginx and {NCHAN_MODULE}: apt-get install -y nginx libnginx-mod-nchan"
    return None


def start_nchan(
    children: Children, tag: str, kato_url: str, interval: float, workers: int = 1
) -> Server:
    """nginx with nchan from a temp prefix (own config, `workers` worker processes), and its
    publisher."""
    prefix = children.workdir / f"nginx-{tag}"
    prefix.mkdir()
    port = free_port()
    nofile = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    conf = prefix / "nginx.conf"
    conf.write_text(
        NGINX_CONF.format(
            module=NCHAN_MODULE,
            workers=workers,
            nofile=nofile,
            connections=max(1024, nofile - 1000),
            prefix=prefix,
            port=port,
        )
    )
    nginx = children.start(
        f"nchan-{tag}",
        ["nginx", "-p", str(prefix), "-c", str(conf), "-e", str(prefix / "error.log")],
    )
    url = f"http://127.0.0.1:{port}"
    publisher = children.start(
        f"publisher-{tag}",
        [
            *(sys.executable, str(BENCH / "nchan_publisher.py"), "--pub-url", f"{url}/pub"),
            *("--kato-url", kato_url, "--interval", f"{interval:g}"),
        ],
    )
    # The channel exists once the first message is published: then /pub answers its info.
    wait_http_ok([nginx, publisher], f"{url}/pub", timeout=60)
    return Server(
        "nchan",
        nginx,
        f"{url}/sub",
        lambda: json_int(f"{url}/pub", "subscribers"),
        [nginx.log_path, prefix / "error.log", publisher.log_path],
        port,
        [publisher],
    )


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
    gc_trace = children.workdir / f"gc-{tag}.txt" if args.gc_trace and server != "nchan" else None
    loadavg = os.getloadavg()  # anything else busy on this shared machine?
    workers = args.nchan_workers if server == "nchan" else args.workers
    srv = start_server(
        children, server, tag, kato_url, args.interval, gc_trace, args.baseline, workers
    )
    pid = srv.child.popen.pid
    sampler = RssSampler(pid)
    sampler.start()
    loaders: list[Child] = []
    try:
        time.sleep(IDLE_SETTLE_SECONDS)
        idle_rss = statistics.median(rss for _, rss in sampler.samples[-4:])
        idle_cpu = tree_cpu(pid)

        connect_started = time.time()
        settle = max(2.0, 2 * args.interval)
        bound = settle + args.duration + args.grace + 600
        for first, count in split(clients, args.per_process):
            argv = [sys.executable, str(BENCH / "load_client.py"), "--url", srv.events_url]
            argv += ["--clients", str(count), "--first-index", str(first)]
            argv += ["--duration", f"{bound:g}", "--batch", str(args.batch), "--wait-stdin"]
            argv += ["--out", str(children.workdir / f"load-{tag}-{first}.json")]
            loaders.append(children.start(f"load-{tag}-{first}", argv, pipes=True))
        ready = read_ready_lines(loaders, timeout=120 + clients / 20)
        connected = sum(r["connected"] for r in ready)
        connect_seconds = max(r["at"] for r in ready) - connect_started

        deadline = time.monotonic() + 60 + clients / 50
        while (streams := srv.streams()) != connected:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{server}: {streams} streams, expected {connected}")
            time.sleep(0.5)
        connected_cpu = tree_cpu(pid)

        time.sleep(settle)
        cpu0, split0, t0 = tree_cpu(pid), tree_system_share(pid), time.time()
        backing0 = backing_cpu(srv)
        time.sleep(args.duration)
        cpu1, split1, t1 = tree_cpu(pid), tree_system_share(pid), time.time()
        backing1 = backing_cpu(srv)
        time.sleep(args.grace)  # events of the window still on their way
        streams_after = srv.streams()
        by_process = sorted(streams_by_process(pid, srv.port).values(), reverse=True)

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
        for helper in srv.helpers:
            children.stop(helper)
        children.stop(srv.child)
        for backing in srv.backing:
            children.stop(backing)
        children.stop(kato)

    summary, latencies = analyse(results, t0, t1)
    server_lines = []
    for path in srv.logs:
        with contextlib.suppress(OSError):
            server_lines += path.read_text(errors="replace").splitlines()
    delivered = summary["deliveries_received"]
    steady_rss = statistics.median(window_rss)
    window_cpu = cpu_seconds(cpu0, cpu1)
    user, system = split1[0] - split0[0], split1[1] - split0[1]
    summary.update(
        connect_seconds=round(connect_seconds, 2),
        connect_cpu_seconds=round(cpu_seconds(idle_cpu, connected_cpu), 3),
        streams_after_window=streams_after,
        window_seconds=round(t1 - t0, 3),
        cpu_seconds=round(window_cpu, 4),
        cpu_percent=round(window_cpu / (t1 - t0) * 100, 2),
        cpu_us_per_frame=round(window_cpu * 1e6 / delivered, 2) if delivered else None,
        # sending to a loopback socket runs the receiver's TCP path too: a floor for every server
        cpu_system_percent=round(100 * system / (user + system), 1) if user + system else None,
        rss_idle_mib=round(idle_rss / 2**20, 1),
        rss_steady_mib=round(steady_rss / 2**20, 1),
        rss_peak_mib=round(peak_rss / 2**20, 1),
        kib_per_client=(
            round((steady_rss - idle_rss) / 1024 / summary["connected"], 2)
            if summary["connected"]
            else None
        ),
        streams_by_process=by_process,
        redis_cpu_percent=(
            round(cpu_seconds(backing0, backing1) / (t1 - t0) * 100, 2) if srv.backing else None
        ),
        server_log_lines=len(server_lines),
        server_log_sample=server_lines[:5],
        loadavg_before=[round(x, 2) for x in loadavg],
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


def backing_cpu(server: Server) -> CpuTimes:
    """CPU times of the server's Redis (not in the server's own figures)."""
    return {key: t for child in server.backing for key, t in tree_cpu(child.popen.pid).items()}


def analyse(
    results: list[dict[str, Any]], t0: float, t1: float
) -> tuple[dict[str, Any], list[float]]:
    """Deliveries and latencies of the events published in [t0, t1), from all load clients."""
    published: dict[str, float] = {}
    data_bytes: dict[str, int] = {}
    for result in results:
        published.update(result["published"])
        data_bytes.update(result.get("data_bytes", {}))
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
        "data_bytes": _median([data_bytes[eid] for eid in window if eid in data_bytes]),
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
        # The path from publish to the fan-out's start (through Redis in cluster mode), without
        # the time the fan-out then takes to reach the other clients.
        "latency_first_p50_ms": _round(_median([min(s) for s in by_event.values() if s])),
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


def _median(values: Sequence[float]) -> float | None:
    return statistics.median(values) if values else None


def _round(value: float | None, digits: int = 2) -> float | None:
    return None if value is None else round(value, digits)


# Report


@dataclass(frozen=True)
class Figure:
    label: str
    key: str
    ratio: bool = True  # first server / other is meaningful
    fmt: Callable[[float], str] = lambda v: f"{v:,.2f}"


FIGURES = (
    Figure("connected clients", "connected", fmt=lambda v: f"{v:,.0f}"),
    Figure("connect failures", "failed", ratio=False, fmt=lambda v: f"{v:,.0f}"),
    Figure("events in window", "events", ratio=False, fmt=lambda v: f"{v:,.0f}"),
    Figure("`metrics` data per event (bytes)", "data_bytes", fmt=lambda v: f"{v:,.0f}"),
    Figure("deliveries expected", "deliveries_expected", ratio=False, fmt=lambda v: f"{v:,.0f}"),
    Figure("deliveries received", "deliveries_received", fmt=lambda v: f"{v:,.0f}"),
    Figure("every client got every event (%)", "delivery_percent", fmt=lambda v: f"{v:.2f}"),
    Figure("clients missing an event", "clients_missing_events", False, lambda v: f"{v:,.0f}"),
    Figure("fan-out latency p50 (ms)", "latency_p50_ms"),
    Figure("fan-out latency p99 (ms)", "latency_p99_ms"),
    Figure("fan-out latency max (ms)", "latency_max_ms"),
    Figure("fan-out latency p99 without the slowest event (ms)", "latency_p99_but_slowest_ms"),
    Figure("latency to each event's first client, median (ms)", "latency_first_p50_ms"),
    Figure("server RSS idle (MiB)", "rss_idle_mib", fmt=lambda v: f"{v:,.1f}"),
    Figure("server RSS with N clients (MiB)", "rss_steady_mib", fmt=lambda v: f"{v:,.1f}"),
    Figure("server RSS peak (MiB)", "rss_peak_mib", fmt=lambda v: f"{v:,.1f}"),
    Figure("server memory per client (KiB)", "kib_per_client"),
    Figure("server CPU in window (% of a core)", "cpu_percent", fmt=lambda v: f"{v:,.2f}"),
    Figure("server CPU per delivered frame (µs)", "cpu_us_per_frame"),
    Figure(
        "server CPU in the kernel (% of its CPU)", "cpu_system_percent", False, lambda v: f"{v:.0f}"
    ),
    Figure("its Redis's CPU in window (% of a core)", "redis_cpu_percent", False),
    Figure("full GCs of the server in window", "full_gc_count", False, lambda v: f"{v:.0f}"),
    Figure("full GC pauses in window, total (ms)", "full_gc_total_ms", fmt=lambda v: f"{v:,.0f}"),
    Figure(
        "busiest load client CPU (% of a core)", "client_cpu_percent", False, lambda v: f"{v:.1f}"
    ),
)
# The short table: what the issue asks for at a glance (the full one follows it).
SUMMARY_KEYS = (
    "delivery_percent",
    "latency_p50_ms",
    "latency_p99_ms",
    "latency_max_ms",
    "latency_first_p50_ms",
    "kib_per_client",
    "cpu_us_per_frame",
    "client_cpu_percent",
)


def median_of(runs: list[Run], key: str) -> float | None:
    values = [r.summary[key] for r in runs if r.summary.get(key) is not None]
    return statistics.median(values) if values else None


def table(
    runs: list[Run],
    clients: list[int],
    servers: Sequence[str],
    repeat: int,
    keys: Sequence[str] | None = None,
) -> str:
    """One row per N and figure, one column per server, then first server / each other one."""
    suffix = f" (median of {repeat})" if repeat > 1 else ""
    first, others = servers[0], servers[1:]
    head = [f"{s}{suffix}" for s in servers] + [f"{first}/{o}" for o in others]
    lines = [
        "| N | figure | " + " | ".join(head) + " |",
        "|---:|---|" + "---:|" * len(head),
    ]
    for n in clients:
        for figure in FIGURES:
            if keys is not None and figure.key not in keys:
                continue
            if not any(r.summary.get(figure.key) is not None for r in runs):
                continue  # e.g. the GC figures, without --gc-trace
            values = [
                median_of([r for r in runs if r.server == s and r.clients == n], figure.key)
                for s in servers
            ]
            cells = [figure.fmt(v) if v is not None else "-" for v in values]
            for other in values[1:]:
                ratio = "-"
                if figure.ratio and values[0] is not None and other:
                    ratio = f"{values[0] / other:.2f}"
                cells.append(ratio)
            lines.append(f"| {n:,} | {figure.label} | " + " | ".join(cells) + " |")
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
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        nginx_v = subprocess.run(["nginx", "-v"], capture_output=True, text=True, timeout=10)
        versions["nginx"] = nginx_v.stderr.strip().rpartition("/")[2]
        nchan_v = subprocess.run(
            ["dpkg-query", "-W", "-f", "${Version}", "libnginx-mod-nchan"],
            capture_output=True,
            text=True,
            timeout=10,
        )
        if nchan_v.returncode == 0:
            versions["nchan"] = nchan_v.stdout.strip()
    return {
        "nproc": os.cpu_count(),
        "cpu": model,
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "open_files": resource.getrlimit(resource.RLIMIT_NOFILE)[0],
        "packages": versions,
    }


def notes(runs: list[Run], interval: float) -> list[str]:
    """Anything a reader of the table should know: failures, drops, lost events, logs."""
    found = []
    for run in runs:
        s = run.summary
        where = f"{run.server}, N={run.clients:,} (run {run.order})"
        if "error" in s:
            found.append(f"{where}: FAILED, no figures: {s['error']}")
            continue
        if s["failed"] or s["connect_errors"]:
            found.append(
                f"{where}: {s['failed']} clients never connected; errors {s['connect_errors']}"
            )
        if s["closed_by_server"]:
            found.append(f"{where}: {s['closed_by_server']} streams closed by the server")
        ticks = s["window_seconds"] / interval
        if s["events"] < ticks - 1:  # the publisher skipped ticks: its loop was busy fanning out
            found.append(
                f"{where}: {s['events']} events published in the {s['window_seconds']:.0f} s "
                f"window, about {ticks:.0f} expected: ticks were skipped"
            )
        if s["events_incomplete"]:
            found.append(
                f"{where}: {s['events_incomplete']} of {s['events']} events missed by some client "
                f"({s['clients_missing_events']} clients missed at least one)"
            )
        if s["duplicates"] or s["bad_frames"]:
            found.append(f"{where}: {s['duplicates']} duplicates, {s['bad_frames']} bad frames")
        if len(s.get("streams_by_process", [])) > 1:
            found.append(f"{where}: streams per worker process {s['streams_by_process']}")
        if s["server_log_lines"]:
            found.append(
                f"{where}: server logged {s['server_log_lines']} lines, "
                f"e.g. {s['server_log_sample'][:2]}"
            )
        if s["client_cpu_percent"] > 70:
            found.append(
                f"{where}: a load client used {s['client_cpu_percent']} % of a core: the "
                "latency includes its own queueing"
            )
    return found


def plot(runs: list[Run], servers: Sequence[str], path: Path) -> bool:
    """Latency p50/p99, memory and CPU per client against N, when matplotlib is installed."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    panels = (
        (
            "fan-out latency (ms)",
            (("latency_p50_ms", "o-", "p50"), ("latency_p99_ms", "s--", "p99")),
        ),
        ("server memory per client (KiB)", (("kib_per_client", "o-", ""),)),
        ("server CPU per delivered frame (µs)", (("cpu_us_per_frame", "o-", ""),)),
    )
    fig, axes = plt.subplots(1, len(panels), figsize=(15, 4.8))
    for ax, (title, series) in zip(axes, panels, strict=True):
        for color, server in enumerate(servers):
            mine = [r for r in runs if r.server == server and "error" not in r.summary]
            ns = sorted({r.clients for r in mine})
            for key, style, label in series:
                points = [(n, median_of([r for r in mine if r.clients == n], key)) for n in ns]
                points = [(n, v) for n, v in points if v is not None]
                if not points:
                    continue
                xs, ys = zip(*points, strict=True)
                name = f"{server} {label}".strip()
                ax.plot(xs, ys, style, color=f"C{color}", label=name)
                every = [(r.clients, r.summary.get(key)) for r in mine]
                every = [(n, v) for n, v in every if v is not None]
                if len(every) > len(points):  # with --repeat: each run, faint
                    ax.scatter(*zip(*every, strict=True), s=10, color=f"C{color}", alpha=0.3)
        if "latency" in title:
            ax.set_yscale("log")
        ax.set_title(title)
        ax.set_xlabel("clients (N)")
        ax.set_xticks(sorted({r.clients for r in runs}))
        ax.set_ylim(bottom=0 if "latency" not in title else None)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle("Fan-out: one `metrics` event per interval to N SSE clients (medians)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def report(args: argparse.Namespace, runs: list[Run], started: datetime, command: str) -> str:
    info = machine()
    servers = args.servers
    first, others = servers[0], servers[1:]
    ratios = ", ".join(f"{first}/{o}" for o in others)
    lines = [
        f"# Fan-out benchmark: {' vs '.join(servers)}",
        "",
        f"- date: {started.strftime('%Y-%m-%d %H:%M UTC')}",
        f"- machine: {info['nproc']} CPUs ({info['cpu'] or 'unknown'}), "
        f"{info['memory_gib']} GiB, Python {info['python']}, {info['platform']}",
        f"- packages: {', '.join(f'{k} {v}' for k, v in info['packages'].items())}",
        f"- command: `{command}`",
        f"- event interval {args.interval:g} s, window {args.duration:g} s per run, "
        f"{args.repeat} run(s) per server and N, at most {args.per_process:,} clients per "
        "load-client process; server order alternates between N values",
    ]
    if "redis" in servers:
        lines.append(
            "- `redis`: one gateway process in cluster mode, its log in a redis-server of the "
            "run's own: each event goes to Redis and comes back through the process's tail"
        )
    if "workers" in servers:
        lines.append(
            f"- `workers`: `sse-monitor serve --workers {args.workers}` on one Redis; its "
            "figures cover every process of it (the supervisor's and each worker's), its "
            "Redis's CPU is a row of its own"
        )
    if "nchan" in servers:
        lines.append(f"- nchan: nginx with worker_processes {args.nchan_workers}")
    loads = [r.summary["loadavg_before"][0] for r in runs if "loadavg_before" in r.summary]
    if loads:
        lines.append(
            f"- 1-minute load average before each run: {min(loads):.2f} to {max(loads):.2f} "
            "(it includes the previous run's processes; more means other work on the machine)"
        )
    if others:
        lines.append(
            f"- ratio = {ratios}: below 1 {first} is better for latency, memory and CPU; "
            "for connected and received, 1 means as many"
        )
    lines += [
        "",
        "## Summary",
        "",
        table(runs, args.clients, servers, args.repeat, SUMMARY_KEYS),
        "",
        "## Every figure",
        "",
        table(runs, args.clients, servers, args.repeat),
        "",
    ]
    found = notes(runs, args.interval)
    if found:
        lines += ["Notes:", "", *(f"- {note}" for note in found), ""]
    lines += ["See bench/README.md for what each figure means."]
    return "\n".join(lines) + "\n"


# Main


def names(text: str) -> list[str]:
    chosen = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in chosen if name not in SERVERS]
    if unknown or not chosen or len(set(chosen)) != len(chosen):
        raise argparse.ArgumentTypeError(f"one or more of {', '.join(SERVERS)}, each once")
    return chosen


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--servers",
        type=names,
        default=list(DEFAULT_SERVERS),
        help=f"comma-separated, from {','.join(SERVERS)}; ratios are the first one over each "
        f"other (default {','.join(DEFAULT_SERVERS)})",
    )
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
    parser.add_argument(
        "--workers", type=int, default=2, help="processes of the server `workers` (default 2)"
    )
    parser.add_argument(
        "--nchan-workers", type=int, default=1, help="nginx worker_processes for nchan (default 1)"
    )
    parser.add_argument("--batch", type=int, default=250, help="connections opened at once")
    parser.add_argument(
        "--gc-trace",
        action="store_true",
        help="run the Python servers under bench/gc_trace.py and count their full GC pauses",
    )
    parser.add_argument(
        "--baseline",
        type=Path,
        help="a checkout of another commit (git worktree add /tmp/before REV): the server "
        "`baseline` is the gateway run from it, side by side with this one",
    )
    parser.add_argument("--out", type=Path, default=RESULTS / "fanout-latest.md")
    args = parser.parse_args(argv)
    # Each client is one socket: a load-client process must stay under its open-file limit.
    most = resource.getrlimit(resource.RLIMIT_NOFILE)[1] - FD_RESERVE
    if not 1 <= args.per_process <= most:
        parser.error(f"--per-process must be 1 to {most:,} (open-file limit here)")
    if "baseline" in args.servers and not (
        args.baseline and (args.baseline / "sse_monitor").is_dir()
    ):
        parser.error("the server `baseline` needs --baseline DIR, a checkout holding sse_monitor/")
    if "nchan" in args.servers and (why := nchan_missing()):
        parser.error(why)
    if set(CLUSTERED) & set(args.servers) and shutil.which("redis-server") is None:
        parser.error("the servers redis and workers need redis-server: apt-get install -y redis")
    return args


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
                    order = args.servers if (i + r) % 2 == 0 else args.servers[::-1]
                    for server in order:
                        tag = f"{server}-{n}-{r}"
                        try:
                            runs.append(run_one(children, args, server, n, r + 1, tag))
                        except Exception as exc:  # one heavy run failing keeps the others
                            log(f"{server} with {n} clients FAILED: {exc}")
                            lines = f"{type(exc).__name__}: {exc}".splitlines()
                            error = " / ".join(x.strip() for x in lines if x.strip())[:500]
                            runs.append(Run(server, n, r + 1, {"error": error}))
                            children.stop_all()  # whatever that run had started
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
    if plot(runs, args.servers, args.out.with_suffix(".png")):
        log(f"plot: {args.out.with_suffix('.png')}")
    log(f"wrote {args.out} and {args.out.with_suffix('.json')}")
    return 0 if all("error" not in r.summary for r in runs) else 1


if __name__ == "__main__":
    sys.exit(main())
