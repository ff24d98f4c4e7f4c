"""Optional error tracking: sentry-sdk with its Starlette integration, when SENTRY_DSN is set.

Imported only then, so a gateway without it neither needs nor loads sentry-sdk. What is sent is
scrubbed like our logs: no tokens from query strings, no Authorization or Cookie headers.
"""

from __future__ import annotations

from typing import Any

import structlog

from sse_monitor.redact import scrub

log = structlog.get_logger("sse_monitor.error_tracking")

SECRET_HEADERS = frozenset({"authorization", "cookie", "set-cookie"})


def start_sentry(dsn: str, environment: str | None = None) -> bool:
    """Start sentry-sdk; False (and a log line saying why) when it is not installed."""
    try:
        import sentry_sdk
        from sentry_sdk.integrations.starlette import StarletteIntegration
    except ImportError:
        log.error("sentry.missing", hint="pip install 'sse-monitor[sentry]' (sentry-sdk)")
        return False
    sentry_sdk.init(
        dsn=dsn,
        environment=environment,
        integrations=[StarletteIntegration()],
        send_default_pii=False,
        before_send=scrub_event,
    )
    log.info("sentry.started", environment=environment)
    return True


def scrub_event(event: dict[str, Any], hint: dict[str, Any]) -> dict[str, Any]:
    request = event.get("request")
    if isinstance(request, dict):
        for key in ("url", "query_string"):
            if isinstance(request.get(key), str):
                request[key] = scrub(request[key])
        headers = request.get("headers")
        if isinstance(headers, dict):
            request["headers"] = {
                name: "[removed]" if name.lower() in SECRET_HEADERS else value
                for name, value in headers.items()
            }
        request.pop("cookies", None)
    return event
