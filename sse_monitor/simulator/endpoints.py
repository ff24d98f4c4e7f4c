"""KATO's HTTP and WebSocket endpoints, each answering as the worker the middleware chose."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.websockets import WebSocket

from sse_monitor.simulator.answers import count_body, health_body, metrics_body, status_body
from sse_monitor.simulator.faults import faulty_response
from sse_monitor.simulator.push import REFUSE_CLOSE_CODE, serve_socket
from sse_monitor.simulator.state import SimulatedKato
from sse_monitor.simulator.validation import parse_create_request
from sse_monitor.simulator.workers import WORKER_HEADER, Worker, named_worker

#: Where the middleware leaves the worker that serves a request.
WORKER_SCOPE_KEY = "sse_monitor.simulator.worker"

_Body = Callable[[SimulatedKato, Worker], dict[str, Any]]


def simulated_kato(request: Request) -> SimulatedKato:
    kato: SimulatedKato = request.app.state.kato
    return kato


def serving_worker(request: Request) -> Worker:
    worker: Worker = request.scope[WORKER_SCOPE_KEY]
    return worker


async def http_exception(request: Request, exc: Exception) -> Response:
    """Render routing errors as FastAPI does: `{"detail": ...}` with the exception's headers."""
    assert isinstance(exc, HTTPException)
    return JSONResponse({"detail": exc.detail}, status_code=exc.status_code, headers=exc.headers)


async def health(request: Request) -> Response:
    return await _answer(request, "health", health_body)


async def metrics(request: Request) -> Response:
    return await _answer(request, "metrics", metrics_body)


async def _answer(request: Request, endpoint: str, body: _Body) -> Response:
    """KATO's own body, unless the endpoint's fault replaces it (or delays it)."""
    kato = simulated_kato(request)
    worker = serving_worker(request)
    faulty = await faulty_response(kato.faults.get(endpoint), lambda: body(kato, worker))
    if faulty is not None:
        return faulty
    return JSONResponse(body(kato, worker))


async def status(request: Request) -> Response:
    return JSONResponse(status_body(simulated_kato(request), serving_worker(request)))


async def session_count(request: Request) -> Response:
    return JSONResponse(count_body(simulated_kato(request), serving_worker(request)))


async def create_session(request: Request) -> Response:
    parsed, errors = parse_create_request(await request.body())
    if errors:
        return JSONResponse({"detail": errors}, status_code=422)
    kato = simulated_kato(request)
    try:
        session = kato.sessions.create(**parsed)
    except ValueError:  # Redis refuses a negative expiry; KATO does not catch it
        return PlainTextResponse("Internal Server Error", status_code=500)
    await kato.after_create(session["session_id"], serving_worker(request))
    return JSONResponse(session)


async def get_session(request: Request) -> Response:
    kato = simulated_kato(request)
    session_id = request.path_params["id"]
    session = kato.sessions.get(session_id)
    if session is None:
        return JSONResponse(
            {"detail": f"Session {session_id} not found or expired"}, status_code=404
        )
    await kato.after_get(session_id)
    return JSONResponse(session)


async def delete_session(request: Request) -> Response:
    kato = simulated_kato(request)
    session_id = request.path_params["id"]
    if not kato.sessions.delete(session_id):
        return JSONResponse({"detail": f"Session {session_id} not found"}, status_code=404)
    await kato.after_delete(session_id, serving_worker(request))
    return JSONResponse({"status": "deleted", "session_id": session_id})


async def ws_events(websocket: WebSocket) -> None:
    """KATO's push socket: a snapshot, then its worker's session events; `ping` gets `pong`."""
    kato: SimulatedKato = websocket.app.state.kato
    try:
        index = named_worker(websocket.headers.get(WORKER_HEADER), len(kato.workers))
    except ValueError:
        await websocket.close(code=REFUSE_CLOSE_CODE)
        return
    if kato.push.mode == "refuse":
        await websocket.close(code=REFUSE_CLOSE_CODE)  # before accept: the client sees a 403
        return
    await websocket.accept()
    await serve_socket(websocket, kato.push, kato.connect_socket(index))
