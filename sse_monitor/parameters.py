"""Reading request parameters strictly: a bad value is a 400 that says which one and why."""

from __future__ import annotations

from starlette.requests import Request

from sse_monitor.errors import BadRequest

MAX_EVENT_ID_LENGTH = 128


def event_id_param(request: Request, name: str, *, header: str | None = None) -> str | None:
    """An event id from a header (preferred: EventSource sends it on its own reconnects) or
    the query string (a reloaded page has only what it stored)."""
    value = request.headers.get(header) if header else None
    source = header
    if not value:
        value, source = request.query_params.get(name), name
    if value is None or value == "":
        return None
    if len(value) > MAX_EVENT_ID_LENGTH or not value.isascii() or not value.isprintable():
        raise BadRequest(
            f"{source} must be printable ASCII of at most {MAX_EVENT_ID_LENGTH} characters",
            parameter=source,
        )
    return value


def int_param(request: Request, name: str, *, default: int, low: int, high: int) -> int:
    raw = request.query_params.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise BadRequest(f"{name} must be a whole number", parameter=name) from None
    if not low <= value <= high:
        raise BadRequest(f"{name} must be between {low} and {high}", parameter=name)
    return value


def choice_param(
    request: Request, name: str, choices: tuple[str, ...], *, default: str | None
) -> str | None:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return default
    if raw not in choices:
        raise BadRequest(f"{name} must be one of {', '.join(choices)}", parameter=name)
    return raw
