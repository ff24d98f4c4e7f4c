"""Hostile input from KATO, generated: it never crashes anything, spoils only its own fields,
and never makes a session event.

Two layers. In-process, hypothesis throws thousands of generated bodies at the KATO client's
parsing and folds each reading into a real KATO monitor and memory log (fast: no sockets). End to
end, generated answers are posted to the simulated KATO (`/_sim/fault` mode "serve") and a real
gateway process reads them on its next ticks.

Case counts: SSE_MONITOR_FUZZ_EXAMPLES (in-process, per test; default 250) and
SSE_MONITOR_FUZZ_E2E_EXAMPLES (end to end; default 12). A bench-style run:
    SSE_MONITOR_FUZZ_EXAMPLES=20000 SSE_MONITOR_FUZZ_E2E_EXAMPLES=300 \
        pytest tests/test_upstream_fuzz.py
"""

from __future__ import annotations

import asyncio
import json
import math
import os
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from sse_monitor.bus.event import Event
from sse_monitor.bus.log import Frame
from sse_monitor.bus.memory import MemoryLog
from sse_monitor.bus.sse import to_json
from sse_monitor.monitor.containers import LIFECYCLE, ContainerCollector
from sse_monitor.monitor.kato import KatoMonitor
from sse_monitor.monitor.sessions import SessionMonitor
from sse_monitor.simulator.app import create_simulator_app
from sse_monitor.simulator.state import SimulatedKato
from sse_monitor.sources.docker import DockerEngine, Selection
from sse_monitor.sources.kato import (
    HEALTH_STATUSES,
    MAX_SESSION_COUNT,
    METRIC_FIELDS,
    PERCENT_FIELDS,
    KatoHealth,
    KatoMetrics,
    KatoReading,
    UpstreamError,
    parse_health,
    parse_metrics,
)
from tests.support.gateway import GatewayProcess
from tests.support.servers import ThreadedServer
from tests.support.waiting import wait_until

pytestmark = pytest.mark.fuzz

FUZZ_EXAMPLES = int(os.environ.get("SSE_MONITOR_FUZZ_EXAMPLES", "250"))
E2E_EXAMPLES = int(os.environ.get("SSE_MONITOR_FUZZ_E2E_EXAMPLES", "12"))
BASELINE = 2  # sessions KATO really has: a garbage 0 would announce two destroyed
T0 = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)

# Generators: values of every JSON type, the odd ones a broken peer sends most of all.

odd_numbers = st.one_of(
    st.integers(),
    st.integers(min_value=2**53 - 2, max_value=10**400),
    st.integers(min_value=-(10**400), max_value=-1),
    st.floats(allow_nan=True, allow_infinity=True),
    st.floats(min_value=-1e308, max_value=1e308),
)
odd_text = st.one_of(
    st.text(max_size=20),
    st.text(st.characters(categories=["Cs", "Cc", "Zl", "So"]), max_size=10),
    st.sampled_from(["healthy", "unknown", "Health check error: x", "redis://:pw@h/0", "NaN"]),
    st.builds(lambda n: "x" * n, st.integers(min_value=400, max_value=20_000)),
)
scalars = st.none() | st.booleans() | odd_numbers | odd_text
json_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=8,
)
ABSENT = object()


def field(good: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """A field as KATO would send it, as garbage, or missing."""
    return st.one_of(good, json_values, st.just(ABSENT))


def document(fields: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in fields.items() if value is not ABSENT}


health_documents = st.builds(
    document,
    st.fixed_dictionaries(
        {
            "status": field(st.sampled_from(HEALTH_STATUSES)),
            "processor_status": field(st.just("healthy")),
            "uptime_seconds": field(st.floats(min_value=0, max_value=1e7)),
            "issues": field(st.lists(st.text(max_size=30), max_size=3)),
            "active_sessions": field(st.integers(min_value=0, max_value=50)),
            "timestamp": field(st.just("2026-11-25T12:38:21.298645+00:00")),
        }
    ),
)
good_figures = st.floats(min_value=0, max_value=100) | st.integers(min_value=0, max_value=100)
sections = st.one_of(
    st.dictionaries(
        st.sampled_from([name for names in METRIC_FIELDS.values() for name in names] + ["x"]),
        good_figures | json_values,
        min_size=1,
    ),
    json_values,
)
metrics_documents = st.builds(
    document,
    st.fixed_dictionaries(
        {
            "resources": sections | st.just(ABSENT),
            "performance": sections | st.just(ABSENT),
            "rates": sections | st.just(ABSENT),
            "error": st.sampled_from([None, ABSENT]) | json_values,
        }
    ),
)


def encoded(value: Any) -> bytes:
    """JSON as a broken peer writes it: NaN and Infinity as literals, lone surrogates raw."""
    return json.dumps(value, ensure_ascii=False).encode("utf-8", "surrogatepass")


def mangled(documents: st.SearchStrategy[Any]) -> st.SearchStrategy[bytes]:
    """A document's bytes, often whole, sometimes cut, spliced with bytes, or pure noise."""
    whole = documents.map(encoded)
    return st.one_of(
        whole,
        whole,
        whole,
        st.tuples(whole, st.integers(min_value=0)).map(lambda b: b[0][: b[1] % (len(b[0]) + 1)]),
        st.tuples(whole, st.binary(max_size=8), st.integers(min_value=0)).map(
            lambda b: b[0][: b[2] % (len(b[0]) + 1)] + b[1] + b[0][b[2] % (len(b[0]) + 1) :]
        ),
        st.binary(max_size=64),
        json_values.map(encoded),
        st.integers(min_value=1, max_value=120_000).map(lambda n: b"[" * n + b"]" * n),
        st.integers(min_value=4000, max_value=6000).map(
            lambda n: (
                b'{"status": "healthy", "active_sessions": 1, "uptime_seconds": 9' + b"9" * n + b"}"
            )
        ),
    )


# What a field must become: the spec, written independently of the client's code.


def expected_figure(value: Any, *, percent: bool) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        as_float = float(value)
    except OverflowError:
        return None
    if not math.isfinite(as_float) or as_float < 0 or (percent and as_float > 100):
        return None
    return as_float if isinstance(value, int) and value > MAX_SESSION_COUNT else value


def expected_count(value: Any) -> int | None:
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_SESSION_COUNT:
        return value
    return None


def health_or_error(content: bytes) -> KatoHealth | UpstreamError:
    try:
        return parse_health(content, latency_ms=1.0)
    except UpstreamError as exc:
        return exc


def metrics_or_error(content: bytes) -> KatoMetrics | UpstreamError:
    try:
        return parse_metrics(content)
    except UpstreamError as exc:
        return exc


def fold(reading: KatoReading) -> tuple[KatoMonitor, list[str]]:
    """A real KATO monitor with a known count of BASELINE, then the reading: the durable
    events it appended to a real log."""
    log = MemoryLog(history_size=100)
    monitor = KatoMonitor(None, log.append, SessionMonitor(log.append))  # type: ignore[arg-type]
    good = KatoHealth("healthy", (), 1.0, BASELINE, 1.0)
    monitor.apply(KatoReading(health=good, metrics=None, metrics_error="x"), T0)
    frames: list[Frame] = []
    log.follow(frames.append)
    monitor.apply(reading, T0)  # the log encodes every event: it must be encodable
    return monitor, [frame.event.name for frame in frames if frame.event.durable]


FAST = settings(
    max_examples=FUZZ_EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@FAST
@given(mangled(health_documents))
def test_any_health_body_is_a_reading_or_a_clear_failure(content: bytes) -> None:
    result = health_or_error(content)
    if isinstance(result, UpstreamError):
        assert str(result).startswith("/health: ") and len(str(result)) < 200
        reading = KatoReading(health=None, metrics=None, health_error=str(result))
    else:
        assert result.status in (*HEALTH_STATUSES, "unknown")
        assert result.uptime_seconds is None or math.isfinite(result.uptime_seconds)
        assert len(result.issues) <= 20 and all(len(issue) <= 500 for issue in result.issues)
        count = result.active_sessions
        assert count is None or 0 <= count <= MAX_SESSION_COUNT
        reading = KatoReading(health=result, metrics=None, metrics_error="x")
    monitor, events = fold(reading)
    if "session_event" in events:
        # Only a count that KATO really gave, and that differs from the last known one.
        assert isinstance(result, KatoHealth) and result.active_sessions not in (None, BASELINE)
    count = monitor.snapshot["sessions"]["active_count"]
    assert count in (BASELINE, getattr(result, "active_sessions", None))


@FAST
@given(health_documents)
def test_each_health_field_spoils_only_itself(doc: dict[str, Any]) -> None:
    health = parse_health(encoded(doc), latency_ms=1.0)
    status = doc.get("status")
    assert health.status == (status if status in HEALTH_STATUSES else "unknown")
    assert health.uptime_seconds == expected_figure(doc.get("uptime_seconds"), percent=False)
    count = expected_count(doc.get("active_sessions"))
    issues = doc.get("issues")
    failed_check = doc.get("processor_status") == "unknown" or (
        isinstance(issues, list)
        and any(isinstance(i, str) and i.startswith("Health check error") for i in issues[:20])
    )
    assert health.active_sessions == (None if failed_check else count)
    if count is None:
        assert any("not a count" in problem for problem in health.problems)
    monitor, events = fold(KatoReading(health=health, metrics=None, metrics_error="x"))
    assert ("session_event" in events) == (health.active_sessions not in (None, BASELINE))
    snapshot = monitor.snapshot
    assert snapshot is not None and snapshot["kato"]["status"] == health.status
    assert all(problem in snapshot["error"] for problem in health.problems)  # said, not hidden


@FAST
@given(mangled(metrics_documents))
def test_any_metrics_body_is_figures_or_a_clear_failure(content: bytes) -> None:
    result = metrics_or_error(content)
    if isinstance(result, UpstreamError):
        assert str(result).startswith("/metrics: ") and len(str(result)) < 300
        return
    for section, fields in METRIC_FIELDS.items():
        for name in fields:
            value = getattr(result, section)[name]
            assert value is None or (math.isfinite(value) and value >= 0)
    monitor, events = fold(KatoReading(health=None, metrics=result, health_error="x"))
    assert "session_event" not in events and monitor.snapshot is not None


@FAST
@given(metrics_documents)
def test_each_figure_spoils_only_itself(doc: dict[str, Any]) -> None:
    result = metrics_or_error(encoded(doc))
    values = {section: doc.get(section) for section in METRIC_FIELDS}
    if (
        doc.get("error") is not None
        or any(isinstance(v, dict) and not v for v in values.values())
        or not any(isinstance(v, dict) for v in values.values())
    ):
        assert isinstance(result, UpstreamError)  # KATO's own failure answers, or no figures
        return
    assert isinstance(result, KatoMetrics)
    for section, fields in METRIC_FIELDS.items():
        given_values = values[section] if isinstance(values[section], dict) else {}
        for name in fields:
            expected = expected_figure(given_values.get(name), percent=name in PERCENT_FIELDS)
            assert getattr(result, section)[name] == expected, (section, name)


# End to end: generated answers through the simulated KATO to a real gateway process.


@pytest.fixture(scope="module")
def kato_url() -> Iterator[tuple[SimulatedKato, str]]:
    state = SimulatedKato()
    with ThreadedServer(create_simulator_app(state)) as server:
        for _ in range(BASELINE):
            state.create_session("fuzz")
        yield state, server.url


@pytest.fixture(scope="module")
def fuzzed_gateway(kato_url: tuple[SimulatedKato, str]) -> Iterator[GatewayProcess]:
    _, url = kato_url
    env = {"SSE_MONITOR_POLL_INTERVAL": "0.4", "SSE_MONITOR_KATO_PUSH": "off"}
    with GatewayProcess(url, env=env) as gateway:
        yield gateway


# A count that is a real count is no garbage: it may move the count, so it is not generated here.
unreadable_counts = json_values.filter(lambda v: expected_count(v) in (None, BASELINE))
health_patches = st.fixed_dictionaries(
    {},
    optional={
        "status": json_values,
        "uptime_seconds": json_values,
        "active_sessions": unreadable_counts,
        "issues": json_values,
    },
).filter(bool)
metrics_patches = st.dictionaries(
    st.sampled_from(list(METRIC_FIELDS)),
    st.dictionaries(
        st.sampled_from([name for names in METRIC_FIELDS.values() for name in names]),
        json_values,
        min_size=1,
    ),
    min_size=1,
)
TRICKLE = {"text": "{" + " " * 40 + "}", "trickle": 0.05, "chunk_size": 1}  # 2 s > the timeout
whole_garbage = st.one_of(
    st.sampled_from(
        [
            {"text": "<html><body>502 Bad Gateway</body></html>", "content_type": "text/html"},
            {"base64": "/wD+", "content_type": "application/octet-stream"},
            {"base64": "eyJzdGF0dXMiOiAi/yJ9"},  # {"status": "\xff"}
            {"text": ""},
            {"json": None},
            {"json": [1, 2]},
            {"text": '{"status": "healthy", "active_sessions": 0'},
            {"text": "[" * 100_000 + "]" * 100_000},
            {"text": "x" * 65536, "repeat": 64},  # 4 MiB
            TRICKLE,
        ]
    ),
    json_values.map(lambda value: {"json": value}),
)
cases = st.one_of(
    st.tuples(st.just("health"), health_patches.map(lambda p: {"patch": p})),
    st.tuples(st.just("metrics"), metrics_patches.map(lambda p: {"patch": p})),
    st.tuples(st.sampled_from(["health", "metrics"]), whole_garbage),
)


def serve(client: httpx.Client, endpoint: str, response: dict[str, Any] | None) -> None:
    body: dict[str, Any] = {"endpoint": endpoint, "mode": "ok"}
    if response is not None:
        body.update(mode="serve", response=response)
    # NaN and huge numbers travel as the literals the simulator will serve
    answer = client.post(
        "/_sim/fault", content=json.dumps(body, ensure_ascii=False).encode("utf-8", "surrogatepass")
    )
    assert answer.status_code == 200, answer.text


def next_snapshot(gateway: GatewayProcess, client: httpx.Client) -> dict[str, Any]:
    """The snapshot of a tick that started after now: two poll counts later."""
    start = client.get(f"{gateway.url}/readyz").json()["polls"]

    def two_ticks_later() -> bool:
        assert gateway.proc is not None and gateway.proc.poll() is None, gateway.log()
        return client.get(f"{gateway.url}/readyz").json()["polls"] >= start + 2

    wait_until(two_ticks_later, 15, what="the gateway to go on ticking")
    return client.get(f"{gateway.url}/api/snapshot").json()


def assert_clean(gateway: GatewayProcess, client: httpx.Client) -> None:
    assert gateway.proc is not None and gateway.proc.poll() is None
    log = gateway.log()
    assert "Traceback" not in log
    for line in log.splitlines():
        if line.startswith("{"):
            assert json.loads(line).get("level") not in ("error", "critical"), line
    events = client.get(f"{gateway.url}/api/events", params={"limit": 100}).json()["events"]
    assert not [e for e in events if e["event"] == "session_event"], events


def check_health_patch(snapshot: dict[str, Any], patch: dict[str, Any]) -> None:
    kato = snapshot["kato"]
    if "status" in patch:
        status = patch["status"]
        assert kato["status"] == (status if status in HEALTH_STATUSES else "unknown")
    else:
        assert kato["status"] == "healthy"
    if "uptime_seconds" in patch:
        assert kato["uptime_seconds"] == expected_figure(patch["uptime_seconds"], percent=False)
    else:
        assert kato["uptime_seconds"] > 0  # KATO's own figure, untouched
    assert snapshot["sessions"]["active_count"] == BASELINE  # garbage or not: never moved
    assert kato["resources"] is not None  # the other endpoint's figures stand


def check_metrics_patch(snapshot: dict[str, Any], patch: dict[str, Any]) -> None:
    kato = snapshot["kato"]
    assert kato["status"] == "healthy" and snapshot["sessions"]["active_count"] == BASELINE
    for section, fields in METRIC_FIELDS.items():
        for name in fields:
            shown = kato[section][name]
            if name in patch.get(section, {}):
                value = patch[section][name]
                assert shown == expected_figure(value, percent=name in PERCENT_FIELDS)
            else:
                assert shown is not None, (section, name)  # good fields of the same reading


@settings(
    max_examples=E2E_EXAMPLES,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    # Shrinking through a real process takes minutes: the in-process tests shrink instead.
    phases=[Phase.explicit, Phase.reuse, Phase.generate],
)
@given(case=cases)
def test_a_real_gateway_survives_generated_answers(
    fuzzed_gateway: GatewayProcess, kato_url: tuple[SimulatedKato, str], case: tuple[str, dict]
) -> None:
    endpoint, response = case
    _, url = kato_url
    with httpx.Client(base_url=url, timeout=10) as client:
        serve(client, "all", None)
        next_snapshot(fuzzed_gateway, client)  # a clean tick: figures known again
        serve(client, endpoint, response)
        snapshot = next_snapshot(fuzzed_gateway, client)
        if "patch" in response and endpoint == "health":
            check_health_patch(snapshot, response["patch"])
        elif "patch" in response:
            check_metrics_patch(snapshot, response["patch"])
        elif endpoint == "health":
            assert snapshot["kato"]["status"] in ("unreachable", "unknown", *HEALTH_STATUSES)
            assert snapshot["sessions"]["active_count"] == BASELINE
        else:
            assert snapshot["kato"]["status"] == "healthy"  # /health stands
        assert_clean(fuzzed_gateway, client)
        serve(client, "all", None)


# The Docker engine: generated stats, inspect and list answers through the real collector
# (DockerEngine's filtering, the collector's sampling and figures), in-process: the SDK's API
# object is replaced by one that answers with the generated documents.

uints = st.integers(min_value=0, max_value=2**64 - 1)
STAMP = "2026-11-25T12:00:00.123456789Z"


def obj(**fields: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """A JSON object of these fields (each good, garbage or missing), or garbage itself."""
    return st.one_of(
        st.builds(document, st.fixed_dictionaries({k: field(v) for k, v in fields.items()})),
        json_values,
    )


stats_documents = obj(
    read=st.just(STAMP) | st.just("2026-11-25T12:00:03Z"),
    cpu_stats=obj(
        cpu_usage=obj(total_usage=uints, percpu_usage=st.lists(uints, max_size=3)),
        system_cpu_usage=uints,
        online_cpus=st.integers(min_value=1, max_value=64),
    ),
    memory_stats=obj(usage=uints, limit=uints, stats=obj(inactive_file=uints)),
    networks=st.dictionaries(st.text(max_size=5), obj(rx_bytes=uints, tx_bytes=uints), max_size=2),
    blkio_stats=obj(
        io_service_bytes_recursive=st.lists(
            obj(op=st.sampled_from(["read", "Write", "total"]), value=uints), max_size=3
        )
    ),
    pids_stats=obj(current=uints),
)
inspect_documents = obj(
    Id=st.just("f" * 64),
    Name=st.just("/kato"),
    RestartCount=uints,
    State=obj(
        Status=st.sampled_from(["running", "exited"]),
        Running=st.booleans(),
        Restarting=st.booleans(),
        OOMKilled=st.booleans(),
        StartedAt=st.just(STAMP),
        Health=obj(Status=st.sampled_from(["healthy", "starting"])),
    ),
    Config=obj(Image=st.just("kato:3.10.1")),
    HostConfig=obj(NanoCpus=uints, CpuQuota=st.integers(), CpuPeriod=st.integers()),
)
list_entries = (
    st.lists(
        obj(
            Id=st.just("f" * 64),
            Names=st.just(["/kato"]) | st.lists(json_values, max_size=2),
            Image=st.just("kato:3.10.1"),
            Labels=st.dictionaries(st.text(max_size=5), st.text(max_size=5), max_size=2),
        ),
        max_size=3,
    )
    | json_values
)


class GeneratedApi:
    """The SDK's low-level API object, answering with generated documents."""

    def __init__(self, entries: Any, inspected: Any, stats: list[Any]) -> None:
        self.entries, self.inspected, self.stats_answers = entries, inspected, stats

    def containers(self, **_: Any) -> Any:
        return self.entries

    def inspect_container(self, container_id: str) -> Any:
        return self.inspected

    def stats(self, container_id: str, **_: Any) -> Any:
        return self.stats_answers.pop(0) if self.stats_answers else {}


class GeneratedEngine(DockerEngine):
    def __init__(self, api: GeneratedApi) -> None:
        super().__init__()
        self.api = api

    def _api(self) -> Any:
        return self.api


def check_figures(container: dict[str, Any]) -> None:
    for key in ("cpu_percent", "cpu_limit_percent", "cpu_limit", "restart_count", "pids"):
        value = container[key]
        assert value is None or (math.isfinite(value) and value >= 0), (key, value)
    for group in ("memory", "network", "block_io"):
        for key, value in (container[group] or {}).items():
            assert value is None or (math.isfinite(value) and value >= 0), (group, key, value)
    assert isinstance(container["status"], str) and len(container["status"]) <= 32


@FAST
@given(list_entries, inspect_documents, st.lists(stats_documents, min_size=2, max_size=2))
def test_the_collector_reads_any_engine_answer(entries: Any, inspected: Any, stats: list) -> None:
    published: list[Event] = []
    engine = GeneratedEngine(GeneratedApi(entries, inspected, list(stats)))
    selection = Selection(names=("kato",))
    collector = ContainerCollector(engine, selection, interval=1.0, append=published.append)

    async def two_rounds() -> dict[str, Any] | None:
        await collector.sample()
        await collector.sample()  # with a previous sample: CPU and rates
        return collector.snapshot()

    try:
        snapshot = asyncio.run(two_rounds())
    finally:
        collector._executor.shutdown(wait=True)
    assert snapshot is not None and snapshot["available"] is True
    to_json(snapshot)  # encodable: no NaN, no infinity, no surrogates
    assert "kato" in {c["name"] for c in snapshot["containers"]}  # watched: listed, never dropped
    for container in snapshot["containers"]:
        check_figures(container)
    assert not published  # sampling never makes a container_event


engine_events = obj(
    Action=st.sampled_from([*LIFECYCLE, "health_status: healthy", "exec_start: sh"]),
    status=st.sampled_from(list(LIFECYCLE)),
    id=st.just("f" * 64),
    timeNano=st.integers(min_value=0, max_value=2**70),
    Actor=obj(
        ID=st.just("f" * 64),
        Attributes=obj(
            name=st.sampled_from(["kato", "other"]),
            image=st.just("kato:3.10.1"),
            exitCode=st.sampled_from(["0", "137", "-1"]) | st.text(max_size=5),
        ),
    ),
)


@FAST
@given(engine_events)
def test_only_a_real_lifecycle_event_of_a_watched_container_is_published(raw: Any) -> None:
    published: list[Event] = []
    engine = GeneratedEngine(GeneratedApi([], {}, []))
    collector = ContainerCollector(
        engine, Selection(names=("kato",)), interval=1.0, append=published.append
    )

    async def deliver() -> None:
        if isinstance(raw, dict):
            collector._on_engine_event(raw)
        for task in list(collector._refreshes):
            await task

    try:
        asyncio.run(deliver())
    finally:
        collector._executor.shutdown(wait=True)
    actor = raw.get("Actor") if isinstance(raw, dict) else None
    attributes = actor.get("Attributes") if isinstance(actor, dict) else None
    name = attributes.get("name") if isinstance(attributes, dict) else None
    kind = None
    if isinstance(raw, dict):
        kind = raw["Action"] if raw.get("Action") is not None else raw.get("status")
    action = kind.partition(":")[0] if isinstance(kind, str) else None
    if published:
        (event,) = published
        assert name == "kato" and action in LIFECYCLE
        assert event.data["container"] == "kato" and event.data["action"] == action
        to_json(event.data)
    else:
        assert name != "kato" or action not in LIFECYCLE or not isinstance(kind, str)
