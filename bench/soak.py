"""Soak benchmark: the gateway under churning SSE clients for T minutes, sampled over time.

As real processes on 127.0.0.1: a simulated KATO in Redis session mode (its sessions pushed on
/ws/events; its own random activity, plus sessions this script creates and deletes over HTTP),
the gateway with a rules file whose alert fires and resolves as this script moves KATO's CPU
figure up and down (`/_sim/resources`), and load clients (bench/soak_client.py) holding N
streams: one leaves and one comes back resuming with Last-Event-ID every 1/rate s, a few stop
reading and must be dropped after the gateway's send timeout. Every `SAMPLE_SECONDS` it reads
the gateway's RSS and open fds from /proc/<pid> (no load on the gateway) and its asyncio tasks
from its Prometheus endpoint; the clients report latency and their durable-event checks. It
prints a table per minute and a verdict against the targets, and writes JSON, markdown and a
plot (when matplotlib is installed) to bench/results/soak-latest.*.

    python bench/soak.py                                  # 2,000 clients, 20/s, 30 minutes
    python bench/soak.py --clients 300 --minutes 2 --warmup-minutes 1
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import queue
import shlex
import statistics
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

import httpx
import psutil
from fanout import (
    BENCH,
    RESULTS,
    Child,
    Children,
    free_port,
    machine,
    sigterm_as_interrupt,
    split,
    wait_http_ok,
)
from prometheus_client.parser import text_string_to_metric_families

SAMPLE_SECONDS = 10.0
PER_PROCESS = 2500  # clients per load-client process
ALERT_PERIOD_SECONDS = 20.0  # KATO's CPU goes above the rule's threshold and back this often
SESSION_RATE = 1.0  # sessions created or deleted over HTTP per second, on top of KATO's own
STUCK_HOLD_EXTRA = 600.0  # default hold: the send timeout plus this (for the buffers to fill)
PER_STREAM = {"fds": 1, "tasks": 2}  # a stream's socket; its request task and disconnect watcher
RSS_GROWTH_TARGET = 5.0  # % after warm-up
FLAT_TARGET = 2.0  # % of the warm-up median, for fds and tasks
RULES = """\
[[rule]]
id = "soak_cpu"
metric = "kato.resources.cpu_percent"
op = ">"
threshold = 50
severity = "warning"
message = "soak: KATO CPU at {value:.1f} %"
"""


def log(message: str) -> None:
    print(f"[soak {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# The processes


def start_kato(children: Children) -> str:
    port = free_port()
    child = children.start(
        "kato",
        # Redis session mode (sessions kept in memory): session changes are pushed on /ws/events
        [
            sys.executable,
            "-m",
            "sse_monitor",
            "simulator",
            "--port",
            str(port),
            "--session-backend",
            "redis",
        ],
        env={"SSE_MONITOR_LOG_LEVEL": "warning", "SSE_MONITOR_LOG_FORMAT": "json"},
    )
    url = f"http://127.0.0.1:{port}"
    wait_http_ok([child], f"{url}/health", timeout=30)
    return url


def start_gateway(children: Children, args: argparse.Namespace, kato_url: str) -> tuple[Child, str]:
    rules = children.workdir / "rules.toml"
    rules.write_text(RULES)
    port = free_port()
    env = {
        "SSE_MONITOR_POLL_INTERVAL": "1",
        "SSE_MONITOR_LOG_FORMAT": "json",
        "SSE_MONITOR_LOG_LEVEL": "warning",
        "SSE_MONITOR_CONTAINER_STATS": "off",
        "SSE_MONITOR_KATO_PUSH": "on",
        "SSE_MONITOR_SESSION_EVENTS": "on",
        "SSE_MONITOR_HISTORY": str(args.history),
        "SSE_MONITOR_SEND_TIMEOUT": f"{args.send_timeout:g}",
        "SSE_MONITOR_ALERT_RULES": str(rules),
        "SSE_MONITOR_MAX_STREAMS": "1000000",  # every load client comes from 127.0.0.1
        "SSE_MONITOR_MAX_STREAMS_PER_CLIENT": "1000000",
        "SSE_MONITOR_DB": ":memory:",
    }
    argv = [sys.executable, "-m", "sse_monitor", "serve", "--port", str(port)]
    child = children.start("gateway", [*argv, "--kato-url", kato_url], env=env)
    url = f"http://127.0.0.1:{port}"
    wait_http_ok([child], f"{url}/readyz", timeout=60)
    return child, url


class Driver(threading.Thread):
    """Makes durable events flow: sessions over KATO's HTTP API, an alert firing and resolving."""

    def __init__(self, kato_url: str) -> None:
        super().__init__(name="driver", daemon=True)
        self.kato_url = kato_url
        self.stopping = threading.Event()
        self.sessions: list[str] = []
        self.errors = 0

    def run(self) -> None:
        with httpx.Client(base_url=self.kato_url, timeout=5) as http:
            started = time.monotonic()
            step = 0
            while not self.stopping.wait(
                max(0.0, started + step / SESSION_RATE - time.monotonic())
            ):
                step += 1
                try:
                    self.session_step(http, step)
                    if step % round(ALERT_PERIOD_SECONDS * SESSION_RATE) == 0:
                        high = (step // round(ALERT_PERIOD_SECONDS * SESSION_RATE)) % 2 == 1
                        cpu = {"cpu_percent": 90.0 if high else 10.0}
                        http.post("/_sim/resources", json=cpu).raise_for_status()
                except httpx.HTTPError:
                    self.errors += 1

    def session_step(self, http: httpx.Client, step: int) -> None:
        if self.sessions and (len(self.sessions) >= 5 or step % 2 == 0):
            session_id = self.sessions.pop(0)
            http.delete(f"/sessions/{session_id}").raise_for_status()
        else:
            answer = http.post("/sessions", json={"node_id": "soak", "ttl_seconds": 3600})
            self.sessions.append(answer.raise_for_status().json()["session_id"])

    def stop(self) -> None:
        self.stopping.set()
        self.join(10)


def start_clients(
    children: Children, args: argparse.Namespace, url: str
) -> list[tuple[Child, queue.Queue[dict[str, Any] | None]]]:
    shares = split(args.clients, PER_PROCESS)
    bound = args.minutes * 60 + 600
    loaders = []
    for number, (first, count) in enumerate(shares):
        rate = args.connect_rate * count / args.clients
        argv = [sys.executable, str(BENCH / "soak_client.py"), "--base-url", url]
        argv += ["--clients", str(count), "--first-index", str(first)]
        argv += ["--connect-rate", f"{rate:g}", "--duration", f"{bound:g}"]
        argv += ["--stuck", str(args.stuck if number == 0 else 0)]
        argv += ["--stuck-hold", f"{args.stuck_hold:g}"]
        argv += ["--report-every", f"{SAMPLE_SECONDS:g}"]
        child = children.start(f"soak-client-{first}", argv, pipes=True)
        lines: queue.Queue[dict[str, Any] | None] = queue.Queue()
        assert child.popen.stdout is not None
        threading.Thread(target=read_lines, args=(child.popen.stdout, lines), daemon=True).start()
        loaders.append((child, lines))
    return loaders


def read_lines(stream: IO[bytes], lines: queue.Queue[dict[str, Any] | None]) -> None:
    for raw in stream:
        with contextlib.suppress(ValueError):
            lines.put(json.loads(raw))
    lines.put(None)


# Samples


@dataclass
class Sample:
    at: float  # seconds since the clients were all connected
    rss_mib: float
    fds: int
    tasks: int | None
    streams: int | None
    stuck_closed: int | None
    lagging_closed: int | None
    gateway_cpu_percent: float


def proc_rss_fds(pid: int) -> tuple[float, int]:
    """RSS (MiB) and open file descriptors, straight from /proc: no request to the gateway."""
    rss_kib = 0
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                rss_kib = int(line.split()[1])
    return rss_kib / 1024, len(os.listdir(f"/proc/{pid}/fd"))


def scrape(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    samples = {}
    with contextlib.suppress(httpx.HTTPError, ValueError):
        text = httpx.get(f"{url}/metrics", timeout=10).text
        for family in text_string_to_metric_families(text):
            for s in family.samples:
                samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return samples


def gauge(samples: dict[Any, float], name: str, **labels: str) -> int | None:
    value = samples.get((name, tuple(sorted(labels.items()))))
    return None if value is None else int(value)


@dataclass
class Soak:
    """Everything measured, as it comes in."""

    samples: list[Sample] = field(default_factory=list)
    rows: list[dict[str, Any]] = field(default_factory=list)  # the table, as printed
    reports: dict[int, list[dict[str, Any]]] = field(default_factory=dict)  # per load client
    latency: dict[int, dict[int, int]] = field(default_factory=dict)  # minute -> ms -> count

    def take(self, index: int, line: dict[str, Any], minute: int) -> None:
        self.reports.setdefault(index, []).append(line)
        bucket = self.latency.setdefault(minute, {})
        for ms, count in line.get("latency_ms", {}).items():
            bucket[int(ms)] = bucket.get(int(ms), 0) + count

    def totals(self) -> dict[str, Any]:
        """The latest running totals, summed over load clients."""
        keys = (
            "connected", "stuck_open", "connects", "resumes", "leaves", "server_closed",
            "checked", "delivered", "lost", "duplicated", "out_of_order", "unexpected",
            "unverifiable", "reset_too_old", "reset_other", "stuck_episodes", "stuck_dropped",
            "stuck_not_dropped", "pending_checks",
        )  # fmt: skip
        latest = [lines[-1] for lines in self.reports.values() if lines]
        out: dict[str, Any] = {k: sum(line.get(k, 0) for line in latest) for k in keys}
        live = [
            next((x for x in reversed(lines) if not x["final"]), {})
            for lines in self.reports.values()
        ]
        out["connected"] = sum(line.get("connected", 0) for line in live)  # before the stop
        failures: dict[str, int] = {}
        for line in latest:
            for name, count in line.get("connect_failures", {}).items():
                failures[name] = failures.get(name, 0) + count
        out["connect_failures"] = failures
        out["examples"] = [e for line in latest for e in line.get("examples", [])][:10]
        return out


def p99(histogram: dict[int, int]) -> float | None:
    total = sum(histogram.values())
    if not total:
        return None
    rank, seen = math.ceil(0.99 * total), 0
    for ms in sorted(histogram):
        seen += histogram[ms]
        if seen >= rank:
            return float(ms)
    return None


# The run


def run(args: argparse.Namespace, children: Children, soak: Soak) -> dict[str, Any]:
    kato_url = start_kato(children)
    gateway, url = start_gateway(children, args, kato_url)
    pid = gateway.popen.pid
    driver = Driver(kato_url)
    driver.start()
    rss0, fds0 = proc_rss_fds(pid)
    log(f"gateway pid {pid} ready: {rss0:.1f} MiB, {fds0} fds; connecting {args.clients} clients")
    ramp_started = time.time()
    loaders = start_clients(children, args, url)
    for child, lines in loaders:
        line = lines.get(timeout=120 + args.clients / 20)
        if line is None or not line.get("ready"):
            raise RuntimeError(f"{child.name} did not connect:\n{child.log_tail()}")
    t0 = time.time()
    log(f"connected in {t0 - ramp_started:.1f} s; soaking {args.minutes:g} minutes")
    process = psutil.Process(pid)
    cpu_before, cpu_at = sum(process.cpu_times()[:2]), time.monotonic()
    end = t0 + args.minutes * 60
    next_sample = t0
    printed_minutes = 0
    print_header()
    while time.time() < end:
        next_sample += SAMPLE_SECONDS
        drain(loaders, soak, t0)
        time.sleep(max(0.0, min(next_sample, end) - time.time()))
        if gateway.popen.poll() is not None:
            raise RuntimeError(f"the gateway exited with {gateway.popen.returncode}")
        rss, fds = proc_rss_fds(pid)
        metrics = scrape(url)
        cpu_now, now = sum(process.cpu_times()[:2]), time.monotonic()
        cpu_percent = 100 * (cpu_now - cpu_before) / (now - cpu_at)
        cpu_before, cpu_at = cpu_now, now
        soak.samples.append(
            Sample(
                round(time.time() - t0, 1),
                round(rss, 2),
                fds,
                gauge(metrics, "sse_monitor_asyncio_tasks"),
                gauge(metrics, "sse_monitor_streams_open"),
                gauge(metrics, "sse_monitor_streams_closed_total", reason="stuck"),
                gauge(metrics, "sse_monitor_streams_closed_total", reason="lagging"),
                round(cpu_percent, 1),
            )
        )
        drain(loaders, soak, t0)
        while time.time() - t0 >= (printed_minutes + 1) * 60 - 1:
            printed_minutes += 1
            soak.rows.append(minute_row(soak, printed_minutes))
            print_row(soak.rows[-1])
    driver.stop()
    for child, _ in loaders:
        assert child.popen.stdin is not None
        with contextlib.suppress(OSError):
            child.popen.stdin.write(b"stop\n")
            child.popen.stdin.close()
    finals = []
    for index, (child, lines) in enumerate(loaders):
        while (line := lines.get(timeout=120)) is not None:
            soak.take(index, line, int((time.time() - t0) // 60))
            if line.get("final"):
                finals.append(line)
        child.popen.wait(30)
    if len(finals) != len(loaders):
        raise RuntimeError("a load client ended without its final report")
    return {
        "t0": t0,
        "ramp_seconds": round(t0 - ramp_started, 1),
        "gateway_idle": {"rss_mib": round(rss0, 2), "fds": fds0},
        "driver_errors": driver.errors,
        "client_cpu_percent": [
            round(100 * line["cpu_seconds"] / (line["at"] - ramp_started), 1) for line in finals
        ],
        "gateway_log": gateway.log_tail(5),
        "gateway_log_lines": len(gateway.log_path.read_text(errors="replace").splitlines()),
        "minutes_printed": printed_minutes,
    }


def drain(loaders: list[tuple[Child, queue.Queue[Any]]], soak: Soak, t0: float) -> None:
    for index, (child, lines) in enumerate(loaders):
        while True:
            try:
                line = lines.get_nowait()
            except queue.Empty:
                break
            if line is None:
                raise RuntimeError(f"{child.name} ended early:\n{child.log_tail()}")
            soak.take(index, line, int((line["at"] - t0) // 60))


# The report

COLUMNS = (
    "minute", "RSS MiB", "fds", "tasks", "clients", "streams", "p99 ms", "gw CPU %",
    "delivered", "lost", "dup", "stuck dropped",
)  # fmt: skip


def minute_row(soak: Soak, minute: int) -> dict[str, Any]:
    mine = [s for s in soak.samples if (minute - 1) * 60 < s.at <= minute * 60 + 1]
    last = mine[-1] if mine else None
    totals = soak.totals()
    return {
        "minute": minute,
        "rss_mib": last.rss_mib if last else None,
        "fds": last.fds if last else None,
        "tasks": last.tasks if last else None,
        "clients": totals["connected"],
        "streams": last.streams if last else None,
        "p99_ms": p99(soak.latency.get(minute - 1, {})),
        "gateway_cpu_percent": round(statistics.mean(s.gateway_cpu_percent for s in mine), 1)
        if mine
        else None,
        "delivered": totals["delivered"],
        "lost": totals["lost"],
        "duplicated": totals["duplicated"],
        "stuck_dropped": f"{totals['stuck_dropped']}/{totals['stuck_episodes']}",
    }


def cells(row: dict[str, Any]) -> list[str]:
    def fmt(value: Any) -> str:
        if value is None:
            return "-"
        return (
            f"{value:,.1f}"
            if isinstance(value, float)
            else f"{value:,}"
            if isinstance(value, int)
            else str(value)
        )

    return [fmt(v) for v in row.values()]


def print_header() -> None:
    print(" | ".join(f"{c:>9}" for c in COLUMNS), flush=True)


def print_row(row: dict[str, Any]) -> None:
    print(" | ".join(f"{c:>9}" for c in cells(row)), flush=True)


def window(samples: list[Sample], start: float, end: float) -> list[Sample]:
    return [s for s in samples if start <= s.at <= end]


def residual(samples: list[Sample], key: str) -> float | None:
    """Median of fds (or tasks) less what the open streams hold: the gateway's own."""
    values = [
        getattr(s, key) - PER_STREAM[key] * s.streams
        for s in samples
        if getattr(s, key) is not None and s.streams is not None
    ]
    return statistics.median(values) if values else None


def verdict(args: argparse.Namespace, soak: Soak, totals: dict[str, Any]) -> dict[str, Any]:
    """The targets: RSS growth after warm-up, fds and tasks flat, no durable event lost."""
    warm = args.warmup_minutes * 60
    span = min(60.0, warm)  # the windows compared: the last minute of warm-up, the last minute
    last_at = soak.samples[-1].at if soak.samples else 0.0
    base = window(soak.samples, warm - span, warm)
    tail = window(soak.samples, last_at - span, last_at)
    checks: dict[str, Any] = {}

    def median(samples: list[Sample], key: str) -> float | None:
        values = [getattr(s, key) for s in samples if getattr(s, key) is not None]
        return statistics.median(values) if values else None

    for key, limit, kind in (
        ("rss_mib", RSS_GROWTH_TARGET, "growth"),
        ("fds", FLAT_TARGET, "flat"),
        ("tasks", FLAT_TARGET, "flat"),
    ):
        before, after = median(base, key), median(tail, key)
        change = None if not before or after is None else round(100 * (after / before - 1), 2)
        if key in PER_STREAM and before:  # at the same number of streams as in warm-up
            own_before, own_after = residual(base, key), residual(tail, key)
            if own_before is not None and own_after is not None:
                change = round(100 * (own_after - own_before) / before, 2)
        ok = change is not None and (change < limit if kind == "growth" else abs(change) <= limit)
        target = f"{'<' if kind == 'growth' else '±'}{limit:g} %"
        checks[key] = {"warmup_median": before, "end_median": after, "change_percent": change}
        checks[key] |= {"target": target, "ok": ok}
    checks["streams"] = {
        "warmup_median": median(base, "streams"),
        "end_median": median(tail, "streams"),
    }
    durable_ok = (
        totals["lost"] == 0
        and totals["duplicated"] == 0
        and totals["out_of_order"] == 0
        and totals["unexpected"] == 0
        and totals["reset_other"] == 0
        and totals["checked"] > 0
    )
    checks["durable"] = {k: totals[k] for k in (
        "checked", "delivered", "lost", "duplicated", "out_of_order", "unexpected",
        "unverifiable", "reset_too_old", "reset_other")} | {"ok": durable_ok}  # fmt: skip
    stuck_ok = totals["stuck_not_dropped"] == 0  # none judged: the run was shorter than a hold
    stuck_keys = ("stuck_episodes", "stuck_dropped", "stuck_not_dropped")
    checks["stuck"] = {k: totals[k] for k in stuck_keys} | {"ok": stuck_ok}
    long_enough = args.minutes > args.warmup_minutes
    checks["ok"] = long_enough and all(
        c["ok"] for name, c in checks.items() if isinstance(c, dict) and "ok" in c
    )
    checks["warmup"] = f"the first {args.warmup_minutes:g} minutes after every client connected"
    return checks


def report_markdown(
    args: argparse.Namespace,
    info: dict[str, Any],
    rows: list[dict[str, Any]],
    result: dict[str, Any],
) -> str:
    v = result["verdict"]
    t = result["totals"]
    lines = [
        "# Soak: the gateway under churning clients",
        "",
        f"- date: {result['date']}; command: `{result['command']}`",
        f"- machine: {info['nproc']} CPUs ({info['cpu'] or 'unknown'}), {info['memory_gib']} GiB, "
        f"Python {info['python']}",
        f"- {args.clients:,} clients, {args.connect_rate:g} connects/s (each a resume with "
        f"Last-Event-ID after 1-10 s away), {args.stuck} stuck, send timeout "
        f"{args.send_timeout:g} s, history {args.history:,}, {args.minutes:g} minutes; "
        f"warm-up: {v['warmup']}",
        f"- ramp: {result['run']['ramp_seconds']} s; load clients' CPU (% of a core): "
        f"{result['run']['client_cpu_percent']}; gateway log lines (warning and above): "
        f"{result['run']['gateway_log_lines']}",
        "",
        "| " + " | ".join(COLUMNS) + " |",
        "|" + "---:|" * len(COLUMNS),
        *("| " + " | ".join(cells(row)) + " |" for row in rows),
        "",
        f"## Verdict: {'PASS' if v['ok'] else 'FAIL'}",
        "",
        "| target | warm-up median | end median | change | target | ok |",
        "|---|---:|---:|---:|---:|---|",
    ]
    for key, label in (("rss_mib", "RSS (MiB)"), ("fds", "open fds"), ("tasks", "asyncio tasks")):
        c = v[key]
        lines.append(
            f"| {label} | {c['warmup_median']} | {c['end_median']} | {c['change_percent']} % | "
            f"{c['target']} | {'yes' if c['ok'] else 'NO'} |"
        )
    d, s = v["durable"], v["stuck"]
    lines += [
        "",
        f"- streams open (gateway): {v['streams']['warmup_median']} at the end of warm-up, "
        f"{v['streams']['end_median']} at the end",
        f"- durable events for resuming clients: {d['checked']:,} resumes checked, "
        f"{d['delivered']:,} delivered, {d['lost']} lost, {d['duplicated']} duplicated, "
        f"{d['out_of_order']} out of order, {d['unexpected']} unknown; resets: "
        f"{d['reset_too_old']} past the history (allowed), {d['reset_other']} other (failures); "
        f"{d['unverifiable']} not checkable: {'ok' if d['ok'] else 'FAILED'}",
        f"- stuck clients: {s['stuck_episodes']} stopped reading, {s['stuck_dropped']} dropped, "
        f"{s['stuck_not_dropped']} not dropped: {'ok' if s['ok'] else 'FAILED'}",
        f"- connects {t['connects']:,} ({t['resumes']:,} resumes), leaves {t['leaves']:,}, "
        f"streams the gateway closed on reading clients {t['server_closed']}, connect failures "
        f"{t['connect_failures'] or 0}",
    ]
    if args.minutes <= args.warmup_minutes:
        lines.append("- the run is not longer than its warm-up: no verdict on growth")
    if t["examples"]:
        lines += ["", "Examples of failed checks:", ""]
        lines += [f"- `{json.dumps(e)[:400]}`" for e in t["examples"]]
    lines += ["", "See bench/README.md (Soak) for what is measured and the targets."]
    return "\n".join(lines) + "\n"


def plot(samples: list[dict[str, Any]], rows: list[dict[str, Any]], path: Path) -> bool:
    """Draws a run from its JSON parts (samples, per-minute rows), so `--plot` can redraw one."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    minutes = [s["at"] / 60 for s in samples]
    fig, axes = plt.subplots(1, 5, figsize=(22, 4.5))
    panels = (
        ("gateway RSS (MiB)", (("rss_mib", "RSS"),)),
        ("open fds, asyncio tasks", (("fds", "fds"), ("tasks", "tasks"))),
        ("open streams", (("streams", "streams"),)),
    )
    for ax, (title, series) in zip(axes, panels, strict=False):
        for color, (key, label) in enumerate(series):
            points = [(m, s[key]) for m, s in zip(minutes, samples, strict=True)]
            points = [(m, v) for m, v in points if v is not None]
            if points:
                ax.plot(*zip(*points, strict=True), "-", color=f"C{color}", label=label)
        ax.set_title(title)
        ax.set_ylim(bottom=0)
    at = [row["minute"] for row in rows]
    axes[3].plot(at, [row["p99_ms"] for row in rows], "o-")
    axes[3].set_title("`metrics` latency p99 per minute (ms)")
    delivered = [row["delivered"] for row in rows]
    per_minute = [b - a for a, b in zip([0, *delivered], delivered, strict=False)]
    axes[4].plot(at, per_minute, "o-", color="C0", label="delivered per minute")
    axes[4].set_ylim(bottom=0)
    faults = axes[4].twinx()
    faults.plot(at, [row["lost"] for row in rows], "s--", color="C3", label="lost (total)")
    faults.plot(at, [row["duplicated"] for row in rows], "^:", color="C1", label="repeated (total)")
    faults.set_ylim(bottom=0, top=max(1, *(row["lost"] + row["duplicated"] for row in rows)))
    faults.legend(fontsize=8, loc="lower right")
    axes[4].set_title("durable events to resuming clients")
    for ax in axes:
        ax.set_xlabel("minutes")
        ax.grid(True, alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8, loc="lower left" if ax is axes[4] else "best")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


# Main


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=2000, help="reading clients (default 2000)")
    parser.add_argument("--connect-rate", type=float, default=20.0, help="connects/s (default 20)")
    parser.add_argument("--minutes", type=float, default=30.0, help="soak length (default 30)")
    parser.add_argument("--stuck", type=int, default=5, help="clients that stop reading (5)")
    parser.add_argument("--send-timeout", type=float, default=5.0, help="gateway's, s (5)")
    parser.add_argument("--history", type=int, default=1000, help="gateway's history (1000)")
    parser.add_argument("--warmup-minutes", type=float, default=5.0, help="default 5")
    parser.add_argument(
        "--stuck-hold",
        type=float,
        help="seconds a stuck client does not read (default: send timeout + 600, for the "
        "socket buffers to fill first)",
    )
    parser.add_argument("--out", type=Path, default=RESULTS / "soak-latest.md")
    parser.add_argument("--plot", type=Path, help="only redraw the plot of a run's JSON file")
    args = parser.parse_args(argv)
    if args.clients < 1 or args.minutes <= 0 or args.connect_rate < 0 or args.stuck < 0:
        parser.error(
            "--clients and --minutes must be positive, --connect-rate and --stuck not negative"
        )
    if args.warmup_minutes <= 0:
        parser.error("--warmup-minutes must be positive")
    if args.stuck_hold is None:
        args.stuck_hold = args.send_timeout + STUCK_HOLD_EXTRA
    if args.minutes > 240:
        parser.error("--minutes is at most 240: the soak must end by itself")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.plot:
        result = json.loads(args.plot.read_text())
        return 0 if plot(result["samples"], result["minutes"], args.plot.with_suffix(".png")) else 1
    command = shlex.join(["python", os.path.relpath(__file__), *(argv or sys.argv[1:])])
    started = datetime.now(UTC)
    soak = Soak()
    with tempfile.TemporaryDirectory(prefix="soak-") as tmp, sigterm_as_interrupt():
        children = Children(Path(tmp))
        try:
            run_info = run(args, children, soak)
        except KeyboardInterrupt:
            log("interrupted: stopping every process started")
            return 130
        finally:
            children.stop_all()
    totals = soak.totals()
    rows = soak.rows
    last_at = soak.samples[-1].at if soak.samples else 0.0
    if last_at > 60 * len(rows) + 5:  # the last, partial minute
        rows.append(minute_row(soak, len(rows) + 1) | {"minute": round(last_at / 60, 2)})
        print_row(rows[-1])
    result = {
        "date": started.isoformat(),
        "command": command,
        "parameters": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "run": run_info,
        "totals": totals,
        "verdict": verdict(args, soak, totals),
        "minutes": rows,
        "samples": [vars(s) for s in soak.samples],
        "latency_p99_ms_overall": p99(merge(soak.latency.values())),
    }
    info = machine()
    result["machine"] = info
    text = report_markdown(args, info, rows, result)
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    args.out.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    if plot(result["samples"], rows, args.out.with_suffix(".png")):
        log(f"plot: {args.out.with_suffix('.png')}")
    log(f"wrote {args.out} and {args.out.with_suffix('.json')}")
    return 0 if result["verdict"]["ok"] else 1


def merge(histograms: Any) -> dict[int, int]:
    merged: dict[int, int] = {}
    for histogram in histograms:
        for ms, count in histogram.items():
            merged[ms] = merged.get(ms, 0) + count
    return merged


if __name__ == "__main__":
    sys.exit(main())
