"""GET /api/sessions: KATO's sessions read from a real redis-server holding KATO's layout."""

from __future__ import annotations

from datetime import timedelta

import httpx
import pytest
import redis

from tests.support.gateway import GatewayProcess
from tests.support.http import tls
from tests.support.kato import Kato
from tests.support.kato_redis import T0, seed


def snapshot_keys(url: str) -> dict[str, object]:
    client = redis.Redis.from_url(url, decode_responses=True)
    try:
        return {key: client.type(key) for key in client.scan_iter("*")}
    finally:
        client.close()


def test_pages_newest_first_with_the_total(kato: Kato, redis_url: str) -> None:
    with GatewayProcess(kato.url, env={"KATO_REDIS_URL": redis_url}) as gateway:
        assert snapshot_keys(redis_url) == {}  # starting wrote nothing
        # Seeded once the gateway is up (a loaded machine may take long to start it), so
        # that the TTLs below have barely moved when it reads them.
        newest_first = seed(redis_url, 23)
        before = snapshot_keys(redis_url)
        seen = []
        for offset in (0, 10, 20):
            page = httpx.get(
                f"{gateway.url}/api/sessions", params={"offset": offset, "limit": 10}, verify=tls()
            ).json()
            assert page["available"] is True and page["total"] == 23
            assert page["truncated"] is False
            assert (page["offset"], page["limit"]) == (offset, 10)
            seen.extend(page["sessions"])
        assert [s["session_id"] for s in seen] == newest_first
        first = seen[0]
        assert first["node_id"] == "node-1"  # index 22
        assert first["created_at"] == (T0 + timedelta(minutes=22)).isoformat()
        assert first["expires_at"] == (T0 + timedelta(minutes=82)).isoformat()
        assert 600 < first["ttl_remaining_seconds"] <= 622
        default = httpx.get(f"{gateway.url}/api/sessions", verify=tls()).json()
        assert len(default["sessions"]) == 10
        beyond = httpx.get(
            f"{gateway.url}/api/sessions", params={"offset": 100}, verify=tls()
        ).json()
        assert beyond["sessions"] == [] and beyond["total"] == 23
    assert snapshot_keys(redis_url) == before  # read-only: nothing written, nothing removed


@pytest.mark.parametrize(
    ("params", "parameter"),
    [
        ({"offset": "-1"}, "offset"),
        ({"offset": "x"}, "offset"),
        ({"limit": "0"}, "limit"),
        ({"limit": "101"}, "limit"),
        ({"limit": "1.5"}, "limit"),
    ],
)
def test_bad_parameters_are_a_400(
    module_gateway: GatewayProcess, params: dict, parameter: str
) -> None:
    response = httpx.get(f"{module_gateway.url}/api/sessions", params=params, verify=tls())
    assert response.status_code == 400
    assert response.json()["parameter"] == parameter


def test_without_kato_redis_url_it_says_how_to_enable_it(gateway: GatewayProcess) -> None:
    body = httpx.get(f"{gateway.url}/api/sessions", verify=tls()).json()
    assert body["available"] is False
    assert "KATO_REDIS_URL" in body["error"]
    assert body["sessions"] == []


def test_an_unreachable_redis_is_a_503_without_its_password(kato: Kato) -> None:
    url = "redis://:hunter2-password@127.0.0.1:9/0"  # nothing listens on port 9
    with GatewayProcess(kato.url, env={"KATO_REDIS_URL": url}) as gateway:
        response = httpx.get(f"{gateway.url}/api/sessions", verify=tls())
        assert response.status_code == 503
        assert "cannot be read" in response.json()["error"]
        assert "hunter2" not in response.text
        assert "hunter2" not in gateway.log()
