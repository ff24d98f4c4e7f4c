"""Alert notifications end to end: a real gateway process, the simulated KATO and real HTTP
receivers on loopback. Each transition reaches every receiver routed to it once, in order, in
the receiver's shape; a receiver that is down gets it when it is back, across a gateway killed
in between; a burst within group_wait is one message."""

from __future__ import annotations

import hashlib
import hmac
import json
from pathlib import Path
from typing import Any

import httpx

from tests.support.alert_rules import status_rule
from tests.support.gateway import GatewayProcess
from tests.support.kato import Kato
from tests.support.notify_hooks import SECRET, Hook, hooks, rules_file
from tests.support.notify_receiver import RecordingReceiver
from tests.support.servers import ThreadedServer
from tests.support.waiting import eventually

DEGRADED = status_rule(
    "kato_degraded", "degraded", "warning", clear_for="2s", message="KATO is degraded"
)


async def notifications(gateway: GatewayProcess) -> list[dict[str, Any]]:
    async with httpx.AsyncClient() as client:
        response = await client.get(f"{gateway.url}/api/notifications?limit=500")
    assert response.status_code == 200, response.text
    return list(response.json()["notifications"])


async def all_delivered(gateway: GatewayProcess, count: int) -> list[dict[str, Any]]:
    """The outbox once it holds `count` entries, every one delivered."""

    async def settled() -> list[dict[str, Any]] | None:
        found = await notifications(gateway)
        done = len(found) == count and all(n["state"] == "delivered" for n in found)
        return found if done else None

    return await eventually(settled, 30, f"{count} notifications delivered")


async def firing_alert(gateway: GatewayProcess, rule: str) -> dict[str, Any]:
    async def found() -> dict[str, Any] | None:
        async with httpx.AsyncClient() as client:
            response = await client.get(f"{gateway.url}/api/alerts?state=firing")
        alerts = [a for a in response.json()["alerts"] if a["rule"] == rule]
        return alerts[0] if alerts else None

    return await eventually(found, 20, f"{rule} firing")


def transitions_of(hook: Hook) -> list[list[str]]:
    """Per message, the transitions it names, as `kind` words, from the receiver's own shape."""
    found = []
    for body in hook.bodies():
        if hook.kind == "webhook":
            found.append([t["transition"] for t in body["transitions"]])
        elif hook.kind == "alertmanager":
            found.append([a["status"] for a in body["alerts"]])
        else:
            found.append(
                [
                    block["text"]["text"].split("*")[1].lower()
                    for block in body["blocks"]
                    if block["type"] == "section"
                ]
            )
    return found


async def test_a_firing_an_ack_and_a_resolve_reach_each_kind_of_receiver_once_in_order(
    kato: Kato, tmp_path: Path
) -> None:
    with hooks("webhook", "slack", "alertmanager") as made:
        webhook, slack, alertmanager = made
        env = rules_file(tmp_path / "rules.toml", DEGRADED, made)
        with GatewayProcess(kato.url, env=env) as gateway:
            await kato.fault("health", "degraded")
            alert = await firing_alert(gateway, "kato_degraded")
            await all_delivered(gateway, 3)
            async with httpx.AsyncClient() as client:
                acked = await client.post(
                    f"{gateway.url}/api/alerts/{alert['id']}/ack",
                    json={"by": "alice", "note": "looking"},
                )
            assert acked.status_code == 200, acked.text
            await all_delivered(gateway, 6)
            await kato.fault("health", "ok")
            await all_delivered(gateway, 9)

            async with httpx.AsyncClient() as client:
                listed = (await client.get(f"{gateway.url}/api/alerts?limit=5")).json()
                metrics = (await client.get(f"{gateway.url}/metrics")).text
            log = gateway.log()

    assert transitions_of(webhook) == [["fired"], ["acknowledged"], ["resolved"]]
    assert transitions_of(slack) == [["fired"], ["acknowledged"], ["resolved"]]
    # Alertmanager's status: an acknowledged alert still fires
    assert transitions_of(alertmanager) == [["firing"], ["firing"], ["resolved"]]
    for hook in made:
        assert hook.receiver.count() == 3, hook.name  # once each: no repeat, no retry needed
        keys = hook.receiver.keys()
        assert len(set(keys)) == 3 and all(keys), keys

    for received in webhook.receiver.received:
        expected = hmac.new(SECRET.encode(), received.body, hashlib.sha256).hexdigest()
        assert received.headers["x-sse-monitor-signature"] == f"sha256={expected}"
        body = json.loads(received.body)
        assert body["idempotency_key"] == received.headers["idempotency-key"]
        assert [t["alert"]["id"] for t in body["transitions"]] == [alert["id"]]
    assert all("x-sse-monitor-signature" not in r.headers for r in slack.receiver.received)

    acked_body = webhook.bodies()[1]["transitions"][0]["alert"]
    assert (acked_body["acknowledged_by"], acked_body["ack_note"]) == ("alice", "looking")
    for body in slack.bodies():
        assert "kato_degraded" in body["text"] and "KATO is degraded" in body["text"]
    for body in alertmanager.bodies():
        assert body["version"] == "4" and body["receiver"] == "alertmanager-hook"
        [am_alert] = body["alerts"]
        assert am_alert["labels"]["alertname"] == "kato_degraded"
        assert am_alert["annotations"]["alert_id"] == alert["id"]
    assert alertmanager.bodies()[1]["alerts"][0]["annotations"]["acknowledged_by"] == "alice"

    [shown] = [a for a in listed["alerts"] if a["id"] == alert["id"]]
    sent = {(n["receiver"], n["transition"], n["state"]) for n in shown["notifications"]}
    assert sent == {
        (hook.name, kind, "delivered")
        for hook in made
        for kind in ("fired", "acknowledged", "resolved")
    }
    assert "sse_monitor_notifications_sent_total 9.0" in metrics
    assert "sse_monitor_notifications_failed_total 0.0" in metrics
    assert SECRET not in log and webhook.url not in log


async def test_an_ack_of_a_resolved_alert_is_not_sent_after_its_resolve(
    kato: Kato, tmp_path: Path
) -> None:
    """Receivers hear of an ack while the alert fires (as a cluster's producer copies acks):
    one taken after the resolve would reach them after it (an Alertmanager receiver: a second
    `resolved` of the same alert). The stream still announces it."""
    with hooks("webhook", "alertmanager") as made:
        webhook, alertmanager = made
        env = rules_file(tmp_path / "rules.toml", DEGRADED, made)
        with GatewayProcess(kato.url, env=env) as gateway:
            await kato.fault("health", "degraded")
            alert = await firing_alert(gateway, "kato_degraded")
            await all_delivered(gateway, 2)
            await kato.fault("health", "ok")
            await all_delivered(gateway, 4)
            async with httpx.AsyncClient() as client:
                acked = await client.post(
                    f"{gateway.url}/api/alerts/{alert['id']}/ack", json={"by": "alice"}
                )
            assert acked.status_code == 200, acked.text
            assert acked.json()["state"] == "resolved"
            await kato.fault("health", "degraded")  # a new alert: it goes after the ack, if any
            await all_delivered(gateway, 6)
    assert transitions_of(webhook) == [["fired"], ["resolved"], ["fired"]]
    assert transitions_of(alertmanager) == [["firing"], ["resolved"], ["firing"]]


async def test_a_receiver_down_gets_the_alert_when_back_across_a_gateway_killed_between(
    kato: Kato, tmp_path: Path
) -> None:
    receiver = RecordingReceiver()
    server = ThreadedServer(receiver.app).start()
    port = server.port
    server.stop()  # down: nothing listens there now
    hook = Hook("ops", "webhook", receiver, server)
    env = {
        **rules_file(tmp_path / "rules.toml", DEGRADED, [hook]),
        "SSE_MONITOR_DB": str(tmp_path / "gateway.db"),
    }
    with GatewayProcess(kato.url, env=env) as first:
        await kato.fault("health", "degraded")
        alert = await firing_alert(first, "kato_degraded")

        async def tried() -> bool:
            found = await notifications(first)
            return bool(found) and found[0]["attempts"] >= 1

        await eventually(tried, 20, "a first attempt at the down receiver")
        [waiting] = await notifications(first)
        assert waiting["state"] == "pending" and waiting["last_error"]
        assert str(port) not in waiting["last_error"]  # the receiver's address stays private
        assert first.proc is not None
        first.proc.kill()  # -9: no chance to tidy up
        first.proc.wait()

    with ThreadedServer(receiver.app, port=port), GatewayProcess(kato.url, env=env) as second:
        [delivered] = await all_delivered(second, 1)
        assert delivered["alerts"] == [{"id": alert["id"], "transition": "fired"}]
        # Its next message comes after any repeat would have (a receiver's messages go in
        # order), so the count below is final.
        await kato.fault("health", "ok")
        await all_delivered(second, 2)
    assert transitions_of(hook) == [["fired"], ["resolved"]]
    assert receiver.count() == 2


async def test_ten_alerts_within_group_wait_are_one_message_naming_all_ten(
    kato: Kato, tmp_path: Path
) -> None:
    rules = "".join(
        status_rule(f"degraded_{n}", "degraded", "warning", message=f"number {n}")
        for n in range(10)
    )
    with hooks("webhook", "slack") as made:
        webhook, slack = made
        env = rules_file(tmp_path / "rules.toml", rules, made, group_wait="3s")
        with GatewayProcess(kato.url, env=env) as gateway:
            await kato.fault("health", "degraded")
            [one, other] = await all_delivered(gateway, 2)
    assert len(one["alerts"]) == len(other["alerts"]) == 10
    [body] = webhook.bodies()
    assert sorted(t["alert"]["rule"] for t in body["transitions"]) == [
        f"degraded_{n}" for n in range(10)
    ]
    assert body["summary"] == "sse-monitor alerts: 10 fired"
    [message] = slack.bodies()
    for n in range(10):
        assert f"degraded_{n}" in message["text"]


async def test_receiver_urls_and_secrets_never_reach_the_log_at_debug_level(
    kato: Kato, tmp_path: Path
) -> None:
    path_token, query_token, password = "pathTokenZ81kq0vXy2", "queryTokenQ93mm4", "hook-pass-51"
    accepting, refusing = RecordingReceiver(), RecordingReceiver(404)
    refusing.otherwise = 404
    with ThreadedServer(accepting.app) as up, ThreadedServer(refusing.app) as no:
        down = ThreadedServer(RecordingReceiver().app).start()
        down.stop()  # nothing listens there

        def url(server: ThreadedServer) -> str:
            host = server.url.removeprefix("http://")
            return f"http://ops:{password}@{host}/hook/{path_token}?token={query_token}"

        text = DEGRADED
        for name, server in (("up", up), ("refusing", no), ("down", down)):
            text += f'[[receiver]]\nname = "{name}"\nkind = "webhook"\nurl = "{url(server)}"\n'
            text += f'secret = "{SECRET}"\n[[route]]\nreceiver = "{name}"\ngroup_wait = "0s"\n'
        rules = tmp_path / "rules.toml"
        rules.write_text(text)
        env = {"SSE_MONITOR_ALERT_RULES": str(rules), "SSE_MONITOR_LOG_LEVEL": "debug"}
        with GatewayProcess(kato.url, env=env) as gateway:
            await kato.fault("health", "degraded")

            async def outcomes() -> dict[str, dict[str, Any]] | None:
                found = {n["receiver"]: n for n in await notifications(gateway)}
                settled = (
                    found.get("up", {}).get("state") == "delivered"
                    and found.get("refusing", {}).get("state") == "failed"
                    and found.get("down", {}).get("attempts", 0) >= 2
                )
                return found if settled else None

            found = await eventually(outcomes, 30, "each receiver's outcome")
            await eventually(lambda: gateway.count("notify.failed") == 1, 10, "notify.failed")
            async with httpx.AsyncClient() as client:
                answers = [
                    (await client.get(f"{gateway.url}{path}")).text
                    for path in ("/api/notifications", "/api/alerts", "/metrics")
                ]
            log = gateway.log()
    assert accepting.count() == 1 and refusing.count() == 1
    assert found["refusing"]["last_error"] == "HTTP 404"
    assert found["down"]["last_error"].startswith("ConnectError")
    assert '"level": "debug"' in log
    for secret in (path_token, query_token, password, SECRET):
        assert secret not in log, f"{secret!r} is in the log"
        assert all(secret not in answer for answer in answers), secret
