"""Server-Sent Events framing: an event (or a comment, a `retry:`) as the bytes on the wire.

An event is encoded once, when the log takes it; every client is sent the same bytes.
"""

from __future__ import annotations

import json
import re
from typing import Any

from sse_monitor.bus.event import Event

# The SSE spec ends a line at CRLF, LF or CR, and nowhere else (not at U+2028, unlike
# str.splitlines), so multi-line data is split on exactly these.
_LINE_BREAK = re.compile(r"\r\n|\r|\n")


def to_json(data: Any) -> str:
    """Compact JSON; NaN and infinities are refused, since browsers' JSON.parse rejects them."""
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def encode_frame(
    *,
    data: str | None = None,
    event: str | None = None,
    id: str | None = None,
    retry: int | None = None,
    comment: str | None = None,
) -> bytes:
    """One SSE frame, ended by a blank line.

    Fields go in the order a reader of `curl -N` expects: comment, retry, id, event, data.
    """
    lines: list[str] = []
    if comment is not None:
        lines.extend(f": {line}" for line in _LINE_BREAK.split(comment))
    if retry is not None:
        if retry < 0:
            raise ValueError("retry must be a non-negative number of milliseconds")
        lines.append(f"retry: {int(retry)}")
    if id is not None:
        _check_single_line("id", id)
        if "\0" in id:
            raise ValueError("an SSE id must not contain NUL (browsers ignore it)")
        lines.append(f"id: {id}")
    if event is not None:
        _check_single_line("event", event)
        lines.append(f"event: {event}")
    if data is not None:
        lines.extend(f"data: {line}" for line in _LINE_BREAK.split(data))
    if not lines:
        raise ValueError("an SSE frame needs at least one field")
    return ("\n".join(lines) + "\n\n").encode("utf-8")


def encode_event(event: Event, id: str) -> bytes:
    return encode_frame(id=id, event=event.name, data=to_json(event.data))


def _check_single_line(field: str, value: str) -> None:
    if _LINE_BREAK.search(value):
        raise ValueError(f"an SSE {field} must be a single line")
