"""The bodies a group of alert transitions is sent as, one message naming them all.

Three shapes: our generic webhook JSON (each alert and its transition), a Slack incoming
webhook's `text` and `blocks`, and Alertmanager's webhook format (version "4"), so receivers
written for Alertmanager work unchanged. Each carries the group's idempotency key; a webhook
with a secret is signed with HMAC-SHA256 over the exact bytes sent.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from dataclasses import dataclass
from typing import Any

from sse_monitor.alerts.alert import Alert
from sse_monitor.alerts.lifecycle import Transition
from sse_monitor.notify.group import NotificationGroup, transition_time
from sse_monitor.notify.receivers import TRANSITIONS, Receiver

SIGNATURE_HEADER = "X-SSE-Monitor-Signature"
IDEMPOTENCY_HEADER = "Idempotency-Key"
WEBHOOK_VERSION = 1
ALERTMANAGER_VERSION = "4"
ALERTMANAGER_ZERO_TIME = "0001-01-01T00:00:00Z"  # Alertmanager's endsAt of a firing alert
# Slack takes at most 50 blocks: a header, the alerts, a "... and N more" line, the footer.
MAX_SLACK_ALERTS = 47
MAX_SLACK_SECTION = 3000  # characters in a section's text
MAX_SLACK_HEADER = 150
SLACK_MARKS = {
    "fired": ":rotating_light:",
    "acknowledged": ":eyes:",
    "resolved": ":white_check_mark:",
}


@dataclass(frozen=True, slots=True)
class OutgoingRequest:
    body: bytes
    headers: dict[str, str]


def build_request(
    receiver: Receiver, group: NotificationGroup, *, external_url: str
) -> OutgoingRequest:
    """The body in the receiver's shape and its headers (signed when it has a secret)."""
    if receiver.kind == "slack":
        payload = slack_payload(group, external_url=external_url)
    elif receiver.kind == "alertmanager":
        payload = alertmanager_payload(group, external_url=external_url)
    else:
        payload = webhook_payload(group, external_url=external_url)
    body = encode(payload)
    headers = {"Content-Type": "application/json", IDEMPOTENCY_HEADER: group.idempotency_key}
    if receiver.secret:
        headers[SIGNATURE_HEADER] = signature(receiver.secret, body)
    return OutgoingRequest(body, headers)


def encode(payload: dict[str, Any]) -> bytes:
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()


def signature(secret: str, body: bytes) -> str:
    """The signature header's value: `sha256=` and the hex HMAC-SHA256 of the body."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def summary(group: NotificationGroup) -> str:
    """`3 alerts: 2 fired, 1 resolved`, counted in the order fired, acknowledged, resolved."""
    kinds = [transition.kind for transition in group.transitions]
    counts = [f"{kinds.count(kind)} {kind}" for kind in TRANSITIONS if kind in kinds]
    noun = "alert" if len({t.alert.id for t in group.transitions}) == 1 else "alerts"
    return f"sse-monitor {noun}: {', '.join(counts)}"


def webhook_payload(group: NotificationGroup, *, external_url: str) -> dict[str, Any]:
    return {
        "version": WEBHOOK_VERSION,
        "group_id": group.id,
        "idempotency_key": group.idempotency_key,
        "receiver": group.receiver,
        "external_url": external_url,
        "summary": summary(group),
        "transitions": [
            {"transition": t.kind, "at": transition_time(t), "alert": t.alert.to_json()}
            for t in group.transitions
        ],
    }


def slack_payload(group: NotificationGroup, *, external_url: str) -> dict[str, Any]:
    """`text` is what notifications show; `blocks` the message itself, one section an alert."""
    shown = group.transitions[:MAX_SLACK_ALERTS]
    hidden = len(group.transitions) - len(shown)
    lines = [_slack_line(transition) for transition in shown]
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": _plain(summary(group)[:MAX_SLACK_HEADER])}
    ]
    blocks += [
        {"type": "section", "text": {"type": "mrkdwn", "text": line[:MAX_SLACK_SECTION]}}
        for line in lines
    ]
    more = f"... and {hidden} more" if hidden else ""
    if more:
        blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": more}]})
    link = f"<{_escape(external_url)}|sse-monitor>" if external_url else "sse-monitor"
    footer = f"{link} · {group.idempotency_key}"
    blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": footer}]})
    text = "\n".join([summary(group), *lines, *([more] if more else [])])
    return {"text": text, "blocks": blocks}


def _slack_line(transition: Transition) -> str:
    alert = transition.alert
    subject = f" · {_escape(alert.subject)}" if alert.subject else ""
    line = (
        f"{SLACK_MARKS[transition.kind]} *{transition.kind.capitalize()}* · {alert.severity}"
        f" · `{_escape(alert.rule)}`{subject}\n{_escape(alert.message)}"
    )
    if transition.kind == "acknowledged" and alert.acknowledged_by:
        note = f": {_escape(alert.ack_note)}" if alert.ack_note else ""
        line += f"\nby {_escape(alert.acknowledged_by)}{note}"
    return line


def _plain(text: str) -> dict[str, Any]:
    return {"type": "plain_text", "text": text, "emoji": True}


def _escape(text: str) -> str:
    """Slack's mrkdwn: &, < and > are control characters, escaped as HTML entities."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def alertmanager_payload(group: NotificationGroup, *, external_url: str) -> dict[str, Any]:
    """Alertmanager's webhook body. An alert appears once, as its latest transition left it
    (Alertmanager never lists one twice); an acknowledged alert is still firing."""
    latest: dict[str, Alert] = {}
    for transition in group.transitions:
        latest[transition.alert.id] = transition.alert
    alerts = [_alertmanager_alert(alert, external_url) for alert in latest.values()]
    firing = any(alert["status"] == "firing" for alert in alerts)
    return {
        "version": ALERTMANAGER_VERSION,
        "groupKey": f"sse-monitor/{group.receiver}/{group.id}",
        "truncatedAlerts": 0,
        "status": "firing" if firing else "resolved",
        "receiver": group.receiver,
        "groupLabels": {},
        "commonLabels": _common([alert["labels"] for alert in alerts]),
        "commonAnnotations": _common([alert["annotations"] for alert in alerts]),
        "externalURL": external_url,
        "alerts": alerts,
        "idempotency_key": group.idempotency_key,
    }


def _alertmanager_alert(alert: Alert, external_url: str) -> dict[str, Any]:
    labels = {
        "alertname": alert.rule,
        "severity": alert.severity,
        "rule": alert.rule,
        "metric": alert.metric,
    }
    if alert.subject:
        labels["subject"] = alert.subject
    annotations = {"message": alert.message, "alert_id": alert.id, "value": str(alert.value)}
    if alert.acknowledged_by:
        annotations["acknowledged_by"] = alert.acknowledged_by
        annotations["acknowledged_at"] = _rfc3339(alert.acknowledged_at)
        if alert.ack_note:
            annotations["ack_note"] = alert.ack_note
    resolved = alert.state == "resolved"
    return {
        "status": "resolved" if resolved else "firing",
        "labels": labels,
        "annotations": annotations,
        "startsAt": _rfc3339(alert.started_at),
        "endsAt": _rfc3339(alert.resolved_at) if resolved else ALERTMANAGER_ZERO_TIME,
        "generatorURL": external_url,
        "fingerprint": _fingerprint(labels),
    }


def _fingerprint(labels: dict[str, str]) -> str:
    """16 hex digits from the label set, as Alertmanager's: the same alert, the same print."""
    text = "\xff".join(f"{name}\xff{labels[name]}" for name in sorted(labels))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _rfc3339(moment: str | None) -> str:
    """Our stamps end in +00:00; Go's RFC 3339 writes UTC as Z."""
    if moment is None:
        return ALERTMANAGER_ZERO_TIME
    return moment.removesuffix("+00:00") + "Z" if moment.endswith("+00:00") else moment


def _common(maps: list[dict[str, str]]) -> dict[str, str]:
    """The pairs every map has, as Alertmanager's commonLabels and commonAnnotations."""
    if not maps:
        return {}
    first, *rest = maps
    return {key: value for key, value in first.items() if all(m.get(key) == value for m in rest)}
