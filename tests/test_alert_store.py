"""The alert stores on real backends, a SQLite file and a redis-server on loopback: the same
behaviour from both (pages, acks, retention, a restart), then SQLite's own (off the event loop,
bad files). Redis's own (its keys, acks kept by a save, a Redis that does not answer) are in
test_redis_alert_store.py."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest

from sse_monitor.alerts.alert import STATES, Alert, stamp
from sse_monitor.alerts.manager import AlertManager
from sse_monitor.alerts.rules import SEVERITIES, parse_rules
from sse_monitor.alerts.store import AlertStore
from sse_monitor.bus.event import Event
from sse_monitor.settings import StoreError
from tests.support.alert_stores import NOW, AlertStores, alert
from tests.support.store_backends import KINDS, backend_of


@pytest.fixture(params=KINDS)
async def stores(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[AlertStores]:
    """Stores on one backend of each kind, emptied for the test."""
    async with AlertStores(request.param, backend_of(request, tmp_path, "a.db")) as stores:
        yield stores


async def test_every_statement_runs_in_the_store_thread(tmp_path: Path) -> None:
    store = AlertStore(str(tmp_path / "a.db"))
    await store.open()
    threads: set[str] = set()
    assert store._db is not None
    # The trace callback runs in whichever thread executes a statement.
    await store._run(
        store._db.set_trace_callback, lambda _: threads.add(threading.current_thread().name)
    )
    await store.save(
        [alert("00000000000000a1", state="firing", started=timedelta(0), resolved=None)]
    )
    await store.page(state=None, severity=None, limit=10, before=None)
    await store.acknowledge("00000000000000a1", "dan", None, NOW)
    await store.prune(NOW)
    await store.aclose()
    assert threads and all(name.startswith("alert-store") for name in threads), threads
    assert threading.current_thread().name not in threads


async def test_values_round_trip_and_retention_keeps_firing_alerts(stores: AlertStores) -> None:
    store = await stores.opened()
    await store.save(
        [
            alert(
                "00000000000000a1",
                state="resolved",
                started=timedelta(days=40),
                resolved=timedelta(days=39),
            ),
            alert(
                "00000000000000a2",
                state="resolved",
                started=timedelta(days=40),
                resolved=timedelta(days=1),
            ),
            alert("00000000000000a3", state="firing", started=timedelta(days=90), resolved=None),
        ]
    )
    assert await store.prune(NOW - timedelta(days=30)) == 1
    left = await store.page(state=None, severity=None, limit=10, before=None)
    assert [a.id for a in left] == ["00000000000000a2", "00000000000000a3"]
    assert left[0].value == {"nested": [1, 2.5, "x"]}
    await store.aclose()

    # A manager prunes at start with its retention.
    manager = AlertManager(
        (), await stores.opened(), [].append, retention_seconds=12 * 3600, clock=lambda: NOW
    )
    await manager.start()
    left = await manager.store.page(state=None, severity=None, limit=10, before=None)
    assert [a.id for a in left] == ["00000000000000a3"]


async def test_a_restarted_manager_resolves_nothing_still_true(stores: AlertStores) -> None:
    rules = parse_rules(
        '[[rule]]\nid = "deg"\nmetric = "kato.status"\nop = "=="\nthreshold = "degraded"\n'
        'severity = "warning"\n',
        source="test",
    )
    degraded = {"kato": {"status": "degraded"}, "stale": False}
    first_events: list[Event] = []
    first_store = await stores.opened()
    first = AlertManager(rules, first_store, first_events.append, retention_seconds=86400)
    await first.start()
    await first.evaluate(degraded, None)
    await first_store.aclose()
    assert [e.data["transition"] for e in first_events if e.durable] == ["fired"]

    second_events: list[Event] = []
    second = AlertManager(
        rules, await stores.opened(), second_events.append, retention_seconds=86400
    )
    await second.start()
    for _ in range(3):
        await second.evaluate(degraded, None)
    assert [e for e in second_events if e.durable] == []
    state = [e for e in second_events if e.name == "alerts"][-1]
    assert state.data["firing_count"] == 1
    await second.evaluate({"kato": {"status": "healthy"}, "stale": False}, None)
    assert [e.data["transition"] for e in second_events if e.durable] == ["resolved"]


def varied_alerts() -> list[Alert]:
    """Eighteen alerts of every state and severity; three start at one moment, three at
    another, their ids out of the order they were made in."""
    alerts = []
    for n in range(18):
        minutes = n - n % 3 if n < 6 else n
        resolved = n % 2 == 1
        alerts.append(
            alert(
                f"{n * 7 % 18:016x}",
                state="resolved" if resolved else "firing",
                started=timedelta(minutes=minutes),
                resolved=timedelta(minutes=minutes) - timedelta(seconds=30) if resolved else None,
                severity=SEVERITIES[n % 3],
            )
        )
    return alerts


async def test_pages_are_newest_first_filtered_and_go_on_after_their_cursor(
    stores: AlertStores,
) -> None:
    store = await stores.opened()
    alerts = varied_alerts()
    await store.save(alerts)
    newest_first = sorted(alerts, key=lambda a: (a.started_at, a.id), reverse=True)
    for state in (None, *STATES):
        for severity in (None, *SEVERITIES):
            expected = [
                a.id
                for a in newest_first
                if state in (None, a.state) and severity in (None, a.severity)
            ]
            seen: list[str] = []
            before = None
            while len(seen) <= len(alerts) and (
                page := await store.page(state=state, severity=severity, limit=2, before=before)
            ):
                assert len(page) <= 2
                seen.extend(a.id for a in page)
                before = (page[-1].started_at, page[-1].id)
            assert expected and seen == expected, (state, severity)

    # A time as the cursor (the API's `before=<time>`): what started before it, not at it.
    moment = alerts[3].started_at  # alerts 3, 4 and 5 started then
    older = await store.page(state=None, severity=None, limit=50, before=(moment, ""))
    assert [a.id for a in older] == [a.id for a in newest_first if a.started_at < moment]
    assert len(older) == 12


async def test_a_save_moves_an_alert_from_firing_to_resolved(stores: AlertStores) -> None:
    store = await stores.opened()
    first, second, third = (
        alert(f"00000000000000b{n}", state="firing", started=timedelta(hours=h), resolved=None)
        for n, h in ((1, 2), (2, 1), (3, 3))
    )
    await store.save([first, second, third])
    assert [a.id for a in await store.firing()] == [third.id, first.id, second.id]

    first.state, first.resolved_at, first.resolved_value = "resolved", stamp(NOW), {"ok": True}
    await store.save([first])
    assert [a.id for a in await store.firing()] == [third.id, second.id]
    assert await store.page(state="resolved", severity=None, limit=10, before=None) == [first]
    firing = await store.page(state="firing", severity="warning", limit=10, before=None)
    assert [a.id for a in firing] == [second.id, third.id]
    assert await store.get(first.id) == first
    assert await store.get("00000000000000ff") is None


async def test_the_first_ack_wins(stores: AlertStores) -> None:
    store = await stores.opened()
    noted, bare = (
        alert(f"00000000000000c{n}", state="firing", started=timedelta(0), resolved=None)
        for n in (1, 2)
    )
    await store.save([noted, bare])
    assert await store.acknowledge("00000000000000ff", "dan", None, NOW) is None

    found = await store.acknowledge(noted.id, "dan", "on it", NOW)
    assert found is not None
    acked, changed = found
    assert changed
    assert (acked.acknowledged_by, acked.acknowledged_at, acked.ack_note) == (
        "dan",
        stamp(NOW),
        "on it",
    )
    later = NOW + timedelta(minutes=1)
    assert await store.acknowledge(noted.id, "eve", None, later) == (acked, False)
    assert await store.get(noted.id) == acked

    found = await store.acknowledge(bare.id, "eve", None, later)
    assert found is not None and found[1]
    assert (found[0].acknowledged_by, found[0].ack_note) == ("eve", None)


async def test_racing_acks_on_two_nodes_change_the_alert_once(stores: AlertStores) -> None:
    nodes = [await stores.opened(), await stores.opened()]
    target = alert("00000000000000d1", state="firing", started=timedelta(0), resolved=None)
    await nodes[0].save([target])
    results = await asyncio.gather(
        *(
            nodes[n % 2].acknowledge(target.id, f"user{n}", f"note {n}", NOW + timedelta(seconds=n))
            for n in range(20)
        )
    )
    answers = [result for result in results if result is not None]
    assert len(answers) == 20
    winners = [found for found, changed in answers if changed]
    assert len(winners) == 1
    assert all(found == winners[0] for found, _ in answers)  # every caller sees the winner's
    assert await nodes[1].get(target.id) == winners[0]


async def test_prune_deletes_every_resolved_alert_past_the_retention_and_no_other(
    stores: AlertStores,
) -> None:
    store = await stores.opened()
    old = [
        alert(
            f"{n:016x}",
            state="resolved",
            started=timedelta(days=40),
            resolved=timedelta(days=31, seconds=n),
        )
        for n in range(1201)  # more than one batch of Redis's prune script, twice
    ]
    at_cutoff = alert(
        "00000000000fff01",
        state="resolved",
        started=timedelta(days=40),
        resolved=timedelta(days=30),
    )
    firing = alert("00000000000fff02", state="firing", started=timedelta(days=90), resolved=None)
    await store.save([*old, at_cutoff, firing])
    assert await store.prune(NOW - timedelta(days=30)) == len(old)
    left = await store.page(state=None, severity=None, limit=10, before=None)
    assert [a.id for a in left] == [at_cutoff.id, firing.id]
    assert await store.prune(NOW - timedelta(days=30)) == 0


async def test_a_missing_folder_is_named(tmp_path: Path) -> None:
    store = AlertStore(str(tmp_path / "nowhere" / "a.db"))
    with pytest.raises(StoreError, match=r"nowhere/a\.db: the folder .*nowhere does not exist"):
        await store.open()
    await store.aclose()


async def test_a_file_that_is_not_a_database_is_named(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("these are not alerts\n" * 100)
    store = AlertStore(str(path))
    with pytest.raises(
        StoreError, match=r"notes\.txt: cannot open the alert database: file is not a database"
    ):
        await store.open()
    await store.aclose()


async def test_a_database_from_a_newer_version_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "a.db"
    with sqlite3.connect(path) as db:
        db.execute("PRAGMA user_version = 99")
    store = AlertStore(str(path))
    with pytest.raises(StoreError, match="written by a newer sse-monitor"):
        await store.open()
    await store.aclose()
