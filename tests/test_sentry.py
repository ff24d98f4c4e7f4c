"""Optional Sentry: not loaded without a DSN; with one, errors reach Sentry, scrubbed."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
import textwrap
from collections.abc import Iterator

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from tests.support.servers import ThreadedServer

pytest.importorskip("sentry_sdk", reason="sentry-sdk is missing: pip install 'sse-monitor[sentry]'")

TOKEN = "viewer-token-3f9a0c1d2e4b5a69"


class FakeSentry:
    """A real HTTP server on loopback that takes Sentry envelopes, as sentry.io would."""

    def __init__(self) -> None:
        self.envelopes: list[list[dict]] = []

        async def envelope(request: Request) -> Response:
            body = await request.body()
            if request.headers.get("content-encoding") == "gzip":
                body = gzip.decompress(body)
            items = [
                json.loads(line) for line in body.splitlines() if line.strip().startswith(b"{")
            ]
            self.envelopes.append(items)
            return Response('{"id": "0"}', media_type="application/json")

        app = Starlette(routes=[Route("/api/{project}/envelope/", envelope, methods=["POST"])])
        self.server = ThreadedServer(app)


@pytest.fixture
def sentry() -> Iterator[FakeSentry]:
    fake = FakeSentry()
    fake.server.start()
    try:
        yield fake
    finally:
        fake.server.stop()


def run_python(code: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    import os

    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_without_a_dsn_sentry_is_not_imported() -> None:
    result = run_python(
        """
        import sys
        from sse_monitor.app import app_from_env
        app_from_env()
        assert "sentry_sdk" not in sys.modules, "sentry_sdk was imported"
        print("clean")
        """,
        {"SSE_MONITOR_DB": ":memory:", "SENTRY_DSN": ""},
    )
    assert result.returncode == 0, result.stderr
    assert "clean" in result.stdout


def test_with_a_dsn_errors_reach_sentry_without_secrets(sentry: FakeSentry) -> None:
    dsn = f"http://publickey@127.0.0.1:{sentry.server.port}/42"
    result = run_python(
        f"""
        import sentry_sdk
        from starlette.routing import Route
        from starlette.testclient import TestClient
        from sse_monitor.app import app_from_env

        app = app_from_env()
        integrations = sentry_sdk.get_client().options["integrations"]
        assert any(type(i).__name__ == "StarletteIntegration" for i in integrations)

        async def broken(request):
            raise RuntimeError("deliberately broken endpoint")

        app.router.routes.append(Route("/broken", broken))
        with TestClient(app, raise_server_exceptions=False) as client:
            response = client.get(
                "/broken?token={TOKEN}", headers={{"Authorization": "Bearer {TOKEN}"}}
            )
            assert response.status_code == 500, response.status_code
            assert "Traceback" not in response.text
        sentry_sdk.flush(5)
        print("sent")
        """,
        {"SENTRY_DSN": dsn, "SSE_MONITOR_DB": ":memory:", "SSE_MONITOR_TOKEN": TOKEN},
    )
    assert result.returncode == 0, result.stderr
    assert '"sentry.started"' in result.stderr
    assert "publickey" not in result.stderr  # the DSN's key is a secret too
    items = [item for envelope in sentry.envelopes for item in envelope]
    events = [item for item in items if "exception" in item]
    assert events, f"no exception reached the fake Sentry: {items}"
    text = json.dumps(sentry.envelopes)
    assert "deliberately broken endpoint" in text
    assert TOKEN not in text, text[max(0, text.find(TOKEN) - 300) : text.find(TOKEN) + 50]
