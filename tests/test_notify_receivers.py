"""Notification receivers and routes: a valid file, every kind of mistake, and routing."""

from __future__ import annotations

from pathlib import Path

import pytest

from sse_monitor.alerts.alert import Alert
from sse_monitor.notify.receivers import (
    DEFAULT_GROUP_WAIT,
    NotifyConfig,
    Receiver,
    ReceiverError,
    load_notify_config,
    parse_notify_config,
    receiver_secrets,
)
from sse_monitor.redact import Scrubber

RULE_IDS = ("cpu_high", "container_down", "restarts")
SOURCE = "/etc/sse-monitor/rules.toml"

VALID = """
[[rule]]
id = "restarts"
metric = "containers.*.restart_count"
op = "increased"
severity = "info"

[[receiver]]
name = "ops-hook"
kind = "webhook"
url = "https://hooks.example.com/sse"
secret = "s3cret-signing-key"
timeout = "5s"

[[receiver]]
name = "chat"
kind = "slack"
url = "https://hooks.slack.com/services/T000/B000/XXXXXXXXXXXXXXXXXXXXXXXX"
send_resolved = false

[[receiver]]
name = "am"
kind = "alertmanager"
url = "http://alice:pa55word@127.0.0.1:9099/alerts?token=abcd1234"

[[route]]
receiver = "ops-hook"
severities = ["critical"]
group_wait = "0s"

[[route]]
receiver = "chat"
rules = ["cpu_high", "container_down"]
group_wait = "1m"

[[route]]
receiver = "ops-hook"
severities = ["warning", "info"]

[[route]]
receiver = "am"
severities = ["critical"]
rules = ["container_down"]
"""


def make_alert(rule: str = "cpu_high", severity: str = "warning") -> Alert:
    return Alert(
        id="a1",
        rule=rule,
        subject=None,
        metric="kato.resources.cpu_percent",
        severity=severity,
        state="firing",
        message="CPU high",
        value=93.1,
        threshold=80,
        started_at="2026-11-30T12:00:00.000000+00:00",
    )


def parse(text: str) -> NotifyConfig:
    return parse_notify_config(text, source=SOURCE, rule_ids=RULE_IDS)


def receivers_of(config: NotifyConfig, alert: Alert, transition: str) -> list[str]:
    return [route.receiver.name for route in config.routes_for(alert, transition)]


def test_a_valid_file_gives_its_receivers_and_routes() -> None:
    config = parse(VALID)
    hook, chat, am = config.receivers
    assert (hook.name, hook.kind, hook.secret, hook.timeout) == (
        "ops-hook",
        "webhook",
        "s3cret-signing-key",
        5.0,
    )
    assert hook.send_resolved is True and chat.send_resolved is False
    assert (am.kind, am.timeout) == ("alertmanager", 10.0)
    assert [route.receiver for route in config.routes] == [hook, chat, hook, am]
    assert [route.group_wait for route in config.routes] == [0.0, 60.0, DEFAULT_GROUP_WAIT, 10.0]
    assert config.routes[0].severities == ("critical",) and config.routes[0].rules is None
    assert config.routes[1].rules == ("cpu_high", "container_down")


def test_no_file_and_a_file_without_receivers_notify_no_one(tmp_path: Path) -> None:
    assert load_notify_config(None, RULE_IDS) == NotifyConfig()
    path = tmp_path / "rules.toml"
    path.write_text(VALID.split("[[receiver]]")[0])
    config = load_notify_config(path, RULE_IDS)
    assert config.receivers == () and config.routes_for(make_alert(), "fired") == ()


def test_routes_by_severity_and_rule_id() -> None:
    config = parse(VALID)
    assert receivers_of(config, make_alert("cpu_high", "warning"), "fired") == ["chat", "ops-hook"]
    assert receivers_of(config, make_alert("restarts", "info"), "fired") == ["ops-hook"]
    assert receivers_of(config, make_alert("container_down", "critical"), "fired") == [
        "ops-hook",
        "chat",
        "am",
    ]
    # severity and rules together: both must match
    assert receivers_of(config, make_alert("restarts", "critical"), "fired") == ["ops-hook"]


def test_the_first_matching_route_of_a_receiver_gives_its_group_wait() -> None:
    config = parse(VALID)
    (critical,) = [
        route
        for route in config.routes_for(make_alert("restarts", "critical"), "fired")
        if route.receiver.name == "ops-hook"
    ]
    (warning,) = [
        route
        for route in config.routes_for(make_alert("restarts", "warning"), "fired")
        if route.receiver.name == "ops-hook"
    ]
    assert (critical.group_wait, warning.group_wait) == (0.0, DEFAULT_GROUP_WAIT)


def test_a_receiver_two_routes_send_to_is_notified_once() -> None:
    second = "[[route]]\nreceiver = 'hook'\nseverities = ['warning']\ngroup_wait = '0s'\n"
    config = parse(valid_receiver() + second)
    assert len(config.routes) == 2
    (route,) = config.routes_for(make_alert(severity="warning"), "fired")
    assert (route.receiver.name, route.group_wait) == ("hook", DEFAULT_GROUP_WAIT)


def test_resolves_go_only_where_send_resolved() -> None:
    config = parse(VALID)
    alert = make_alert("container_down", "critical")
    assert receivers_of(config, alert, "acknowledged") == ["ops-hook", "chat", "am"]
    assert receivers_of(config, alert, "resolved") == ["ops-hook", "am"]
    with pytest.raises(ValueError, match="unknown transition"):
        config.routes_for(alert, "pending")


def test_secrets_are_redacted_for_logs() -> None:
    hook, chat, am = parse(VALID).receivers
    assert hook.redacted_url == "https://hooks.example.com/***"
    assert chat.redacted_url == "https://hooks.slack.com/***"
    assert am.redacted_url == "http://127.0.0.1:9099/***"
    assert "s3cret" not in repr(hook) and "XXXX" not in repr(chat) and "pa55" not in repr(am)
    scrubber = Scrubber(parse(VALID).secrets)
    line = (
        "POST https://hooks.slack.com/services/T000/B000/XXXXXXXXXXXXXXXXXXXXXXXX failed; "
        "signing with s3cret-signing-key; am at 127.0.0.1:9099/alerts?token=abcd1234 as pa55word; "
        "Slack says: no such token XXXXXXXXXXXXXXXXXXXXXXXX"
    )
    scrubbed = scrubber.text(line)
    for secret in ("XXXXXXXXXXXXXXXXXXXXXXXX", "s3cret-signing-key", "abcd1234", "pa55word"):
        assert secret not in scrubbed, scrubbed
    assert scrubber.text("services T000 B000 alerts") == "services T000 B000 alerts"


def test_a_short_query_value_is_masked_in_its_url_not_in_every_line() -> None:
    """`?format=info` names no secret: masking every "info" would mask the level of every log
    line (and `source=alerts` every logger of the alerts). A short value is masked where it
    stands in its URL; a token-like one (as long as a path token) wherever it turns up."""
    url = "https://h.example/hook?format=info&source=alerts&key=k3y9&sig=Q0x9ZmVhc2hvb2tzaWdu"
    scrubber = Scrubber(Receiver("hook", "webhook", url).secrets)
    line = '{"event": "notify.grouped", "logger": "sse_monitor.alerts", "level": "info"}'
    assert scrubber.text(line) == line
    for leaking in (
        f"POST {url} failed",
        "at /hook?format=info&key=k3y9 now",
        "sig Q0x9ZmVhc2hvb2tzaWdu",
    ):
        scrubbed = scrubber.text(leaking)
        assert "k3y9" not in scrubbed and "Q0x9ZmVhc2hvb2tzaWdu" not in scrubbed, scrubbed


def valid_receiver(**fields: object) -> str:
    """One [[receiver]] with its route; some fields replaced (None drops a field)."""
    base: dict[str, object] = {"name": "hook", "kind": "webhook", "url": "https://h.example/x"}
    base.update(fields)
    lines = ["[[receiver]]"]
    lines += [f"{key} = {toml_value(value)}" for key, value in base.items() if value is not None]
    return "\n".join(lines) + '\n[[route]]\nreceiver = "hook"\n'


def toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f'"{value}"'
    return str(value)


@pytest.mark.parametrize(
    ("fields", "problem"),
    [
        ({"name": None}, "`name` is missing"),
        ({"kind": None}, "`kind` is missing"),
        ({"url": None}, "`url` is missing"),
        ({"kind": "email"}, "`kind` 'email' is not one of webhook, slack, alertmanager"),
        ({"url": "ftp://h.example/x"}, "must start with http:// or https://, not 'ftp'"),
        ({"url": "https:///x"}, "`url` has no host"),
        ({"url": "http://h.example:99999/"}, "`url` is not a valid URL"),
        ({"url": "http://[::1/x"}, "`url` is not a valid URL"),
        # urlsplit takes these; httpx refuses them at every attempt: a refusal at start-up
        ({"url": "https://h.example/x\\u0001"}, "`url` is not a valid URL"),
        ({"url": "https://h.example/" + "x" * 70_000}, "`url` is not a valid URL"),
        ({"kind": "slack", "secret": "abc"}, "`secret` applies only to kind = 'webhook'"),
        ({"secret": ""}, "`secret` must be a non-empty string"),
        ({"send_resolved": "yes"}, "`send_resolved` must be true or false"),
        ({"timeout": "soon"}, "`timeout`: 'soon' is not a duration"),
        ({"timeout": "0s"}, "`timeout` must be more than 0"),
        ({"timeout": "1h"}, "`timeout` must be more than 0 and at most 300 s"),
        ({"colour": "red"}, "unknown key 'colour'"),
    ],
)
def test_a_bad_receiver_names_the_file_the_receiver_and_the_problem(
    fields: dict[str, object], problem: str
) -> None:
    with pytest.raises(ReceiverError) as caught:
        parse(valid_receiver(**fields))
    message = str(caught.value)
    name = "'#1'" if fields.get("name", "") is None else "'hook'"
    assert message.startswith(f"{SOURCE}: receiver {name}: "), message
    assert problem in message, message


def test_a_receiver_name_with_a_line_break_is_refused() -> None:
    with pytest.raises(ReceiverError) as caught:
        parse(valid_receiver(name="hook\\n").replace('receiver = "hook"', 'receiver = "hook\\n"'))
    assert "`name` must be 1-64 letters, digits" in str(caught.value)


def test_the_secrets_of_a_file_that_start_up_will_refuse_are_still_read(tmp_path: Path) -> None:
    """They are read before the file is checked (for the log's scrubber): a URL that urlsplit
    refuses is masked whole, and does not stop the reading."""
    path = tmp_path / "rules.toml"
    path.write_text(valid_receiver(url="http://[::1/s3cr3t-path", secret="signing-key"))
    assert set(receiver_secrets(path)) >= {"http://[::1/s3cr3t-path", "signing-key"}


def test_a_bad_receiver_url_is_never_quoted() -> None:
    with pytest.raises(ReceiverError) as caught:
        parse(valid_receiver(url="ftp://user:hunter22@h.example/x?token=zzzz9999"))
    assert "hunter22" not in str(caught.value) and "zzzz9999" not in str(caught.value)
    assert "receiver 'hook'" in str(caught.value)


def test_a_receiver_name_used_twice_and_one_without_a_route_are_refused() -> None:
    twice = valid_receiver() + valid_receiver()
    with pytest.raises(
        ReceiverError, match=rf"^{SOURCE}: receiver 'hook': the name is used by an earlier one"
    ):
        parse(twice)
    alone = '[[receiver]]\nname = "lone"\nkind = "slack"\nurl = "https://h.example/x"\n'
    with pytest.raises(ReceiverError, match=rf"^{SOURCE}: receiver 'lone': no \[\[route\]\]"):
        parse(valid_receiver() + alone)


@pytest.mark.parametrize(
    ("route", "label", "problem"),
    [
        ("severities = ['critical']", "route #2", "`receiver` is missing"),
        ("receiver = 'nobody'", "route #2 (to 'nobody')", "'nobody' is not a [[receiver]]"),
        ("receiver = 'hook'\nseverities = ['urgent']", "(to 'hook')", "'urgent' is not a severity"),
        ("receiver = 'hook'\nseverities = []", "(to 'hook')", "`severities` is empty"),
        ("receiver = 'hook'\nrules = ['cpu']", "(to 'hook')", "'cpu' is not a rule id"),
        ("receiver = 'hook'\nrules = 'cpu_high'", "(to 'hook')", "must be a list of strings"),
        ("receiver = 'hook'\ngroup_wait = 'later'", "(to 'hook')", "`group_wait`: 'later'"),
        ("receiver = 'hook'\ncontinue = true", "(to 'hook')", "unknown key 'continue'"),
    ],
)
def test_a_bad_route_names_the_file_the_route_and_the_problem(
    route: str, label: str, problem: str
) -> None:
    with pytest.raises(ReceiverError) as caught:
        parse(valid_receiver() + "[[route]]\n" + route + "\n")
    message = str(caught.value)
    assert message.startswith(f"{SOURCE}: route #2"), message
    assert label in message and problem in message, message


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("[[receiver]\n", "not valid TOML"),
        ("receiver = 'hook'\n", "`receiver` must be an array of tables, written [[receiver]]"),
        ("route = 1\n", "`route` must be an array of tables, written [[route]]"),
    ],
)
def test_a_file_of_the_wrong_shape_names_the_file(text: str, problem: str) -> None:
    with pytest.raises(ReceiverError, match=rf"^{SOURCE}: ") as caught:
        parse(text)
    assert problem in str(caught.value)


def test_an_unreadable_file_names_the_file(tmp_path: Path) -> None:
    missing = tmp_path / "none.toml"
    with pytest.raises(ReceiverError, match=rf"^{missing}: cannot read the rules file"):
        load_notify_config(missing, RULE_IDS)


@pytest.mark.parametrize("wait", ["-1s", "2h"])
def test_a_group_wait_past_an_hour_or_below_zero_is_refused(wait: str) -> None:
    with pytest.raises(ReceiverError) as caught:
        parse(valid_receiver() + f'group_wait = "{wait}"\n')
    assert "route #1 (to 'hook'): `group_wait`" in str(caught.value)
    if wait == "2h":
        assert "`group_wait` must be from 0 to 3600 s" in str(caught.value)
