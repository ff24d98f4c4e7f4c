"""Logins across a cluster: two gateway processes over one real redis-server. A logout on one
node refuses the cookie on the other at once; wrong tokens spread over both lock the address on
both; and while Redis is down both keep answering (never a 500), each from what it knows."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.support.gateway import GatewayProcess
from tests.support.http import tls
from tests.support.redis_server import RedisServerProcess
from tests.support.waiting import wait_until

VIEWER = "viewer-token-4d8e2a6c1b9f3075"
GUESSER, NEIGHBOUR = "198.51.100.7", "198.51.100.8"  # told apart by the trusted proxy's header
WRONG = {"Authorization": "Bearer not-the-token-00000000"}
RIGHT = {"Authorization": f"Bearer {VIEWER}"}


def cluster_env(redis_url: str) -> dict[str, str]:
    return {
        "SSE_MONITOR_REDIS_URL": redis_url,
        "SSE_MONITOR_CLUSTER": "access-test",
        "SSE_MONITOR_REDIS_TIMEOUT": "0.5",
        "SSE_MONITOR_TOKEN": VIEWER,
        "SSE_MONITOR_AUTH_FAILURE_LIMIT": "3",
        "SSE_MONITOR_AUTH_FAILURE_WINDOW": "60",
        "SSE_MONITOR_TRUSTED_PROXIES": "127.0.0.1",
    }


@pytest.fixture
def nodes(module_kato: str, redis_url: str) -> Iterator[tuple[GatewayProcess, GatewayProcess]]:
    """Two gateways over one Redis, each with a database file of its own."""
    with (
        GatewayProcess(module_kato, env=cluster_env(redis_url)) as node_a,
        GatewayProcess(module_kato, env=cluster_env(redis_url)) as node_b,
    ):
        yield node_a, node_b


def read(
    node: GatewayProcess,
    client: str = NEIGHBOUR,
    headers: dict[str, str] | None = None,
    cookies: httpx.Cookies | None = None,
) -> httpx.Response:
    """GET /api/sessions/count as if from `client` (through the trusted proxy): it answers 200
    whatever the log holds (right after Redis lost its data, a node's log is empty)."""
    headers = {"X-Forwarded-For": client, **(headers or {})}
    return httpx.get(
        f"{node.url}/api/sessions/count", headers=headers, cookies=cookies, timeout=10, verify=tls()
    )


def log_in(node: GatewayProcess) -> httpx.Cookies:
    answer = httpx.post(f"{node.url}/login", json={"token": VIEWER}, timeout=10, verify=tls())
    assert answer.status_code == 200
    return answer.cookies


def errors_logged(node: GatewayProcess) -> list[str]:
    return [line["event"] for line in node.lines() if line.get("level") == "error"]


def test_a_logout_on_one_node_refuses_the_cookie_on_the_other(
    nodes: tuple[GatewayProcess, GatewayProcess],
) -> None:
    node_a, node_b = nodes
    cookies = log_in(node_a)
    assert read(node_b, cookies=cookies).status_code == 200  # one login for the whole cluster
    kept = log_in(node_b)  # another login, not logged out

    logout = httpx.post(f"{node_a.url}/logout", cookies=cookies, timeout=10, verify=tls())
    assert logout.status_code == 200
    refused = read(node_b, cookies=cookies)  # at once: nothing to wait for
    assert refused.status_code == 401
    assert read(node_a, cookies=cookies).status_code == 401
    access = httpx.get(f"{node_b.url}/api/access", cookies=cookies, timeout=10, verify=tls()).json()
    assert access["session"] is False
    for node in nodes:
        assert read(node, cookies=kept).status_code == 200
        assert errors_logged(node) == []


def test_wrong_tokens_spread_over_the_nodes_lock_the_address_on_both(
    nodes: tuple[GatewayProcess, GatewayProcess],
) -> None:
    node_a, node_b = nodes
    for node in (node_a, node_b, node_a):
        assert read(node, GUESSER, headers=WRONG).status_code == 401

    for node in nodes:  # the third locked the address everywhere, even for the right token
        locked = read(node, GUESSER, headers=RIGHT)
        assert locked.status_code == 429
        assert 1 <= int(locked.headers["Retry-After"]) <= 60
        login = httpx.post(
            f"{node.url}/login",
            json={"token": VIEWER},
            headers={"X-Forwarded-For": GUESSER},
            verify=tls(),
        )
        assert login.status_code == 429
        assert read(node, NEIGHBOUR, headers=RIGHT).status_code == 200  # per address

    locks = [
        line["client"]
        for node in nodes
        for line in node.lines()
        if line.get("event") == "access.locked_out"
    ]
    assert locks == [GUESSER]  # logged once in the cluster, by the node that locked it


def test_while_redis_is_down_both_nodes_answer_from_what_they_know(
    module_kato: str, own_redis: RedisServerProcess
) -> None:
    env = cluster_env(own_redis.url)
    with (
        GatewayProcess(module_kato, env=env) as node_a,
        GatewayProcess(module_kato, env=env) as node_b,
    ):
        gone, kept = log_in(node_a), log_in(node_a)
        assert httpx.post(f"{node_a.url}/logout", cookies=gone, verify=tls()).status_code == 200
        assert read(node_b, cookies=gone).status_code == 401  # B has heard of it from Redis

        own_redis.stop()
        for node in (node_a, node_b):
            assert read(node, cookies=gone).status_code == 401  # each refuses what it knows
            assert read(node, cookies=kept).status_code == 200
            assert read(node, headers=WRONG).status_code == 401  # still a 401, not a 500
            assert read(node, headers=RIGHT).status_code == 200
        logout = httpx.post(f"{node_b.url}/logout", cookies=kept, verify=tls())
        assert logout.status_code == 200  # never a 500
        assert read(node_b, cookies=kept).status_code == 401

        own_redis.start()  # back, and empty
        probe = log_in(node_a)  # a cookie neither has seen: asking about it asks Redis

        def all_answering() -> bool:
            for node in (node_a, node_b):
                assert read(node, cookies=probe).status_code == 200
                assert read(node, headers=RIGHT).status_code == 200
            return all(node.count("access.redis_answering") == 2 for node in (node_a, node_b))

        # Each store asks Redis again within its retry interval (a second).
        wait_until(all_answering, what="both stores of both nodes to ask Redis again")
        # B wrote the logout it took meanwhile when Redis answered it: A refuses that cookie.
        assert read(node_a, cookies=kept).status_code == 401

        for node in (node_a, node_b):
            changes = [
                (line["event"], line["store"], line["level"])
                for line in node.lines()
                if line.get("event", "").startswith("access.redis_")
            ]
            assert sorted(changes) == [
                ("access.redis_answering", "lockout", "info"),
                ("access.redis_answering", "revocations", "info"),
                ("access.redis_unreachable", "lockout", "warning"),
                ("access.redis_unreachable", "revocations", "warning"),
            ]
            assert errors_logged(node) == []
