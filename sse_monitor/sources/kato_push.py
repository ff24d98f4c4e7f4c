"""KATO's push channel: one WebSocket to /ws/events, kept open, reconnecting with backoff.

KATO (Redis session mode) sends a `state.snapshot` on connect, then one JSON message per session
created or destroyed: fast and with the session's identity, but only the events of the KATO
worker that holds the socket, and nothing for sessions that expire. So the poll stays the source
of truth (sessions.py), and this channel is an accelerator: when it is down, refused, or absent
(an in-memory or older KATO), polling alone works as before.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol
from urllib.parse import urlsplit, urlunsplit

import structlog
from websockets.asyncio.client import connect
from websockets.exceptions import WebSocketException

from sse_monitor.backoff import Backoff
from sse_monitor.clock import iso, utc_now
from sse_monitor.redact import redact_url
from sse_monitor.sources.kato import kato_time

log = structlog.get_logger("sse_monitor.kato_push")

MAX_MESSAGE_BYTES = 64 * 1024
FIRST_BACKOFF_SECONDS = 0.5
MAX_BACKOFF_SECONDS = 30.0


def push_url(kato_url: str) -> str:
    """http(s)://host[:port][/base] -> ws(s)://host[:port][/base]/ws/events."""
    parts = urlsplit(kato_url)
    scheme = "wss" if parts.scheme == "https" else "ws"
    return urlunsplit((scheme, parts.netloc, parts.path.rstrip("/") + "/ws/events", "", ""))


@dataclass(frozen=True, slots=True)
class PushedChange:
    """One `session.created` / `session.destroyed` message from KATO's /ws/events."""

    created: bool
    session_id: str | None
    node_id: str | None
    reason: str | None
    kato_time: datetime | None  # the message's timestamp
    received_at: datetime  # the gateway's clock


class PushListener(Protocol):
    """What the channel feeds (the session monitor): pushed sessions, and counts with KATO's
    time."""

    def pushed(self, change: PushedChange) -> None: ...

    def push_snapshot(self, count: int, kato_time: datetime | None, received: datetime) -> None: ...


class KatoPush:
    def __init__(self, url: str, *, open_timeout: float = 5.0) -> None:
        self.url = url
        self._open_timeout = open_timeout
        self.state = "connecting"  # connecting, live, or down
        self.since: datetime = utc_now()
        self.error: str | None = None
        self.messages = 0
        self.connects = 0

    def describe(self) -> dict[str, Any]:
        """For the `metrics` snapshot: whether push is live, since when, and why not."""
        return {
            "state": self.state,
            "since": iso(self.since),
            "error": self.error,
            "messages": self.messages,
        }

    async def run(self, listener: PushListener) -> None:
        """Forever: connect, read until the socket ends, wait (backoff with jitter), again."""
        backoff = Backoff(FIRST_BACKOFF_SECONDS, MAX_BACKOFF_SECONDS)
        while True:
            try:
                await self._session(listener)
                backoff.reset()  # it was up: come back quickly
            except asyncio.CancelledError:
                raise
            except (OSError, WebSocketException, TimeoutError) as exc:
                self._set("down", _reason(exc))
            except Exception as exc:  # a bug must not end the channel for good
                log.exception("kato_push.failed")
                self._set("down", f"unexpected {type(exc).__name__}")
            await asyncio.sleep(backoff.delay())

    async def _session(self, listener: PushListener) -> None:
        async with connect(
            self.url,
            open_timeout=self._open_timeout,
            max_size=MAX_MESSAGE_BYTES,
            ping_interval=20,
            ping_timeout=20,
            user_agent_header="sse-monitor",
        ) as socket:
            self.connects += 1
            self._set("live", None)
            async for message in socket:
                self.messages += 1
                self._receive(message, listener)
        self._set("down", "KATO closed the push socket")

    def _receive(self, message: str | bytes, listener: PushListener) -> None:
        received = utc_now()
        try:
            body = json.loads(message)
        except ValueError:
            return  # `pong`, or something we do not know: not a session change
        if not isinstance(body, dict) or not isinstance(body.get("data"), dict):
            return
        kind, data = body.get("event_type"), body["data"]
        stamp = kato_time(body.get("timestamp"))
        if kind == "state.snapshot":
            count = data.get("active_sessions")
            if isinstance(count, int) and not isinstance(count, bool) and count >= 0:
                listener.push_snapshot(count, stamp, received)
        elif kind in ("session.created", "session.destroyed"):
            listener.pushed(
                PushedChange(
                    created=kind == "session.created",
                    session_id=_text(data.get("session_id")),
                    node_id=_text(data.get("node_id")),
                    reason=_text(data.get("reason")),
                    kato_time=stamp,
                    received_at=received,
                )
            )

    def _set(self, state: str, error: str | None) -> None:
        if state == self.state and error == self.error:
            return
        if state != self.state:
            self.since = utc_now()
            if state == "live":
                log.info("kato_push.live", url=redact_url(self.url))
            elif self.state == "live" or self.connects == 0:
                log.warning("kato_push.down", url=redact_url(self.url), error=error)
        self.state, self.error = state, error


def _text(value: Any) -> str | None:
    return value[:200] if isinstance(value, str) else None


def _reason(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return f"{type(exc).__name__}: {redact_url(text)}"[:300]
