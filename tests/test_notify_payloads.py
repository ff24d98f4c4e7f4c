"""Notification bodies: the generic webhook, Slack and Alertmanager shapes, signed and keyed."""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from dataclasses import replace

from sse_monitor.alerts.alert import Alert
from sse_monitor.alerts.lifecycle import Transition
from sse_monitor.notify.group import NotificationGroup
from sse_monitor.notify.payloads import (
    IDEMPOTENCY_HEADER,
    MAX_SLACK_ALERTS,
    SIGNATURE_HEADER,
    alertmanager_payload,
    build_request,
    signature,
    slack_payload,
    webhook_payload,
)
from sse_monitor.notify.receivers import Receiver

EXTERNAL_URL = "https://monitor.example.com"
# Go's RFC 3339 with optional fractions, as Alertmanager writes and reads times.
RFC3339 = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$")
# Alertmanager's webhook body and each of its alerts, as its configuration.md documents them
ALERTMANAGER_KEYS = frozenset(
    {"version", "groupKey", "truncatedAlerts", "status", "receiver", "groupLabels"}
    | {"commonLabels", "commonAnnotations", "externalURL", "alerts"}
)
ALERTMANAGER_ALERT_KEYS = frozenset(
    {"status", "labels", "annotations", "startsAt", "endsAt", "generatorURL", "fingerprint"}
)
CONTAINER_DOWN_LABELS = {
    "alertname": "container_down",
    "severity": "critical",
    "rule": "container_down",
    "metric": "containers.*.status",
}


def make_alert(alert_id: str = "3f9a0c1d2e4b5a69", **fields: object) -> Alert:
    alert = Alert(
        id=alert_id,
        rule="container_down",
        subject="kato-worker-1",
        metric="containers.*.status",
        severity="critical",
        state="firing",
        message="kato-worker-1 is exited <oops> & more",
        value="exited",
        threshold="running",
        started_at="2026-11-30T12:00:00.123456+00:00",
    )
    return replace(alert, **fields)  # type: ignore[arg-type]


ACKNOWLEDGED = {
    "acknowledged_by": "alice",
    "acknowledged_at": "2026-11-30T12:01:00.000000+00:00",
    "ack_note": "on it",
}
RESOLVED = {"state": "resolved", "resolved_at": "2026-11-30T12:05:00.000000+00:00"}


def acknowledged(alert: Alert) -> Alert:
    return replace(alert, **ACKNOWLEDGED)  # type: ignore[arg-type]


def resolved(alert: Alert) -> Alert:
    return replace(alert, resolved_value="running", **RESOLVED)  # type: ignore[arg-type]


def lifecycle_group(group_id: str = "g1") -> NotificationGroup:
    """One alert fired, acknowledged and resolved; another fired, in one group."""
    first = make_alert()
    other = make_alert(
        "0000000000000002",
        rule="cpu_high",
        subject=None,
        severity="warning",
        metric="kato.resources.cpu_percent",
        message="CPU at 93.1 %",
        value=93.1,
    )
    return NotificationGroup(
        id=group_id,
        receiver="ops",
        transitions=(
            Transition("fired", first),
            Transition("acknowledged", acknowledged(first)),
            Transition("fired", other),
            Transition("resolved", resolved(acknowledged(first))),
        ),
    )


def test_the_webhook_body_names_every_transition_with_its_alert() -> None:
    group = lifecycle_group()
    body = webhook_payload(group, external_url=EXTERNAL_URL)
    assert body["version"] == 1
    assert (body["group_id"], body["receiver"]) == ("g1", "ops")
    assert body["idempotency_key"] == group.idempotency_key
    assert body["summary"] == "sse-monitor alerts: 2 fired, 1 acknowledged, 1 resolved"
    assert [(t["transition"], t["alert"]["id"]) for t in body["transitions"]] == [
        ("fired", "3f9a0c1d2e4b5a69"),
        ("acknowledged", "3f9a0c1d2e4b5a69"),
        ("fired", "0000000000000002"),
        ("resolved", "3f9a0c1d2e4b5a69"),
    ]
    assert [t["at"] for t in body["transitions"]] == [
        "2026-11-30T12:00:00.123456+00:00",
        "2026-11-30T12:01:00.000000+00:00",
        "2026-11-30T12:00:00.123456+00:00",
        "2026-11-30T12:05:00.000000+00:00",
    ]
    assert body["transitions"][1]["alert"]["acknowledged_by"] == "alice"
    assert body["transitions"][3]["alert"]["state"] == "resolved"
    assert body["transitions"][0]["alert"] == make_alert().to_json()


def test_the_idempotency_key_is_stable_for_the_group_and_differs_between_groups() -> None:
    key = lifecycle_group().idempotency_key
    assert re.fullmatch(r"[0-9a-f]{32}", key)
    assert lifecycle_group().idempotency_key == key  # rebuilt (a retry, a restart)
    assert lifecycle_group("another-outbox-id").idempotency_key == key  # regrouped
    group = lifecycle_group()
    assert replace(group, receiver="chat").idempotency_key != key
    assert replace(group, transitions=group.transitions[:3]).idempotency_key != key


def test_a_signed_webhook_verifies_with_hmac_over_the_exact_body() -> None:
    receiver = Receiver("ops", "webhook", "https://h.example/x", secret="s3cret-signing-key")
    group = lifecycle_group()
    request = build_request(receiver, group, external_url=EXTERNAL_URL)
    expected = hmac.new(b"s3cret-signing-key", request.body, hashlib.sha256).hexdigest()
    assert request.headers[SIGNATURE_HEADER] == f"sha256={expected}"
    assert signature("s3cret-signing-key", request.body) == f"sha256={expected}"
    assert signature("other-key", request.body) != f"sha256={expected}"
    assert request.headers[IDEMPOTENCY_HEADER] == group.idempotency_key
    assert request.headers["Content-Type"] == "application/json"
    assert json.loads(request.body) == webhook_payload(group, external_url=EXTERNAL_URL)


def test_a_receiver_without_a_secret_sends_no_signature() -> None:
    for kind in ("webhook", "slack", "alertmanager"):
        receiver = Receiver("ops", kind, "https://h.example/x")
        request = build_request(receiver, lifecycle_group(), external_url=EXTERNAL_URL)
        assert SIGNATURE_HEADER not in request.headers
        assert request.headers[IDEMPOTENCY_HEADER] == lifecycle_group().idempotency_key


def test_each_kind_gets_its_own_shape() -> None:
    group = lifecycle_group()
    bodies = {
        kind: json.loads(
            build_request(
                Receiver("ops", kind, "https://h/"), group, external_url=EXTERNAL_URL
            ).body
        )
        for kind in ("webhook", "slack", "alertmanager")
    }
    assert bodies["webhook"] == webhook_payload(group, external_url=EXTERNAL_URL)
    assert bodies["slack"] == slack_payload(group, external_url=EXTERNAL_URL)
    assert bodies["alertmanager"] == alertmanager_payload(group, external_url=EXTERNAL_URL)


def test_the_slack_body_has_text_and_a_section_per_transition() -> None:
    group = lifecycle_group()
    body = slack_payload(group, external_url=EXTERNAL_URL)
    assert set(body) == {"text", "blocks"}
    lines = body["text"].split("\n")
    assert lines[0] == "sse-monitor alerts: 2 fired, 1 acknowledged, 1 resolved"
    assert "kato-worker-1 is exited &lt;oops&gt; &amp; more" in body["text"]
    header, *sections, footer = body["blocks"]
    assert header == {
        "type": "header",
        "text": {"type": "plain_text", "text": lines[0], "emoji": True},
    }
    assert [section["type"] for section in sections] == ["section"] * 4
    texts = [section["text"]["text"] for section in sections]
    assert all(section["text"]["type"] == "mrkdwn" for section in sections)
    assert texts[0].startswith(
        ":rotating_light: *Fired* · critical · `container_down` · kato-worker-1\n"
    )
    assert texts[1].endswith("\nby alice: on it")
    assert texts[2].startswith(":rotating_light: *Fired* · warning · `cpu_high`\n")
    assert texts[3].startswith(":white_check_mark: *Resolved*")
    assert footer["type"] == "context"
    assert (
        footer["elements"][0]["text"] == f"<{EXTERNAL_URL}|sse-monitor> · {group.idempotency_key}"
    )


def test_a_slack_burst_stays_within_slacks_fifty_blocks_and_says_how_many_more() -> None:
    alerts = [make_alert(f"{n:016x}") for n in range(60)]
    group = NotificationGroup("g", "chat", tuple(Transition("fired", a) for a in alerts))
    body = slack_payload(group, external_url=EXTERNAL_URL)
    assert len(body["blocks"]) == 50
    sections = [block for block in body["blocks"] if block["type"] == "section"]
    assert len(sections) == MAX_SLACK_ALERTS
    more = f"... and {60 - MAX_SLACK_ALERTS} more"
    assert body["blocks"][-2]["elements"][0]["text"] == more
    assert body["text"].startswith("sse-monitor alerts: 60 fired\n")
    assert body["text"].endswith(more)


def test_the_alertmanager_body_follows_its_documented_webhook_format() -> None:
    group = lifecycle_group()
    body = alertmanager_payload(group, external_url=EXTERNAL_URL)
    assert set(body) == ALERTMANAGER_KEYS | {"idempotency_key"}
    assert body["version"] == "4"
    assert body["groupKey"] == "sse-monitor/ops/g1"
    assert body["truncatedAlerts"] == 0
    assert body["status"] == "firing"  # one of its two alerts still fires
    assert body["receiver"] == "ops"
    assert body["groupLabels"] == {}
    assert body["externalURL"] == EXTERNAL_URL
    assert body["idempotency_key"] == group.idempotency_key
    # each alert once, as its latest transition left it, in the order first seen
    first, other = body["alerts"]
    assert set(first) == ALERTMANAGER_ALERT_KEYS
    assert first["status"] == "resolved"
    assert first["labels"] == {**CONTAINER_DOWN_LABELS, "subject": "kato-worker-1"}
    assert first["annotations"] == {
        "message": "kato-worker-1 is exited <oops> & more",
        "alert_id": "3f9a0c1d2e4b5a69",
        "value": "exited",
        "acknowledged_by": "alice",
        "acknowledged_at": "2026-11-30T12:01:00.000000Z",
        "ack_note": "on it",
    }
    assert first["startsAt"] == "2026-11-30T12:00:00.123456Z"
    assert first["endsAt"] == "2026-11-30T12:05:00.000000Z"
    assert first["generatorURL"] == EXTERNAL_URL
    assert re.fullmatch(r"[0-9a-f]{16}", first["fingerprint"])
    assert other["status"] == "firing"
    assert other["endsAt"] == "0001-01-01T00:00:00Z"
    assert "subject" not in other["labels"]
    assert other["labels"]["alertname"] == "cpu_high"
    assert other["fingerprint"] != first["fingerprint"]
    assert body["commonLabels"] == {}
    assert body["commonAnnotations"] == {}
    for alert in body["alerts"]:
        assert RFC3339.match(alert["startsAt"]) and RFC3339.match(alert["endsAt"])
        assert all(
            isinstance(v, str) for v in (*alert["labels"].values(), *alert["annotations"].values())
        )


def test_an_alertmanager_group_of_resolves_is_resolved_with_common_labels() -> None:
    first = resolved(make_alert())
    second = resolved(make_alert("0000000000000002", subject="kato-worker-2"))
    group = NotificationGroup(
        "g2", "am", (Transition("resolved", first), Transition("resolved", second))
    )
    body = alertmanager_payload(group, external_url=EXTERNAL_URL)
    assert body["status"] == "resolved"
    assert body["commonLabels"] == CONTAINER_DOWN_LABELS
    assert body["commonAnnotations"] == {
        "message": "kato-worker-1 is exited <oops> & more",
        "value": "exited",
    }


def test_the_same_alert_keeps_its_fingerprint_from_firing_to_resolved() -> None:
    fired = NotificationGroup("a", "am", (Transition("fired", make_alert()),))
    gone = NotificationGroup("b", "am", (Transition("resolved", resolved(make_alert())),))
    (firing,) = alertmanager_payload(fired, external_url=EXTERNAL_URL)["alerts"]
    (resolving,) = alertmanager_payload(gone, external_url=EXTERNAL_URL)["alerts"]
    assert firing["fingerprint"] == resolving["fingerprint"]
    assert (firing["status"], resolving["status"]) == ("firing", "resolved")
