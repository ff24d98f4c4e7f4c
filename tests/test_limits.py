"""Stream limits, client addresses behind proxies, and GET /api/streams."""

from __future__ import annotations

import asyncio
import json

import httpx

from sse_monitor.networks import parse_networks
from sse_monitor.web.addresses import MAX_HOPS, client_address
from tests.support.gateway import GatewayProcess
from tests.support.http import tls
from tests.support.kato import Kato
from tests.support.nginx import ShippedNginx, skip_without_nginx
from tests.support.sse_client import SSEStream

ADMIN = "admin-token-7c2e91b0d4a85f13"
AS_ADMIN = {"Authorization": f"Bearer {ADMIN}"}


def admin_gateway(kato: Kato, **env: str) -> GatewayProcess:
    """The gateway with these settings and an admin token, for the test to read /api/streams."""
    return GatewayProcess(kato.url, env={**env, "SSE_MONITOR_ADMIN_TOKEN": ADMIN})


async def streams(gateway: GatewayProcess) -> dict:
    async with httpx.AsyncClient(timeout=10, verify=tls()) as client:
        return (await client.get(f"{gateway.url}/api/streams", headers=AS_ADMIN)).json()


async def open_count_becomes(gateway: GatewayProcess, count: int) -> None:
    async with httpx.AsyncClient(timeout=10, verify=tls()) as client:
        for _ in range(200):
            body = (await client.get(f"{gateway.url}/api/streams", headers=AS_ADMIN)).json()
            if body["open"] == count:
                return
            await asyncio.sleep(0.05)  # polling an endpoint, with a deadline
    raise AssertionError(f"open streams stayed at {body['open']}, expected {count}")


async def try_stream(url: str, headers: dict[str, str] | None = None) -> httpx.Response:
    async with (
        httpx.AsyncClient(timeout=10, verify=tls()) as client,
        client.stream("GET", url, headers=headers) as response,
    ):
        if response.status_code != 200:
            await response.aread()
        return response


async def test_past_the_total_the_extra_stream_gets_503_until_one_closes(kato: Kato) -> None:
    with admin_gateway(kato, SSE_MONITOR_MAX_STREAMS="3", SSE_MONITOR_RETRY_AFTER="7") as gateway:
        url = f"{gateway.url}/events"
        held = [SSEStream(url) for _ in range(3)]
        for stream in held:
            await stream.open()
            await stream.wait_for_event("metrics")
        refused = await try_stream(url)
        assert refused.status_code == 503
        assert refused.headers["retry-after"] == "7"
        assert refused.json()["retry_after_seconds"] == 7
        assert (await streams(gateway))["open"] == 3  # the refused one holds nothing
        await held.pop().close()
        await open_count_becomes(gateway, 2)
        async with SSEStream(url) as admitted:
            await admitted.wait_for_event("metrics")
            assert (await streams(gateway))["open"] == 3
        for stream in held:
            await stream.close()
        await open_count_becomes(gateway, 0)


async def test_per_client_limit_counts_the_real_address(kato: Kato) -> None:
    with admin_gateway(kato, SSE_MONITOR_MAX_STREAMS_PER_CLIENT="1") as gateway:
        url = f"{gateway.url}/events?topics=metrics,alerts"
        async with SSEStream(url) as first:
            await first.wait_for_event("metrics")
            # Another address in X-Forwarded-For: not believed from an untrusted peer.
            spoofed = await try_stream(url, {"X-Forwarded-For": "203.0.113.9"})
            assert spoofed.status_code == 429
            assert spoofed.headers["retry-after"] == "10"
            body = await streams(gateway)
            assert body["by_client"] == {"127.0.0.1": 1}
            assert body["by_topic"] == {"metrics": 1, "containers": 0, "sessions": 0, "alerts": 1}
            [row] = body["streams"]
            assert row["client"] == "127.0.0.1" and row["topics"] == ["metrics", "alerts"]
            assert row["pending_frames"] >= 0 and row["lag_seconds"] >= 0
        await open_count_becomes(gateway, 0)


async def test_behind_a_trusted_proxy_each_forwarded_address_has_its_limit(kato: Kato) -> None:
    env = {"SSE_MONITOR_MAX_STREAMS_PER_CLIENT": "1", "SSE_MONITOR_TRUSTED_PROXIES": "127.0.0.1"}
    with admin_gateway(kato, **env) as gateway:
        url = f"{gateway.url}/events"
        one = SSEStream(url, headers={"X-Forwarded-For": "198.51.100.1"})
        two = SSEStream(url, headers={"X-Forwarded-For": "203.0.113.9, 198.51.100.2"})
        async with one, two:
            await one.wait_for_event("metrics")
            await two.wait_for_event("metrics")
            third = await try_stream(url, {"X-Forwarded-For": "10.9.9.9, 198.51.100.1"})
            assert third.status_code == 429  # the hop nginx appended is the client
            body = await streams(gateway)
            assert body["by_client"] == {"198.51.100.1": 1, "198.51.100.2": 1}


async def test_api_streams_needs_the_admin_token(kato: Kato) -> None:
    with admin_gateway(kato) as gateway:
        async with httpx.AsyncClient(verify=tls()) as client:
            assert (await client.get(f"{gateway.url}/api/streams")).status_code == 403
            bad = await client.get(f"{gateway.url}/api/streams?limit=0", headers=AS_ADMIN)
            assert bad.status_code == 400


def test_client_addresses() -> None:
    proxies = parse_networks("127.0.0.1, 10.0.0.0/8")
    headers = {"x-forwarded-for": "198.51.100.7, 10.1.2.3"}
    assert client_address("127.0.0.1", headers, proxies) == "198.51.100.7"
    assert client_address("192.0.2.1", headers, proxies) == "192.0.2.1"  # not a proxy
    assert client_address("127.0.0.1", headers, ()) == "127.0.0.1"  # no proxies trusted
    assert client_address("127.0.0.1", {}, proxies) == "127.0.0.1"
    assert client_address("127.0.0.1", {"x-forwarded-for": "10.0.0.5"}, proxies) == "10.0.0.5"
    assert client_address("127.0.0.1", {"x-forwarded-for": "garbage"}, proxies) == "127.0.0.1"
    assert client_address("::1", {}, parse_networks("::1")) == "::1"


GARBAGE_HOPS = [
    "1.2.3.4, , ,x, [::1]:80, 999.1.1.1",
    "1.2.3.4, [::1]:80",
    "1.2.3.4, 198.51.100.7:8080",
    "1.2.3.4, 999.1.1.1",
    "1.2.3.4, \xe9\xff",
    "1.2.3.4, unknown",
    "1.2.3.4, 10.0.0.1/8",
    ",,,,",
    "",
    "x" * 10_000,
]


def test_garbage_in_x_forwarded_for_is_never_believed() -> None:
    proxies = parse_networks("127.0.0.1, 10.0.0.0/8")
    for forwarded in GARBAGE_HOPS:
        headers = {"x-forwarded-for": forwarded}
        assert client_address("127.0.0.1", headers, proxies) == "127.0.0.1", forwarded
        assert client_address("192.0.2.1", headers, proxies) == "192.0.2.1", forwarded
    empty = {"x-forwarded-for": "1.2.3.4, ,,,"}  # HTTP lists: empty elements are no element
    assert client_address("127.0.0.1", empty, proxies) == "1.2.3.4"
    scoped = {"x-forwarded-for": "fe80::1%eth0"}
    assert client_address("127.0.0.1", scoped, proxies) == "fe80::1%eth0"  # an address


def test_a_huge_x_forwarded_for_reads_only_the_last_hops() -> None:
    proxies = parse_networks("10.0.0.0/8")
    hops = ["198.51.100.1"] + ["10.0.0.1"] * 100_000
    assert client_address("10.0.0.2", {"x-forwarded-for": ", ".join(hops)}, proxies) == "10.0.0.1"
    near = ["198.51.100.1"] + ["10.0.0.1"] * (MAX_HOPS - 1)
    headers = {"x-forwarded-for": ", ".join(near)}
    assert client_address("10.0.0.2", headers, proxies) == "198.51.100.1"


async def test_a_trusted_proxy_passing_garbage_counts_on_its_own_address(kato: Kato) -> None:
    with admin_gateway(kato, SSE_MONITOR_TRUSTED_PROXIES="127.0.0.1") as gateway:
        url = f"{gateway.url}/events"
        async with SSEStream(url, headers={"X-Forwarded-For": GARBAGE_HOPS[0]}) as stream:
            await stream.wait_for_event("metrics")
            assert (await streams(gateway))["by_client"] == {"127.0.0.1": 1}
        await open_count_becomes(gateway, 0)


# --- a proxy that is not trusted --------------------------------------------------------------

UNTRUSTED = "proxy.untrusted_forwarded_for"


def readyz(url: str) -> httpx.Response:
    return httpx.get(f"{url}/readyz", timeout=10, verify=tls())


def test_x_forwarded_for_from_an_untrusted_peer_warns_once(kato: Kato) -> None:
    with GatewayProcess(kato.url) as gateway:
        assert readyz(gateway.url).json()["warnings"] == []
        httpx.get(f"{gateway.url}/healthz", verify=tls())  # no header: no warning
        assert gateway.logged_events(UNTRUSTED) == []
        for path in ("/healthz", "/api/snapshot", "/readyz", "/api/nope", "/api/access"):
            httpx.get(
                f"{gateway.url}{path}", headers={"X-Forwarded-For": "198.51.100.7"}, verify=tls()
            )
        answer = readyz(gateway.url)
        assert answer.status_code == 200  # a warning, not unreadiness
        [warning] = answer.json()["warnings"]
        assert "SSE_MONITOR_TRUSTED_PROXIES" in warning and "127.0.0.1" in warning
        # Each request's log line is written before its answer: all are in the file by now.
        lines = [json.loads(line) for line in gateway.log().splitlines() if UNTRUSTED in line]
        assert len(lines) == 1
        assert lines[0]["level"] == "warning"
        assert lines[0]["peer"] == "127.0.0.1"
        assert lines[0]["setting"] == "SSE_MONITOR_TRUSTED_PROXIES"


def test_x_forwarded_for_from_a_trusted_proxy_does_not_warn(kato: Kato) -> None:
    with GatewayProcess(kato.url, env={"SSE_MONITOR_TRUSTED_PROXIES": "127.0.0.1"}) as gateway:
        for _ in range(3):
            httpx.get(
                f"{gateway.url}/healthz", headers={"X-Forwarded-For": "198.51.100.7"}, verify=tls()
            )
        assert readyz(gateway.url).json()["warnings"] == []
        assert gateway.logged_events(UNTRUSTED) == []


def test_behind_the_shipped_nginx_without_the_setting_it_warns(kato: Kato) -> None:
    skip_without_nginx()
    with GatewayProcess(kato.url) as gateway, ShippedNginx([gateway.port]) as nginx:
        answer = readyz(nginx.url)
        assert answer.status_code == 200
        [warning] = answer.json()["warnings"]
        assert "SSE_MONITOR_TRUSTED_PROXIES=127.0.0.1" in warning
        assert gateway.logged_events(UNTRUSTED) == [UNTRUSTED]
    env = {"SSE_MONITOR_TRUSTED_PROXIES": "127.0.0.1"}
    with GatewayProcess(kato.url, env=env) as gateway, ShippedNginx([gateway.port]) as nginx:
        assert readyz(nginx.url).json()["warnings"] == []
        assert gateway.logged_events(UNTRUSTED) == []
