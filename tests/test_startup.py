"""Starting the gateway the ways an operator does: the CLI and the Procfile's web command."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from tests.support.gateway import (
    GatewayProcess,
    ProcfileWeb,
    procfile_web_command,
    run_until_exit,
    serve_until_exit,
)
from tests.support.kato import Kato
from tests.support.processes import free_port
from tests.support.waiting import wait_until


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("SSE_MONITOR_POLL_INTERVAL", "often"),
        ("KATO_URL", "kato:8000"),
        ("SSE_MONITOR_RETRY_MS", "-5"),
    ],
)
def test_cli_refuses_a_bad_setting_and_names_it(name: str, value: str) -> None:
    result = serve_until_exit({name: value})
    assert result.returncode == 2
    assert name in result.stderr
    assert "Traceback" not in result.stderr


def test_procfile_refuses_a_bad_setting_and_names_it() -> None:
    env = {"PORT": str(free_port()), "SSE_MONITOR_HISTORY": "lots"}
    result = run_until_exit(procfile_web_command(), env)
    assert result.returncode != 0
    assert "SSE_MONITOR_HISTORY" in result.stdout + result.stderr


def test_procfile_web_command_serves_the_app_from_the_environment(tmp_path: Path) -> None:
    env = {
        "KATO_URL": "http://127.0.0.1:9",  # nothing listens there: KATO unreachable
        "SSE_MONITOR_POLL_INTERVAL": "0.2",
    }
    web = ProcfileWeb(tmp_path / "web.log", env)
    web.launch()
    answers: list[int] = []

    def ready() -> httpx.Response | None:
        assert web.running, web.log()
        try:
            answer = httpx.get(f"{web.url}/readyz", timeout=1)
        except httpx.TransportError:
            return None  # not listening yet
        answers.append(answer.status_code)
        return answer if answer.status_code == 200 else None

    try:
        # Ready once the first tick has completed: until then /readyz says 503, and only that.
        answer = wait_until(ready, timeout=20, what="/readyz to answer 200")
        assert set(answers[:-1]) <= {503}, answers
        assert answer.json()["kato_status"] == "unreachable"
    finally:
        web.stop()
    assert '"kato.unreachable"' in web.log()
    assert '"gateway.stopped"' in web.log()


async def test_the_page_folder_can_be_elsewhere_or_missing(kato: Kato, tmp_path: Path) -> None:
    page = tmp_path / "page"
    (page / "js").mkdir(parents=True)
    (page / "index.html").write_text("<!doctype html><title>elsewhere</title>")
    (page / "js" / "main.js").write_text("// module")
    with GatewayProcess(kato.url, env={"SSE_MONITOR_STATIC_DIR": str(page)}) as gateway:
        async with httpx.AsyncClient(base_url=gateway.url) as http:
            assert "elsewhere" in (await http.get("/")).text
            assert (await http.get("/static/js/main.js")).status_code == 200
    nowhere = {"SSE_MONITOR_STATIC_DIR": str(tmp_path / "nowhere")}
    with GatewayProcess(kato.url, env=nowhere) as gateway:
        async with httpx.AsyncClient(base_url=gateway.url) as http:
            missing = await http.get("/")
            assert missing.status_code == 404
            assert "no index.html" in missing.json()["error"]
            assert (await http.get("/static/js/main.js")).status_code == 404
            assert (await http.get("/api/snapshot")).status_code == 200
        assert '"page.missing"' in gateway.log()


def test_an_invalid_rules_file_stops_start_up_naming_file_rule_and_problem(
    tmp_path: Path,
) -> None:
    rules = tmp_path / "rules.toml"
    rules.write_text(
        '[[rule]]\nid = "cpu"\nmetric = "kato.resources.cpu_percent"\nop = ">"\n'
        'threshold = "lots"\nseverity = "warning"\n'
    )
    result = serve_until_exit({"SSE_MONITOR_ALERT_RULES": str(rules)})
    assert result.returncode == 2
    assert f"{rules}: rule 'cpu': `threshold` must be a number for '>'" in result.stderr
    assert "Traceback" not in result.stderr
    assert "gateway.listening" not in result.stdout + result.stderr


def test_a_bad_receiver_stops_start_up_naming_file_receiver_and_problem_not_its_url(
    tmp_path: Path,
) -> None:
    rules = tmp_path / "rules.toml"
    url = "https://hooks.example.com/services/T0001/B0002/s3cr3tWebhookToken"
    rules.write_text(
        f'[[receiver]]\nname = "chat"\nkind = "slack"\nurl = "{url}"\nsecret = "signing-key"\n'
        '[[route]]\nreceiver = "chat"\n'
    )
    result = serve_until_exit({"SSE_MONITOR_ALERT_RULES": str(rules)})
    assert result.returncode == 2
    assert f"{rules}: receiver 'chat': `secret` applies only to kind = 'webhook'" in result.stderr
    output = result.stdout + result.stderr
    assert "s3cr3tWebhookToken" not in output and "signing-key" not in output
    assert "Traceback" not in output and "gateway.listening" not in output


def test_a_receiver_url_that_cannot_be_split_stops_start_up_without_a_traceback(
    tmp_path: Path,
) -> None:
    """The log's secrets are read from the file before it is checked: a URL that urlsplit
    refuses must reach the check (and its message), not end the process there."""
    rules = tmp_path / "rules.toml"
    rules.write_text(
        '[[receiver]]\nname = "ops"\nkind = "webhook"\nurl = "http://[::1/s3cr3tPathToken"\n'
        '[[route]]\nreceiver = "ops"\n'
    )
    result = serve_until_exit({"SSE_MONITOR_ALERT_RULES": str(rules)})
    output = result.stdout + result.stderr
    assert result.returncode == 2, output
    assert f"{rules}: receiver 'ops': `url` is not a valid URL" in result.stderr
    assert "Traceback" not in output and "s3cr3tPathToken" not in output


@pytest.mark.parametrize("kind", ["missing folder", "not a database"])
def test_an_unusable_database_stops_start_up_and_is_named(tmp_path: Path, kind: str) -> None:
    if kind == "missing folder":
        path = tmp_path / "nowhere" / "alerts.db"
    else:
        path = tmp_path / "alerts.db"
        path.write_bytes(b"not sqlite at all\n" * 64)
    result = serve_until_exit({"SSE_MONITOR_DB": str(path)})
    assert result.returncode == 2
    assert f"SSE_MONITOR_DB: {path}" in result.stderr
    assert "Traceback" not in result.stderr
