"""A small SSE client for tests: reads a real HTTP stream and parses it as browsers do."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

from tests.support.http import tls


@dataclass
class SSEEvent:
    event: str
    data: str
    id: str | None
    arrived: float = field(default_factory=time.monotonic)

    def json(self) -> Any:
        return json.loads(self.data)


class SSEParser:
    """Incremental parser following the WHATWG event-stream rules."""

    def __init__(self) -> None:
        self._buffer = ""
        self._data: list[str] = []
        self._event = ""
        self._id: str | None = None
        self.last_event_id: str | None = None
        self.retry: int | None = None
        self.comments: list[str] = []

    def feed(self, text: str) -> list[SSEEvent]:
        self._buffer += text
        events: list[SSEEvent] = []
        while True:
            index = min(
                (i for i in (self._buffer.find("\r"), self._buffer.find("\n")) if i >= 0),
                default=-1,
            )
            if index < 0:
                return events
            line = self._buffer[:index]
            skip = 2 if self._buffer[index : index + 2] == "\r\n" else 1
            if self._buffer[index] == "\r" and index + 1 == len(self._buffer):
                return events  # a CR at the end may be the first half of CRLF
            self._buffer = self._buffer[index + skip :]
            event = self._line(line)
            if event is not None:
                events.append(event)

    def _line(self, line: str) -> SSEEvent | None:
        if line == "":
            if not self._data:
                self._event = ""
                return None
            event = SSEEvent(self._event or "message", "\n".join(self._data), self.last_event_id)
            self._data, self._event = [], ""
            return event
        if line.startswith(":"):
            self.comments.append(line[1:].strip())
            return None
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._event = value
        elif name == "id" and "\0" not in value:
            self.last_event_id = value
        elif name == "retry" and value.isdigit():
            self.retry = int(value)
        return None


class SSEStream:
    """One open /events stream, reading in the background into a list of events."""

    def __init__(self, url: str, headers: dict[str, str] | None = None) -> None:
        self.url = url
        self.headers = headers or {}
        self.events: list[SSEEvent] = []
        self.parser = SSEParser()
        self.response: httpx.Response | None = None
        self.ended = asyncio.Event()
        self._changed = asyncio.Event()
        self._client = httpx.AsyncClient(timeout=httpx.Timeout(10, read=None), verify=tls())
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> SSEStream:
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def open(self) -> None:
        opened = asyncio.Event()
        self._task = asyncio.create_task(self._read(opened))
        waiter = asyncio.create_task(opened.wait())
        done, _ = await asyncio.wait(
            {waiter, self._task}, timeout=10, return_when="FIRST_COMPLETED"
        )
        if self._task in done:
            waiter.cancel()
            self._task.result()
        if waiter not in done:
            raise TimeoutError(f"no response from {self.url}")

    async def _read(self, opened: asyncio.Event) -> None:
        try:
            async with self._client.stream("GET", self.url, headers=self.headers) as response:
                self.response = response
                opened.set()
                async for chunk in response.aiter_text():
                    self.events.extend(self.parser.feed(chunk))
                    self._changed.set()
        except (httpx.RemoteProtocolError, httpx.ReadError):
            pass
        finally:
            self.ended.set()
            self._changed.set()

    async def wait_for(
        self, predicate: Callable[[list[SSEEvent]], Any], timeout: float = 10
    ) -> Any:
        """Wait until predicate(events) is truthy; return its value."""
        async with asyncio.timeout(timeout):
            while True:
                result = predicate(self.events)
                if result:
                    return result
                if self.ended.is_set():
                    raise AssertionError(f"stream ended first; got {self.names()}")
                self._changed.clear()
                await self._changed.wait()

    async def wait_for_event(
        self,
        name: str,
        where: Callable[[Any], bool] = lambda data: True,
        timeout: float = 10,
        since: int = 0,
    ) -> SSEEvent:
        """The first event of that name (from index `since` on) whose data passes `where`."""

        def found(events: list[SSEEvent]) -> SSEEvent | None:
            return next((e for e in events[since:] if e.event == name and where(e.json())), None)

        return await self.wait_for(found, timeout)

    def names(self) -> list[str]:
        return [event.event for event in self.events]

    def of(self, name: str) -> list[SSEEvent]:
        return [event for event in self.events if event.event == name]

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self._client.aclose()
