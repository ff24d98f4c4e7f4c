"""Optional error tracking: sentry-sdk with its Starlette integration, when SENTRY_DSN is set.

Imported only then, so a gateway without it neither needs nor loads sentry-sdk. What is sent is
scrubbed: no access token anywhere, no Authorization or Cookie header, no login cookie.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

import structlog

from sse_monitor.redact import scrub

log = structlog.get_logger("sse_monitor.error_tracking")

SECRET_HEADERS = frozenset({"authorization", "cookie", "set-cookie"})
FILTERED = "[Filtered]"
_SESSION_COOKIE = re.compile(r"(?P<name>sse_monitor_session=)[^;\s'\"]*")


def start_sentry(dsn: str, environment: str | None = None, secrets: Iterable[str] = ()) -> bool:
    """Start sentry-sdk; False (and a log line saying why) when it is not installed.

    `secrets` (the access tokens) are cut out of everything an event carries, stack frames'
    local variables included, along with query-string tokens, URL credentials and our cookie.
    """
    try:
        import sentry_sdk
        from sentry_sdk.integrations.starlette import StarletteIntegration
    except ImportError:
        log.error("sentry.missing", hint="pip install 'sse-monitor[sentry]' (sentry-sdk)")
        return False
    known = tuple(secret for secret in secrets if secret)

    def before_send(event: dict[str, Any], hint: dict[str, Any]) -> dict[str, Any]:
        return scrub_event(event, known)

    sentry_sdk.init(
        dsn=dsn,
        environment=environment,
        integrations=[StarletteIntegration()],
        send_default_pii=False,
        before_send=before_send,
    )
    log.info("sentry.started", environment=environment)
    return True


def scrub_event(event: Any, secrets: tuple[str, ...]) -> Any:
    """The event with every string scrubbed, however deep (frames' variables, breadcrumbs)."""
    if isinstance(event, str):
        for secret in secrets:
            event = event.replace(secret, FILTERED)
        return _SESSION_COOKIE.sub(rf"\g<name>{FILTERED}", scrub(event))
    if isinstance(event, dict):
        return {
            key: FILTERED
            if isinstance(key, str) and key.lower() in SECRET_HEADERS
            else scrub_event(value, secrets)
            for key, value in event.items()
        }
    if isinstance(event, list | tuple):
        return [scrub_event(item, secrets) for item in event]
    return event
