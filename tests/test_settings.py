"""Settings from the environment: defaults, parsing, and errors that name the variable."""

import pytest

from sse_monitor.settings import ConfigError, Settings


def test_defaults() -> None:
    settings = Settings.from_env({})
    assert settings.kato_url == "http://localhost:8000"
    assert settings.poll_interval == 3.0
    assert settings.session_events is True
    assert settings.ping_interval == 15.0
    assert settings.retry_ms == 3000
    assert settings.upstream_timeout < settings.poll_interval


def test_values_are_parsed() -> None:
    settings = Settings.from_env(
        {
            "KATO_URL": "https://kato.internal:9000",
            "SSE_MONITOR_POLL_INTERVAL": "0.5",
            "SSE_MONITOR_SESSION_EVENTS": "off",
            "SSE_MONITOR_HISTORY": "50",
            "SSE_MONITOR_PING_INTERVAL": "5",
            "SSE_MONITOR_RETRY_MS": "1500",
        }
    )
    assert settings.poll_interval == 0.5
    assert settings.session_events is False
    assert settings.history_size == 50
    assert settings.retry_ms == 1500
    assert settings.upstream_timeout == pytest.approx(0.4)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("KATO_URL", "ftp://kato"),
        ("KATO_URL", "not a url"),
        ("SSE_MONITOR_POLL_INTERVAL", "fast"),
        ("SSE_MONITOR_POLL_INTERVAL", "0"),
        ("SSE_MONITOR_POLL_INTERVAL", "nan"),
        ("SSE_MONITOR_SESSION_EVENTS", "maybe"),
        ("SSE_MONITOR_HISTORY", "1.5"),
        ("SSE_MONITOR_HISTORY", "0"),
        ("SSE_MONITOR_PING_INTERVAL", "-1"),
        ("SSE_MONITOR_RETRY_MS", "soon"),
        ("SSE_MONITOR_LOG_LEVEL", "loud"),
        ("SSE_MONITOR_CHART_RETENTION", "1h,24h"),
        ("SSE_MONITOR_CHART_RETENTION", "1h,24h,forever"),
        ("SSE_MONITOR_CHART_RETENTION", "10s,24h,30d"),
    ],
)
def test_bad_values_name_the_variable(name: str, value: str) -> None:
    with pytest.raises(ConfigError, match=name):
        Settings.from_env({name: value})


def test_chart_retention_is_three_durations() -> None:
    assert Settings().chart_retention == (3600, 86400, 30 * 86400)
    settings = Settings.from_env({"SSE_MONITOR_CHART_RETENTION": "2h, 2d, 90d"})
    assert settings.chart_retention == (7200, 2 * 86400, 90 * 86400)


def test_timeout_must_be_shorter_than_the_interval() -> None:
    with pytest.raises(ConfigError, match="SSE_MONITOR_KATO_TIMEOUT"):
        Settings.from_env({"SSE_MONITOR_POLL_INTERVAL": "1", "SSE_MONITOR_KATO_TIMEOUT": "2"})


def test_credentials_in_kato_url_stay_out_of_errors() -> None:
    with pytest.raises(ConfigError) as caught:
        Settings.from_env({"KATO_URL": "http://admin:hunter2@kato:notaport"})
    assert "hunter2" not in str(caught.value)
