"""Run an ASGI app under a real uvicorn server, in a background thread, on a free loopback port."""

from __future__ import annotations

import socket
import threading
import time
from typing import Any, Self

import uvicorn
from starlette.types import ASGIApp

from sse_monitor.web.access import Access
from sse_monitor.web.lockout import Lockout
from sse_monitor.web.revocations import SQLiteRevocations


def open_access() -> Access:
    """The access of a gateway without tokens, for routes served alone: open to anyone."""
    return Access(
        None,
        None,
        login_ttl=3600,
        lockout=Lockout(10, 60),
        revocations=SQLiteRevocations(":memory:"),
    )


class ThreadedServer:
    """A real uvicorn server in a thread with its own event loop, so tests speak real HTTP.

    The listening socket is bound before the thread starts: the port is known at once and
    nothing else can take it between choosing and binding. `port=0` picks a free port; a given
    port lets a test bring a server back where it was. Extra keyword arguments go to
    `uvicorn.Config`.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        startup_timeout: float = 10.0,
        shutdown_timeout: float = 10.0,
        **config: Any,
    ) -> None:
        config.setdefault("log_level", "warning")
        # Without a bound, uvicorn waits forever for open streams (SSE) before stopping.
        config.setdefault("timeout_graceful_shutdown", 2)
        self.host = host
        self.requested_port = port
        self.startup_timeout = startup_timeout
        self.shutdown_timeout = shutdown_timeout
        self.config = uvicorn.Config(app, host=host, port=port, **config)
        self.server = uvicorn.Server(self.config)
        self._socket: socket.socket | None = None
        self._port: int | None = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("the server was never started")
        return self._port

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> Self:
        if self._thread is not None:
            raise RuntimeError("the server is already started")
        self.server = uvicorn.Server(self.config)  # a uvicorn.Server runs only once
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((self.host, self.requested_port))
        except OSError:
            sock.close()
            raise
        self._socket = sock
        self._port = sock.getsockname()[1]
        self._thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [sock]}, name="uvicorn", daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + self.startup_timeout
        while not self.server.started:
            if not self._thread.is_alive():
                self.stop()
                raise RuntimeError("the server failed to start (see its log)")
            if time.monotonic() > deadline:
                self.stop()
                raise TimeoutError(f"the server did not start within {self.startup_timeout} s")
            time.sleep(0.005)
        return self

    def stop(self) -> None:
        """Ask uvicorn to shut down (running the app's lifespan shutdown) and wait for it."""
        thread = self._thread
        if thread is None:
            return
        self.server.should_exit = True
        thread.join(self.shutdown_timeout)
        if thread.is_alive():
            self.server.force_exit = True
            thread.join(self.shutdown_timeout)
        self._thread = None
        self._close_socket()
        if thread.is_alive():
            raise TimeoutError(f"the server did not stop within {self.shutdown_timeout} s")

    def _close_socket(self) -> None:
        if self._socket is not None:
            self._socket.close()
            self._socket = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
