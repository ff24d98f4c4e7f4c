"""The simulated KATO as the tests run it: a real HTTP server in a thread on a free port, with
its state at hand and its HTTP controls (sessions, faults, the push channel) as methods."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import httpx

from sse_monitor.simulator.app import create_simulator_app
from sse_monitor.simulator.state import SimulatedKato
from sse_monitor.simulator.workers import WORKER_HEADER
from tests.support.http import tls
from tests.support.servers import ThreadedServer

# A KATO session as KATO answers POST /sessions and writes it into Redis: its fields, in order.
SESSION_FIELDS = [
    "session_id",
    "node_id",
    "created_at",
    "expires_at",
    "ttl_seconds",
    "metadata",
    "session_config",
]


@dataclass
class Kato:
    """A running simulated KATO: its state, and its server (which tests may stop and restart).

    `worker` picks the simulated worker that serves a request (X-Sim-Worker): in Redis session
    mode, only that worker's push sockets hear of the change.
    """

    state: SimulatedKato
    server: ThreadedServer

    @property
    def url(self) -> str:
        return self.server.url

    async def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """One request to KATO, which must succeed."""
        async with httpx.AsyncClient(base_url=self.url, timeout=5, verify=tls()) as client:
            response = await client.request(method, path, **kwargs)
        response.raise_for_status()
        return response

    async def create_session(self, node_id: str = "test", worker: int | None = None) -> str:
        response = await self.request(
            "POST", "/sessions", json={"node_id": node_id}, headers=worker_header(worker)
        )
        return response.json()["session_id"]

    async def delete_session(self, session_id: str, worker: int | None = None) -> None:
        await self.request("DELETE", f"/sessions/{session_id}", headers=worker_header(worker))

    async def fault(self, endpoint: str, mode: str, **extra: object) -> None:
        body = {"endpoint": endpoint, "mode": mode, **extra}
        await self.request("POST", "/_sim/fault", json=body)

    async def push(self, mode: str) -> None:
        """Turn push connections away (`refuse`), close the open ones (`drop`), or allow them
        again (`on`)."""
        await self.request("POST", "/_sim/push", json={"mode": mode})

    async def stats(self) -> dict[str, Any]:
        return (await self.request("GET", "/_sim/stats")).json()

    async def request_counts(self) -> dict[str, int]:
        return (await self.stats())["requests"]

    async def push_worker(self) -> int:
        """The simulated worker holding the one push socket open (the gateway's)."""
        by_worker = (await self.stats())["websockets_by_worker"]
        assert sum(by_worker) == 1, by_worker
        return by_worker.index(1)

    async def stop(self) -> None:
        await asyncio.to_thread(self.server.stop)

    async def restart(self) -> None:
        """A new server on the same port, with the same state: KATO coming back."""
        app = create_simulator_app(self.state)
        self.server = ThreadedServer(app, host=self.server.host, port=self.server.port)
        await asyncio.to_thread(self.server.start)


def worker_header(worker: int | None) -> dict[str, str]:
    return {} if worker is None else {WORKER_HEADER: str(worker)}


@contextmanager
def running_kato(state: SimulatedKato | None = None, host: str = "127.0.0.1") -> Iterator[Kato]:
    """A simulated KATO (of `state`, or a default one) serving on `host` for the block."""
    state = SimulatedKato() if state is None else state
    kato = Kato(state, ThreadedServer(create_simulator_app(state), host=host).start())
    try:
        yield kato
    finally:
        kato.server.stop()
