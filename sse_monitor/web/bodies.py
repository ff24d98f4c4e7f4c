"""Reading a small JSON request body strictly: capped, UTF-8, an object; any flaw is a 400.

`json.loads` alone is too lenient for a body from anyone: on bytes it also takes UTF-16/32 and
surrogates encoded in UTF-8, it accepts `\\ud800` escapes (a str nothing can encode later), NaN
and Infinity, and deep nesting makes it raise RecursionError. Each of those would otherwise
surface as a 500 somewhere downstream.
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

from starlette.requests import Request

from sse_monitor.web.errors import BadRequest

_BOM = "\ufeff"
MAX_NAME_ECHO = 40  # of a field's name, in an error: the client sent it, it can be long


async def read_capped(request: Request, cap: int) -> bytes:
    """The body, refused with a 400 as soon as it is known to pass `cap` bytes: from its
    Content-Length before reading anything, else while it streams in, so a client cannot make
    us read or hold more than the cap."""
    declared = request.headers.get("content-length", "")
    if declared.isascii() and declared.isdigit() and (len(declared) > 18 or int(declared) > cap):
        raise BadRequest(too_large(cap))
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > cap:
            raise BadRequest(too_large(cap))
    return bytes(body)


def too_large(cap: int) -> str:
    return f"the body must be at most {cap} bytes"


def json_object(body: bytes, *, example: str) -> dict[str, Any]:
    """The body as a JSON object in which every key and string is valid UTF-8 text.

    Bytes that are not UTF-8 are kept (as surrogate escapes) through parsing, so that the 400
    can name the field that holds them, as it does for a `\ud800` escape. A leading UTF-8
    byte order mark is ignored (RFC 8259 lets a parser do that). Numbers are read as Decimal:
    exact, of any size, never inf; no field we take is a number anyway.
    """
    text = body.decode("utf-8", "surrogateescape").removeprefix(_BOM)
    try:
        data = (
            json.loads(text, parse_float=Decimal, parse_int=Decimal, parse_constant=_refuse)
            if text.strip()
            else None
        )
    except RecursionError:
        raise BadRequest("the body is nested too deeply") from None
    except ValueError:
        raise BadRequest(f"the body must be JSON (UTF-8), e.g. {example}") from None
    if not isinstance(data, dict):
        raise BadRequest(f"the body must be a JSON object, e.g. {example}")
    for key, value in data.items():
        if not is_text(key):
            raise BadRequest("the body must be JSON (UTF-8): a field name is not valid text")
        if not _all_text(value):
            name = key[:MAX_NAME_ECHO]
            raise BadRequest(f"{name} must be valid UTF-8 text", parameter=name)
    return data


def is_text(value: str) -> bool:
    """Whether `value` can be encoded as UTF-8: false for a lone surrogate."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _all_text(value: Any) -> bool:
    """Whether every string in `value`, however deep, is text (a loop: nesting can be deep)."""
    pending = [value]
    while pending:
        item = pending.pop()
        if isinstance(item, str) and not is_text(item):
            return False
        if isinstance(item, dict):
            pending.extend(item)
            pending.extend(item.values())
        elif isinstance(item, list):
            pending.extend(item)
    return True


def _refuse(constant: str) -> Any:
    raise ValueError(f"{constant} is not JSON")
