"""What live container stats cost the Docker engine: streamed stats against one-shot reads.

A gateway that shows live stats for N containers can either keep one streaming
`GET /containers/{id}/stats` open per container (the engine samples every 1 s and pushes), or
ask every few seconds with `stream=False, one_shot=True` (API 1.41+). This benchmark starts its
own dockerd in a temp dir (own socket, data and exec roots), creates N busybox containers, and
measures the engine's CPU time (dockerd, its containerd and the containerd shims) over a fixed
window for each approach and for a baseline without readers. The machine is shared and noisy,
so the approaches alternate in order and repeat; the table shows medians and ratios.

    python bench/docker_stats_cost.py --containers 10 --window 30 --repeat 2
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path
from typing import Any

import docker
import psutil
from docker.models.containers import Container

BENCH = Path(__file__).resolve().parent
RESULTS = BENCH / "results"
IMAGE = "dstats-bench/busybox:latest"
PREFIX = "dstats-"
IDLE_CMD = ["sleep", "3600"]
LIGHT_CMD = ["sh", "-c", "while true; do echo x >/dev/null; sleep 0.1; done"]
MODES = ("A", "B", "C")
MODE_NAMES = {
    "A": "A streamed",
    "B": "B one-shot",
    "C": "C baseline",
}
GROUPS = ("dockerd", "containerd", "shims")


def log(message: str) -> None:
    print(f"[docker-stats {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# The engine


@dataclass
class Engine:
    """A dockerd of our own: everything under `root`, so that another engine is never touched."""

    root: Path
    popen: subprocess.Popen[bytes]

    @property
    def sock(self) -> Path:
        return self.root / "docker.sock"

    @property
    def url(self) -> str:
        return f"unix://{self.sock}"

    @property
    def containerd_sock(self) -> str:
        return str(self.root / "exec" / "containerd" / "containerd.sock")

    def log_tail(self, lines: int = 20) -> str:
        with contextlib.suppress(OSError):
            text = (self.root / "dockerd.log").read_text(errors="replace")
            return "\n".join(text.splitlines()[-lines:])
        return ""


def launch_engine(root: Path) -> Engine:
    """Start dockerd without networking (no iptables, no bridge), all of it under `root`."""
    for sub in ("data", "exec"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    argv = [
        "dockerd",
        "--iptables=false",
        "--ip6tables=false",
        "--bridge=none",
        "--storage-driver=overlay2",
        f"--data-root={root / 'data'}",
        f"--exec-root={root / 'exec'}",
        f"--pidfile={root / 'dockerd.pid'}",
        "-H",
        f"unix://{root / 'docker.sock'}",
    ]
    with (root / "dockerd.log").open("ab") as out:
        popen = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=out, stderr=out, start_new_session=True
        )
    return Engine(root, popen)


def wait_engine(engine: Engine, timeout: float = 60.0) -> None:
    """Poll the socket until dockerd answers; fail early if it died."""
    deadline = time.monotonic() + timeout
    while True:
        if engine.popen.poll() is not None:
            raise RuntimeError(f"dockerd exited ({engine.popen.returncode}):\n{engine.log_tail()}")
        if engine.sock.exists():
            with (
                contextlib.suppress(docker.errors.DockerException),
                contextlib.closing(docker.DockerClient(base_url=engine.url)) as client,
            ):
                client.ping()
                return
        if time.monotonic() > deadline:
            raise RuntimeError(f"dockerd did not answer in {timeout:.0f} s:\n{engine.log_tail()}")
        time.sleep(0.1)


def own_processes(engine: Engine) -> dict[str, list[psutil.Process]]:
    """dockerd, the containerd it started, and the shims that talk to that containerd.

    The shims are daemonized (their parent is init), so they are found by the containerd socket
    on their command line, which is under our exec root and nobody else's.
    """
    dockerd = psutil.Process(engine.popen.pid)
    containerd = [p for p in dockerd.children() if p.name() == "containerd"]
    shims = []
    for p in psutil.process_iter(["name", "cmdline"]):
        cmdline = p.info["cmdline"] or []
        if (p.info["name"] or "").startswith("containerd-shim") and (
            engine.containerd_sock in cmdline
        ):
            shims.append(p)
    return {"dockerd": [dockerd], "containerd": containerd, "shims": shims}


def stop_engine(engine: Engine) -> None:
    """Remove our containers, SIGTERM our dockerd and wait; then kill what is left of ours."""
    with (
        contextlib.suppress(Exception),
        contextlib.closing(docker.DockerClient(base_url=engine.url, timeout=30)) as client,
    ):
        for c in client.containers.list(all=True, filters={"name": PREFIX}):
            with contextlib.suppress(Exception):
                c.remove(force=True)
    leftovers: list[psutil.Process] = []
    with contextlib.suppress(psutil.Error):
        leftovers = [p for ps in own_processes(engine).values() for p in ps[:]]
    if engine.popen.poll() is None:
        engine.popen.terminate()
        try:
            engine.popen.wait(30)
        except subprocess.TimeoutExpired:
            engine.popen.kill()
            engine.popen.wait()
    for p in leftovers:
        with contextlib.suppress(psutil.Error):
            if p.is_running():
                p.kill()
                p.wait(5)
    # dockerd leaves its data root bind-mounted on itself (and overlays, after a crash): unmount
    # everything under our root before deleting it, and leave the directory if that fails.
    for mount in reversed(own_mounts(engine.root)):
        subprocess.run(["umount", "-l", mount], check=False, capture_output=True)
    if still := own_mounts(engine.root):
        log(f"leaving {engine.root}: still mounted ({len(still)})")
    else:
        shutil.rmtree(engine.root, ignore_errors=True)


def own_mounts(root: Path) -> list[str]:
    points = [line.split()[1] for line in Path("/proc/mounts").read_text().splitlines()]
    return [m for m in points if m == str(root) or m.startswith(f"{root}/")]


def import_busybox(client: docker.DockerClient, root: Path) -> None:
    """No registry here: build a one-binary rootfs from the static busybox and import it."""
    busybox = shutil.which("busybox")
    if busybox is None:
        raise RuntimeError("busybox not found (apt-get install busybox-static)")
    rootfs = root / "rootfs"
    for sub in ("bin", "tmp", "proc", "sys", "dev", "etc"):
        (rootfs / sub).mkdir(parents=True, exist_ok=True)
    shutil.copy2(busybox, rootfs / "bin" / "busybox")
    for applet in ("sh", "sleep", "echo", "cat", "yes"):
        (rootfs / "bin" / applet).symlink_to("busybox")
    tar_path = root / "busybox.tar"
    with tarfile.open(tar_path, "w") as tar:
        tar.add(rootfs, arcname=".")
    repository, tag = IMAGE.rsplit(":", 1)
    client.api.import_image_from_file(str(tar_path), repository=repository, tag=tag)


def create_containers(client: docker.DockerClient, n: int, light: int) -> list[str]:
    """N containers without network: `light` of them wake up every 0.1 s, the rest sleep."""
    names = []
    for i in range(n):
        name = f"{PREFIX}{i + 1}"
        command = LIGHT_CMD if i < light else IDLE_CMD
        client.containers.run(IMAGE, command, name=name, network_mode="none", detach=True)
        names.append(name)
    for name in names:
        status = client.containers.get(name).status
        if status != "running":
            raise RuntimeError(f"container {name} is {status}")
    return names


# CPU accounting


def cpu_seconds(process: psutil.Process) -> float:
    """User + system time, including reaped children (short-lived helpers such as shim starts)."""
    t = process.cpu_times()
    return t.user + t.system + t.children_user + t.children_system


def cpu_snapshot(processes: dict[str, list[psutil.Process]]) -> dict[str, float]:
    return {group: sum(cpu_seconds(p) for p in ps) for group, ps in processes.items()}


# The readers


class Readers:
    """One approach to collecting stats, started before the window and stopped after it."""

    samples: list[float]  # arrival time of every stats document

    def start(self) -> None:
        raise NotImplementedError

    def ready(self) -> bool:
        return True

    def stop(self) -> None:
        raise NotImplementedError


class NoReaders(Readers):
    """(C) the same containers and nothing reading their stats."""

    def __init__(self) -> None:
        self.samples = []

    def start(self) -> None:
        pass

    def stop(self) -> None:
        pass


class StreamReaders(Readers):
    """(A) one streaming stats request per container, each in its own thread, latest kept.

    The SDK's stream cannot be cancelled from outside, so a thread notices `stop` at its next
    sample (at most ~1 s later), leaves the loop and closes the generator; closing the client
    then closes the connections, which ends the engine's side of the stream.
    """

    def __init__(self, url: str, names: list[str]) -> None:
        self.client = docker.DockerClient(base_url=url, max_pool_size=len(names) + 4)
        self.names = names
        self.latest: dict[str, dict[str, Any]] = {}
        self.samples = []
        self.errors: list[str] = []
        self.stopping = threading.Event()
        self.lock = threading.Lock()
        self.threads: list[threading.Thread] = []

    def start(self) -> None:
        for name in self.names:
            container = self.client.containers.get(name)
            thread = threading.Thread(target=self.follow, args=(container,), daemon=True)
            thread.start()
            self.threads.append(thread)

    def follow(self, container: Container) -> None:
        stream: Iterator[dict[str, Any]] = container.stats(stream=True, decode=True)
        try:
            for sample in stream:
                now = time.monotonic()
                with self.lock:
                    self.latest[container.name] = sample
                    self.samples.append(now)
                if self.stopping.is_set():
                    break
        except Exception as exc:  # a reader's failure is reported, not fatal for the others
            if not self.stopping.is_set():
                self.errors.append(f"{container.name}: {exc!r}")
        finally:
            with contextlib.suppress(Exception):
                stream.close()  # type: ignore[attr-defined]

    def ready(self) -> bool:
        with self.lock:
            return len(self.latest) == len(self.names)

    def stop(self) -> None:
        self.stopping.set()
        for thread in self.threads:
            thread.join(10)
        self.client.close()


@dataclass
class Round:
    start: float
    wall: float
    reads: list[float] = field(default_factory=list)  # each request's own duration


class OneShotPoller(Readers):
    """(B) every `interval`, one `stream=False, one_shot=True` read per container, in parallel.

    Rounds start on a fixed schedule (start + k * interval); a round longer than the interval
    delays the next one instead of overlapping it, as a gateway's tick would.
    """

    def __init__(self, url: str, names: list[str], interval: float) -> None:
        self.client = docker.DockerClient(base_url=url, max_pool_size=len(names) + 4)
        self.names = names
        self.interval = interval
        self.latest: dict[str, dict[str, Any]] = {}
        self.samples = []
        self.rounds: list[Round] = []
        self.errors: list[str] = []
        self.stopping = threading.Event()
        self.pool = ThreadPoolExecutor(max_workers=len(names), thread_name_prefix="oneshot")
        self.thread = threading.Thread(target=self.loop, daemon=True)

    def start(self) -> None:
        self.thread.start()

    def read(self, name: str) -> float:
        started = time.monotonic()
        sample = self.client.api.stats(name, stream=False, one_shot=True)
        now = time.monotonic()
        self.latest[name] = sample
        self.samples.append(now)
        return now - started

    def loop(self) -> None:
        first = time.monotonic()
        k = 0
        while not self.stopping.is_set():
            started = time.monotonic()
            futures = [self.pool.submit(self.read, name) for name in self.names]
            reads = []
            for future in futures:
                try:
                    reads.append(future.result())
                except Exception as exc:
                    self.errors.append(repr(exc))
            self.rounds.append(Round(started, time.monotonic() - started, reads))
            k += 1
            next_start = first + k * self.interval
            self.stopping.wait(max(0.0, next_start - time.monotonic()))

    def ready(self) -> bool:
        return len(self.rounds) >= 1

    def stop(self) -> None:
        self.stopping.set()
        self.thread.join(30)
        self.pool.shutdown(wait=True)
        self.client.close()


# One run


@dataclass
class Run:
    mode: str
    repeat: int
    window: float
    cpu: dict[str, float]  # CPU seconds per group in the window
    processes: dict[str, int]
    bench_cpu: float  # this process's CPU seconds in the window (the readers' own cost)
    samples: int  # stats documents received in the window
    rounds: list[Round]
    errors: list[str]

    @property
    def engine(self) -> float:
        return sum(self.cpu.values())


def measure(
    mode: str,
    repeat: int,
    engine: Engine,
    names: list[str],
    *,
    window: float,
    warmup: float,
    interval: float,
) -> Run:
    """Start the readers, let them settle, then read the engine's CPU time across the window."""
    readers: Readers
    if mode == "A":
        readers = StreamReaders(engine.url, names)
    elif mode == "B":
        readers = OneShotPoller(engine.url, names, interval)
    else:
        readers = NoReaders()
    processes = own_processes(engine)
    me = psutil.Process()
    try:
        readers.start()
        deadline = time.monotonic() + warmup + 30
        time.sleep(warmup)
        while not readers.ready():
            if time.monotonic() > deadline:
                raise RuntimeError(f"{MODE_NAMES[mode]}: readers not ready")
            time.sleep(0.1)
        before, bench_before, t0 = cpu_snapshot(processes), cpu_seconds(me), time.monotonic()
        time.sleep(window)
        after, bench_after, t1 = cpu_snapshot(processes), cpu_seconds(me), time.monotonic()
    finally:
        readers.stop()
    rounds = [r for r in getattr(readers, "rounds", []) if t0 <= r.start and r.start + r.wall <= t1]
    return Run(
        mode=mode,
        repeat=repeat,
        window=t1 - t0,
        cpu={g: after[g] - before[g] for g in GROUPS},
        processes={g: len(processes[g]) for g in GROUPS},
        bench_cpu=bench_after - bench_before,
        samples=sum(1 for s in list(readers.samples) if t0 <= s <= t1),
        rounds=rounds,
        errors=list(getattr(readers, "errors", [])),
    )


# The table


def median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def table(runs: list[Run]) -> str:
    by_mode = {m: [r for r in runs if r.mode == m] for m in MODES}

    def pct(get: Callable[[Run], float]) -> dict[str, float | None]:
        return {m: median([100 * get(r) / r.window for r in rs]) for m, rs in by_mode.items()}

    base = median([r.engine for r in by_mode["C"]]) or 0.0

    def above_per_sample(m: str) -> float | None:
        values = [1000 * (r.engine - base) / r.samples for r in by_mode[m] if r.samples]
        return median(values)

    b_rounds = [x.wall * 1000 for r in by_mode["B"] for x in r.rounds]
    b_reads = [ms * 1000 for r in by_mode["B"] for x in r.rounds for ms in x.reads]
    rows: list[tuple[str, dict[str, float | None], str, bool]] = [
        ("engine CPU, total (% of a core)", pct(lambda r: r.engine), "{:.2f}", True),
        ("  dockerd", pct(lambda r: r.cpu["dockerd"]), "{:.2f}", True),
        ("  containerd", pct(lambda r: r.cpu["containerd"]), "{:.2f}", True),
        ("  containerd shims (all N)", pct(lambda r: r.cpu["shims"]), "{:.2f}", True),
        (
            "stats documents received in window",
            {m: median([r.samples for r in rs]) for m, rs in by_mode.items()},
            "{:,.0f}",
            False,
        ),
        (
            "engine CPU above baseline per document (ms)",
            {"A": above_per_sample("A"), "B": above_per_sample("B"), "C": None},
            "{:.2f}",
            False,
        ),
        ("B round wall time, median (ms)", {"B": median(b_rounds)}, "{:.0f}", False),
        ("B round wall time, max (ms)", {"B": max(b_rounds, default=None)}, "{:.0f}", False),
        ("B single read, median (ms)", {"B": median(b_reads)}, "{:.0f}", False),
        ("B single read, max (ms)", {"B": max(b_reads, default=None)}, "{:.0f}", False),
        (
            "bench process CPU, the readers (% of a core)",
            pct(lambda r: r.bench_cpu),
            "{:.2f}",
            True,
        ),
    ]
    lines = [
        "| figure | A streamed | B one-shot | C baseline | A/C | B/C | A/B |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for label, values, fmt, ratios in rows:
        cells = [fmt.format(values[m]) if values.get(m) is not None else "-" for m in MODES]
        a, b, c = (values.get(m) for m in MODES)
        ratio_cells = ["-", "-", "-"]
        if ratios:
            pairs = ((a, c), (b, c), (a, b))
            ratio_cells = [f"{x / y:.2f}" if x is not None and y else "-" for x, y in pairs]
        lines.append(f"| {label} | {' | '.join(cells)} | {' | '.join(ratio_cells)} |")
    each = {
        m: ", ".join(f"{100 * r.engine / r.window:.2f}" for r in sorted(rs, key=lambda r: r.repeat))
        for m, rs in by_mode.items()
    }
    lines.append(
        f"| engine CPU, each run (% of a core) | {each['A']} | {each['B']} | {each['C']} "
        "| - | - | - |"
    )
    return "\n".join(lines)


def report(runs: list[Run], args: argparse.Namespace, engine_version: str) -> str:
    orders = []
    for r in range(args.repeat):
        orders.append(" → ".join(run.mode for run in runs if run.repeat == r))
    processes = runs[0].processes
    notes = [f"- {MODE_NAMES[r.mode]} (run {r.repeat + 1}): {e}" for r in runs for e in r.errors]
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    header = [
        "# Docker stats: what each way of reading them costs the engine",
        "",
        f"- date: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
        f"- machine: {os.cpu_count()} CPUs ({cpu}), Python {platform.python_version()}, "
        f"{platform.platform()}, load average at the end {os.getloadavg()[0]:.2f}",
        f"- engine: {engine_version}; docker SDK {version('docker')}, psutil {version('psutil')}",
        f"- command: `python bench/docker_stats_cost.py {' '.join(sys.argv[1:])}`",
        f"- {args.containers} running containers ({args.light} waking every 0.1 s, the rest "
        f"`sleep 3600`); window {args.window:g} s after {args.warmup:g} s of warm-up; "
        f"B every {args.interval:g} s; {args.repeat} run(s) each, order: {'; '.join(orders)}",
        f"- engine CPU = user + system time (and reaped children's) of dockerd, the containerd it "
        f"started, and the {processes['shims']} containerd-shim-runc-v2 processes of its "
        "containers (separate processes here); table values are medians over the runs",
        "- A: one `container.stats(stream=True, decode=True)` per container, a thread each, "
        "latest kept; B: `client.api.stats(name, stream=False, one_shot=True)` for every "
        f"container in a pool of {args.containers} threads; C: no readers",
        "",
        "",
    ]
    body = table(runs)
    if notes:
        body += "\n\nReader errors:\n" + "\n".join(notes)
    return "\n".join(header) + body + "\n"


# Main


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM stops the benchmark like Ctrl-C: through the finally that stops our dockerd."""

    def handler(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--containers", type=int, default=10)
    parser.add_argument("--light", type=int, default=2, help="containers doing light work")
    parser.add_argument("--window", type=float, default=30.0, help="seconds measured per run")
    parser.add_argument("--repeat", type=int, default=2, help="runs per approach")
    parser.add_argument("--interval", type=float, default=3.0, help="B: seconds between rounds")
    parser.add_argument("--warmup", type=float, default=5.0, help="seconds before each window")
    parser.add_argument("--settle", type=float, default=3.0, help="seconds between runs")
    parser.add_argument("--out", type=Path, default=RESULTS / "docker-stats-cost.md")
    args = parser.parse_args()
    if shutil.which("dockerd") is None:
        sys.exit("dockerd not found (apt-get install docker.io)")

    runs: list[Run] = []
    with sigterm_as_interrupt():
        root = Path(tempfile.mkdtemp(prefix="dstats-", dir="/tmp"))
        log(f"starting dockerd in {root}")
        engine = launch_engine(root)
        try:
            wait_engine(engine)
            with contextlib.closing(docker.DockerClient(base_url=engine.url)) as client:
                v = client.version()
                engine_version = f"dockerd {v['Version']} (API {v['ApiVersion']})"
                for c in v.get("Components", []):
                    if c.get("Name") == "containerd":
                        engine_version += f", containerd {c['Version']}"
                import_busybox(client, root)
                names = create_containers(client, args.containers, args.light)
            log(f"{len(names)} containers running; {engine_version}")
            time.sleep(args.settle)
            for r in range(args.repeat):
                order = MODES if r % 2 == 0 else tuple(reversed(MODES))
                for mode in order:
                    log(f"run {r + 1}/{args.repeat}: {MODE_NAMES[mode]}, {args.window:g} s")
                    run = measure(
                        mode,
                        r,
                        engine,
                        names,
                        window=args.window,
                        warmup=args.warmup,
                        interval=args.interval,
                    )
                    runs.append(run)
                    log(
                        f"  engine {100 * run.engine / run.window:.2f}% of a core, "
                        f"{run.samples} documents"
                    )
                    time.sleep(args.settle)
        finally:
            log("removing the containers and stopping dockerd")
            stop_engine(engine)

    text = report(runs, args, engine_version)
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    log(f"saved {args.out}")


if __name__ == "__main__":
    main()
