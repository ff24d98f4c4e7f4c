"""The gateway as a real process: `python -m sse_monitor serve`, as an operator runs it."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import httpx


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class PortTaken(RuntimeError):
    """The gateway could not bind its port: another process had it."""


class GatewayProcess:
    """Starts the gateway CLI on a free port with the given environment; logs go to a file."""

    def __init__(
        self,
        kato_url: str,
        env: dict[str, str] | None = None,
        port: int | None = None,
        prefix: tuple[str, ...] = (),
        kato_answers: bool = True,
    ):
        self.kato_url = kato_url
        self.prefix = prefix  # a command to run the gateway under (e.g. setpriv)
        self.kato_answers = kato_answers  # start() waits for KATO's first answer
        self.port = port or free_port()
        self._port_chosen = port is None  # ours to change if another process takes it first
        self.env = {
            **os.environ,
            "SSE_MONITOR_POLL_INTERVAL": "0.2",
            "SSE_MONITOR_LOG_FORMAT": "json",
            "SSE_MONITOR_CONTAINER_STATS": "off",  # tests of containers turn it on
            **(env or {}),
        }
        self._db_dir: Path | None = None
        if "SSE_MONITOR_DB" not in (env or {}):
            # Its own alert database, unless a test (of persistence) passes one.
            self._db_dir = Path(tempfile.mkdtemp(prefix="gateway-db-"))
            self.env["SSE_MONITOR_DB"] = str(self._db_dir / "alerts.db")
        self.log_path = Path(tempfile.mkstemp(prefix="gateway-", suffix=".log")[1])
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        """How the gateway is started: the project's own CLI (a subclass may run another)."""
        return [
            sys.executable,
            "-m",
            "sse_monitor",
            "serve",
            "--port",
            str(self.port),
            "--kato-url",
            self.kato_url,
        ]

    def start(self, timeout: float = 20) -> Self:
        # free_port() lets the port go before the gateway binds it, and other test runs share
        # the machine: on a clash over a port we chose, choose another.
        for _ in range(2):
            try:
                return self._start(timeout)
            except PortTaken:
                if not self._port_chosen:
                    raise
                self.port = free_port()
        return self._start(timeout)

    def _start(self, timeout: float) -> Self:
        logged_before = len(self.log())
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [*self.prefix, *self.command()],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                output = self.log()
                if "address already in use" in output[logged_before:].lower():
                    raise PortTaken(f"port {self.port} was taken:\n{output}")
                raise RuntimeError(f"gateway exited with {self.proc.returncode}:\n{output}")
            try:
                if httpx.get(f"{self.url}/readyz", timeout=1).status_code == 200:
                    return self.wait_for_kato() if self.kato_answers else self
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise TimeoutError(f"gateway not ready within {timeout} s:\n{self.log()}")
            time.sleep(0.05)

    def wait_for_kato(self, timeout: float = 20) -> Self:
        """Wait until a tick has had KATO's answer (whatever status it gave). Ready only means
        that a tick completed: on a loaded machine the first read may time out, a true (and
        passing) change, and a test starting then would see a KATO it did not set up."""
        deadline = time.monotonic() + timeout
        while httpx.get(f"{self.url}/readyz", timeout=5).json()["kato_status"] == "unreachable":
            if time.monotonic() > deadline:
                self.stop()
                raise TimeoutError(f"KATO never answered within {timeout} s:\n{self.log()}")
            time.sleep(0.05)
        return self

    def terminate(self) -> None:
        """SIGTERM, as a process manager sends it."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)

    def stop(self, timeout: float = 10) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def logged_events(self, *names: str) -> list[str]:
        """The log lines' event names, in order, keeping only those named."""
        lines = (json.loads(line) for line in self.log().splitlines() if line.startswith("{"))
        return [line["event"] for line in lines if line.get("event") in names]

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()
        self.log_path.unlink(missing_ok=True)
        if self._db_dir is not None:
            shutil.rmtree(self._db_dir, ignore_errors=True)


class UvicornGateway(GatewayProcess):
    """The gateway as `uvicorn sse_monitor.app:app --http <protocol>` runs it."""

    def __init__(self, kato_url: str, http: str, env: dict[str, str] | None = None) -> None:
        super().__init__(kato_url, env={"KATO_URL": kato_url, **(env or {})})
        self.http = http

    def command(self) -> list[str]:
        return [
            sys.executable,
            "-m",
            "uvicorn",
            "sse_monitor.app:app",
            "--http",
            self.http,
            "--port",
            str(self.port),
            "--timeout-graceful-shutdown",
            "2",
            "--no-proxy-headers",
        ]

    def lines(self) -> list[dict[str, Any]]:
        """The log's complete JSON lines (the last one may still be being written)."""
        complete = self.log().split("\n")[:-1]
        return [json.loads(line) for line in complete if line.startswith("{")]

    def count(self, event: str) -> int:
        return sum(1 for line in self.lines() if line["event"] == event)
