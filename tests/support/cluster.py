"""A gateway cluster on loopback, for the tests of cluster mode: one redis-server, one simulated
KATO, N gateway nodes sharing SSE_MONITOR_REDIS_URL and SSE_MONITOR_CLUSTER (each with its own
SSE_MONITOR_DB), and nginx in front of them running deploy/nginx.conf, the file operators get.

    with Cluster(tmp_path, nodes=3) as cluster:
        first, second, third = cluster.nodes  # GatewayProcess: .url, .port, .log(), .answered()
        await SSEStream(f"{cluster.url}/events").open()  # through nginx
        second.kill()  # kill -9; pause() / resume() are SIGSTOP / SIGCONT
        second.restart()  # on its port again, its database kept
        cluster.kato_ticks()  # the ticks KATO has answered, whichever node polled

With `namespace` (tests/support/netns.py), node 0 runs inside it, so that a test can cut it
from Redis; Redis and KATO then listen on the namespace's host address, which every node uses.
"""

from __future__ import annotations

import contextlib
import signal
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Self

import httpx
import pytest

from sse_monitor.simulator.state import SimulatedKato
from tests.support.gateway import GatewayProcess
from tests.support.http import tls
from tests.support.kato import Kato, running_kato
from tests.support.netns import Namespace
from tests.support.nginx import ShippedNginx, skip_without_nginx
from tests.support.redis_server import RedisServerProcess, missing_redis
from tests.support.waiting import wait_until

CLUSTER_NAME = "test-cluster"
TICK_ROUTE = "/metrics"  # the KATO route a tick asks once (and /health, in parallel)


def skip_without_cluster(nginx: bool = True) -> None:
    """Skip the calling test when redis-server (or nginx) is missing (a failure under CI=true)."""
    reason = missing_redis()
    if reason:
        pytest.skip(f"no Redis: {reason}")
    if nginx:
        skip_without_nginx()


class ClusterNode(GatewayProcess):
    """One node of a Cluster: a gateway process (polling every 0.2 s, JSON log, no container
    figures) with its database at `db_path`, which a restart keeps."""

    start_timeout = 60.0  # the nodes start together, sharing the machine's cores

    def __init__(
        self,
        index: int,
        kato_url: str,
        env: dict[str, str],
        db_path: Path,
        namespace: Namespace | None = None,
    ) -> None:
        super().__init__(
            kato_url,
            env={**env, "SSE_MONITOR_DB": str(db_path)},
            prefix=namespace.prefix if namespace is not None else (),
            host=namespace.inside if namespace is not None else "127.0.0.1",
        )
        self.index = index
        self.name = f"gateway node {index}"
        self.paused = False

    @property
    def pid(self) -> int:
        assert self.proc is not None, f"{self.name} was never started"
        return self.proc.pid

    def kill(self) -> None:
        """kill -9: no shutdown at all (its streams cut, its lease left to run out)."""
        assert self.proc is not None, f"{self.name} was never started"
        self.proc.kill()
        self.proc.wait()
        self.paused = False

    def pause(self) -> None:
        """SIGSTOP: it holds its connections and answers nothing until resume()."""
        self._signal(signal.SIGSTOP)
        self.paused = True

    def resume(self) -> None:
        """SIGCONT, after pause()."""
        self._signal(signal.SIGCONT)
        self.paused = False

    def restart(self, timeout: float | None = None) -> Self:
        """Stop it (SIGTERM) if it runs, and start it again on the same port."""
        self.stop()
        return self.start(timeout)

    def stop(self, timeout: float | None = None) -> int | None:
        if self.paused and self.running:
            self.resume()  # a stopped process would not see SIGTERM
        return super().stop(timeout)

    def readyz(self) -> httpx.Response:
        """Its answer to /readyz (200 or 503: its body says why)."""
        return httpx.get(f"{self.url}/readyz", timeout=5, verify=tls())

    def role(self) -> str:
        """`producer` or `edge`, by its /readyz."""
        return self.readyz().json()["role"]

    def _signal(self, signum: int) -> None:
        assert self.running, f"{self.name} is not running"
        assert self.proc is not None
        self.proc.send_signal(signum)


class Cluster:
    """`nodes` gateway nodes of one cluster over one redis-server and one simulated KATO (of
    `kato_state`, or a default one), with `env` on top of every node's environment; nginx in
    front of them unless `nginx=False`. Everything lives under `root` (a test's tmp_path).
    `persistent_redis` keeps Redis's data across its restarts; `namespace` runs node 0 in it.

    start() returns once every node has had KATO's answer and nginx listens; nodes start in
    parallel, or with `first_leads` node 0 alone first, until it holds the lease (so it is the
    producer). close() stops everything, paused nodes included. The test is skipped where
    redis-server or nginx is missing.
    """

    def __init__(
        self,
        root: Path,
        nodes: int = 3,
        env: dict[str, str] | None = None,
        kato_state: SimulatedKato | None = None,
        nginx: bool = True,
        name: str = CLUSTER_NAME,
        persistent_redis: bool = False,
        namespace: Namespace | None = None,
        first_leads: bool = False,
    ) -> None:
        assert namespace is None or not nginx, "nginx reaches nodes on loopback only"
        self.root = root
        self.node_count = nodes
        self.extra_env = env or {}
        self.kato_state = kato_state
        self.with_nginx = nginx
        self.name = name
        self.namespace = namespace
        self.first_leads = first_leads
        self.services_host = namespace.outside if namespace is not None else "127.0.0.1"
        self.redis = RedisServerProcess(
            self._folder("redis"), host=self.services_host, persistent=persistent_redis
        )
        self.nodes: list[ClusterNode] = []
        self.nginx: ShippedNginx | None = None
        self.kato: Kato | None = None
        self._stack = contextlib.ExitStack()

    @property
    def url(self) -> str:
        """nginx's URL: the way in for clients."""
        assert self.nginx is not None, "this cluster has no nginx (nginx=False)"
        return self.nginx.url

    @property
    def node_env(self) -> dict[str, str]:
        """What every node's environment says on top of GatewayProcess's defaults."""
        return {
            "SSE_MONITOR_REDIS_URL": self.redis.url,
            "SSE_MONITOR_CLUSTER": self.name,
            **self.extra_env,
        }

    def start(self) -> Self:
        skip_without_cluster(nginx=self.with_nginx)
        with self._stack as stack:
            stack.enter_context(self.redis)
            self.kato = stack.enter_context(running_kato(self.kato_state, self.services_host))
            self.nodes = [self._node(index) for index in range(self.node_count)]
            for node in self.nodes:
                stack.callback(node.close)
            together = self.nodes
            if self.first_leads:
                self.nodes[0].start()
                wait_until(lambda: self.nodes[0].role() == "producer", 15, "node 0's lease")
                together = self.nodes[1:]
            with ThreadPoolExecutor(max(1, len(together))) as pool:
                for started in [pool.submit(node.start) for node in together]:
                    started.result()
            if self.with_nginx:
                self.nginx = stack.enter_context(ShippedNginx([n.port for n in self.nodes]))
            self._stack = stack.pop_all()  # started: close() unwinds it
        return self

    def close(self) -> None:
        self._stack.close()

    def kato_ticks(self) -> int:
        """The ticks KATO has answered since it started, whichever node asked."""
        assert self.kato is not None, "the cluster was never started"
        return self.kato.state.request_counts()[TICK_ROUTE]

    def _node(self, index: int) -> ClusterNode:
        assert self.kato is not None
        db_path = self._folder(f"node-{index}") / "sse-monitor.db"
        namespace = self.namespace if index == 0 else None
        return ClusterNode(index, self.kato.url, self.node_env, db_path, namespace)

    def _folder(self, name: str) -> Path:
        folder = self.root / name
        folder.mkdir(parents=True, exist_ok=True)
        return folder

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.close()
