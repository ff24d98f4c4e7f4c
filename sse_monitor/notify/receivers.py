"""Notification receivers and routes: read from the alert rules' TOML file and checked.

A `[[receiver]]` says where a message goes (a generic webhook, a Slack incoming webhook or an
Alertmanager-compatible webhook); a `[[route]]` says which alerts go to it (by severity, by rule
id) and how long to gather a burst into one message (`group_wait`). As with rules, every problem
names the file, the receiver (or route) and what is wrong, and stops start-up: a page nobody
receives is worse than a gateway that refuses to start. Receiver URLs and secrets are
credentials: errors never quote them, and `redacted_url` is the form logs may carry.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import parse_qsl, unquote, urlsplit

import httpx

from sse_monitor.alerts.alert import Alert
from sse_monitor.alerts.rules import SEVERITIES
from sse_monitor.durations import parse_duration
from sse_monitor.redact import MASK, MIN_SECRET_LENGTH
from sse_monitor.settings import ConfigError

KINDS = ("webhook", "slack", "alertmanager")
TRANSITIONS = ("fired", "acknowledged", "resolved")
RECEIVER_KEYS = frozenset({"name", "kind", "url", "secret", "send_resolved", "timeout"})
ROUTE_KEYS = frozenset({"receiver", "severities", "rules", "group_wait"})
DEFAULT_TIMEOUT = 10.0
MAX_TIMEOUT = 300.0
DEFAULT_GROUP_WAIT = 10.0
MAX_GROUP_WAIT = 3600.0  # longer would be a notification nobody gets in time
# A path segment this long is taken for a token (Slack, Discord and Teams put theirs there).
PATH_TOKEN_LENGTH = 16
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
T = TypeVar("T")


class ReceiverError(ConfigError):
    """Receivers or routes cannot be used; the message names the file, the table and the problem."""


@dataclass(frozen=True, slots=True)
class Receiver:
    name: str
    kind: str
    url: str = field(repr=False)
    secret: str | None = field(default=None, repr=False)
    send_resolved: bool = True
    timeout: float = DEFAULT_TIMEOUT

    @property
    def redacted_url(self) -> str:
        """Scheme, host and port only: user info, query and path may all carry a token."""
        parts = urlsplit(self.url)
        host = parts.netloc.rsplit("@", 1)[-1]
        hidden = parts.path not in ("", "/") or parts.query or "@" in parts.netloc
        return f"{parts.scheme}://{host}" + (f"/{MASK}" if hidden else "")

    @property
    def secrets(self) -> tuple[str, ...]:
        """What must never reach a log, for the log `Scrubber`: the signing secret, the URL's
        password and user info, its query parameters and its token-like path segments. A
        query value is masked alone only if token-like too; else with its key, as in the URL:
        `?format=info` alone would mask the level of every log line."""
        parts = urlsplit(self.url)
        found = [self.secret or "", self.url]
        if "@" in parts.netloc:
            userinfo = parts.netloc.rsplit("@", 1)[0]
            found += [userinfo, unquote(userinfo), unquote(userinfo.partition(":")[2])]
        found += [pair for pair in parts.query.split("&") if "=" in pair]
        values = [value for _, value in parse_qsl(parts.query, keep_blank_values=True)]
        found += [value for value in values if len(value) >= PATH_TOKEN_LENGTH]
        found += [s for s in parts.path.split("/") if len(s) >= PATH_TOKEN_LENGTH]
        return tuple(sorted({s for s in found if len(s) >= MIN_SECRET_LENGTH}))


@dataclass(frozen=True, slots=True)
class Route:
    receiver: Receiver
    severities: tuple[str, ...] | None = None  # None: every severity
    rules: tuple[str, ...] | None = None  # None: every rule
    group_wait: float = DEFAULT_GROUP_WAIT

    def matches(self, alert: Alert) -> bool:
        if self.severities is not None and alert.severity not in self.severities:
            return False
        return self.rules is None or alert.rule in self.rules


@dataclass(frozen=True, slots=True)
class NotifyConfig:
    receivers: tuple[Receiver, ...] = ()
    routes: tuple[Route, ...] = ()

    def routes_for(self, alert: Alert, transition: str) -> tuple[Route, ...]:
        """The receivers to notify of this transition, each with the first route (in file order)
        that sends it there; a resolve only to receivers with `send_resolved`."""
        if transition not in TRANSITIONS:
            raise ValueError(f"unknown transition {transition!r}")
        chosen: dict[str, Route] = {}
        for route in self.routes:
            receiver = route.receiver
            if receiver.name in chosen or not route.matches(alert):
                continue
            if transition == "resolved" and not receiver.send_resolved:
                continue
            chosen[receiver.name] = route
        return tuple(chosen.values())

    @property
    def secrets(self) -> tuple[str, ...]:
        return tuple(secret for receiver in self.receivers for secret in receiver.secrets)


def receiver_secrets(path: str | Path | None) -> tuple[str, ...]:
    """The secrets of the file's receivers for the log `Scrubber`, read before logging starts
    and before the file is checked: whatever a receiver table holds as `url` or `secret` is
    masked, even in a file that start-up will then refuse."""
    if path is None:
        return ()
    try:
        document = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        return ()  # start-up refuses the file, without quoting it
    tables = document.get("receiver", [])
    found: list[str] = []
    for table in tables if isinstance(tables, list) else []:
        if not isinstance(table, dict):
            continue
        url, secret = table.get("url"), table.get("secret")
        if isinstance(url, str):
            secret_text = secret if isinstance(secret, str) else None
            try:
                found += Receiver("", "", url, secret_text).secrets
            except ValueError:  # urlsplit refuses it (so will the check): masked whole
                found += [url, secret_text or ""]
        elif isinstance(secret, str) and len(secret) >= MIN_SECRET_LENGTH:
            found.append(secret)
    return tuple(found)


def load_notify_config(path: str | Path | None, rule_ids: Iterable[str]) -> NotifyConfig:
    """The receivers and routes of the rules file; none without a file (the built-in rules)."""
    if path is None:
        return NotifyConfig()
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ReceiverError(f"{path}: cannot read the rules file: {exc}") from None
    return parse_notify_config(text, source=str(path), rule_ids=rule_ids)


def parse_notify_config(text: str, *, source: str, rule_ids: Iterable[str]) -> NotifyConfig:
    """`[[receiver]]` and `[[route]]` of a rules file (its `[[rule]]` tables are for rules.py)."""
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ReceiverError(f"{source}: not valid TOML: {exc}") from None
    receivers = tuple(_parse_each(document, "receiver", source, parse_receiver))
    names = [receiver.name for receiver in receivers]
    for index, name in enumerate(names):
        if name in names[:index]:
            raise ReceiverError(f"{source}: receiver {name!r}: the name is used by an earlier one")
    by_name, known_rules = dict(zip(names, receivers, strict=True)), frozenset(rule_ids)
    routes = tuple(
        _parse_each(document, "route", source, partial(parse_route, by_name, known_rules))
    )
    routed = {route.receiver.name for route in routes}
    for name in names:
        if name not in routed:
            raise ReceiverError(
                f"{source}: receiver {name!r}: no [[route]] sends to it "
                f'(add one with receiver = "{name}")'
            )
    return NotifyConfig(receivers=receivers, routes=routes)


def _parse_each(
    document: Mapping[str, Any], key: str, source: str, parse: Callable[[Mapping[str, Any]], T]
) -> list[T]:
    """Each `[[key]]` table parsed; the first problem named with the file and the table."""
    tables = document.get(key, [])
    if not isinstance(tables, list) or not all(isinstance(t, dict) for t in tables):
        raise ReceiverError(f"{source}: `{key}` must be an array of tables, written [[{key}]]")
    parsed: list[T] = []
    for index, table in enumerate(tables, start=1):
        try:
            parsed.append(parse(table))
        except ValueError as exc:
            raise ReceiverError(f"{source}: {_table_label(key, index, table)}: {exc}") from None
    return parsed


def _table_label(key: str, index: int, table: Mapping[str, Any]) -> str:
    """`receiver 'ops'` (or `receiver '#2'` without a name), `route #3 (to 'ops')`."""
    if key == "receiver":
        name = table.get("name")
        return f"receiver {name if isinstance(name, str) else f'#{index}'!r}"
    target = table.get("receiver")
    return f"route #{index}" + (f" (to {target!r})" if isinstance(target, str) else "")


def parse_receiver(table: Mapping[str, Any]) -> Receiver:
    """One [[receiver]] table; a ValueError says what is wrong (never quoting the URL)."""
    _check_keys(table, RECEIVER_KEYS)
    for key in ("name", "kind", "url"):
        if key not in table:
            raise ValueError(f"`{key}` is missing")
        if not isinstance(table[key], str):
            raise ValueError(f"`{key}` must be a string")
    name, kind, url = table["name"], table["kind"], table["url"]
    if not _NAME.fullmatch(name):  # match() would let "$" take a final line break
        raise ValueError("`name` must be 1-64 letters, digits, '_', '.' or '-'")
    if kind not in KINDS:
        raise ValueError(f"`kind` {kind!r} is not one of {', '.join(KINDS)}")
    _check_url(url)
    secret = table.get("secret")
    if secret is not None:
        if kind != "webhook":
            raise ValueError(f"`secret` applies only to kind = 'webhook', not {kind!r}")
        if not isinstance(secret, str) or not secret:
            raise ValueError("`secret` must be a non-empty string")
    send_resolved = table.get("send_resolved", True)
    if not isinstance(send_resolved, bool):
        raise ValueError("`send_resolved` must be true or false")
    timeout = _duration(table, "timeout", DEFAULT_TIMEOUT)
    if not 0 < timeout <= MAX_TIMEOUT:
        raise ValueError(f"`timeout` must be more than 0 and at most {MAX_TIMEOUT:.0f} s")
    return Receiver(name, kind, url, secret, send_resolved, timeout)


def parse_route(
    receivers: Mapping[str, Receiver], rule_ids: frozenset[str], table: Mapping[str, Any]
) -> Route:
    """One [[route]] table; a ValueError says what is wrong with it."""
    _check_keys(table, ROUTE_KEYS)
    target = table.get("receiver")
    if target is None:
        raise ValueError("`receiver` is missing")
    if not isinstance(target, str):
        raise ValueError("`receiver` must be a string")
    if target not in receivers:
        raise ValueError(f"`receiver` {target!r} is not a [[receiver]] of this file")
    severities = _names(table, "severities", SEVERITIES, "a severity")
    rules = _names(table, "rules", rule_ids, "a rule id of this file")
    group_wait = _duration(table, "group_wait", DEFAULT_GROUP_WAIT)
    if not 0 <= group_wait <= MAX_GROUP_WAIT:
        raise ValueError(f"`group_wait` must be from 0 to {MAX_GROUP_WAIT:.0f} s")
    return Route(receivers[target], severities, rules, group_wait)


def _check_keys(table: Mapping[str, Any], known: frozenset[str]) -> None:
    unknown = sorted(set(table) - known)
    if unknown:
        raise ValueError(f"unknown key {unknown[0]!r} (known: {', '.join(sorted(known))})")


def _check_url(url: str) -> None:
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - a port out of range raises here
    except ValueError:
        raise ValueError("`url` is not a valid URL") from None
    if parts.scheme not in ("http", "https"):
        raise ValueError(f"`url` must start with http:// or https://, not {parts.scheme!r}")
    if not parts.hostname:
        raise ValueError("`url` has no host")
    try:
        httpx.URL(url)  # what urlsplit takes and httpx refuses would fail every attempt
    except httpx.InvalidURL:
        raise ValueError("`url` is not a valid URL") from None


def _names(
    table: Mapping[str, Any], key: str, known: Iterable[str], what: str
) -> tuple[str, ...] | None:
    """An optional list of known names; an empty list would match nothing, so it is refused."""
    if key not in table:
        return None
    names = table[key]
    if not isinstance(names, list) or not all(isinstance(name, str) for name in names):
        raise ValueError(f"`{key}` must be a list of strings")
    if not names:
        raise ValueError(f"`{key}` is empty, so the route matches nothing (leave it out)")
    allowed = set(known)
    for name in names:
        if name not in allowed:
            raise ValueError(f"`{key}`: {name!r} is not {what}")
    return tuple(dict.fromkeys(names))


def _duration(table: Mapping[str, Any], key: str, default: float) -> float:
    if key not in table:
        return default
    try:
        return parse_duration(table[key])
    except ValueError as exc:
        raise ValueError(f"`{key}`: {exc}") from None
