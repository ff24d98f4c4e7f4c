"""Several gateway processes: `serve --workers N` on one port, and nodes behind nginx.

The workers run the CLI as an operator does, against a real redis-server; the nodes are the
harness of tests/support/cluster.py, with nginx running deploy/nginx.conf in front of them.
(What the nodes share through Redis, one log and one producer, is tested on the same harness.)
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import psutil
import pytest

from tests.support.cluster import Cluster
from tests.support.gateway import SERVE, WorkersGateway, run_until_exit
from tests.support.http import tls
from tests.support.kato import Kato
from tests.support.nginx import shipped_max_fails
from tests.support.processes import free_port
from tests.support.sse_client import SSEStream
from tests.support.waiting import eventually, wait_until

STOP_SECONDS = 5  # from SIGTERM to the last worker gone: "a few seconds"
MAX_STREAMS = 40  # streams opened at most until every worker holds one


# --- serve --workers N ----------------------------------------------------------------------


def test_workers_without_redis_stop_start_up_with_one_clear_line() -> None:
    command = [*SERVE, "--port", str(free_port()), "--workers", "2"]
    result = run_until_exit(command, {"SSE_MONITOR_REDIS_URL": ""})
    assert result.returncode == 2, result.stderr
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert "--workers 2 needs SSE_MONITOR_REDIS_URL" in lines[0]
    assert "each process would poll KATO and keep its own history" in lines[0]


@pytest.mark.parametrize("count", ["0", "65", "two"])
def test_a_worker_count_out_of_range_is_refused(count: str) -> None:
    command = [*SERVE, "--port", str(free_port()), "--workers", count]
    result = run_until_exit(command, {})
    assert result.returncode == 2, result.stderr
    assert "argument --workers:" in result.stderr
    assert "Traceback" not in result.stderr


@contextlib.asynccontextmanager
async def open_streams() -> AsyncIterator[list[SSEStream]]:
    """A list to open streams into, every one closed on leaving."""
    streams: list[SSEStream] = []
    try:
        yield streams
    finally:
        await asyncio.gather(*(stream.close() for stream in streams))


async def open_stream(url: str, streams: list[SSEStream]) -> SSEStream:
    """A stream on `url`, added to `streams`, once its first `metrics` event has arrived."""
    stream = SSEStream(f"{url}/events")
    streams.append(stream)
    await stream.open()
    assert stream.response is not None and stream.response.status_code == 200
    await stream.wait_for_event("metrics")
    return stream


def streams_held(worker: psutil.Process, port: int) -> int:
    """The connections to `port` this worker holds open."""
    return sum(
        1
        for c in worker.net_connections("tcp")
        if c.status == psutil.CONN_ESTABLISHED and c.laddr.port == port
    )


async def test_workers_share_one_port_and_stop_together_on_sigterm(
    kato: Kato, redis_url: str
) -> None:
    env = {"SSE_MONITOR_REDIS_URL": redis_url}  # and SSE_MONITOR_POLL_INTERVAL=0.2
    with WorkersGateway(kato.url, workers=2, env=env, flags=("--interval", "0.35")) as gateway:
        workers = gateway.worker_processes()
        assert len({w.pid for w in workers}) == 2
        assert gateway.proc is not None and gateway.proc.pid not in {w.pid for w in workers}
        # The CLI's flags reach every worker, and win over the environment as in one process.
        starts = [line for line in gateway.lines() if line["event"] == "gateway.starting"]
        assert [(s["kato_url"], s["poll_interval"]) for s in starts] == [(kato.url, 0.35)] * 2

        async with open_streams() as streams:
            while not all(streams_held(w, gateway.port) for w in workers):
                assert len(streams) < MAX_STREAMS, [streams_held(w, gateway.port) for w in workers]
                await open_stream(gateway.url, streams)

            stopping = time.monotonic()
            gateway.terminate()
            code = await asyncio.to_thread(gateway.proc.wait, STOP_SECONDS)
            _, alive = await asyncio.to_thread(psutil.wait_procs, workers, STOP_SECONDS)
            stopped_in = time.monotonic() - stopping
            assert code == 0, gateway.log_tail()
            assert alive == []
            assert stopped_in < STOP_SECONDS
            for stream in streams:  # ended by the workers, not cancelled at the deadline
                await asyncio.wait_for(stream.ended.wait(), STOP_SECONDS)
        # No stream was left for uvicorn to cancel at its deadline (with a traceback each).
        assert "graceful shutdown exceeded" not in gateway.log(), gateway.log_tail()
        assert "Traceback" not in gateway.log(), gateway.log_tail()


# --- nodes behind nginx ---------------------------------------------------------------------


async def test_nginx_spreads_streams_over_the_nodes_and_passes_over_a_dead_one(
    cluster: Cluster,
) -> None:
    assert cluster.nginx is not None
    async with open_streams() as streams:
        # The shipped upstream balances by open connections: three streams, three nodes.
        for _ in cluster.nodes:
            await open_stream(cluster.url, streams)
        assert [node.answered("/events") for node in cluster.nodes] == [1, 1, 1]

        dead = cluster.nodes[1]
        dead.kill()
        await eventually(lambda: sum(s.ended.is_set() for s in streams) == 1, 5, "a cut stream")
        # New streams through nginx: each is offered to the dead node (it now has the fewest
        # connections), refused, and passed to another without the client knowing, until the
        # node has refused max_fails times and is skipped.
        for _ in range(3):
            await open_stream(cluster.url, streams)
        survivors = [node for node in cluster.nodes if node is not dead]
        assert sum(node.answered("/events") for node in survivors) == 2 + 3

    dead_address = f"127.0.0.1:{dead.port}"
    logged = await eventually(
        lambda: len(cluster.nginx.upstreams("/events")) == 6 and cluster.nginx.upstreams("/events"),
        5,
        "nginx's log of the six streams",
    )
    assert all(status == 200 for status, _ in logged), logged
    passed_over = [tried for _, tried in logged if len(tried) > 1]
    assert len(passed_over) == min(3, shipped_max_fails()), logged
    assert all(tried[0] == dead_address and tried[1] != dead_address for tried in passed_over)


def test_a_node_pauses_resumes_and_restarts_where_it_was(tmp_path: Path) -> None:
    """The harness itself: SIGSTOP, SIGCONT, kill -9 and a restart on the same port."""
    with Cluster(tmp_path, nodes=1, nginx=False) as cluster:
        (node,) = cluster.nodes
        port = node.port
        node.pause()
        with pytest.raises(httpx.TimeoutException):
            httpx.get(f"{node.url}/healthz", timeout=0.5, verify=tls())
        node.resume()
        assert httpx.get(f"{node.url}/healthz", timeout=5, verify=tls()).status_code == 200

        node.kill()
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"{node.url}/healthz", timeout=5, verify=tls())
        ticks = cluster.kato_ticks()
        node.restart()
        assert node.port == port
        assert httpx.get(f"{node.url}/readyz", timeout=5, verify=tls()).status_code == 200
        # It polls once the killed node's lease has run out (SSE_MONITOR_LEADER_TTL, 5 s).
        wait_until(lambda: cluster.kato_ticks() > ticks, 15, "the restarted node's polls")
        assert node.count("gateway.starting") == 2  # one log across both starts
