"""An alert as columns of text, the same in every store: JSON for the values, text for the rest,
None where a column is empty. Text order of `started_at` and `resolved_at` is time order."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Mapping

from sse_monitor.alerts.alert import Alert

COLUMNS = (
    "id",
    "rule",
    "subject",
    "metric",
    "severity",
    "state",
    "message",
    "value",
    "threshold",
    "started_at",
    "resolved_at",
    "resolved_value",
    "acknowledged_by",
    "acknowledged_at",
    "ack_note",
)
JSON_COLUMNS = frozenset({"value", "threshold", "resolved_value"})


def to_columns(alert: Alert) -> tuple[str | None, ...]:
    """The alert's columns, in the order of COLUMNS."""
    data = alert.to_json()
    return tuple(
        json.dumps(data[column]) if column in JSON_COLUMNS else data[column] for column in COLUMNS
    )


def from_columns(columns: Mapping[str, str | None] | sqlite3.Row) -> Alert:
    """The alert a store kept, from every one of its columns."""
    return Alert(
        **{
            column: json.loads(columns[column])
            if column in JSON_COLUMNS and columns[column] is not None
            else columns[column]
            for column in COLUMNS
        }
    )
