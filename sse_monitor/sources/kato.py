"""Talk to KATO over HTTP and turn its quirky answers into plain values or an error.

KATO answers 200 even when it is broken (`/health` says so in `status`, `/metrics` in `error`),
so every body is read and checked; anything unexpected becomes an `UpstreamError` with a short,
credential-free reason. Only the figures we show are kept: nothing else KATO sends is forwarded.
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

# The figures forwarded from /metrics, by section. Everything else in the body is dropped.
METRIC_FIELDS: dict[str, tuple[str, ...]] = {
    "resources": ("cpu_percent", "memory_percent", "disk_percent"),
    "performance": ("total_requests", "total_errors", "error_rate", "average_response_time"),
    "rates": ("requests_per_second", "requests_per_minute", "errors_per_minute"),
}


# KATO's answers are a few KiB; anything far larger is not KATO, and is not read into memory.
MAX_BODY_BYTES = 1024 * 1024


class UpstreamError(Exception):
    """KATO could not be read: down, slow, failing or answering garbage."""


@dataclass(frozen=True, slots=True)
class KatoHealth:
    status: str
    issues: tuple[str, ...]
    uptime_seconds: float | None
    active_sessions: int | None  # None when KATO's own health check failed (see below)
    latency_ms: float
    kato_time: datetime | None = None  # KATO's clock when it answered (its `timestamp`)


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
        body = await self._get_json("/health")
        latency_ms = (time.perf_counter() - started) * 1000
        status = body.get("status")
        if status not in HEALTH_STATUSES:
            raise UpstreamError(f"/health: unexpected status {str(status)[:40]!r}")
        count = body.get("active_sessions")
        if not isinstance(count, int) or isinstance(count, bool) or count < 0:
            raise UpstreamError("/health: active_sessions is not a count")
        issues = body.get("issues") or []
        if not isinstance(issues, list):
            raise UpstreamError("/health: issues is not a list")
        if _health_check_failed(body, issues):
            # KATO's except branch: status "unhealthy" is real, but it reports 0 sessions
            # whatever the truth is. A false 0 would announce every session as destroyed.
            count = None
        return KatoHealth(
            status=status,
            issues=tuple(scrub(str(issue))[:500] for issue in issues[:20]),
            uptime_seconds=_number(body.get("uptime_seconds")),
            active_sessions=count,
            latency_ms=round(latency_ms, 2),
            kato_time=kato_time(body.get("timestamp")),
        )

    async def metrics(self) -> KatoMetrics:
        body = await self._get_json("/metrics")
        error = body.get("error")
        if error is not None:
            raise UpstreamError(f"/metrics: KATO reports an error: {scrub(str(error))[:200]}")
        sections: dict[str, dict[str, float | None]] = {}
        for section, fields in METRIC_FIELDS.items():
            values = body.get(section)
            if not isinstance(values, Mapping):
                raise UpstreamError(f"/metrics: {section} is missing")
            if not values:
                # KATO's fallback when its collector fails: all-zero figures, empty rates and
                # no error field. Zeros that mean "unknown" must not be shown as real.
                raise UpstreamError(f"/metrics: KATO's collector failed ({section} is empty)")
            sections[section] = {field: _number(values.get(field)) for field in fields}
        return KatoMetrics(**sections)

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _get_json(self, path: str) -> dict[str, Any]:
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
        try:
            body = json.loads(content)
        except ValueError:
            raise UpstreamError(f"{path}: the answer is not JSON") from None
        if not isinstance(body, dict):
            raise UpstreamError(f"{path}: the answer is not a JSON object")
        return body

    async def _get(self, path: str) -> tuple[int, bytes | None]:
        """Status and body; the body is None when it exceeds MAX_BODY_BYTES."""
        async with self._http.stream("GET", path) as response:
            if response.status_code != 200:
                return response.status_code, b""
            chunks: list[bytes] = []
            size = 0
            async for chunk in response.aiter_bytes():
                size += len(chunk)
                if size > MAX_BODY_BYTES:
                    return response.status_code, None
                chunks.append(chunk)
            return response.status_code, b"".join(chunks)


def kato_time(value: Any) -> datetime | None:
    """KATO's ISO timestamps, with or without an offset (its naive ones are UTC)."""
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _health_check_failed(body: Mapping[str, Any], issues: list[Any]) -> bool:
    """True for the answer of KATO's /health exception handler."""
    return body.get("processor_status") == "unknown" or any(
        str(issue).startswith("Health check error") for issue in issues
    )


def _number(value: Any) -> float | None:
    """A finite number, or None: KATO's nulls and anything odd never reach a client."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return value if math.isfinite(value) else None


def _reason(result: object) -> str | None:
    if isinstance(result, UpstreamError):
        return str(result)
    if isinstance(result, BaseException):
        return f"unexpected {type(result).__name__}"
    return None


def _short(exc: Exception) -> str:
    return scrub(str(exc) or type(exc).__name__)[:160]
