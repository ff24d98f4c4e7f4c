"""Alert rules: read from a TOML file (or the built-in defaults) and checked before start-up.

A rule names a metric (a path into the latest snapshot), a condition on it, a severity, how long
the condition must hold before the alert fires (`for`) and what it takes to resolve it
(`clear_threshold` and `clear_for`: hysteresis, so that a value hovering around the threshold
fires once and stays firing instead of flapping). Every problem in a rules file is reported with
the file, the rule and what is wrong, and stops start-up: an alert that silently never fires is
worse than a gateway that refuses to start.
"""

from __future__ import annotations

import math
import operator
import re
import string
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from sse_monitor.alerts.metric_paths import check_metric
from sse_monitor.durations import parse_duration
from sse_monitor.settings import ConfigError

SEVERITIES = ("critical", "warning", "info")
ORDERING = {">": operator.gt, ">=": operator.ge, "<": operator.lt, "<=": operator.le}
EQUALITY = {"==": operator.eq, "!=": operator.ne}
CHANGE = ("increased",)  # true on the poll where the value went up (a restart counter)
OPERATORS = (*ORDERING, *EQUALITY, *CHANGE)
TEMPLATE_FIELDS = ("value", "threshold", "clear_threshold", "subject", "rule", "metric", "severity")
DEFAULT_MESSAGE = "{rule}: {metric} is {value}"
RULE_KEYS = frozenset(
    {"id", "metric", "op", "threshold", "severity", "for", "clear_threshold", "clear_for"}
    | {"message"}
)
_RULE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")

Threshold = float | int | str | bool


class RulesError(ConfigError):
    """A rules file cannot be used; the message names the file, the rule and the problem."""


@dataclass(frozen=True, slots=True)
class Rule:
    id: str
    metric: str
    op: str
    threshold: Threshold | None
    severity: str
    for_seconds: float = 0.0
    clear_threshold: float | None = None
    clear_for_seconds: float = 0.0
    message: str = DEFAULT_MESSAGE

    def holds(self, value: Any) -> bool | None:
        """Whether the firing condition holds for this value; None when it cannot be judged
        (no value, or one of the wrong kind). `increased` is judged by the caller."""
        return _compare(self.op, value, self.threshold)

    def cleared(self, value: Any) -> bool | None:
        """Whether a firing alert's value is back on the safe side of the clear threshold."""
        if self.clear_threshold is None:
            holds = self.holds(value)
            return None if holds is None else not holds
        holds = _compare(self.op, value, self.clear_threshold)
        return None if holds is None else not holds

    def render(self, value: Any, subject: str | None) -> str:
        """The message for one alert; a value of a surprising kind falls back to the default."""
        fields = self.template_fields(value, subject)
        try:
            return self.message.format(**fields)
        except (ValueError, TypeError, KeyError, IndexError):
            return DEFAULT_MESSAGE.format(**fields)

    def template_fields(self, value: Any, subject: str | None) -> dict[str, Any]:
        return {
            "value": value,
            "threshold": self.threshold,
            "clear_threshold": self.clear_threshold,
            "subject": subject or "",
            "rule": self.id,
            "metric": self.metric,
            "severity": self.severity,
        }


# [[receiver]] and [[route]] are notify/receivers.py's, read from the same file.
TOP_LEVEL_KEYS = frozenset({"rule", "receiver", "route"})


def load_rules(path: str | Path | None) -> tuple[Rule, ...]:
    """The rules of a file, or the built-in defaults when there is none."""
    if path is None:
        text = resources.files("sse_monitor.alerts").joinpath("default_rules.toml").read_text()
        return parse_rules(text, source="built-in default rules")
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise RulesError(f"{path}: cannot read the rules file: {exc}") from None
    return parse_rules(text, source=str(path))


def parse_rules(text: str, *, source: str) -> tuple[Rule, ...]:
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise RulesError(f"{source}: not valid TOML: {exc}") from None
    unknown = sorted(set(document) - TOP_LEVEL_KEYS)
    if unknown:
        raise RulesError(
            f"{source}: unknown top-level key {unknown[0]!r} (rules are [[rule]] tables, "
            "notifications [[receiver]] and [[route]] tables)"
        )
    tables = document.get("rule", [])
    if not isinstance(tables, list) or not all(isinstance(t, dict) for t in tables):
        raise RulesError(f"{source}: `rule` must be an array of tables, written [[rule]]")
    rules: list[Rule] = []
    seen: set[str] = set()
    for index, table in enumerate(tables, start=1):
        name = table.get("id") if isinstance(table.get("id"), str) else f"#{index}"
        try:
            rule = parse_rule(table)
        except ValueError as exc:
            raise RulesError(f"{source}: rule {name!r}: {exc}") from None
        if rule.id in seen:
            raise RulesError(f"{source}: rule {name!r}: the id is used by an earlier rule")
        seen.add(rule.id)
        rules.append(rule)
    return tuple(rules)


def parse_rule(table: Mapping[str, Any]) -> Rule:
    """One [[rule]] table; a ValueError says what is wrong with it."""
    unknown = sorted(set(table) - RULE_KEYS)
    if unknown:
        raise ValueError(f"unknown key {unknown[0]!r} (known: {', '.join(sorted(RULE_KEYS))})")
    for key in ("id", "metric", "op", "severity"):
        if key not in table:
            raise ValueError(f"`{key}` is missing")
        if not isinstance(table[key], str):
            raise ValueError(f"`{key}` must be a string")
    rule_id, metric, op, severity = table["id"], table["metric"], table["op"], table["severity"]
    if not _RULE_ID.fullmatch(rule_id):  # match's $ would take a final line break
        raise ValueError("`id` must be 1-64 letters, digits, '_', '.' or '-'")
    check_metric(metric)
    if op not in OPERATORS:
        raise ValueError(f"`op` {op!r} is not one of {', '.join(OPERATORS)}")
    if severity not in SEVERITIES:
        raise ValueError(f"`severity` {severity!r} is not one of {', '.join(SEVERITIES)}")
    threshold = _threshold(op, table)
    clear_threshold = _clear_threshold(op, threshold, table)
    for_seconds = _duration(table, "for")
    if op in CHANGE and for_seconds:
        raise ValueError(f"`for` must be 0 for {op!r}: a change holds for one poll only")
    clear_for_seconds = _duration(table, "clear_for")
    message = table.get("message", DEFAULT_MESSAGE)
    if not isinstance(message, str) or not message.strip():
        raise ValueError("`message` must be a non-empty string")
    rule = Rule(
        id=rule_id,
        metric=metric,
        op=op,
        threshold=threshold,
        severity=severity,
        for_seconds=for_seconds,
        clear_threshold=clear_threshold,
        clear_for_seconds=clear_for_seconds,
        message=message,
    )
    _check_template(rule)
    return rule


def _threshold(op: str, table: Mapping[str, Any]) -> Threshold | None:
    threshold = table.get("threshold")
    if op in CHANGE:
        if threshold is not None:
            raise ValueError(
                f"`threshold` does not apply to {op!r} (it compares with the last poll)"
            )
        return None
    if threshold is None:
        raise ValueError("`threshold` is missing")
    if op in ORDERING and not _is_number(threshold):
        raise ValueError(f"`threshold` must be a number for {op!r}, not {threshold!r}")
    if op in EQUALITY and not isinstance(threshold, str | bool | int | float):
        raise ValueError(f"`threshold` must be a string, number or boolean, not {threshold!r}")
    if isinstance(threshold, float) and not math.isfinite(threshold):
        raise ValueError("`threshold` must be finite")
    return threshold


def _clear_threshold(
    op: str, threshold: Threshold | None, table: Mapping[str, Any]
) -> float | None:
    """Hysteresis: the value must come back past this (not just past the threshold) to clear."""
    clear = table.get("clear_threshold")
    if clear is None:
        return None
    if op not in ORDERING:
        raise ValueError(f"`clear_threshold` applies only to {', '.join(ORDERING)}")
    if not _is_number(clear) or not math.isfinite(clear):
        raise ValueError(f"`clear_threshold` must be a number, not {clear!r}")
    assert _is_number(threshold)
    if op in (">", ">=") and clear > threshold:  # type: ignore[operator]
        raise ValueError(
            f"`clear_threshold` {clear} must not be above the threshold {threshold} for {op!r}"
        )
    if op in ("<", "<=") and clear < threshold:  # type: ignore[operator]
        raise ValueError(
            f"`clear_threshold` {clear} must not be below the threshold {threshold} for {op!r}"
        )
    return clear


def _duration(table: Mapping[str, Any], key: str) -> float:
    if key not in table:
        return 0.0
    try:
        return parse_duration(table[key])
    except ValueError as exc:
        raise ValueError(f"`{key}`: {exc}") from None


def _check_template(rule: Rule) -> None:
    """Refuse unknown fields and format specs the rule's values cannot take, before start-up."""
    try:
        parsed = list(string.Formatter().parse(rule.message))
    except ValueError as exc:
        raise ValueError(f"`message` is not a valid template: {exc}") from None
    for _, field, _, _ in parsed:
        if field is None:
            continue
        if field not in TEMPLATE_FIELDS:
            raise ValueError(
                f"`message` uses {{{field}}}; the fields are {', '.join(TEMPLATE_FIELDS)}"
            )
    sample = 1.5 if rule.op in ORDERING or rule.op in CHANGE else rule.threshold
    try:
        rule.message.format(**rule.template_fields(sample, "name"))
    except (ValueError, TypeError, KeyError, IndexError) as exc:
        raise ValueError(f"`message` cannot be formatted: {exc}") from None


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _compare(op: str, value: Any, threshold: Any) -> bool | None:
    compare: Callable[[Any, Any], bool] | None = ORDERING.get(op) or EQUALITY.get(op)
    if compare is None or value is None:
        return None
    if op in ORDERING:
        if not _is_number(value) or not math.isfinite(value):
            return None
        return compare(value, threshold)
    if _is_number(threshold) != _is_number(value) or isinstance(value, bool) != isinstance(
        threshold, bool
    ):
        return None  # a string against a number: cannot be judged, so never true
    return compare(value, threshold)
