"""The cluster bench/cluster.py measures: the tests' own (tests/support/cluster.py: one
redis-server, one simulated KATO, N gateway nodes) with a benchmark's settings, nginx running
deploy/nginx.conf in a main config sized for thousands of streams, and what each node says of
itself in /readyz.

The tests' harness is reused as it is, so that the benchmark starts the cluster exactly as the
tests do; the bench's checkout must be on sys.path (bench/cluster.py puts it there).
"""

from __future__ import annotations

import resource
import time
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import httpx

from tests.support.cluster import Cluster, ClusterNode
from tests.support.nginx import ShippedNginx, replace_once

__all__ = ["Cluster", "ClusterNode", "StreamsNginx", "bench_env", "producer_of", "readyz"]

FD_RESERVE = 1000  # descriptors an nginx worker keeps besides its connections


def bench_env(**settings: str) -> dict[str, str]:
    """Every node's settings on top of the harness's: no stream limits (every load client
    comes from 127.0.0.1, through nginx), nginx trusted for X-Forwarded-For, and the given
    SSE_MONITOR_* settings (by their names without the prefix: POLL_INTERVAL="3")."""
    return {
        "SSE_MONITOR_MAX_STREAMS": "1000000",
        "SSE_MONITOR_MAX_STREAMS_PER_CLIENT": "1000000",
        "SSE_MONITOR_TRUSTED_PROXIES": "127.0.0.1",
        **{f"SSE_MONITOR_{name}": value for name, value in settings.items()},
    }


def readyz(node: ClusterNode) -> dict[str, Any]:
    """The node's /readyz (its body says the same whether it answers 200 or 503)."""
    body: dict[str, Any] = httpx.get(f"{node.url}/readyz", timeout=10).json()
    return body


def producer_of(nodes: Sequence[ClusterNode], timeout: float = 30.0) -> ClusterNode:
    """The one node that says it produces, once exactly one does."""
    deadline = time.monotonic() + timeout
    while True:
        producers = [node for node in nodes if node.running and readyz(node)["role"] == "producer"]
        if len(producers) == 1:
            return producers[0]
        if time.monotonic() > deadline:
            raise TimeoutError(f"{len(producers)} nodes say they produce, after {timeout} s")
        time.sleep(0.1)


def logged_at(line: dict[str, Any]) -> float:
    """The time of one of the gateway's JSON log lines (structlog's ISO timestamp, UTC)."""
    return datetime.fromisoformat(line["timestamp"]).timestamp()


class StreamsNginx(ShippedNginx):
    """deploy/nginx.conf exactly as ShippedNginx runs it, but with `workers` worker processes
    and as many connections each as the open-file limit allows: every stream holds two of
    them (the client's and the one to its node), and the tests' 1,024 would hold 500.

    For experiments only, `changes` replaces text in the shipped file (each old text with its
    new one, wherever it is; an error if it is not there), e.g. the upstream's parameters."""

    def __init__(
        self,
        upstream_ports: Sequence[int],
        workers: int,
        changes: Sequence[tuple[str, str]] = (),
    ) -> None:
        super().__init__(upstream_ports)
        self.workers = workers
        self.changes = list(changes)

    def write_config(self) -> None:
        super().write_config()
        site = self.root / "sse-monitor.conf"
        text = site.read_text()
        for old, new in self.changes:
            if old not in text:
                raise ValueError(f"{old!r} is not in the shipped file")
            text = text.replace(old, new)
        site.write_text(text)

    def main_config(self, http: str) -> str:
        text = super().main_config(http)
        nofile = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
        workers = f"worker_processes {self.workers};\nworker_rlimit_nofile {nofile};"
        text = replace_once(text, "worker_processes 1;", workers)
        connections = f"worker_connections {nofile - FD_RESERVE};"
        return replace_once(text, "worker_connections 1024;", connections)
