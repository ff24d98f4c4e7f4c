"""KATO's push on `/ws/events`: what it sends, per-worker outboxes, and one socket's two loops.

Each open socket has an outbox (an asyncio queue: use it from the app's event loop) held by the
worker that accepted it. KATO pushes a session change only to the sockets of the worker that
served it, and only on its Redis session backend.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any

from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState

from sse_monitor.simulator.sessions import Session
from sse_monitor.simulator.timestamps import naive, with_offset

#: `/_sim/push` modes: "refuse" turns new /ws/events handshakes away, "drop" closes open sockets.
PUSH_MODES = ("on", "refuse", "drop")
REFUSE_CLOSE_CODE = 1008  # closed before accept: the client sees HTTP 403
_DROP_CLOSE_CODE = 1012  # "service restart", what a restarting KATO worker sends

# One open /ws/events socket: the texts to send it, in order; None ends it.
Outbox = asyncio.Queue[str | None]


def snapshot_event(active_sessions: int, now: float) -> dict[str, Any]:
    """What KATO sends first on every socket."""
    return {
        "event_type": "state.snapshot",
        "timestamp": naive(now),  # KATO's datetime.now(): no offset
        "data": {"active_sessions": active_sessions, "system_status": "healthy"},
    }


def created_event(session: Session, now: float) -> dict[str, Any]:
    data = {
        "session_id": session.session_id,
        "node_id": session.node_id,
        "created_at": with_offset(session.created_at),
    }
    return _event("session.created", now, data)


def destroyed_event(session_id: str, now: float) -> dict[str, Any]:
    data = {
        "session_id": session_id,
        "destroyed_at": with_offset(now),
        "reason": "explicit_delete",
    }
    return _event("session.destroyed", now, data)


def _event(event_type: str, timestamp: float, data: dict[str, Any]) -> dict[str, Any]:
    return {"event_type": event_type, "timestamp": with_offset(timestamp), "data": data}


class PushOutboxes:
    """The open sockets' outboxes, by worker; `enabled=False` (in-memory sessions) pushes nothing.

    Open sockets outlive a `/_sim/reset`: `reset` puts back the mode and the count only.
    """

    def __init__(self, workers: int, *, enabled: bool) -> None:
        self._enabled = enabled
        self._by_worker: list[set[Outbox]] = [set() for _ in range(workers)]
        self.mode = "on"
        self._pushed = 0

    def open(self, worker: int, snapshot: dict[str, Any]) -> Outbox:
        """A new socket's outbox, joined to `worker` with the snapshot already queued in it."""
        outbox: Outbox = asyncio.Queue()
        outbox.put_nowait(json.dumps(snapshot))
        self._by_worker[worker].add(outbox)
        return outbox

    def close(self, outbox: Outbox) -> None:
        for outboxes in self._by_worker:
            outboxes.discard(outbox)

    def push(self, worker: int, event: dict[str, Any]) -> None:
        """Queue an event for the sockets of the worker that made it (no cross-worker fan-out)."""
        if not self._enabled:
            return  # KATO's in-memory sessions push nothing
        text = json.dumps(event)
        for outbox in self._by_worker[worker]:
            outbox.put_nowait(text)
            self._pushed += 1

    def set_mode(self, mode: str) -> int:
        """Apply a `/_sim/push` mode; returns how many sockets "drop" closed.

        "drop" is a one-off: it closes every open socket and leaves the mode as it was, so
        "refuse" then "drop" cuts push off until "on".
        """
        if mode not in PUSH_MODES:
            raise ValueError(f"mode must be one of {', '.join(PUSH_MODES)}; got {mode!r}")
        if mode != "drop":
            self.mode = mode
            return 0
        dropped = 0
        for outboxes in self._by_worker:
            for outbox in outboxes:
                outbox.put_nowait(None)
                dropped += 1
            outboxes.clear()  # gone from the stats at once, though closing takes a moment
        return dropped

    def stats(self) -> dict[str, Any]:
        by_worker = [len(outboxes) for outboxes in self._by_worker]
        return {
            "websockets": sum(by_worker),
            "websockets_by_worker": by_worker,
            "pushed": self._pushed,
        }

    def reset(self) -> None:
        self.mode = "on"
        self._pushed = 0


async def serve_socket(websocket: WebSocket, outboxes: PushOutboxes, outbox: Outbox) -> None:
    """Run an accepted socket until its outbox ends or the client leaves, then forget it."""
    reader = asyncio.create_task(_answer_pings(websocket, outbox))
    try:
        await _send_outbox(websocket, outbox)
    finally:
        outboxes.close(outbox)
        reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reader


async def _answer_pings(websocket: WebSocket, outbox: Outbox) -> None:
    """Read the client: `ping` queues `pong` (one writer per socket); a disconnect ends it."""
    while True:
        message = await websocket.receive()
        if message["type"] == "websocket.disconnect":
            outbox.put_nowait(None)
            return
        if message.get("text") == "ping":
            outbox.put_nowait("pong")


async def _send_outbox(websocket: WebSocket, outbox: Outbox) -> None:
    """Send queued texts as they come; None ends the socket (closing it unless the client left)."""
    while (text := await outbox.get()) is not None:
        try:
            await websocket.send_text(text)
        except WebSocketDisconnect:
            return
    if websocket.client_state is WebSocketState.CONNECTED:  # dropped by /_sim/push
        with contextlib.suppress(WebSocketDisconnect):
            await websocket.close(code=_DROP_CLOSE_CODE)
