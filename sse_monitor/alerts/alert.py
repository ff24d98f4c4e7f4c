"""One alert: a rule that fired for a subject, from firing to resolved, with its acknowledgement."""

from __future__ import annotations

import secrets
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

STATES = ("firing", "resolved")


def new_alert_id() -> str:
    return secrets.token_hex(8)


def stamp(moment: datetime) -> str:
    """ISO-8601 in UTC, always with microseconds: fixed width, so text order is time order."""
    return moment.astimezone(UTC).isoformat(timespec="microseconds")


@dataclass(slots=True)
class Alert:
    id: str
    rule: str
    subject: str | None  # a container's name for per-container rules, else None
    metric: str
    severity: str
    state: str
    message: str
    value: Any  # the value when it fired
    threshold: Any
    started_at: str
    resolved_at: str | None = None
    resolved_value: Any = None
    acknowledged_by: str | None = None
    acknowledged_at: str | None = None
    ack_note: str | None = None

    @property
    def firing(self) -> bool:
        return self.state == "firing"

    @property
    def acknowledged(self) -> bool:
        return self.acknowledged_at is not None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)
