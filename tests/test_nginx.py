"""deploy/nginx.conf in front of the gateway: the shipped file itself, run by a real nginx.

ShippedNginx (tests/support/nginx.py) includes deploy/nginx.conf with only its ports and its log's
path replaced, inside a main config whose http {} block turns on gzip for event streams, buffering
that ignores X-Accel-Buffering and a 1 s read timeout: the stream works only because the
shipped /events location overrides each of them.
"""

from __future__ import annotations

import asyncio
import re
import statistics
import time
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import pytest

from sse_monitor.settings import Settings
from tests.support.gateway import GatewayProcess
from tests.support.http import tls
from tests.support.kato import Kato
from tests.support.nginx import DEPLOY_CONF, ShippedNginx, skip_without_nginx
from tests.support.sse_client import SSEEvent, SSEStream
from tests.support.waiting import eventually

POLL = 0.2  # the gateway's poll interval in these tests (see GatewayProcess)
MAX_EXTRA_DELAY = 0.1  # seconds an event may take longer through nginx than direct
TOKEN = "s3cret-value-0123456789"
SPOOFED = "203.0.113.9"


@pytest.fixture
def nginx_installed() -> None:
    skip_without_nginx()


@contextmanager
def behind_nginx(
    kato: Kato, env: dict[str, str] | None = None, with_prefix_example: bool = False
) -> Iterator[tuple[GatewayProcess, ShippedNginx]]:
    with (
        GatewayProcess(kato.url, env=env) as gateway,
        ShippedNginx([gateway.port], with_prefix_example=with_prefix_example) as nginx,
    ):
        yield gateway, nginx


def seq(event_id: str | None) -> int:
    assert event_id is not None
    return int(event_id.rsplit("-", 1)[1])


def pings(stream: SSEStream) -> int:
    return sum(comment.startswith("ping") for comment in stream.parser.comments)


# --- the file itself ------------------------------------------------------------------------

Directive = tuple[str, list[str], list["Directive"]]  # name, arguments, block


def parse_nginx(text: str) -> list[Directive]:
    """nginx's config syntax, enough for this file: directives, blocks, quotes, comments."""
    tokens = re.findall(r'"(?:[^"\\]|\\.)*"|\'[^\']*\'|#[^\n]*|[{};]|[^\s{};"\']+', text)
    tokens = [t for t in tokens if not t.startswith("#")]
    position = 0

    def block() -> list[Directive]:
        nonlocal position
        directives: list[Directive] = []
        words: list[str] = []
        while position < len(tokens):
            token = tokens[position]
            position += 1
            if token == ";":
                directives.append((words[0], words[1:], []))
                words = []
            elif token == "{":
                directives.append((words[0], words[1:], block()))
                words = []
            elif token == "}":
                return directives
            else:
                words.append(token.strip("\"'") if token[0] in "\"'" else token)
        assert not words, f"unterminated directive {words}"
        return directives

    return block()


def find(directives: list[Directive], name: str, *args: str) -> list[Directive]:
    return [d for d in directives if d[0] == name and d[1][: len(args)] == list(args)]


def one(directives: list[Directive], name: str, *args: str) -> Directive:
    found = find(directives, name, *args)
    assert len(found) == 1, f"expected one `{name} {' '.join(args)}`, found {len(found)}"
    return found[0]


def nginx_seconds(value: str) -> float:
    """An nginx time (`1h`, `90s`, `1h30m`, `500ms`, `75`) in seconds."""
    units = {"ms": 0.001, "": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
    parts = re.fullmatch(r"(?:\d+(?:ms|s|m|h|d|w)?)+", value) and re.findall(
        r"(\d+)(ms|s|m|h|d|w)?", value
    )
    assert parts, f"not an nginx time: {value!r}"
    return sum(int(number) * units[unit] for number, unit in parts)


def test_the_shipped_file_has_every_sse_setting() -> None:
    """Read statically: the settings whose absence would only show after minutes or in logs."""
    top = parse_nginx(DEPLOY_CONF.read_text())
    upstream = one(top, "upstream")[2]
    assert one(upstream, "server")[1][0] == "127.0.0.1:8080"
    assert int(one(upstream, "keepalive")[1][0]) >= 1

    server = one(top, "server")[2]
    port, *listen_parameters = one(server, "listen")[1]
    assert port == "80"
    # a reconnect storm's connections wait in the queue rather than being dropped
    assert int(dict(p.split("=", 1) for p in listen_parameters)["backlog"]) >= 4096
    assert one(server, "proxy_http_version")[1] == ["1.1"]
    headers = {d[1][0].lower(): d[1][1] for d in find(server, "proxy_set_header")}
    assert headers == {
        "connection": "",
        "host": "$host",
        "x-forwarded-for": "$remote_addr",  # overwritten, never appended to
        "x-forwarded-proto": "$scheme",
    }

    events = one(server, "location", "=", "/events")[2]
    assert one(events, "proxy_pass")[1] == ["http://sse_monitor_gateway"]
    assert one(events, "proxy_buffering")[1] == ["off"]
    assert one(events, "proxy_cache")[1] == ["off"]
    assert one(events, "gzip")[1] == ["off"]
    # A location with a proxy_set_header of its own would drop the server's (Connection "").
    assert not find(events, "proxy_set_header")

    # The access log: the path, never the query string (nor a Referer that may carry one).
    log_name, log_format = one(top, "log_format")[1][0], " ".join(one(top, "log_format")[1][1:])
    variables = set(re.findall(r"\$(\w+)", log_format))
    assert "uri" in variables
    assert not variables & {"request", "request_uri", "args", "query_string", "http_referer"}
    assert not any(v.startswith("arg_") for v in variables)
    assert one(server, "access_log")[1][1] == log_name
    assert "$proxy_add_x_forwarded_for" not in str(top)


def test_the_shipped_upstream_skips_a_dead_node() -> None:
    """Several nodes (cluster mode): a node that refuses or hangs is passed over (each request
    tries the next node; after a few failures, for a while), and a POST is never sent to a
    second node."""
    top = parse_nginx(DEPLOY_CONF.read_text())
    upstream = one(top, "upstream")[2]
    parameters = dict(p.split("=", 1) for p in one(upstream, "server")[1][1:])
    # skipped after a few failures, not the first: a survivor slow to accept in a reconnect
    # storm is not dead
    assert 1 < int(parameters["max_fails"]) <= 5
    assert 1 <= nginx_seconds(parameters["fail_timeout"]) <= 60
    assert find(upstream, "least_conn"), "streams are balanced by open connections"
    assert find(upstream, "zone"), "the nodes' state is shared by nginx's workers"

    server = one(top, "server")[2]
    assert one(server, "proxy_next_upstream")[1] == ["error", "timeout"]
    assert nginx_seconds(one(server, "proxy_connect_timeout")[1][0]) <= 5
    for location in find(server, "location"):
        assert not find(location[2], "proxy_next_upstream"), location[1]


def test_the_read_timeout_is_far_above_the_ping_interval() -> None:
    """nginx's default (60 s) would cut an idle stream after 4 pings; the file says 1h."""
    server = one(parse_nginx(DEPLOY_CONF.read_text()), "server")[2]
    events = one(server, "location", "=", "/events")[2]
    read_timeout = nginx_seconds(one(events, "proxy_read_timeout")[1][0])
    ping = Settings().ping_interval
    assert read_timeout >= 10 * ping, f"proxy_read_timeout {read_timeout} s, pings every {ping} s"


@pytest.mark.parametrize("with_prefix_example", [False, True], ids=["root", "prefix-example"])
def test_nginx_accepts_the_wrapped_config(nginx_installed: None, with_prefix_example: bool) -> None:
    nginx = ShippedNginx([8080], with_prefix_example=with_prefix_example)
    try:
        result = nginx.check()
    finally:
        nginx.close()
    assert result.returncode == 0, result.stderr
    assert "test is successful" in result.stderr
    assert "[warn]" not in result.stderr, result.stderr


# --- streams through nginx ------------------------------------------------------------------


async def test_events_pass_through_nginx_without_delay(
    nginx_installed: None, kato: Kato, gateway: GatewayProcess
) -> None:
    with ShippedNginx([gateway.port]) as nginx:
        connecting = time.monotonic()
        async with SSEStream(f"{nginx.url}/events") as proxied:
            first = await proxied.wait_for_event("metrics", timeout=5)
            assert first.arrived - connecting < 1.0, "the first frame was held back"
            assert proxied.parser.retry is not None
            assert proxied.response is not None
            assert proxied.response.headers["content-type"].startswith("text/event-stream")
            assert "content-encoding" not in proxied.response.headers  # gzip off
            async with SSEStream(f"{gateway.url}/events") as direct:
                await direct.wait_for_event("metrics")
                for n in range(6):
                    # Straight into the simulator's state: an HTTP client made here would
                    # block this event loop (its SSL context) while frames are being timed.
                    kato.state.create_session(f"nginx-{n}")
                    for stream in (direct, proxied):
                        await stream.wait_for(
                            lambda _, s=stream, n=n: len(s.of("session_event")) > n
                        )
                last = direct.events[-1].id
                await proxied.wait_for(lambda events: any(e.id == last for e in events), 5)

    def arrivals(events: list[SSEEvent], names: tuple[str, ...]) -> dict[str, float]:
        return {e.id: e.arrived for e in events if e.id and e.event in names}

    direct_at = arrivals(direct.events, ("session_event", "metrics"))
    proxied_at = arrivals(proxied.events, ("session_event", "metrics"))
    sessions = arrivals(direct.events, ("session_event",))
    delays = {i: proxied_at[i] - direct_at[i] for i in direct_at if i in proxied_at}
    session_delays = [delays[i] for i in sessions]
    assert len(session_delays) == 6 and len(delays) >= 10
    figures = (
        f"nginx - direct, {len(session_delays)} session events: median "
        f"{statistics.median(session_delays) * 1000:.2f} ms, max {max(session_delays) * 1000:.2f}"
        f" ms; all {len(delays)} common events: median "
        f"{statistics.median(delays.values()) * 1000:.2f} ms, "
        f"max {max(delays.values()) * 1000:.2f} ms"
    )
    print(figures)
    assert max(delays.values()) <= MAX_EXTRA_DELAY, figures


@pytest.mark.parametrize("resume_with", ["header", "query"])
async def test_a_client_reconnecting_through_nginx_resumes(
    nginx_installed: None, kato: Kato, gateway: GatewayProcess, resume_with: str
) -> None:
    with ShippedNginx([gateway.port]) as nginx:
        async with SSEStream(f"{gateway.url}/events") as watcher:
            await watcher.wait_for_event("metrics")
            away = SSEStream(f"{nginx.url}/events")
            await away.open()
            await kato.create_session()
            await away.wait_for_event("session_event")
            await watcher.wait_for_event("session_event")
            await away.close()
            last_seen = away.parser.last_event_id
            assert last_seen is not None

            # While it is away: three changes, each seen by a separate tick.
            for n in range(3):
                await kato.create_session()
                await watcher.wait_for(lambda _, n=n: len(watcher.of("session_event")) >= n + 2)
            missed = [e.id for e in watcher.of("session_event") if seq(e.id) > seq(last_seen)]
            assert len(missed) == 3
            head = seq(watcher.events[-1].id)

            if resume_with == "header":
                back = SSEStream(f"{nginx.url}/events", headers={"Last-Event-ID": last_seen})
            else:
                back = SSEStream(f"{nginx.url}/events?last_event_id={last_seen}")
            async with back:
                # A metrics event newer than anything the watcher had: the replay, sorted
                # by id, is all in.
                await back.wait_for(
                    lambda events: any(e.event == "metrics" and seq(e.id) > head for e in events)
                )
        assert "reset" not in back.names()
        assert [e.id for e in back.of("session_event")] == missed
        assert [e.json()["data"]["current_count"] for e in back.of("session_event")] == [2, 3, 4]


async def test_keep_alive_pings_pass_through_nginx(nginx_installed: None, kato: Kato) -> None:
    # No new data after the first frame (one poll a minute): the pings are all that flows.
    env = {"SSE_MONITOR_PING_INTERVAL": "0.5", "SSE_MONITOR_POLL_INTERVAL": "60"}
    with behind_nginx(kato, env) as (_, nginx):
        async with SSEStream(f"{nginx.url}/events") as stream:
            await stream.wait_for_event("metrics")
            await stream.wait_for(lambda _: pings(stream) >= 4, timeout=5)
            assert not stream.ended.is_set()
            assert len(stream.of("metrics")) == 1


async def test_an_idle_stream_outlives_the_inherited_read_timeout(
    nginx_installed: None, kato: Kato
) -> None:
    """The wrapper's http {} says proxy_read_timeout 1s; /events in the shipped file says 1h.

    With nginx's default (60 s) this would be a minute-long test; the short inherited timeout
    shows in 3 s that the shipped location's own value is the one in force.
    """
    env = {"SSE_MONITOR_POLL_INTERVAL": "60"}  # and pings every 15 s: silence after the first frame
    with behind_nginx(kato, env) as (_, nginx):
        async with SSEStream(f"{nginx.url}/events") as stream:
            await stream.wait_for_event("metrics")
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(stream.ended.wait(), timeout=3)
        assert "timed out" not in nginx.error_log()


async def test_the_access_log_never_holds_a_query_string_token(
    nginx_installed: None, kato: Kato
) -> None:
    with behind_nginx(kato, {"SSE_MONITOR_TOKEN": TOKEN}) as (_, nginx):
        async with SSEStream(f"{nginx.url}/events?token={TOKEN}") as stream:
            await stream.wait_for_event("metrics")
        async with httpx.AsyncClient(base_url=nginx.url, timeout=5, verify=tls()) as client:
            snapshot = await client.get(
                f"/api/snapshot?token={TOKEN}", headers={"Referer": f"{nginx.url}/?token={TOKEN}"}
            )
            assert snapshot.status_code == 200, snapshot.text
            await client.get(f"/?token={TOKEN}")
        # nginx writes a stream's line when the stream ends (on its next write after the close).
        await eventually(
            lambda: all(path in nginx.access_log() for path in ("/events", "/api/snapshot", "/ ")),
            timeout=5,
            what="the access log lines",
        )
        log, errors = nginx.access_log(), nginx.error_log()
    assert "GET /events " in log and "GET /api/snapshot " in log and "GET / " in log, log
    assert TOKEN not in log and "token=" not in log, log
    assert TOKEN not in errors, errors


async def test_the_prefix_example_serves_the_gateway_under_monitor(
    nginx_installed: None, kato: Kato
) -> None:
    with behind_nginx(kato, with_prefix_example=True) as (_, nginx):
        async with httpx.AsyncClient(base_url=nginx.url, timeout=5, verify=tls()) as client:
            redirect = await client.get("/monitor")
            assert redirect.status_code == 301
            assert redirect.headers["location"].endswith("/monitor/")
            snapshot = await client.get("/monitor/api/snapshot")
            assert snapshot.status_code == 200 and "kato" in snapshot.json()

        connecting = time.monotonic()
        async with SSEStream(f"{nginx.url}/monitor/events") as stream:
            first = await stream.wait_for_event("metrics", timeout=5)
            assert first.arrived - connecting < 1.0
            assert stream.response is not None
            assert "content-encoding" not in stream.response.headers
        await kato.create_session()
        async with SSEStream(f"{nginx.url}/monitor/events?last_event_id={first.id}") as back:
            event = await back.wait_for_event("session_event")
            assert event.json()["data"]["current_count"] == 1
            assert "reset" not in back.names()
        await eventually(lambda: "GET /monitor/events " in nginx.access_log(), 5, "the log")


# --- the client's address -------------------------------------------------------------------


class SSEStreamFrom(SSEStream):
    """An SSEStream whose connection leaves from a given loopback address."""

    def __init__(self, url: str, local_address: str, headers: dict[str, str]) -> None:
        super().__init__(url, headers)
        self._client = httpx.AsyncClient(
            timeout=httpx.Timeout(10, read=None),
            transport=httpx.AsyncHTTPTransport(local_address=local_address),
            verify=tls(),
        )


async def test_a_spoofed_forwarded_for_does_not_reach_the_gateway(
    nginx_installed: None, kato: Kato
) -> None:
    """nginx overwrites X-Forwarded-For with its $remote_addr; the gateway trusts only nginx."""
    spoofed = {"X-Forwarded-For": SPOOFED}
    with behind_nginx(kato, {"SSE_MONITOR_TRUSTED_PROXIES": "127.0.0.1"}) as (gateway, nginx):
        async with (
            SSEStream(f"{nginx.url}/events", headers=spoofed) as local,
            SSEStreamFrom(f"{nginx.url}/events", "127.0.0.2", headers=spoofed) as other,
        ):
            await local.wait_for_event("metrics")
            await other.wait_for_event("metrics")
            async with httpx.AsyncClient(timeout=5, verify=tls()) as client:
                response = await client.get(f"{gateway.url}/api/streams")
    assert response.status_code == 200, response.text
    streams = response.json()
    # 127.0.0.1 is nginx's $remote_addr for the first client; the second one's connection
    # left from 127.0.0.2, which only X-Forwarded-For can have told the gateway.
    assert sorted(s["client"] for s in streams["streams"]) == ["127.0.0.1", "127.0.0.2"]
    assert streams["by_client"] == {"127.0.0.1": 1, "127.0.0.2": 1}
    assert SPOOFED not in response.text
