"""Settings, read once from environment variables and validated before anything starts."""

from __future__ import annotations

import math
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import urlsplit

from sse_monitor.durations import parse_duration
from sse_monitor.networks import Network, parse_networks
from sse_monitor.redact import redact_url


class ConfigError(ValueError):
    """A setting has a bad value; the message names the variable."""


class StoreError(ConfigError):
    """SSE_MONITOR_DB cannot be opened or used (by the alert store or the log's journal); the
    message names the file."""


@dataclass(frozen=True, slots=True)
class Settings:
    kato_url: str = field(default="http://localhost:8000", repr=False)  # may hold credentials
    poll_interval: float = 3.0
    kato_timeout: float | None = None  # None: derived from the poll interval
    kato_push: bool = True  # follow KATO's /ws/events when it offers it
    kato_redis_url: str | None = field(default=None, repr=False)  # the session list
    session_events: bool = True
    history_size: int = 1000
    ping_interval: float = 15.0
    retry_ms: int = 3000
    client_buffer: int = 100
    send_timeout: float = 30.0
    log_level: str = "info"
    log_format: str = "auto"
    container_stats: bool = True
    containers: tuple[str, ...] | None = None  # None: KATO's own containers; () : all of them
    container_label: str | None = None
    static_dir: str | None = None  # None: the checkout's static/ folder
    alert_rules: str | None = None  # None: the built-in rules
    db_path: str = "sse-monitor.db"
    alert_retention: float = 30 * 86400.0
    notify_retry_for: float = 86400.0  # how long a notification is retried before giving up
    external_url: str = ""  # the page's public address, linked from notifications
    # the charts' history: every point, 1-minute buckets, 15-minute buckets (seconds each)
    chart_retention: tuple[float, float, float] = (3600.0, 86400.0, 30 * 86400.0)
    viewer_token: str | None = field(default=None, repr=False)
    admin_token: str | None = field(default=None, repr=False)
    login_ttl: float = 12 * 3600.0
    auth_failure_limit: int = 10
    auth_failure_window: float = 60.0
    cors_origins: tuple[str, ...] = ()
    max_streams: int = 10_000
    max_streams_per_client: int = 100
    retry_after: int = 10
    trusted_proxies: tuple[Network, ...] = ()
    sentry_dsn: str | None = field(default=None, repr=False)
    sentry_environment: str | None = None
    redis_url: str | None = field(default=None, repr=False)  # None: one process, in memory
    cluster: str = "sse-monitor"  # the prefix of every key in that Redis
    leader_ttl: float = 5.0
    redis_timeout: float = 2.0

    @property
    def clustered(self) -> bool:
        return self.redis_url is not None

    def __post_init__(self) -> None:
        self._check_upstreams()
        self._check_stream()
        self._check_containers()
        self._check_access_and_limits()
        self._check_storage_and_logs()
        self._check_cluster()

    def _check_upstreams(self) -> None:
        _check_url("KATO_URL", self.kato_url)
        _check_range("SSE_MONITOR_POLL_INTERVAL", self.poll_interval, 0.05, 3600)
        if self.kato_timeout is not None:
            _check_range("SSE_MONITOR_KATO_TIMEOUT", self.kato_timeout, 0.01, 3600)
            if self.kato_timeout >= self.poll_interval:
                raise ConfigError(
                    f"SSE_MONITOR_KATO_TIMEOUT={self.kato_timeout} must be shorter than "
                    f"SSE_MONITOR_POLL_INTERVAL={self.poll_interval}, or ticks would overlap"
                )
        if self.kato_redis_url is not None:
            _check_redis_url("KATO_REDIS_URL", self.kato_redis_url)

    def _check_stream(self) -> None:
        _check_range("SSE_MONITOR_HISTORY", self.history_size, 1, 1_000_000)
        _check_range("SSE_MONITOR_PING_INTERVAL", self.ping_interval, 0.1, 3600)
        _check_range("SSE_MONITOR_RETRY_MS", self.retry_ms, 0, 3_600_000)
        _check_range("SSE_MONITOR_CLIENT_BUFFER", self.client_buffer, 1, 100_000)
        _check_range("SSE_MONITOR_SEND_TIMEOUT", self.send_timeout, 0.1, 3600)

    def _check_containers(self) -> None:
        if self.containers is not None and self.container_label is not None:
            raise ConfigError(
                "SSE_MONITOR_CONTAINERS and SSE_MONITOR_CONTAINER_LABEL are both set: "
                "choose containers by name or by label, not both"
            )
        if self.container_label is not None and not self.container_label.partition("=")[0]:
            raise ConfigError(
                f"SSE_MONITOR_CONTAINER_LABEL={self.container_label!r} must be key or key=value"
            )

    def _check_access_and_limits(self) -> None:
        for name, token in (
            ("SSE_MONITOR_TOKEN", self.viewer_token),
            ("SSE_MONITOR_ADMIN_TOKEN", self.admin_token),
        ):
            if token is not None and (len(token) < MIN_TOKEN_LENGTH or not _TOKEN.match(token)):
                # Never the value: it is a secret, even when it is a bad one.
                raise ConfigError(
                    f"{name} must be at least {MIN_TOKEN_LENGTH} printable characters with no "
                    "spaces (e.g. from: python -c 'import secrets; print(secrets.token_urlsafe())')"
                )
        if self.viewer_token is not None and self.viewer_token == self.admin_token:
            raise ConfigError("SSE_MONITOR_TOKEN and SSE_MONITOR_ADMIN_TOKEN must differ")
        _check_range("SSE_MONITOR_LOGIN_TTL", self.login_ttl, 60, 366 * 86400)
        _check_range("SSE_MONITOR_AUTH_FAILURE_LIMIT", self.auth_failure_limit, 1, 1_000_000)
        _check_range("SSE_MONITOR_AUTH_FAILURE_WINDOW", self.auth_failure_window, 1, 86400)
        _check_range("SSE_MONITOR_MAX_STREAMS", self.max_streams, 1, 1_000_000)
        _check_range(
            "SSE_MONITOR_MAX_STREAMS_PER_CLIENT", self.max_streams_per_client, 1, 1_000_000
        )
        _check_range("SSE_MONITOR_RETRY_AFTER", self.retry_after, 1, 3600)

    def _check_storage_and_logs(self) -> None:
        _check_range("SSE_MONITOR_ALERT_RETENTION", self.alert_retention, 60, 3650 * 86400)
        _check_range("SSE_MONITOR_NOTIFY_RETRY_FOR", self.notify_retry_for, 1, 30 * 86400)
        if self.external_url:
            _check_url("SSE_MONITOR_EXTERNAL_URL", self.external_url)
        points, minutes, quarters = self.chart_retention
        if not (points >= 60 and minutes >= 120 and quarters >= 1800):
            raise ConfigError(
                "SSE_MONITOR_CHART_RETENTION: keep points at least 1m, 1-minute buckets at "
                "least 2m and 15-minute buckets at least 30m"
            )
        if not self.db_path:
            raise ConfigError("SSE_MONITOR_DB must be a file path, or :memory: to keep nothing")
        if self.log_level not in LOG_LEVELS:
            raise ConfigError(
                f"SSE_MONITOR_LOG_LEVEL={self.log_level!r} is not one of {', '.join(LOG_LEVELS)}"
            )
        if self.log_format not in LOG_FORMATS:
            raise ConfigError(
                f"SSE_MONITOR_LOG_FORMAT={self.log_format!r} is not one of {', '.join(LOG_FORMATS)}"
            )

    def _check_cluster(self) -> None:
        if self.redis_url is not None:
            _check_redis_url("SSE_MONITOR_REDIS_URL", self.redis_url)
        if not _CLUSTER_NAME.match(self.cluster):
            raise ConfigError(
                f"SSE_MONITOR_CLUSTER={self.cluster[:80]!r} must be 1 to 64 letters, digits, "
                "'-', '_' or '.'"
            )
        _check_range("SSE_MONITOR_LEADER_TTL", self.leader_ttl, 1, 600)
        _check_range("SSE_MONITOR_REDIS_TIMEOUT", self.redis_timeout, 0.05, 60)
        if self.redis_timeout >= self.leader_ttl / 2:
            raise ConfigError(
                f"SSE_MONITOR_REDIS_TIMEOUT={self.redis_timeout} must be under half of "
                f"SSE_MONITOR_LEADER_TTL={self.leader_ttl}, or a slow renewal outlives the lease"
            )

    @property
    def watched_names(self) -> tuple[str, ...]:
        """The container names to watch; empty when watching by label or all of them."""
        if self.container_label is not None:
            return ()
        return DEFAULT_CONTAINERS if self.containers is None else self.containers

    @property
    def upstream_timeout(self) -> float:
        """How long one KATO request may take: always shorter than a tick."""
        if self.kato_timeout is not None:
            return self.kato_timeout
        return min(self.poll_interval * 0.8, 10.0)

    def with_overrides(self, **changes: Any) -> Settings:
        """A copy with some values replaced (the CLI's flags), validated again."""
        return replace(self, **{k: v for k, v in changes.items() if v is not None})

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for name, (attr, parse) in ENVIRONMENT.items():
            raw = env.get(name)
            if raw is None or raw.strip() == "":
                continue
            try:
                values[attr] = parse(raw.strip())
            except ValueError as exc:
                raise ConfigError(f"{name}={raw!r}: {exc}") from None
        return cls(**values)


LOG_LEVELS = ("debug", "info", "warning", "error")
# The containers of KATO's compose file: what a KATO dashboard watches unless told otherwise.
DEFAULT_CONTAINERS = ("kato", "kato-clickhouse", "kato-qdrant", "kato-redis")
LOG_FORMATS = ("auto", "json", "console")
MIN_TOKEN_LENGTH = 16
_TOKEN = re.compile(r"^[\x21-\x7e]+$")  # printable ASCII, no spaces
_CLUSTER_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
_CONTAINER_NAME = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]*$")  # the engine's own rule


def parse_bool(raw: str) -> bool:
    lowered = raw.lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ValueError("expected one of 1/0, true/false, yes/no, on/off")


def parse_float(raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise ValueError("expected a number") from None
    if not math.isfinite(value):
        raise ValueError("expected a finite number")
    return value


def parse_names(raw: str) -> tuple[str, ...]:
    """Comma-separated container names; `*` alone means every container."""
    if raw == "*":
        return ()
    names = tuple(name.strip() for name in raw.split(",") if name.strip())
    if not names or any(not _CONTAINER_NAME.match(name) for name in names):
        raise ValueError("expected comma-separated container names, or * for all")
    return names


def parse_origins(raw: str) -> tuple[str, ...]:
    """Comma-separated exact origins, e.g. https://ops.example.com,http://localhost:3000."""
    origins = tuple(origin.strip().rstrip("/") for origin in raw.split(",") if origin.strip())
    for origin in origins:
        if origin == "*":
            raise ValueError("* is refused: streams carry credentials, so list the origins")
        parts = urlsplit(origin)
        if parts.scheme not in ("http", "https") or not parts.netloc or parts.path:
            raise ValueError(f"{origin!r} is not an origin (scheme://host[:port], no path)")
    return origins


def parse_retention(raw: str) -> tuple[float, float, float]:
    """Three durations, comma-separated: `1h,24h,30d`."""
    parts = [part.strip() for part in raw.split(",")]
    if len(parts) != 3:
        raise ValueError(f"{raw!r} is not three durations (points, 1m buckets, 15m buckets)")
    points, minutes, quarters = (parse_duration(part) for part in parts)
    return points, minutes, quarters


def parse_int(raw: str) -> int:
    try:
        return int(raw)
    except ValueError:
        raise ValueError("expected a whole number") from None


# Environment variable -> (Settings attribute, parser). The README documents each one.
ENVIRONMENT: dict[str, tuple[str, Callable[[str], Any]]] = {
    "KATO_URL": ("kato_url", str),
    "SSE_MONITOR_POLL_INTERVAL": ("poll_interval", parse_float),
    "SSE_MONITOR_KATO_TIMEOUT": ("kato_timeout", parse_float),
    "SSE_MONITOR_KATO_PUSH": ("kato_push", parse_bool),
    "KATO_REDIS_URL": ("kato_redis_url", str),
    "SSE_MONITOR_SESSION_EVENTS": ("session_events", parse_bool),
    "SSE_MONITOR_HISTORY": ("history_size", parse_int),
    "SSE_MONITOR_PING_INTERVAL": ("ping_interval", parse_float),
    "SSE_MONITOR_RETRY_MS": ("retry_ms", parse_int),
    "SSE_MONITOR_CLIENT_BUFFER": ("client_buffer", parse_int),
    "SSE_MONITOR_SEND_TIMEOUT": ("send_timeout", parse_float),
    "SSE_MONITOR_CONTAINER_STATS": ("container_stats", parse_bool),
    "SSE_MONITOR_CONTAINERS": ("containers", parse_names),
    "SSE_MONITOR_CONTAINER_LABEL": ("container_label", str),
    "SSE_MONITOR_STATIC_DIR": ("static_dir", str),
    "SSE_MONITOR_ALERT_RULES": ("alert_rules", str),
    "SSE_MONITOR_DB": ("db_path", str),
    "SSE_MONITOR_ALERT_RETENTION": ("alert_retention", parse_duration),
    "SSE_MONITOR_NOTIFY_RETRY_FOR": ("notify_retry_for", parse_duration),
    "SSE_MONITOR_EXTERNAL_URL": ("external_url", str),
    "SSE_MONITOR_CHART_RETENTION": ("chart_retention", parse_retention),
    "SSE_MONITOR_TOKEN": ("viewer_token", str),
    "SSE_MONITOR_ADMIN_TOKEN": ("admin_token", str),
    "SSE_MONITOR_LOGIN_TTL": ("login_ttl", parse_duration),
    "SSE_MONITOR_AUTH_FAILURE_LIMIT": ("auth_failure_limit", parse_int),
    "SSE_MONITOR_AUTH_FAILURE_WINDOW": ("auth_failure_window", parse_duration),
    "SSE_MONITOR_CORS_ORIGINS": ("cors_origins", parse_origins),
    "SSE_MONITOR_MAX_STREAMS": ("max_streams", parse_int),
    "SSE_MONITOR_MAX_STREAMS_PER_CLIENT": ("max_streams_per_client", parse_int),
    "SSE_MONITOR_RETRY_AFTER": ("retry_after", parse_int),
    "SSE_MONITOR_TRUSTED_PROXIES": ("trusted_proxies", parse_networks),
    "SSE_MONITOR_REDIS_URL": ("redis_url", str),
    "SSE_MONITOR_CLUSTER": ("cluster", str),
    "SSE_MONITOR_LEADER_TTL": ("leader_ttl", parse_duration),
    "SSE_MONITOR_REDIS_TIMEOUT": ("redis_timeout", parse_duration),
    "SENTRY_DSN": ("sentry_dsn", str),
    "SENTRY_ENVIRONMENT": ("sentry_environment", str),
    "SSE_MONITOR_LOG_LEVEL": ("log_level", str.lower),
    "SSE_MONITOR_LOG_FORMAT": ("log_format", str.lower),
}


def _check_range(name: str, value: float, low: float, high: float) -> None:
    if not low <= value <= high:
        raise ConfigError(f"{name}={value} is out of range ({low} to {high})")


def _check_url(name: str, value: str) -> None:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(
            f"{name}={redact_url(value)!r} must be an http:// or https:// URL with a host"
        )
    try:
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        raise ConfigError(f"{name}={redact_url(value)!r} has an invalid port") from None


def _check_redis_url(name: str, value: str) -> None:
    parts = urlsplit(value)
    if parts.scheme not in ("redis", "rediss", "unix") or not (parts.hostname or parts.path):
        raise ConfigError(
            f"{name}={redact_url(value)!r} must be a redis://, rediss:// or unix:// URL"
        )
    try:
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        raise ConfigError(f"{name}={redact_url(value)!r} has an invalid port") from None
