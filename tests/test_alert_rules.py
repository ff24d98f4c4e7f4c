"""Alert rules files: the built-in defaults, a valid custom file, and every kind of mistake."""

from __future__ import annotations

from pathlib import Path

import pytest

from sse_monitor.alerts.metric_paths import METRICS
from sse_monitor.alerts.rules import Rule, RulesError, load_rules, parse_rules
from sse_monitor.durations import parse_duration

VALID = """
[[rule]]
id = "cpu_high"
metric = "kato.resources.cpu_percent"
op = ">"
threshold = 80
clear_threshold = 70
severity = "warning"
for = "2m"
clear_for = 30
message = "CPU at {value:.1f} % (above {threshold} %)"

[[rule]]
id = "container_down"
metric = "containers.*.status"
op = "!="
threshold = "running"
severity = "critical"
message = "{subject} is {value}"

[[rule]]
id = "restarts"
metric = "containers.*.restart_count"
op = "increased"
severity = "info"
clear_for = "10m"
"""


def rule_text(**fields: object) -> str:
    """One [[rule]] table: a valid one, with some fields replaced (None drops a field)."""
    base: dict[str, object] = {
        "id": "r1",
        "metric": "kato.resources.cpu_percent",
        "op": ">",
        "threshold": 80,
        "severity": "warning",
    }
    base.update(fields)
    lines = ["[[rule]]"]
    for key, value in base.items():
        if value is None:
            continue
        lines.append(f"{key} = {value if isinstance(value, (int, float)) else repr(value)}")
    return "\n".join(lines).replace("'", '"') + "\n"


def test_the_built_in_rules_cover_what_the_issue_lists() -> None:
    rules = {rule.id: rule for rule in load_rules(None)}
    assert rules["kato_unreachable"].threshold == "unreachable"
    assert rules["kato_unreachable"].severity == "critical"
    assert (rules["kato_degraded"].severity, rules["kato_unhealthy"].severity) == (
        "warning",
        "critical",
    )
    assert [
        (rules[i].threshold, rules[i].severity) for i in ("kato_cpu_warning", "kato_cpu_critical")
    ] == [
        (80, "warning"),
        (90, "critical"),
    ]
    assert (rules["kato_memory_warning"].threshold, rules["kato_memory_critical"].threshold) == (
        85,
        95,
    )
    assert rules["kato_disk"].threshold == 90
    assert rules["kato_error_rate"].threshold == 0.05
    assert rules["container_not_running"].metric == "containers.*.status"
    assert rules["container_not_running"].severity == "critical"
    assert rules["container_cpu"].metric == "containers.*.cpu_limit_percent"
    assert rules["container_cpu"].threshold == 80
    assert (rules["container_memory"].metric, rules["container_memory"].threshold) == (
        "containers.*.memory.percent",
        90,
    )
    assert rules["container_unhealthy"].threshold == "unhealthy"
    assert rules["container_restarted"].op == "increased"
    # Every threshold rule has hysteresis, and every message renders.
    for rule in rules.values():
        if rule.op == ">":
            assert rule.clear_threshold is not None and rule.clear_threshold < rule.threshold
        assert "{" not in rule.render(91.5 if rule.op != "!=" else "exited", "kato-redis")


def test_a_valid_file_is_read(tmp_path: Path) -> None:
    path = tmp_path / "rules.toml"
    path.write_text(VALID)
    cpu, down, restarts = load_rules(path)
    assert cpu == Rule(
        id="cpu_high",
        metric="kato.resources.cpu_percent",
        op=">",
        threshold=80,
        severity="warning",
        for_seconds=120.0,
        clear_threshold=70,
        clear_for_seconds=30.0,
        message="CPU at {value:.1f} % (above {threshold} %)",
    )
    assert cpu.render(83.456, None) == "CPU at 83.5 % (above 80 %)"
    assert down.render("exited", "kato-qdrant") == "kato-qdrant is exited"
    assert (restarts.op, restarts.threshold, restarts.clear_for_seconds) == (
        "increased",
        None,
        600.0,
    )
    assert restarts.render(3, "kato") == "restarts: containers.*.restart_count is 3"


def test_an_empty_file_means_no_rules(tmp_path: Path) -> None:
    path = tmp_path / "none.toml"
    path.write_text("# alerting off\n")
    assert load_rules(path) == ()


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("[[rule]\nid = 1", "not valid TOML"),
        ("[[rules]]\nid = 'x'\n", "unknown top-level key 'rules'"),
        ("rule = 5\n", "array of tables"),
        (rule_text(metric=None), "`metric` is missing"),
        (rule_text(severity=3), "`severity` must be a string"),
        (rule_text(id="has space"), "rule 'has space': `id` must be"),
        (rule_text(metric="kato.resources.cpu_pct"), "'kato.resources.cpu_pct' is not one of"),
        (rule_text(metric="containers.kato.status"), "is not one of"),
        (rule_text(op="=>"), "`op` '=>' is not one of"),
        (rule_text(severity="urgent"), "`severity` 'urgent' is not one of critical, warning, info"),
        (rule_text(threshold=None), "`threshold` is missing"),
        (rule_text(threshold="high"), "`threshold` must be a number for '>'"),
        (rule_text(clear_threshold=85), "`clear_threshold` 85 must not be above the threshold 80"),
        (rule_text(op="<", clear_threshold=70), "must not be below the threshold 80"),
        (
            rule_text(metric="kato.status", op="==", threshold="degraded", clear_threshold=1),
            "`clear_threshold` applies only to",
        ),
        (rule_text(**{"for": "soon"}), "`for`: 'soon' is not a duration"),
        (rule_text(clear_for=-5), "`clear_for`: -5 is out of range"),
        (
            rule_text(op="increased", threshold=None, **{"for": "1m"}),
            "`for` must be 0 for 'increased'",
        ),
        (rule_text(op="increased"), "`threshold` does not apply to 'increased'"),
        (rule_text(threshhold=5), "unknown key 'threshhold'"),
        (rule_text(message="{value} on {host}"), "`message` uses {host}"),
        (rule_text(message="{value.__class__}"), "`message` uses {value.__class__}"),
        (rule_text(message="{value:%Q}"), "`message` cannot be formatted"),
        (rule_text(message="{value"), "`message` is not a valid template"),
        (rule_text(message=""), "`message` must be a non-empty string"),
        (rule_text() + rule_text(), "the id is used by an earlier rule"),
    ],
)
def test_each_mistake_names_the_file_the_rule_and_the_problem(text: str, problem: str) -> None:
    with pytest.raises(RulesError) as caught:
        parse_rules(text, source="/etc/sse-monitor/rules.toml")
    message = str(caught.value)
    assert message.startswith("/etc/sse-monitor/rules.toml: ")
    assert problem in message
    if 'id = "r1"' in text:
        assert "rule 'r1': " in message


def test_a_rule_without_a_usable_id_is_named_by_its_position() -> None:
    text = rule_text() + rule_text(id=None)
    with pytest.raises(RulesError, match=r"rule '#2': `id` is missing"):
        parse_rules(text, source="rules.toml")


def test_an_unreadable_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(RulesError, match=r"nowhere\.toml: cannot read the rules file"):
        load_rules(tmp_path / "nowhere.toml")


def test_durations() -> None:
    assert [parse_duration(v) for v in (0, 1.5, "90s", "5m", "2h", "7d", "250ms", "12")] == [
        0.0,
        1.5,
        90.0,
        300.0,
        7200.0,
        604800.0,
        0.25,
        12.0,
    ]
    for bad in ("5 minutes", "-1s", True, "", "1w"):
        with pytest.raises(ValueError):
            parse_duration(bad)


@pytest.mark.parametrize(
    ("op", "threshold", "value", "holds"),
    [
        (">", 80, 80.5, True),
        (">", 80, 80, False),
        (">=", 80, 80, True),
        ("<", 10, 9, True),
        ("<=", 10, 11, False),
        ("==", "degraded", "degraded", True),
        ("!=", "running", "exited", True),
        ("!=", "running", "running", False),
        (">", 80, None, None),  # unknown
        (">", 80, "high", None),  # garbage from upstream is never a breach
        (">", 80, True, None),
        (">", 80, float("nan"), None),
        ("==", "degraded", 3, None),
        ("==", True, 1, None),  # a boolean is not a number
    ],
)
def test_conditions(op: str, threshold: object, value: object, holds: bool | None) -> None:
    rule = Rule(id="r", metric="kato.status", op=op, threshold=threshold, severity="info")  # type: ignore[arg-type]
    assert rule.holds(value) is holds


def test_every_metric_is_listed_once() -> None:
    assert len(METRICS) == len(set(METRICS))
