"""Reading request parameters strictly: a bad value is a 400 that says which one and why."""

from __future__ import annotations

import re

from starlette.requests import Request

from sse_monitor.web.errors import BadRequest

MAX_EVENT_ID_LENGTH = 128
MAX_NUMBER_LENGTH = 18  # digits: past any bound we use, and cheap to convert
_WHOLE_NUMBER = re.compile(r"-?[0-9]+")


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
    """Plain ASCII digits only: int() would also take ' 5', '5_0' and other scripts' digits,
    and a thousands-digit number costs time before it is found out of range."""
    raw = request.query_params.get(name)
    if raw is None:
        return default
    if not _WHOLE_NUMBER.fullmatch(raw):
        raise BadRequest(f"{name} must be a whole number", parameter=name)
    if len(raw) > MAX_NUMBER_LENGTH or not low <= int(raw) <= high:
        raise BadRequest(f"{name} must be between {low} and {high}", parameter=name)
    return int(raw)


def choice_param(
    request: Request, name: str, choices: tuple[str, ...], *, default: str | None
) -> str | None:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return default
    if raw not in choices:
        raise BadRequest(f"{name} must be one of {', '.join(choices)}", parameter=name)
    return raw
