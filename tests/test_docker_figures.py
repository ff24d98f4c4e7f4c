"""The container figures, computed as the Docker CLI computes them, on recorded engine samples."""

from __future__ import annotations

import pytest

from sse_monitor.settings import ConfigError, Settings
from sse_monitor.sources.docker import Selection, engine_error
from sse_monitor.sources.docker_figures import (
    block_io_bytes,
    cpu_percent,
    describe,
    engine_time,
    memory,
    missing,
    network_bytes,
    online_cpus,
    pids,
    totals,
)


def sample(total: int, system: int, cpus: int | None = 2, percpu: int = 2) -> dict:
    cpu_stats: dict = {
        "cpu_usage": {"total_usage": total, "percpu_usage": [0] * percpu},
        "system_cpu_usage": system,
    }
    if cpus is not None:
        cpu_stats["online_cpus"] = cpus
    return {"cpu_stats": cpu_stats}


def test_cpu_percent_is_the_clis_formula() -> None:
    # half a core on a 2-CPU machine: 0.5 s of CPU while the system counted 2 x 1 s
    before, after = sample(10_000_000_000, 100_000_000_000), sample(10_500_000_000, 102_000_000_000)
    assert cpu_percent(after, before) == 50.0


def test_cpu_percent_falls_back_to_percpu_length() -> None:
    before = sample(0, 0, cpus=None, percpu=4)
    after = sample(1_000_000_000, 4_000_000_000, cpus=None, percpu=4)
    assert online_cpus(after) == 4
    assert cpu_percent(after, before) == 100.0


@pytest.mark.parametrize(
    ("after", "before"),
    [
        (sample(5, 100), sample(5, 100)),  # no system time passed
        (sample(1, 200), sample(5, 100)),  # counter went back: a restarted container
        ({"cpu_stats": {}}, sample(5, 100)),  # an empty first sample (precpu_stats)
    ],
)
def test_cpu_percent_unknown_rather_than_wrong(after: dict, before: dict) -> None:
    assert cpu_percent(after, before) is None


def test_memory_without_page_cache_cgroup_v1() -> None:
    stats = {
        "memory_stats": {
            "usage": 10_000_000,
            "limit": 67108864,
            "stats": {"total_inactive_file": 4_000_000, "inactive_file": 1, "cache": 9_000_000},
        }
    }
    assert memory(stats) == {"used": 6_000_000, "limit": 67108864, "percent": 8.94}


def test_memory_without_page_cache_cgroup_v2() -> None:
    stats = {
        "memory_stats": {
            "usage": 10_000_000,
            "limit": 20_000_000,
            "stats": {"inactive_file": 2_000_000, "file": 5_000_000},
        }
    }
    assert memory(stats) == {"used": 8_000_000, "limit": 20_000_000, "percent": 40.0}


def test_memory_of_a_stopped_container_is_unknown() -> None:
    assert memory({"memory_stats": {}}) == {"used": None, "limit": None, "percent": None}


def test_network_and_block_io_sum_interfaces_and_operations() -> None:
    stats = {
        "networks": {
            "eth0": {"rx_bytes": 100, "tx_bytes": 10},
            "eth1": {"rx_bytes": 5, "tx_bytes": 1},
        },
        "blkio_stats": {
            "io_service_bytes_recursive": [
                {"op": "Read", "value": 4096},
                {"op": "read", "value": 4096},  # cgroup v2 spells it in lower case
                {"op": "Write", "value": 512},
                {"op": "Total", "value": 8704},
            ]
        },
        "pids_stats": {"current": 7},
    }
    assert network_bytes(stats) == (105, 11)
    assert block_io_bytes(stats) == (8192, 512)
    assert pids(stats) == 7
    assert block_io_bytes({"blkio_stats": {"io_service_bytes_recursive": None}}) == (0, 0)


def test_engine_times_become_iso_with_an_offset() -> None:
    assert engine_time("2026-11-25T14:31:26.040651499Z") == "2026-11-25T14:31:26.040651+00:00"
    assert engine_time("2026-11-25T14:31:26Z") == "2026-11-25T14:31:26+00:00"
    assert engine_time("0001-01-01T00:00:00Z") is None
    assert engine_time("garbage") is None


def test_describe_reads_state_health_restarts_and_limits() -> None:
    entry = {"Id": "a" * 64, "Names": ["/kato"], "Image": "kato:3.10"}
    inspected = {
        "Id": "a" * 64,
        "RestartCount": 2,
        "State": {
            "Status": "running",
            "Restarting": False,
            "OOMKilled": False,
            "StartedAt": "2026-11-25T14:31:26.040651499Z",
            "Health": {"Status": "unhealthy"},
        },
        "Config": {"Image": "kato:3.10"},
        "HostConfig": {"NanoCpus": 1_500_000_000},
    }
    described = describe(entry, inspected)
    assert described["name"] == "kato" and described["id"] == "a" * 12
    assert described["health"] == "unhealthy" and described["restart_count"] == 2
    assert described["cpu_limit"] == 1.5
    quota = {**inspected, "HostConfig": {"CpuQuota": 50000, "CpuPeriod": 100000}}
    assert describe(entry, quota)["cpu_limit"] == 0.5
    restarting = {**inspected, "State": {**inspected["State"], "Restarting": True}}
    assert describe(entry, restarting)["status"] == "restarting"


def test_totals_skip_unknown_figures() -> None:
    running = {
        **missing("a"),
        "status": "running",
        "cpu_percent": 12.5,
        "memory": {"used": 100, "limit": 1000, "percent": 10.0},
        "network": {"rx_bytes": 5, "tx_bytes": 6, "rx_rate": 1.0, "tx_rate": 2.0},
        "block_io": {"read_bytes": 7, "write_bytes": 8},
        "pids": 3,
    }
    result = totals([running, missing("b")])
    assert result["watched"] == 2 and result["running"] == 1
    assert result["cpu_percent"] == 12.5 and result["memory_used"] == 100
    assert result["rx_rate"] == 1.0 and result["pids"] == 3


def test_selection_by_name_label_or_all() -> None:
    assert Selection(names=("kato",)).matches("kato", {})
    assert not Selection(names=("kato",)).matches("other", {})
    assert Selection(label="com.docker.compose.project=kato").matches(
        "x", {"com.docker.compose.project": "kato"}
    )
    assert not Selection(label="com.docker.compose.project=kato").matches(
        "x", {"com.docker.compose.project": "other"}
    )
    assert Selection(label="monitored").matches("x", {"monitored": ""})
    assert Selection().matches("anything", {})


def test_engine_errors_say_what_to_do() -> None:
    assert "permission denied" in engine_error(PermissionError(13, "Permission denied"))
    assert "no Docker socket" in engine_error(FileNotFoundError(2, "No such file or directory"))
    assert "***@" in engine_error(RuntimeError("tcp://admin:secret@engine:2376 failed"))


def test_container_settings() -> None:
    assert Settings.from_env({}).watched_names == (
        "kato",
        "kato-clickhouse",
        "kato-qdrant",
        "kato-redis",
    )
    assert Settings.from_env({"SSE_MONITOR_CONTAINERS": "a, b"}).watched_names == ("a", "b")
    assert Settings.from_env({"SSE_MONITOR_CONTAINERS": "*"}).watched_names == ()
    labelled = Settings.from_env({"SSE_MONITOR_CONTAINER_LABEL": "com.docker.compose.project=kato"})
    assert labelled.watched_names == ()
    with pytest.raises(ConfigError, match="SSE_MONITOR_CONTAINERS"):
        Settings.from_env({"SSE_MONITOR_CONTAINERS": "bad name!"})
    with pytest.raises(ConfigError, match="both set"):
        Settings.from_env({"SSE_MONITOR_CONTAINERS": "a", "SSE_MONITOR_CONTAINER_LABEL": "x=y"})
    with pytest.raises(ConfigError, match="SSE_MONITOR_CONTAINER_STATS"):
        Settings.from_env({"SSE_MONITOR_CONTAINER_STATS": "sometimes"})


@pytest.mark.parametrize(
    "stats",
    [
        {"networks": {"eth0": "down"}, "blkio_stats": {"io_service_bytes_recursive": "x"}},
        {"networks": [1], "memory_stats": {"usage": -5, "limit": 2**70}, "pids_stats": []},
        {"networks": {"eth0": {"rx_bytes": "12", "tx_bytes": True}}, "cpu_stats": "busy"},
        {"memory_stats": {"usage": 10, "limit": 0, "stats": {"inactive_file": 1.5}}},
    ],
)
def test_odd_engine_figures_are_unknown_not_errors(stats: dict) -> None:
    assert network_bytes(stats) == (None, None) or stats.get("networks") is None
    assert block_io_bytes(stats) in ((None, None), (0, 0))
    assert memory(stats)["percent"] is None
    assert pids(stats) is None
    assert cpu_percent(stats, stats) is None
    assert online_cpus(stats) == 1


def test_describe_survives_an_odd_inspect_answer() -> None:
    inspected = {
        "Id": 5,
        "State": {"Status": {"x": 1}, "Running": "yes", "Health": "ok", "OOMKilled": "no"},
        "Config": [],
        "HostConfig": {"NanoCpus": "2", "CpuQuota": -1, "CpuPeriod": 100000},
        "RestartCount": -3,
    }
    described = describe({"Id": "f" * 64, "Names": "kato"}, inspected)
    assert described["status"] == "unknown" and described["health"] is None
    assert described["restart_count"] is None and described["cpu_limit"] is None
    assert described["oom_killed"] is False and described["id"] == "f" * 12
