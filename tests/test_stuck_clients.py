"""A client that stops reading is dropped quietly: one warning of ours, nothing at error level.

Run under uvicorn's own CLI (as the Procfile does) with each of its HTTP implementations, since
each decides for itself what to log when an app ends a response early.
"""

from __future__ import annotations

import socket
import time

import pytest

from tests.support.gateway import UvicornGateway
from tests.support.kato import Kato
from tests.support.raw_stream import small_window_socket

STUCK_CLIENTS = 2


def stuck_client(port: int) -> socket.socket:
    """An SSE client with a small receive window that never reads."""
    sock = small_window_socket(port)
    sock.sendall(b"GET /events HTTP/1.1\r\nHost: test\r\n\r\n")
    return sock


def wait_for_drops(gateway: UvicornGateway, count: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while gateway.count("stream.dropped") < count:
        assert time.monotonic() < deadline, f"not dropped in {timeout} s:\n{gateway.log()}"
        time.sleep(0.1)


@pytest.mark.parametrize("http", ["h11", "httptools"])
def test_a_stuck_client_is_dropped_with_one_warning_and_no_error(kato: Kato, http: str) -> None:
    # Big frames and fast ticks fill a stuck client's buffers within a few ticks.
    kato.state.set_health_issues([f"issue {n} " + "x" * 480 for n in range(20)])
    env = {
        "SSE_MONITOR_POLL_INTERVAL": "0.25",
        "SSE_MONITOR_KATO_TIMEOUT": "0.24",
        "SSE_MONITOR_SEND_TIMEOUT": "0.5",
    }
    gateway = UvicornGateway(kato.url, http, env).start()
    stuck = [stuck_client(gateway.port) for _ in range(STUCK_CLIENTS)]
    opened = time.monotonic()
    try:
        wait_for_drops(gateway, STUCK_CLIENTS)
        print(f"dropped after {time.monotonic() - opened:.1f} s")
        # Still not reading, still connected: the server must not wait on them to stop.
        started = time.monotonic()
        gateway.stop(timeout=15)  # (uvicorn re-raises SIGTERM once stopped: no exit code to check)
        stopped_in = time.monotonic() - started
        lines = gateway.lines()
    finally:
        for sock in stuck:
            sock.close()
        gateway.__exit__(None, None, None)
    dropped = [line for line in lines if line["event"] == "stream.dropped"]
    assert [(line["level"], line["reason"]) for line in dropped] == [
        ("warning", "send_timeout")
    ] * STUCK_CLIENTS
    errors = [line["event"] for line in lines if line["level"] in ("error", "critical")]
    assert errors == []
    assert stopped_in < 2, "uvicorn waited for the dropped connections to close"
