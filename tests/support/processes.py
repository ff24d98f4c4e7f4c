"""The one way the tests run a server as a process of its own: start it, wait until it is ready,
stop it (SIGTERM, then SIGKILL after a timeout) and keep what it printed.

The gateway, nginx, redis-server and dockerd helpers each say only how to run theirs
(`command()`), how to tell that it is ready (`ready()`) and what to remove afterwards (`close()`).
"""

from __future__ import annotations

import signal
import socket
import subprocess
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Self

LOG_TAIL = 10_000  # characters of its output quoted when a process fails to start
PORT_ATTEMPTS = 3


def free_port() -> int:
    """A loopback port nothing listens on now (another process may take it before we bind it)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class PortTaken(RuntimeError):
    """The process could not bind its port: another process had it."""


class ManagedProcess:
    """One server process: `command()` run with `env` (None: this process's environment), its
    stdout and stderr appended to `log_path` (a restart adds to the same file)."""

    name = "process"  # how failures name it
    start_timeout = 20.0  # seconds start() waits for it to be ready
    probe_interval = 0.05  # seconds between readiness probes
    stop_timeout = 10.0  # seconds from SIGTERM to SIGKILL
    new_session = False  # its own process group: the terminal's Ctrl-C does not reach it
    cwd: Path | None = None  # where it runs (None: where the tests run)

    def __init__(self, log_path: Path, env: Mapping[str, str] | None = None) -> None:
        self.log_path = log_path
        self.env = env
        self.proc: subprocess.Popen[bytes] | None = None

    def command(self) -> list[str]:
        raise NotImplementedError

    def ready(self) -> bool:
        """Whether it serves yet (asked until it does, while the process runs)."""
        raise NotImplementedError

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self, timeout: float | None = None) -> Self:
        """Start it and return once it is ready; on failure or timeout, stop it and raise with
        its output. PortTaken when its output says its address was in use."""
        timeout = self.start_timeout if timeout is None else timeout
        logged_before = len(self.log())
        self.launch()
        deadline = time.monotonic() + timeout
        while True:
            self._raise_if_exited(logged_before)
            if self.ready():
                return self
            if time.monotonic() > deadline:
                self.stop()
                raise TimeoutError(f"{self.name} not ready within {timeout} s:\n{self.log_tail()}")
            time.sleep(self.probe_interval)

    def launch(self) -> subprocess.Popen[bytes]:
        """Start the process without waiting for it (start() waits)."""
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                self.command(),
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=self.new_session,
                cwd=self.cwd,
            )
        return self.proc

    def _raise_if_exited(self, logged_before: int) -> None:
        assert self.proc is not None
        if self.proc.poll() is None:
            return
        output = self.log()[logged_before:]
        if "address already in use" in output.lower():
            raise PortTaken(f"{self.name}'s port was taken:\n{self.log_tail()}")
        raise RuntimeError(f"{self.name} exited with {self.proc.returncode}:\n{self.log_tail()}")

    def terminate(self) -> None:
        """SIGTERM, as a process manager sends it."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)

    def stop(self, timeout: float | None = None) -> int | None:
        """SIGTERM, then SIGKILL if it has not exited within `timeout`: its exit code."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.terminate()
            try:
                self.proc.wait(self.stop_timeout if timeout is None else timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode

    def close(self) -> None:
        """The end of its use: stop it and remove what it left (a subclass removes its files)."""
        self.stop()

    def log(self) -> str:
        """Everything it has printed so far, on every start."""
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def log_tail(self) -> str:
        return self.log()[-LOG_TAIL:]

    def __enter__(self) -> Self:
        try:
            return self.start()
        except BaseException:
            self.close()
            raise

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class LoopbackServer(ManagedProcess):
    """A ManagedProcess listening on a loopback port: `port`, or one chosen free.

    free_port() lets the port go before the server binds it, and other test runs share the
    machine: when a port it chose itself is taken first, start() chooses another. Once it has
    served there, the port is its own (others have its URL): a restart comes back to it.
    """

    def __init__(
        self, log_path: Path, env: Mapping[str, str] | None = None, port: int | None = None
    ) -> None:
        super().__init__(log_path, env)
        self.port = port or free_port()
        self._port_chosen = port is None  # ours to change if another process takes it first

    def start(self, timeout: float | None = None) -> Self:
        attempts_left = PORT_ATTEMPTS
        while True:
            try:
                super().start(timeout)
                break
            except PortTaken:
                attempts_left -= 1
                if not self._port_chosen or not attempts_left:
                    raise
                self.port = free_port()
        self._port_chosen = False
        return self
