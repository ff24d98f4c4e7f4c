"""The alert store on a real SQLite file: off the event loop, retention, and bad files."""

from __future__ import annotations

import sqlite3
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from sse_monitor.alerts.alert import Alert, stamp
from sse_monitor.alerts.manager import AlertManager
from sse_monitor.alerts.rules import parse_rules
from sse_monitor.alerts.store import AlertStore, StoreError
from sse_monitor.bus.event import Event

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


def alert(alert_id: str, *, state: str, started: timedelta, resolved: timedelta | None) -> Alert:
    return Alert(
        id=alert_id,
        rule="r",
        subject=None,
        metric="kato.status",
        severity="warning",
        state=state,
        message="m",
        value={"nested": [1, 2.5, "x"]},
        threshold="degraded",
        started_at=stamp(NOW - started),
        resolved_at=stamp(NOW - resolved) if resolved is not None else None,
    )


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


async def test_values_round_trip_and_retention_keeps_firing_alerts(tmp_path: Path) -> None:
    path = tmp_path / "a.db"
    store = AlertStore(str(path))
    await store.open()
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
    store = AlertStore(str(path))
    await store.open()
    manager = AlertManager((), store, [].append, retention_seconds=12 * 3600, clock=lambda: NOW)
    await manager.start()
    left = await manager.store.page(state=None, severity=None, limit=10, before=None)
    await store.aclose()
    assert [a.id for a in left] == ["00000000000000a3"]


async def test_a_restarted_manager_resolves_nothing_still_true(tmp_path: Path) -> None:
    rules = parse_rules(
        '[[rule]]\nid = "deg"\nmetric = "kato.status"\nop = "=="\nthreshold = "degraded"\n'
        'severity = "warning"\n',
        source="test",
    )
    degraded = {"kato": {"status": "degraded"}, "stale": False}
    path = str(tmp_path / "a.db")
    first_events: list[Event] = []
    first_store = AlertStore(path)
    await first_store.open()
    first = AlertManager(rules, first_store, first_events.append, retention_seconds=86400)
    await first.start()
    await first.evaluate(degraded, None)
    await first_store.aclose()
    assert [e.data["transition"] for e in first_events if e.durable] == ["fired"]

    second_events: list[Event] = []
    second_store = AlertStore(path)
    await second_store.open()
    second = AlertManager(rules, second_store, second_events.append, retention_seconds=86400)
    await second.start()
    for _ in range(3):
        await second.evaluate(degraded, None)
    assert [e for e in second_events if e.durable] == []
    state = [e for e in second_events if e.name == "alerts"][-1]
    assert state.data["firing_count"] == 1
    await second.evaluate({"kato": {"status": "healthy"}, "stale": False}, None)
    assert [e.data["transition"] for e in second_events if e.durable] == ["resolved"]
    await second_store.aclose()


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
