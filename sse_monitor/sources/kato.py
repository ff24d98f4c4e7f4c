"""Talk to KATO over HTTP and turn its quirky answers into plain values or an error.

KATO answers 200 even when it is broken (`/health` says so in `status`, `/metrics` in `error`),
so every body is read and checked. A body that is not a JSON object fails the read with an
`UpstreamError` (a short, credential-free reason); an odd value inside a good body spoils only
its own field: a figure becomes None, an unreadable status "unknown", an unreadable session
count unknown (None, never 0: a false count would announce sessions that never changed). Only
the figures we show are kept: nothing else KATO sends is forwarded.
"""

from __future__ import annotations

import asyncio
import json
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx

from sse_monitor.redact import scrub

HEALTH_STATUSES = ("healthy", "degraded", "unhealthy")
UNKNOWN_STATUS = "unknown"  # KATO answered, but with a status that is none of the above

# The figures forwarded from /metrics, by section. Everything else in the body is dropped.
METRIC_FIELDS: dict[str, tuple[str, ...]] = {
    "resources": ("cpu_percent", "memory_percent", "disk_percent"),
    "performance": ("total_requests", "total_errors", "error_rate", "average_response_time"),
    "rates": ("requests_per_second", "requests_per_minute", "errors_per_minute"),
}
# psutil's whole-machine percentages: anything outside 0..100 is not a reading.
PERCENT_FIELDS = frozenset(METRIC_FIELDS["resources"])

# KATO's answers are a few KiB; anything far larger is not KATO, and is not read into memory.
MAX_BODY_BYTES = 1024 * 1024
# The largest count the page can show exactly (JavaScript's Number.MAX_SAFE_INTEGER).
MAX_SESSION_COUNT = 2**53 - 1
# Integer literals longer than this are read as floats (so 10**400 is infinite, hence None),
# instead of failing the whole body on Python's int-parsing digit limit.
_MAX_INT_DIGITS = 40
MAX_ISSUES = 20
MAX_ISSUE_CHARS = 500


class UpstreamError(Exception):
    """KATO could not be read: down, slow, failing or answering garbage."""


@dataclass(frozen=True, slots=True)
class KatoHealth:
    status: str
    issues: tuple[str, ...]
    uptime_seconds: float | None
    active_sessions: int | None  # None when the count cannot be believed (see below)
    latency_ms: float
    kato_time: datetime | None = None  # KATO's clock when it answered (its `timestamp`)
    problems: tuple[str, ...] = ()  # fields of this answer that could not be read


@dataclass(frozen=True, slots=True)
class KatoMetrics:
    resources: dict[str, float | None]
    performance: dict[str, float | None]
    rates: dict[str, float | None]


@dataclass(frozen=True, slots=True)
class KatoReading:
    """One tick's answers; a part that failed is None and its error says why."""

    health: KatoHealth | None
    metrics: KatoMetrics | None
    health_error: str | None = None
    metrics_error: str | None = None


class KatoClient:
    """One connection pool to KATO for the app's whole life."""

    def __init__(
        self,
        base_url: str,
        *,
        timeout: float,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._timeout = timeout
        self._http = httpx.AsyncClient(
            base_url=base_url,
            timeout=httpx.Timeout(timeout),
            limits=httpx.Limits(max_connections=4, max_keepalive_connections=4),
            headers={"User-Agent": "sse-monitor", "Accept": "application/json"},
            follow_redirects=False,
            transport=transport,
        )

    async def read(self) -> KatoReading:
        """/health and /metrics, in parallel; never raises."""
        health, metrics = await asyncio.gather(
            self.health(), self.metrics(), return_exceptions=True
        )
        return KatoReading(
            health=health if isinstance(health, KatoHealth) else None,
            metrics=metrics if isinstance(metrics, KatoMetrics) else None,
            health_error=_reason(health),
            metrics_error=_reason(metrics),
        )

    async def health(self) -> KatoHealth:
        started = time.perf_counter()
        content = await self._get_body("/health")
        latency_ms = (time.perf_counter() - started) * 1000
        return parse_health(content, latency_ms=round(latency_ms, 2))

    async def metrics(self) -> KatoMetrics:
        return parse_metrics(await self._get_body("/metrics"))

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _get_body(self, path: str) -> bytes:
        try:
            async with asyncio.timeout(self._timeout):
                status, content = await self._get(path)
        except (TimeoutError, httpx.TimeoutException):
            raise UpstreamError(f"{path}: no answer within {self._timeout:g} s") from None
        except httpx.ConnectError as exc:
            raise UpstreamError(f"{path}: cannot connect ({_short(exc)})") from None
        except httpx.HTTPError as exc:
            raise UpstreamError(f"{path}: {type(exc).__name__} ({_short(exc)})") from None
        if status != 200:
            raise UpstreamError(f"{path}: HTTP {status}")
        if content is None:
            raise UpstreamError(f"{path}: the answer is larger than {MAX_BODY_BYTES} bytes")
        return content

    async def _get(self, path: str) -> tuple[int, bytes | None]:
        """Status and body; the body is None when it exceeds MAX_BODY_BYTES (refused unread
        when its Content-Length says so)."""
        async with self._http.stream("GET", path) as response:
            if response.status_code != 200:
                return response.status_code, b""
            if _declared_length(response) > MAX_BODY_BYTES:
                return response.status_code, None
            chunks: list[bytes] = []
            size = 0
            async for chunk in response.aiter_bytes():
                size += len(chunk)
                if size > MAX_BODY_BYTES:
                    return response.status_code, None
                chunks.append(chunk)
            return response.status_code, b"".join(chunks)


def parse_health(content: bytes, *, latency_ms: float) -> KatoHealth:
    """KATO's /health body; raises UpstreamError only when it is not a JSON object at all."""
    body = json_object("/health", content)
    problems: list[str] = []
    status = body.get("status")
    if status not in HEALTH_STATUSES:
        problems.append(f"/health: unexpected status {_text(status, 40)!r}")
        status = UNKNOWN_STATUS
    issues = _issues(body.get("issues"), problems)
    count = session_count(body.get("active_sessions"))
    if count is None:
        problems.append("/health: active_sessions is not a count; the session count is unknown")
    elif _health_check_failed(body, issues):
        # KATO's except branch: status "unhealthy" is real, but it reports 0 sessions
        # whatever the truth is. A false 0 would announce every session as destroyed.
        problems.append("/health: KATO's health check failed; its session count is unknown")
        count = None
    return KatoHealth(
        status=status,
        issues=issues,
        uptime_seconds=number(body.get("uptime_seconds")),
        active_sessions=count,
        latency_ms=latency_ms,
        kato_time=kato_time(body.get("timestamp")),
        problems=tuple(problems),
    )


def parse_metrics(content: bytes) -> KatoMetrics:
    """KATO's /metrics body. Its own failure answers (an `error`, its all-zero fallback) and a
    body with none of the sections fail the read; an odd section or figure is None alone."""
    body = json_object("/metrics", content)
    error = body.get("error")
    if error is not None:
        raise UpstreamError(f"/metrics: KATO reports an error: {_text(error, 200)}")
    if not any(isinstance(body.get(section), Mapping) for section in METRIC_FIELDS):
        raise UpstreamError("/metrics: none of resources, performance, rates is an object")
    sections: dict[str, dict[str, float | None]] = {}
    for section, fields in METRIC_FIELDS.items():
        values = body.get(section)
        if isinstance(values, Mapping) and not values:
            # KATO's fallback when its collector fails: all-zero figures, empty rates and
            # no error field. Zeros that mean "unknown" must not be shown as real.
            raise UpstreamError(f"/metrics: KATO's collector failed ({section} is empty)")
        if not isinstance(values, Mapping):
            values = {}
        sections[section] = {
            field: number(values.get(field), percent=field in PERCENT_FIELDS) for field in fields
        }
    return KatoMetrics(**sections)


def json_object(path: str, content: bytes) -> dict[str, Any]:
    """The body as a JSON object, or UpstreamError saying why not."""
    try:
        body = json.loads(content, parse_int=_parse_int)
    except ValueError:  # includes bytes that are not UTF-8
        raise UpstreamError(f"{path}: the answer is not JSON") from None
    except RecursionError:
        raise UpstreamError(f"{path}: the answer is nested too deeply") from None
    if not isinstance(body, dict):
        raise UpstreamError(f"{path}: the answer is not a JSON object")
    return body


def number(value: Any, *, percent: bool = False) -> float | None:
    """A finite, non-negative number (at most 100 for a percentage), or None: KATO's nulls and
    anything odd never reach a client. Integers too large for a float are odd too."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        as_float = float(value)
    except OverflowError:
        return None
    if not math.isfinite(as_float) or as_float < 0 or (percent and as_float > 100):
        return None
    return value if isinstance(value, float) or abs(value) <= MAX_SESSION_COUNT else as_float


def session_count(value: Any) -> int | None:
    """A JSON integer from 0 to MAX_SESSION_COUNT; anything else is no count at all."""
    if isinstance(value, bool) or not isinstance(value, int):
        return None
    return value if 0 <= value <= MAX_SESSION_COUNT else None


def kato_time(value: Any) -> datetime | None:
    """KATO's ISO timestamps, with or without an offset (its naive ones are UTC)."""
    if not isinstance(value, str) or len(value) > 64:
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
        moment = moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
        return moment.astimezone(UTC)  # also proves it is comparable with other moments
    except (ValueError, OverflowError):
        return None


def _issues(value: Any, problems: list[str]) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        problems.append("/health: issues is not a list")
        return ()
    return tuple(_text(issue, MAX_ISSUE_CHARS) for issue in value[:MAX_ISSUES])


def _health_check_failed(body: Mapping[str, Any], issues: tuple[str, ...]) -> bool:
    """True for the answer of KATO's /health exception handler."""
    return body.get("processor_status") == "unknown" or any(
        issue.startswith("Health check error") for issue in issues
    )


def _text(value: Any, limit: int) -> str:
    """At most `limit` characters of a value: a string as it is, anything else shortened (a
    deeply nested value is never walked whole)."""
    if isinstance(value, str):
        text = value  # scrubbed whole (linear: the body is at most MAX_BODY_BYTES), then cut
    elif isinstance(value, list | dict):
        text = f"<a JSON {'array' if isinstance(value, list) else 'object'} of {len(value)}>"
    else:
        text = repr(value)  # None, a bool or a number: short (long integers are floats here)
    # A lone surrogate ("\ud800" is valid JSON) cannot be encoded as UTF-8 for the stream.
    return scrub(text)[:limit].encode("utf-8", "replace").decode("utf-8")


def _parse_int(literal: str) -> int | float:
    return int(literal) if len(literal) <= _MAX_INT_DIGITS else float(literal)


def _declared_length(response: httpx.Response) -> int:
    try:
        return int(response.headers.get("content-length", "0"))
    except ValueError:
        return 0


def _reason(result: object) -> str | None:
    if isinstance(result, UpstreamError):
        return str(result)
    if isinstance(result, BaseException):
        return f"unexpected {type(result).__name__}"
    return None


def _short(exc: Exception) -> str:
    return scrub(str(exc) or type(exc).__name__)[:160]
