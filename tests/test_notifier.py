"""The notifier on real outboxes: transitions routed to their receivers, gathered once, and
closed per receiver after its group_wait into one entry each; a transition offered again adds
nothing; while the outbox does not answer they wait in memory, and are gathered once it does."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from sse_monitor.alerts.lifecycle import Transition
from sse_monitor.notify.notifier import Notifier
from sse_monitor.notify.outbox import Delivery, Outbox
from sse_monitor.notify.receivers import NotifyConfig, parse_notify_config
from tests.support.outboxes import Clock, Outboxes, transition
from tests.support.redis_server import RedisServerProcess, paused
from tests.support.waiting import eventually

RECEIVERS = """
[[receiver]]
name = "ops"
kind = "webhook"
url = "http://127.0.0.1:9/ops"
secret = "ops-signing-secret"

[[receiver]]
name = "chat"
kind = "slack"
url = "http://127.0.0.1:9/chat"
send_resolved = false

[[route]]
receiver = "ops"
group_wait = "0.3s"

[[route]]
receiver = "chat"
severities = ["critical"]
group_wait = "0s"
"""
CONFIG = parse_notify_config(RECEIVERS, source="test", rule_ids=["cpu_high"])


def critical(alert_id: str, kind: str = "fired") -> Transition:
    made = transition(alert_id, kind)
    return Transition(kind, replace(made.alert, severity="critical"))


class Wakes:
    """How often the notifier woke the sender."""

    def __init__(self) -> None:
        self.count = 0

    def __call__(self) -> None:
        self.count += 1


@pytest.fixture(params=["sqlite", "redis"])
async def outbox(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Outbox]:
    kind = request.param
    where = str(tmp_path / "n.db") if kind == "sqlite" else request.getfixturevalue("redis_url")
    async with Outboxes(kind, where, Clock()) as outboxes:
        yield await outboxes.opened()


async def running(notifier: Notifier) -> Notifier:
    notifier.start()
    return notifier


def notifier_on(outbox: Outbox, wakes: Wakes, config: NotifyConfig = CONFIG) -> Notifier:
    return Notifier(
        config,
        outbox,
        external_url="https://monitor.example.com/",
        wake_sender=wakes,
        retention_seconds=86400,
    )


async def entries(outbox: Outbox, count: int) -> dict[str, Delivery]:
    """The outbox's entries by receiver, once it holds `count`."""

    async def found() -> dict[str, Delivery] | None:
        recent = await outbox.recent(50)
        return {d.receiver: d for d in recent} if len(recent) == count else None

    return await eventually(found, 10, f"{count} entries")


async def test_transitions_are_routed_and_grouped_into_one_entry_per_receiver(
    outbox: Outbox,
) -> None:
    wakes = Wakes()
    notifier = await running(notifier_on(outbox, wakes))
    try:
        notifier.submit(transition("a1"))  # a warning: ops only
        notifier.submit(critical("a2"))  # ops and chat
        notifier.submit(critical("a2", "resolved"))  # ops only: chat has send_resolved off
        found = await entries(outbox, 2)
    finally:
        await notifier.aclose()
    ops, chat = found["ops"], found["chat"]
    assert ops.alerts == (("a1", "fired"), ("a2", "fired"), ("a2", "resolved"))
    assert chat.alerts == (("a2", "fired"),)
    body = json.loads(ops.body)
    assert [t["transition"] for t in body["transitions"]] == ["fired", "fired", "resolved"]
    assert ops.headers["X-SSE-Monitor-Signature"].startswith("sha256=")
    assert body["idempotency_key"] == ops.idempotency_key == ops.headers["Idempotency-Key"]
    assert "blocks" in json.loads(chat.body)
    assert wakes.count >= 1


async def test_a_transition_offered_again_after_a_restart_adds_nothing(outbox: Outbox) -> None:
    fired = critical("a3")
    first = await running(notifier_on(outbox, Wakes()))
    try:
        first.submit(fired)
        await entries(outbox, 2)
    finally:
        await first.aclose()
    acknowledged = replace(
        fired.alert, acknowledged_by="bob", acknowledged_at=fired.alert.started_at
    )
    second = await running(notifier_on(outbox, Wakes()))
    try:
        # what start-up offers: the alert that still fires, acknowledged meanwhile
        second.offer_firing([acknowledged])
        found = await entries(outbox, 4)
    finally:
        await second.aclose()
    assert {d.alerts for d in (await outbox.recent(10))} == {
        (("a3", "fired"),),
        (("a3", "acknowledged"),),
    }
    assert set(found) == {"ops", "chat"}


async def test_transitions_wait_while_the_outbox_is_away_and_are_gathered_after(
    own_redis: RedisServerProcess,
) -> None:
    options = {"socket_timeout": 0.5, "socket_connect_timeout": 0.5}
    async with Outboxes("redis", own_redis.url, Clock(), **options) as outboxes:
        outbox = await outboxes.opened(timeout=0.5)
        notifier = await running(notifier_on(outbox, Wakes()))
        try:
            with capture_logs() as logs, paused(own_redis):
                notifier.submit(critical("a4"))
                await eventually(
                    lambda: any(e["event"] == "notify.outbox_unavailable" for e in logs),
                    10,
                    "the outbox found away",
                )
            found = await entries(outbox, 2)
        finally:
            await notifier.aclose()
    assert found["chat"].alerts == (("a4", "fired"),)
    unavailable = [e for e in logs if e["event"] == "notify.outbox_unavailable"]
    assert len(unavailable) == 1 and unavailable[0]["log_level"] == "warning"
    assert notifier.dropped == 0
