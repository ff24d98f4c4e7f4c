"""structlog setup: JSON lines when not on a terminal, readable lines otherwise.

The standard library's loggers (uvicorn's, and websockets' at debug level, among them) go
through the same processors, so every line has one format, and every line is scrubbed on its
way out, at every level: each value, however deep, before it is rendered, and the rendered line
again (a secret inside an object's repr, or escaped by the renderer). See sse_monitor.redact.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

import structlog

from sse_monitor.notify.receivers import receiver_secrets
from sse_monitor.redact import Scrubber
from sse_monitor.settings import Settings


def secrets_of(settings: Settings) -> Scrubber:
    """What must never be logged: the access tokens, the credentials in KATO's URLs, and the
    notification receivers' URLs and signing secrets."""
    notify_secrets = receiver_secrets(settings.alert_rules)
    return Scrubber.from_secrets(
        tokens=(settings.viewer_token, settings.admin_token, *notify_secrets),
        urls=(settings.kato_url, settings.kato_redis_url, settings.redis_url, settings.sentry_dsn),
    )


class _ScrubbingRenderer:
    """Scrubs each value before the renderer sees it, and the line it renders."""

    def __init__(self, renderer: Any, scrubber: Scrubber) -> None:
        self._renderer = renderer
        self._scrubber = scrubber

    def __call__(self, logger: Any, method: str, event_dict: dict[str, Any]) -> str:
        clean = {key: self._scrubber.value(value) for key, value in event_dict.items()}
        return self._scrubber.text(self._renderer(logger, method, clean))


def configure_logging(
    level: str = "info", fmt: str = "auto", scrubber: Scrubber | None = None
) -> None:
    """Send every logger through structlog, masking `scrubber`'s secrets (see `secrets_of`)."""
    if fmt == "auto":
        fmt = "console" if sys.stderr.isatty() else "json"
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if fmt == "json"
        else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    )
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_logger_name,
        structlog.stdlib.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            _ScrubbingRenderer(renderer, scrubber or Scrubber()),
        ],
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # uvicorn installs its own handlers; send its lines through ours instead.
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        uvicorn_logger = logging.getLogger(name)
        uvicorn_logger.handlers[:] = []
        uvicorn_logger.propagate = True
    logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.getLogger("httpcore").setLevel(logging.WARNING)
