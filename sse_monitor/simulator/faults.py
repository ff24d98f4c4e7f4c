"""What `/health` and `/metrics` do instead of answering normally: fault modes, canned answers.

Tests set a fault over `/_sim/fault`: an error body KATO itself would give, a slow answer, bytes
that are not JSON, a bare 500, or (mode "serve") a canned answer the test wrote: any JSON value,
KATO's own answer with some fields replaced, or raw bytes; with any status and content type,
repeated into an enormous body, or trickled slower than a client's timeout.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import math
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from starlette.responses import PlainTextResponse, Response, StreamingResponse

FAULT_ENDPOINTS = ("health", "metrics")
FAULT_MODES = (
    "ok",
    "error",
    "garbage",
    "http500",
    "slow",
    "unhealthy",
    "degraded",
    "fallback",
    "serve",  # a canned answer the test gives (CannedAnswer below): hostile input
)
HEALTH_ONLY_MODES = frozenset({"unhealthy", "degraded"})
_METRICS_ONLY_MODES = frozenset({"fallback"})
DEFAULT_SLOW_DELAY = 10.0

MAX_TOTAL_BYTES = 256 * 1024 * 1024  # body x repeat: enormous, but bounded
_CHUNK_BYTES = 64 * 1024
_BODY_KEYS = ("json", "patch", "text", "base64")


@dataclass
class Fault:
    """What an endpoint does instead of (or before) answering normally."""

    mode: str = "ok"
    delay: float = DEFAULT_SLOW_DELAY
    answer: CannedAnswer | None = None  # what mode "serve" serves


class Faults:
    """The fault set on each endpoint; mode "ok" on both to begin with."""

    def __init__(self) -> None:
        self._faults = {endpoint: Fault() for endpoint in FAULT_ENDPOINTS}

    def get(self, endpoint: str) -> Fault:
        return self._faults[endpoint]

    def set(
        self,
        endpoint: str,
        mode: str,
        *,
        delay: float = DEFAULT_SLOW_DELAY,
        answer: CannedAnswer | None = None,
    ) -> None:
        """Make `endpoint` ("health", "metrics" or "all") misbehave; mode "ok" clears."""
        if endpoint not in (*FAULT_ENDPOINTS, "all"):
            raise ValueError(f"endpoint must be one of health, metrics, all; got {endpoint!r}")
        if mode not in FAULT_MODES:
            raise ValueError(f"mode must be one of {', '.join(FAULT_MODES)}; got {mode!r}")
        if not math.isfinite(delay) or delay < 0:
            raise ValueError("delay must be a non-negative number of seconds")
        if (mode == "serve") != (answer is not None):
            raise ValueError('mode "serve" (and only it) needs a response to serve')
        for target in _targets(endpoint, mode):
            self._faults[target] = Fault(mode, delay, answer)


def _targets(endpoint: str, mode: str) -> tuple[str, ...]:
    """The endpoints a fault applies to; a mode of one endpoint's body applies to it alone."""
    if mode in HEALTH_ONLY_MODES:
        if endpoint == "metrics":
            raise ValueError(f"mode {mode!r} applies to /health only")
        return ("health",)
    if mode in _METRICS_ONLY_MODES:
        if endpoint == "health":
            raise ValueError(f"mode {mode!r} applies to /metrics only")
        return ("metrics",)
    return FAULT_ENDPOINTS if endpoint == "all" else (endpoint,)


async def faulty_response(fault: Fault, own: Callable[[], dict[str, Any]]) -> Response | None:
    """Apply a transport-level fault; returns the response that replaces KATO's, if any
    (`own` is KATO's own answer, which a canned answer may patch). Modes that change KATO's
    body itself ("error", "fallback", ...) are the body's business (see answers.py)."""
    if fault.mode == "serve" and fault.answer is not None:
        return fault.answer.response(own)
    if fault.mode == "slow":
        await asyncio.sleep(fault.delay)
    elif fault.mode == "garbage":
        return Response("<html>oops", media_type="text/html")
    elif fault.mode == "http500":
        return PlainTextResponse("Internal Server Error", status_code=500)
    return None


@dataclass(frozen=True)
class CannedAnswer:
    """One answer to serve; exactly one of json, patch, text or raw says what the body is."""

    json: Any = None
    patch: Mapping[str, Any] | None = None  # merged over KATO's own answer (sections too)
    raw: bytes | None = None  # from `text` or `base64`
    content_type: str = "application/json"
    status: int = 200
    repeat: int = 1
    trickle: float = 0.0  # seconds between chunks of `chunk_size` bytes
    chunk_size: int = 16

    def body(self, own: Callable[[], dict[str, Any]]) -> bytes:
        """The body's bytes; `own` is KATO's own answer, for a patch."""
        if self.raw is not None:
            return self.raw
        value = self.json if self.patch is None else patched(own(), self.patch)
        return json.dumps(value).encode()  # NaN and Infinity as literals, as a broken peer may

    def response(self, own: Callable[[], dict[str, Any]]) -> Response:
        body = self.body(own)
        repeat = min(self.repeat, max(1, MAX_TOTAL_BYTES // max(len(body), 1)))
        if repeat == 1 and self.trickle == 0:
            return Response(body, status_code=self.status, media_type=self.content_type)
        return StreamingResponse(
            self._chunks(body, repeat), status_code=self.status, media_type=self.content_type
        )

    async def _chunks(self, body: bytes, repeat: int) -> AsyncIterator[bytes]:
        size = self.chunk_size if self.trickle else _CHUNK_BYTES
        for _ in range(repeat):
            for start in range(0, len(body), size):
                if self.trickle:
                    await asyncio.sleep(self.trickle)
                yield body[start : start + size]


def patched(own: dict[str, Any], patch: Mapping[str, Any]) -> dict[str, Any]:
    """KATO's answer with the patch's fields over it, one level into its sections; a None in
    the patch is written as null (to remove a field, replace its section)."""
    merged = dict(own)
    for key, value in patch.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping) and value:
            merged[key] = {**merged[key], **value}
        else:
            merged[key] = value
    return merged


def parse_answer(spec: Any) -> CannedAnswer:
    """The `response` of a `/_sim/fault` request in mode "serve"; ValueError says what is wrong."""
    if not isinstance(spec, Mapping):
        raise ValueError("response must be a JSON object")
    given = [key for key in _BODY_KEYS if key in spec]
    if len(given) != 1:
        raise ValueError(f"response needs exactly one of {', '.join(_BODY_KEYS)}")
    patch = spec.get("patch")
    if "patch" in spec and not isinstance(patch, Mapping):
        raise ValueError("patch must be a JSON object")
    raw = _raw(spec)
    content_type = spec.get("content_type", "application/json")
    status = spec.get("status", 200)
    repeat = spec.get("repeat", 1)
    trickle = spec.get("trickle", 0.0)
    chunk_size = spec.get("chunk_size", 16)
    if not isinstance(content_type, str):
        raise ValueError("content_type must be a string")
    if not _whole(status) or not 100 <= status <= 599:
        raise ValueError("status must be an HTTP status from 100 to 599")
    if not _whole(repeat) or repeat < 1 or not _whole(chunk_size) or chunk_size < 1:
        raise ValueError("repeat and chunk_size must be positive integers")
    if isinstance(trickle, bool) or not isinstance(trickle, int | float) or not 0 <= trickle <= 60:
        raise ValueError("trickle must be seconds from 0 to 60")
    answer = CannedAnswer(
        json=spec.get("json"),
        patch=patch,
        raw=raw,
        content_type=content_type,
        status=status,
        repeat=repeat,
        trickle=float(trickle),
        chunk_size=chunk_size,
    )
    if raw is not None and len(raw) * repeat > MAX_TOTAL_BYTES:
        raise ValueError(f"body x repeat must be at most {MAX_TOTAL_BYTES} bytes")
    return answer


def _raw(spec: Mapping[str, Any]) -> bytes | None:
    if "text" in spec:
        if not isinstance(spec["text"], str):
            raise ValueError("text must be a string")
        return spec["text"].encode("utf-8", "surrogatepass")
    if "base64" in spec:
        try:
            return base64.b64decode(str(spec["base64"]), validate=True)
        except (binascii.Error, ValueError):
            raise ValueError("base64 must be base64") from None
    return None


def _whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
