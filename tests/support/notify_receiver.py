"""A notification receiver on loopback: a small Starlette app that records every request it gets
and answers from a script (status and headers, one answer a request), then `otherwise`."""

from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import dataclass, field

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route


@dataclass(frozen=True)
class Received:
    at: float  # time.monotonic() when it arrived
    headers: dict[str, str]
    body: bytes
    status: int  # what it was answered


@dataclass
class Answer:
    status: int
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0  # seconds before answering: a slow receiver


class RecordingReceiver:
    """`app` serves POST /hook and any path under it; `script` holds the answers to come."""

    def __init__(self, *answers: Answer | int) -> None:
        self.script = [a if isinstance(a, Answer) else Answer(a) for a in answers]
        self.otherwise = 200
        self.received: list[Received] = []
        self._lock = threading.Lock()
        self.app = Starlette(routes=[Route("/hook{rest:path}", self._hook, methods=["POST"])])

    def answer(self, *answers: Answer | int) -> None:
        """Answer the next requests so, after what is scripted already."""
        with self._lock:
            self.script += [a if isinstance(a, Answer) else Answer(a) for a in answers]

    def keys(self, status: int | None = None) -> list[str]:
        """The idempotency keys received, in order (those answered `status` only, if given)."""
        with self._lock:
            return [
                r.headers.get("idempotency-key", "")
                for r in self.received
                if status is None or r.status == status
            ]

    def count(self) -> int:
        with self._lock:
            return len(self.received)

    async def _hook(self, request: Request) -> Response:
        body = await request.body()
        with self._lock:
            answer = self.script.pop(0) if self.script else Answer(self.otherwise)
            self.received.append(
                Received(time.monotonic(), dict(request.headers), body, answer.status)
            )
        await asyncio.sleep(answer.delay)
        return Response(status_code=answer.status, headers=answer.headers)
