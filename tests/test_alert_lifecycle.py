"""pending -> firing -> resolved on driven values: `for`, hysteresis, unknown values, containers."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sse_monitor.alerts.alert import Alert
from sse_monitor.alerts.lifecycle import Lifecycle, Transition
from sse_monitor.alerts.rules import parse_rules

START = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)

CPU_RULE = """
[[rule]]
id = "cpu"
metric = "kato.resources.cpu_percent"
op = ">"
threshold = 80
clear_threshold = 70
severity = "warning"
for = "10s"
clear_for = "5s"
message = "CPU {value}"
"""
CONTAINER_RULES = """
[[rule]]
id = "down"
metric = "containers.*.status"
op = "!="
threshold = "running"
severity = "critical"

[[rule]]
id = "restarted"
metric = "containers.*.restart_count"
op = "increased"
severity = "warning"
clear_for = "60s"
"""


def metrics(cpu: Any = 50.0, *, status: str = "healthy", stale: bool = False) -> dict[str, Any]:
    return {
        "kato": {"status": status, "resources": {"cpu_percent": cpu}},
        "sessions": {"active_count": 1},
        "stale": stale,
    }


def containers(*rows: tuple[str, str, int], available: bool = True) -> dict[str, Any]:
    return {
        "available": available,
        "containers": [
            {"name": name, "status": status, "restart_count": restarts}
            for name, status, restarts in rows
        ],
    }


class Driver:
    """Feeds values one poll (1 s) at a time and records the transitions."""

    def __init__(self, rules: str) -> None:
        self.lifecycle = Lifecycle(parse_rules(rules, source="test"))
        self.now = START
        self.log: list[tuple[float, str, Alert]] = []

    def poll(
        self, metrics_snapshot: Any = None, containers_snapshot: Any = None
    ) -> list[Transition]:
        transitions = self.lifecycle.evaluate(metrics_snapshot, containers_snapshot, self.now)
        at = (self.now - START).total_seconds()
        self.log.extend((at, t.kind, t.alert) for t in transitions)
        self.now += timedelta(seconds=1)
        return transitions

    def cpu(self, *values: Any) -> None:
        for value in values:
            self.poll(metrics(value))

    def kinds(self) -> list[tuple[float, str]]:
        return [(at, kind) for at, kind, _ in self.log]


def test_fires_only_after_holding_for_the_for_duration() -> None:
    driver = Driver(CPU_RULE)
    driver.cpu(50, *[85] * 10)  # 10 polls above: t=1..10, held 9 s
    assert driver.log == []
    assert [(p.rule.id, p.since) for p in driver.lifecycle.pending()] == [
        ("cpu", START + timedelta(seconds=1))
    ]
    driver.cpu(86)  # t=11: held 10 s
    [(at, kind, alert)] = driver.log
    assert (at, kind, alert.state, alert.value, alert.threshold) == (11, "fired", "firing", 86, 80)
    assert alert.message == "CPU 86"
    assert alert.started_at == (START + timedelta(seconds=11)).isoformat(timespec="microseconds")
    assert driver.lifecycle.pending() == []


def test_a_dip_before_for_elapses_restarts_the_wait() -> None:
    driver = Driver(CPU_RULE)
    driver.cpu(*[85] * 9, 79, *[85] * 9)
    assert driver.log == []  # never 10 s in a row
    driver.cpu(85, 85)  # pending again since t=10
    assert driver.kinds() == [(20, "fired")]


def test_oscillating_around_the_threshold_fires_once_and_never_flaps() -> None:
    driver = Driver(CPU_RULE)
    driver.cpu(*[85] * 11)
    assert driver.kinds() == [(10, "fired")]
    driver.cpu(*[79, 81] * 30)  # a minute hovering around 80: above the clear threshold of 70
    assert driver.kinds() == [(10, "fired")]
    driver.cpu(*[69, 72] * 10)  # dipping under 70 for less than clear_for (5 s) each time
    assert driver.kinds() == [(10, "fired")]
    driver.cpu(*[65] * 5)  # t=91..95: 4 s below
    assert driver.kinds() == [(10, "fired")]
    driver.cpu(65)  # 5 s below: resolves, once
    assert driver.kinds() == [(10, "fired"), (96, "resolved")]
    [_, (_, _, resolved)] = driver.log
    assert (resolved.state, resolved.resolved_value, resolved.value) == ("resolved", 65, 85)
    driver.cpu(*[79, 81] * 10)  # back around 80, but each excursion is too short to fire
    assert len(driver.log) == 2


def test_a_new_episode_is_a_new_alert() -> None:
    driver = Driver(CPU_RULE.replace('for = "10s"', 'for = "0s"').replace('clear_for = "5s"', ""))
    driver.cpu(90, 60, 90)
    assert driver.kinds() == [(0, "fired"), (1, "resolved"), (2, "fired")]
    assert driver.log[0][2].id == driver.log[1][2].id != driver.log[2][2].id


def test_an_unknown_value_never_fires_nor_resolves() -> None:
    driver = Driver(CPU_RULE.replace('for = "10s"', 'for = "2s"'))
    driver.cpu(90, None, 90, "garbage", 90)  # each unknown poll ends pending
    assert driver.log == []
    driver.cpu(90, 90)
    assert driver.kinds() == [(6, "fired")]
    driver.poll(metrics(10, stale=True))  # kept figures while /metrics fails: not current
    driver.poll(metrics(None, status="unreachable"))
    driver.poll(None)  # no poll has produced a snapshot
    driver.cpu(None, *[10] * 4)
    assert driver.kinds() == [(6, "fired")]
    driver.cpu(10)  # t=15: 4 s below (clearing started at t=11)
    assert driver.kinds() == [(6, "fired")]
    driver.cpu(10)
    assert driver.kinds() == [(6, "fired"), (16, "resolved")]


def test_kato_status_rules_see_unreachable_while_other_figures_are_unknown() -> None:
    rules = """
[[rule]]
id = "unreachable"
metric = "kato.status"
op = "=="
threshold = "unreachable"
severity = "critical"
for = "2s"
"""
    driver = Driver(rules)
    for _ in range(3):
        driver.poll(metrics(None, status="unreachable", stale=True))
    assert driver.kinds() == [(2, "fired")]
    driver.poll(metrics(5.0))
    assert driver.kinds() == [(2, "fired"), (3, "resolved")]


def test_one_alert_per_container_and_gone_containers_resolve() -> None:
    driver = Driver(CONTAINER_RULES)
    driver.poll(None, containers(("kato", "running", 0), ("redis", "exited", 0)))
    [(_, kind, alert)] = driver.log
    assert (kind, alert.rule, alert.subject, alert.value) == ("fired", "down", "redis", "exited")
    # The engine goes away: nothing about any container can change.
    driver.poll(None, containers(available=False))
    driver.poll(None, None)
    assert len(driver.log) == 1
    # The engine is back and the container is gone (removed): its alert resolves.
    driver.poll(None, containers(("kato", "running", 0)))
    assert [(k, a.subject) for _, k, a in driver.log] == [("fired", "redis"), ("resolved", "redis")]


def test_increased_fires_on_a_restart_and_clears_after_a_quiet_period() -> None:
    driver = Driver(CONTAINER_RULES)
    driver.poll(None, containers(("kato", "running", 2)))  # the first count is a baseline
    driver.poll(None, containers(("kato", "running", 2)))
    assert driver.log == []
    driver.poll(None, containers(("kato", "running", 3)))
    assert [(k, a.rule, a.value) for _, k, a in driver.log] == [("fired", "restarted", 3)]
    for _ in range(30):
        driver.poll(None, containers(("kato", "running", 3)))
    driver.poll(None, containers(("kato", "running", 4)))  # again: still the same alert
    for _ in range(60):
        driver.poll(None, containers(("kato", "running", 4)))
    assert [k for _, k, _ in driver.log] == ["fired"]
    driver.poll(None, containers(("kato", "running", 4)))
    assert [k for _, k, _ in driver.log] == ["fired", "resolved"]


def test_restored_alerts_are_not_announced_again() -> None:
    driver = Driver(CPU_RULE)
    driver.cpu(*[90] * 11)
    [(_, _, fired)] = driver.log
    # A new process: the store gives back what was firing.
    after_restart = Driver(CPU_RULE)
    restored = Alert(**fired.to_json())
    assert after_restart.lifecycle.restore([restored]) == []
    after_restart.cpu(*[90] * 20)
    assert after_restart.log == []
    after_restart.cpu(*[50] * 6)
    [(_, kind, alert)] = after_restart.log
    assert (kind, alert.id) == ("resolved", fired.id)


def test_restored_alerts_of_removed_rules_are_handed_back() -> None:
    driver = Driver(CPU_RULE)
    orphan = Alert(
        id="0123456789abcdef",
        rule="gone",
        subject=None,
        metric="kato.status",
        severity="info",
        state="firing",
        message="m",
        value=1,
        threshold=0,
        started_at=START.isoformat(),
    )
    assert driver.lifecycle.restore([orphan]) == [orphan]
    assert driver.lifecycle.firing() == []
