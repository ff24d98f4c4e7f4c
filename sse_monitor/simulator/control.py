"""The `/_sim/` endpoints (not KATO's): tests set faults, pins and push modes, and read counters."""

from __future__ import annotations

import json
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from sse_monitor.simulator.endpoints import simulated_kato
from sse_monitor.simulator.faults import DEFAULT_SLOW_DELAY, parse_answer

#: Requests under this prefix skip KATO's middleware: no worker serves them, none is counted.
CONTROL_PREFIX = "/_sim/"


def bad_request(message: str) -> Response:
    """The simulator's own refusals: `{"error": ...}`, a shape KATO never uses."""
    return JSONResponse({"error": message}, status_code=400)


async def sim_stats(request: Request) -> Response:
    kato = simulated_kato(request)
    return JSONResponse({"requests": kato.request_counts(), **kato.push.stats()})


async def sim_fault(request: Request) -> Response:
    body = await _json_object(request)
    if body is None:
        return bad_request("body must be a JSON object")
    delay = body.get("delay", DEFAULT_SLOW_DELAY)
    if isinstance(delay, bool) or not isinstance(delay, int | float):
        return bad_request("delay must be a number of seconds")
    try:
        answer = parse_answer(body["response"]) if "response" in body else None
        simulated_kato(request).faults.set(
            str(body.get("endpoint")), str(body.get("mode")), delay=float(delay), answer=answer
        )
    except ValueError as exc:
        return bad_request(str(exc))
    return JSONResponse({"ok": True})


async def sim_reset(request: Request) -> Response:
    kato = simulated_kato(request)
    kato.reset()
    await kato.after_reset()
    return JSONResponse({"ok": True})


async def sim_expire(request: Request) -> Response:
    body = await _json_object(request)
    if body is None or not isinstance(body.get("session_id"), str):
        return bad_request('body must be {"session_id": "..."}')
    session_id = body["session_id"]
    kato = simulated_kato(request)
    if not kato.sessions.expire(session_id):
        return JSONResponse({"error": f"no live session {session_id}"}, status_code=404)
    await kato.after_expire(session_id)
    return JSONResponse({"ok": True})


async def sim_push(request: Request) -> Response:
    body = await _json_object(request)
    if body is None:
        return bad_request('body must be {"mode": "on" | "refuse" | "drop"}')
    try:
        dropped = simulated_kato(request).push.set_mode(str(body.get("mode")))
    except ValueError as exc:
        return bad_request(str(exc))
    return JSONResponse({"ok": True, "dropped": dropped})


async def sim_resources(request: Request) -> Response:
    body = await _json_object(request)
    if body is None:
        return bad_request("body must be a JSON object")
    try:
        simulated_kato(request).pin_resources(body)
    except ValueError as exc:
        return bad_request(str(exc))
    return JSONResponse({"ok": True})


async def _json_object(request: Request) -> dict[str, Any] | None:
    try:
        body = json.loads(await request.body())
    except ValueError:
        return None
    return body if isinstance(body, dict) else None
