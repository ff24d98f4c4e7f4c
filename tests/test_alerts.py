"""Alerts end to end: the gateway process, the simulated KATO, a real SQLite file, HTTP clients."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from sse_monitor.alerts.metric_paths import METRICS_EVENT_PATHS, current_value
from sse_monitor.simulator.state import SimulatedKato
from tests.support.alert_rules import rule_table, status_rule
from tests.support.gateway import GatewayProcess
from tests.support.http import tls
from tests.support.kato import Kato, running_kato
from tests.support.sse_client import SSEStream


# clear_for: on a loaded machine one KATO read can time out, a true "unreachable" for one
# tick; without it, that tick would resolve the alert and the next fire a new one, adding
# transitions these tests count. (clear_for itself is tested in test_alert_lifecycle.py.)
def degraded_rule(rule_id: str = "kato_degraded", severity: str = "warning") -> str:
    return status_rule(rule_id, "degraded", severity, clear_for="1s", message="KATO is degraded")


STATUS_RULES = degraded_rule()
CPU_RULE = rule_table(
    id="cpu_high",
    metric="kato.resources.cpu_percent",
    op=">",
    threshold=80,
    clear_threshold=70,
    severity="critical",
    for_="1s",
    message="CPU at {value:.0f} %",
)


async def get(url: str, params: dict | None = None) -> httpx.Response:
    async with httpx.AsyncClient(timeout=10, verify=tls()) as client:
        return await client.get(url, params=params)


async def post(url: str, **kwargs: Any) -> httpx.Response:
    async with httpx.AsyncClient(timeout=10, verify=tls()) as client:
        return await client.post(url, **kwargs)


def alert_events(stream: SSEStream, transition: str | None = None) -> list[dict]:
    return [
        e.json()
        for e in stream.of("alert")
        if transition is None or e.json()["transition"] == transition
    ]


async def firing_alert(gateway: GatewayProcess) -> dict[str, Any]:
    """The gateway's one firing alert, once its `alerts` state lists it."""
    async with SSEStream(f"{gateway.url}/events") as stream:
        state = await stream.wait_for_event("alerts", lambda d: d["firing_count"] == 1)
    return state.json()["firing"][0]


async def ticks(stream: SSEStream, count: int) -> None:
    """Wait for `count` more polls (each publishes one `metrics`): time passing, observed."""
    target = len(stream.of("metrics")) + count
    await stream.wait_for(lambda events: len(stream.of("metrics")) >= target, timeout=count + 10)


@pytest.fixture
def rules(tmp_path: Path) -> Path:
    path = tmp_path / "rules.toml"
    path.write_text(STATUS_RULES)
    return path


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "alerts.db"


@pytest.fixture
def alerting_env(rules: Path, db: Path) -> dict[str, str]:
    """The settings of a gateway alerting by `rules` into the store `db`: a restart test starts
    several gateways on them."""
    return {"SSE_MONITOR_ALERT_RULES": str(rules), "SSE_MONITOR_DB": str(db)}


@pytest.fixture
def alerting(kato: Kato, alerting_env: dict[str, str]) -> Iterator[GatewayProcess]:
    with GatewayProcess(kato.url, env=alerting_env) as process:
        yield process


@pytest.fixture
def uncached_kato() -> Iterator[Kato]:
    """KATO without its 5 s /metrics cache, so that a pinned figure shows at the next poll."""
    with running_kato(SimulatedKato(metrics_cache_seconds=0)) as kato:
        yield kato


async def test_an_alert_fires_once_and_resolves_once(kato: Kato, alerting: GatewayProcess) -> None:
    async with SSEStream(f"{alerting.url}/events") as stream:
        first = await stream.wait_for_event("alerts")
        assert first.json()["firing"] == [] and first.json()["unacknowledged_count"] == 0
        await kato.fault("health", "degraded")
        fired = (await stream.wait_for_event("alert")).json()
        assert fired["transition"] == "fired"
        assert {k: fired[k] for k in ("rule", "severity", "state", "value", "threshold")} == {
            "rule": "kato_degraded",
            "severity": "warning",
            "state": "firing",
            "value": "degraded",
            "threshold": "degraded",
        }
        assert fired["message"] == "KATO is degraded"
        assert fired["resolved_at"] is None and fired["acknowledged_by"] is None
        state = await stream.wait_for_event("alerts", lambda d: d["firing_count"] == 1)
        assert state.json()["firing"][0]["id"] == fired["id"]
        assert state.json()["unacknowledged_count"] == 1

        await ticks(stream, 10)  # still degraded: nothing more is announced
        assert len(alert_events(stream)) == 1

        listed = (await get(f"{alerting.url}/api/alerts", params={"state": "firing"})).json()
        assert [a["id"] for a in listed["alerts"]] == [fired["id"]]

        await kato.fault("health", "ok")
        resolved = (await stream.wait_for_event("alert", lambda d: d["state"] == "resolved")).json()
        assert (resolved["id"], resolved["transition"]) == (fired["id"], "resolved")
        assert resolved["resolved_at"] > resolved["started_at"]
        assert resolved["resolved_value"] == "healthy"
        await ticks(stream, 5)
        assert [a["transition"] for a in alert_events(stream)] == ["fired", "resolved"]

    body = (await get(f"{alerting.url}/api/alerts", params={"state": "resolved"})).json()
    assert [a["id"] for a in body["alerts"]] == [fired["id"]]
    assert (await get(f"{alerting.url}/api/alerts", params={"state": "firing"})).json()[
        "alerts"
    ] == []


async def test_for_and_hysteresis_on_a_driven_metric(uncached_kato: Kato, tmp_path: Path) -> None:
    kato = uncached_kato
    rules = tmp_path / "cpu.toml"
    rules.write_text(CPU_RULE)
    pin = httpx.AsyncClient(base_url=kato.url, timeout=5, verify=tls())
    (await pin.post("/_sim/resources", json={"cpu_percent": 50})).raise_for_status()
    env = {"SSE_MONITOR_ALERT_RULES": str(rules), "SSE_MONITOR_POLL_INTERVAL": "0.2"}
    with GatewayProcess(kato.url, env=env) as gateway:
        async with SSEStream(f"{gateway.url}/events") as stream:
            await ticks(stream, 2)
            (await pin.post("/_sim/resources", json={"cpu_percent": 85})).raise_for_status()
            above = await stream.wait_for_event(
                "metrics", lambda d: d["kato"]["resources"]["cpu_percent"] == 85
            )
            fired = await stream.wait_for_event("alert")
            # Pending for `for` (1 s) before firing: measured on the gateway's clock, since a
            # loaded machine may fit fewer than the nominal 5 polls into that second.
            held = datetime.fromisoformat(fired.json()["started_at"]) - datetime.fromisoformat(
                above.json()["timestamp"]
            )
            assert held >= timedelta(seconds=1), held
            assert stream.events.index(fired) > stream.events.index(above)
            assert fired.json()["message"] == "CPU at 85 %"

            # Hovering around the threshold: above the clear threshold (70), no flapping.
            for value in [79, 81] * 8 + [72, 78] * 4:
                (await pin.post("/_sim/resources", json={"cpu_percent": value})).raise_for_status()
                await stream.wait_for_event(
                    "metrics",
                    lambda d, v=value: d["kato"]["resources"]["cpu_percent"] == v,
                    since=len(stream.events),
                )
            assert [a["transition"] for a in alert_events(stream)] == ["fired"]

            (await pin.post("/_sim/resources", json={"cpu_percent": 60})).raise_for_status()
            resolved = await stream.wait_for_event("alert", lambda d: d["transition"] == "resolved")
            assert resolved.json()["id"] == fired.json()["id"]
            assert resolved.json()["resolved_value"] == 60
    await pin.aclose()


async def test_an_ack_reaches_every_client_once(kato: Kato, alerting: GatewayProcess) -> None:
    url = f"{alerting.url}/events"
    async with SSEStream(url) as one, SSEStream(url) as two:
        await one.wait_for_event("metrics")
        await kato.fault("health", "degraded")
        fired = (await one.wait_for_event("alert")).json()
        ack = await post(
            f"{alerting.url}/api/alerts/{fired['id']}/ack", json={"by": "alice", "note": "on it"}
        )
        assert ack.status_code == 200
        body = ack.json()
        assert (body["id"], body["acknowledged_by"], body["ack_note"]) == (
            fired["id"],
            "alice",
            "on it",
        )
        assert body["acknowledged_at"] >= fired["started_at"]
        for stream in (one, two):
            event = await stream.wait_for_event(
                "alert", lambda d: d["transition"] == "acknowledged"
            )
            assert (event.json()["id"], event.json()["acknowledged_by"]) == (fired["id"], "alice")
            state = await stream.wait_for_event(
                "alerts", lambda d: d["firing_count"] == 1 and d["unacknowledged_count"] == 0
            )
            assert state.json()["firing"][0]["acknowledged_by"] == "alice"

        again = await post(f"{alerting.url}/api/alerts/{fired['id']}/ack", json={"by": "bob"})
        assert again.status_code == 200
        assert (again.json()["acknowledged_by"], again.json()["acknowledged_at"]) == (
            "alice",
            body["acknowledged_at"],
        )
        await ticks(one, 5)
        assert len(alert_events(one, "acknowledged")) == 1
        assert len(alert_events(two, "acknowledged")) == 1

    missing = await post(f"{alerting.url}/api/alerts/0123456789abcdef/ack", json={"by": "alice"})
    assert missing.status_code == 404
    assert missing.json()["error"] == "no alert with id '0123456789abcdef'"
    assert (await post(f"{alerting.url}/api/alerts/nope/ack", json={"by": "a"})).status_code == 404


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"", "the body must be a JSON object"),
        (b"{not json", "the body must be JSON"),
        (b"[1]", "must be a JSON object"),
        (b"{}", "by must be a name"),
        (b'{"by": "   "}', "by must be a name"),
        (b'{"by": 5}', "by must be a name"),
        (b'{"by": "' + b"x" * 101 + b'"}', "by must be a name of 1 to 100"),
        (b'{"by": "a", "note": 3}', "note must be a string"),
        (b'{"by": "a", "who": "b"}', "unknown field 'who'"),
        (b'{"by": "a", "note": "' + b"x" * 20000 + b'"}', "the body must be at most"),
    ],
)
def test_a_bad_ack_body_is_a_400(module_gateway: GatewayProcess, body: bytes, message: str) -> None:
    response = httpx.post(
        f"{module_gateway.url}/api/alerts/0123456789abcdef/ack", content=body, verify=tls()
    )
    assert response.status_code == 400
    assert message in response.json()["error"]


@pytest.mark.parametrize(
    ("params", "parameter"),
    [
        ({"state": "open"}, "state"),
        ({"severity": "urgent"}, "severity"),
        ({"limit": "0"}, "limit"),
        ({"limit": "501"}, "limit"),
        ({"limit": "ten"}, "limit"),
        ({"before": "yesterday"}, "before"),
        ({"before": "0123456789abcdef"}, "before"),  # no such alert
    ],
)
def test_bad_list_parameters_are_a_400(
    module_gateway: GatewayProcess, params: dict, parameter: str
) -> None:
    response = httpx.get(f"{module_gateway.url}/api/alerts", params=params, verify=tls())
    assert response.status_code == 400
    assert response.json()["parameter"] == parameter


async def test_alerts_page_newest_first(kato: Kato, tmp_path: Path) -> None:
    rules = tmp_path / "many.toml"
    severities = ["critical", "warning", "info"]
    rules.write_text("".join(degraded_rule(f"degraded_{i}", severities[i % 3]) for i in range(4)))
    env = {"SSE_MONITOR_ALERT_RULES": str(rules)}
    with GatewayProcess(kato.url, env=env) as gateway:
        async with SSEStream(f"{gateway.url}/events") as stream:
            for episode in range(3):  # 3 episodes x 4 rules = 12 alerts, 8 resolved
                await kato.fault("health", "degraded")
                await stream.wait_for(
                    lambda e, n=4 * (episode + 1): len(alert_events(stream, "fired")) == n
                )
                if episode < 2:
                    await kato.fault("health", "ok")
                    await stream.wait_for(
                        lambda e, n=4 * (episode + 1): len(alert_events(stream, "resolved")) == n
                    )
        everything = [a["id"] for a in reversed(alert_events(stream, "fired"))]

        seen: list[dict] = []
        before = None
        while True:
            params = {"limit": 5, **({"before": before} if before else {})}
            page = (await get(f"{gateway.url}/api/alerts", params=params)).json()
            seen.extend(page["alerts"])
            before = page["next_before"]
            if before is None:
                break
        starts = [(a["started_at"], a["id"]) for a in seen]
        assert starts == sorted(starts, reverse=True)
        assert sorted(a["id"] for a in seen) == sorted(everything) and len(seen) == 12

        firing = (await get(f"{gateway.url}/api/alerts", params={"state": "firing"})).json()
        assert len(firing["alerts"]) == 4 and firing["next_before"] is None
        resolved = (await get(f"{gateway.url}/api/alerts", params={"state": "resolved"})).json()
        assert len(resolved["alerts"]) == 8
        critical = (await get(f"{gateway.url}/api/alerts", params={"severity": "critical"})).json()
        assert {a["rule"] for a in critical["alerts"]} == {"degraded_0", "degraded_3"}
        cutoff = seen[4]["started_at"]
        older = (await get(f"{gateway.url}/api/alerts", params={"before": cutoff})).json()
        assert all(a["started_at"] < cutoff for a in older["alerts"]) and older["alerts"]


async def test_a_resuming_client_gets_the_alerts_it_missed(
    kato: Kato, alerting: GatewayProcess
) -> None:
    async with SSEStream(f"{alerting.url}/events") as stream:
        last_id = (await stream.wait_for_event("metrics")).id
    async with SSEStream(f"{alerting.url}/events") as watcher:
        await watcher.wait_for_event("metrics")
        await kato.fault("health", "degraded")
        fired = (await watcher.wait_for_event("alert")).json()
        await kato.fault("health", "ok")
        await watcher.wait_for_event("alert", lambda d: d["transition"] == "resolved")
    headers = {"Last-Event-ID": last_id}
    async with SSEStream(f"{alerting.url}/events", headers=headers) as resumed:
        await resumed.wait_for(lambda e: len(resumed.of("alert")) >= 2)
        assert [(a["id"], a["transition"]) for a in alert_events(resumed)] == [
            (fired["id"], "fired"),
            (fired["id"], "resolved"),
        ]
        assert "reset" not in resumed.names()


async def test_a_new_client_gets_what_fires_now(kato: Kato, alerting: GatewayProcess) -> None:
    async with SSEStream(f"{alerting.url}/events") as watcher:
        await watcher.wait_for_event("metrics")
        await kato.fault("health", "degraded")
        fired = (await watcher.wait_for_event("alert")).json()
    async with SSEStream(f"{alerting.url}/events") as late:
        state = await late.wait_for_event("alerts")
        assert [a["id"] for a in state.json()["firing"]] == [fired["id"]]
        assert state.json()["unacknowledged_count"] == 1


async def test_alerts_and_acks_survive_a_restart(
    kato: Kato, alerting_env: dict[str, str], db: Path
) -> None:
    await kato.fault("health", "degraded")
    with GatewayProcess(kato.url, env=alerting_env) as first:
        fired = await firing_alert(first)
        ack = await post(f"{first.url}/api/alerts/{fired['id']}/ack", json={"by": "carol"})
        assert ack.status_code == 200
    assert await asyncio.to_thread(db.exists)

    with GatewayProcess(kato.url, env=alerting_env) as second:  # KATO still degraded
        async with SSEStream(f"{second.url}/events") as stream:
            state = await stream.wait_for_event("alerts")
            [restored] = state.json()["firing"]
            assert (restored["id"], restored["acknowledged_by"]) == (fired["id"], "carol")
            assert restored["started_at"] == fired["started_at"]
            assert state.json()["unacknowledged_count"] == 0
            await ticks(stream, 10)
            assert stream.of("alert") == []  # still true: not announced twice
            await kato.fault("health", "ok")
            resolved = (await stream.wait_for_event("alert")).json()
            assert (resolved["id"], resolved["transition"]) == (fired["id"], "resolved")
        listed = (await get(f"{second.url}/api/alerts")).json()["alerts"]
        assert [(a["id"], a["state"], a["acknowledged_by"]) for a in listed] == [
            (fired["id"], "resolved", "carol")
        ]

    with GatewayProcess(kato.url, env=alerting_env) as third:
        listed = (await get(f"{third.url}/api/alerts")).json()["alerts"]
        assert [(a["id"], a["state"]) for a in listed] == [(fired["id"], "resolved")]


async def test_a_firing_alert_of_a_removed_rule_resolves_at_start(
    kato: Kato, rules: Path, alerting_env: dict[str, str]
) -> None:
    await kato.fault("health", "degraded")
    with GatewayProcess(kato.url, env=alerting_env) as first:
        fired = await firing_alert(first)
    await asyncio.to_thread(rules.write_text, CPU_RULE)  # the degraded rule is gone
    with GatewayProcess(kato.url, env=alerting_env) as second:
        [listed] = (await get(f"{second.url}/api/alerts")).json()["alerts"]
        assert (listed["id"], listed["state"]) == (fired["id"], "resolved")
        assert '"reason": "rule removed"' in second.log()


async def test_every_kato_metric_a_rule_can_name_is_in_the_snapshot(
    module_gateway: GatewayProcess,
) -> None:
    async with SSEStream(f"{module_gateway.url}/events") as stream:
        await ticks(stream, 2)
    snapshot = (await get(f"{module_gateway.url}/api/snapshot")).json()
    missing = [path for path in METRICS_EVENT_PATHS if current_value(path, snapshot) is None]
    assert missing == []
