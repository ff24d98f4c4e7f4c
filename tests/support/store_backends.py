"""The backend a store test runs on, one of each kind by the test's parameter: a SQLite file of
the test's own, or the session's redis-server, emptied for the test; and what the stores made on
it share."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol, Self, TypeVar

import pytest
import redis.asyncio as redis

KINDS = ("sqlite", "redis")
CLIENT_TIMEOUT = 2.0  # the socket timeouts of every Redis client made here, unless told


class Closing(Protocol):
    async def aclose(self) -> None: ...


S = TypeVar("S", bound=Closing)


def backend_of(request: pytest.FixtureRequest, tmp_path: Path, file_name: str) -> str:
    """Where this test's stores live: a file `file_name` in `tmp_path`, or the Redis's URL."""
    if request.param == "sqlite":
        return str(tmp_path / file_name)
    return request.getfixturevalue("redis_url")


class Backend:
    """Stores of a test on one backend, `kind` "sqlite" (`where` the file) or "redis" (`where`
    its URL): every store kept by `made`, and every client from `client()`, is closed when the
    test leaves the `async with`."""

    def __init__(self, kind: str, where: str, **client_options: Any) -> None:
        self.kind = kind
        self.where = where
        self._client_options = {
            "socket_timeout": CLIENT_TIMEOUT,
            "socket_connect_timeout": CLIENT_TIMEOUT,
            **client_options,
        }
        self._stores: list[Closing] = []
        self.clients: list[redis.Redis] = []

    def made(self, store: S) -> S:
        """`store`, closed with the rest."""
        self._stores.append(store)
        return store

    def client(self) -> redis.Redis:
        """A new client of the backend's Redis, closed with the rest."""
        client = redis.from_url(self.where, **self._client_options)
        self.clients.append(client)
        return client

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        for store in self._stores:
            await store.aclose()  # a second time for those a test closed: nothing to do
        for client in self.clients:
            await client.aclose()
