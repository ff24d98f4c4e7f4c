"""Alert rules files as tests write them: `[[rule]]` tables from keyword arguments."""

from __future__ import annotations

import json


def rule_table(**fields: str | float | list[str]) -> str:
    """One `[[rule]]` table of a rules file, its fields in the order given (`for_` is `for`).
    Strings (and lists of them) are written as JSON writes them, which TOML reads as the same
    basic strings (and arrays)."""
    lines = ["", "[[rule]]"]
    lines += [f"{name.removesuffix('_')} = {json.dumps(value)}" for name, value in fields.items()]
    return "\n".join(lines) + "\n"


def status_rule(
    rule_id: str, threshold: str, severity: str, op: str = "==", **fields: str | float
) -> str:
    """A rule on KATO's status (`kato.status`), with other fields (message, for_, clear_for)."""
    return rule_table(
        id=rule_id, metric="kato.status", op=op, threshold=threshold, severity=severity, **fields
    )


# The contract's two rules, each firing at the first poll where it holds: degraded -> a warning,
# unhealthy -> a critical alert.
DEGRADED_AND_UNHEALTHY = status_rule(
    "kato_degraded", "degraded", "warning", for_="0s", message="KATO is degraded"
) + status_rule("kato_unhealthy", "unhealthy", "critical", for_="0s", message="KATO is unhealthy")
# The same two rules, each resolving only after 2 s of health: on a loaded machine one KATO read
# can time out (a true `unreachable` for a tick), which would otherwise resolve the alert and
# fire a new one with another id, adding transitions a test follows or counts.
STEADY = status_rule(
    "kato_degraded", "degraded", "warning", clear_for="2s", message="KATO is degraded"
) + status_rule(
    "kato_unhealthy", "unhealthy", "critical", clear_for="2s", message="KATO is unhealthy"
)
