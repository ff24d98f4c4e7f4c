"""The gateway as a real process, started the ways an operator starts it: the CLI
(`python -m sse_monitor serve`), uvicorn with a chosen HTTP protocol, and the Procfile's web
command; and a start-up that must fail, run until it exits."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Self

import httpx
import psutil

from tests.support.http import tls
from tests.support.processes import LoopbackServer, free_port

ROOT = Path(__file__).resolve().parents[2]
# The Procfile's command finds uvicorn on PATH, as a platform would in the app's environment.
PATH = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
SERVE = [sys.executable, "-m", "sse_monitor", "serve"]  # the CLI as an operator runs it
# The request's target in one of uvicorn's access lines: `127.0.0.1:5 - "GET /events HTTP/1.1" 200`
ACCESS_TARGET = re.compile(r'"[A-Z]+ (?P<path>[^ ?]*)\S* HTTP/')


def answers_ready(url: str) -> bool:
    """Whether the gateway at `url` says it is ready (a tick has completed)."""
    try:
        return httpx.get(f"{url}/readyz", timeout=1, verify=tls()).status_code == 200
    except httpx.TransportError:
        return False  # not listening yet


class GatewayProcess(LoopbackServer):
    """The gateway CLI on a free port (or `port`), polling `kato_url` every 0.2 s, with container
    figures off, an alert database of its own and `env` on top; its log is JSON lines.

    start() returns once a tick has had KATO's answer (`kato_answers=False`: once it is ready);
    `prefix` is a command to run it under (e.g. setpriv, or `ip netns exec NAME`), `host` the
    address it listens on (one the tests can reach).
    """

    name = "gateway"

    def __init__(
        self,
        kato_url: str,
        env: dict[str, str] | None = None,
        port: int | None = None,
        prefix: tuple[str, ...] = (),
        kato_answers: bool = True,
        host: str = "127.0.0.1",
    ) -> None:
        full_env = {
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
            full_env["SSE_MONITOR_DB"] = str(self._db_dir / "alerts.db")
        descriptor, log_name = tempfile.mkstemp(prefix="gateway-", suffix=".log")
        os.close(descriptor)
        super().__init__(Path(log_name), full_env, port)
        self.kato_url = kato_url
        self.prefix = prefix
        self.kato_answers = kato_answers
        self.host = host

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def command(self) -> list[str]:
        return [*self.prefix, *self.serve_command()]

    def serve_command(self) -> list[str]:
        """How the gateway is started: the project's own CLI (a subclass may run another)."""
        return [*SERVE, "--host", self.host, "--port", str(self.port), "--kato-url", self.kato_url]

    def ready(self) -> bool:
        return answers_ready(self.url)

    def start(self, timeout: float | None = None) -> Self:
        super().start(timeout)
        return self.wait_for_kato() if self.kato_answers else self

    def wait_for_kato(self, timeout: float = 20) -> Self:
        """Wait until a tick has had KATO's answer (whatever status it gave). Ready only means
        that a tick completed: on a loaded machine the first read may time out, a true (and
        passing) change, and a test starting then would see a KATO it did not set up."""

        deadline = time.monotonic() + timeout
        while self.kato_status() == "unreachable":
            if time.monotonic() > deadline:
                self.stop()
                raise TimeoutError(f"KATO never answered within {timeout} s:\n{self.log_tail()}")
            time.sleep(self.probe_interval)
        return self

    def kato_status(self) -> str:
        """KATO's status as its /readyz gives it."""
        return httpx.get(f"{self.url}/readyz", timeout=5, verify=tls()).json()["kato_status"]

    def close(self) -> None:
        self.stop()
        self.log_path.unlink(missing_ok=True)
        if self._db_dir is not None:
            shutil.rmtree(self._db_dir, ignore_errors=True)

    def lines(self) -> list[dict[str, Any]]:
        """The log's complete JSON lines (the last one may still be being written)."""
        complete = self.log().split("\n")[:-1]
        return [json.loads(line) for line in complete if line.startswith("{")]

    def logged_events(self, *names: str) -> list[str]:
        """The log lines' event names, in order, keeping only those named."""
        return [line["event"] for line in self.lines() if line.get("event") in names]

    def outage_changes(self, up: str, down: str, before: int) -> list[str]:
        """The `up`/`down` lines around one outage, `before` being how many were logged before
        it: the last of those, then the two after. Only that far: on a loaded machine a later
        read can time out, which is a true change of its own."""
        return self.logged_events(up, down)[before - 1 : before + 2]

    def count(self, event: str) -> int:
        """How many log lines have this event name."""
        return sum(1 for line in self.lines() if line.get("event") == event)

    def answered(self, path: str) -> int:
        """How many requests for `path` (any query) it has answered, by its access log: uvicorn
        logs each as the response starts, so an open stream counts."""
        targets = (
            ACCESS_TARGET.search(line["event"])
            for line in self.lines()
            if line.get("logger") == "uvicorn.access"
        )
        return sum(1 for t in targets if t is not None and t["path"] == path)


class WorkersGateway(GatewayProcess):
    """`python -m sse_monitor serve --workers N`: a parent process (uvicorn's supervisor) and N
    workers accepting on its one port."""

    start_timeout = 60.0  # the parent, then each worker, imports and builds the app

    def __init__(
        self,
        kato_url: str,
        workers: int,
        env: dict[str, str] | None = None,
        flags: tuple[str, ...] = (),
    ) -> None:
        super().__init__(kato_url, env=env)
        self.workers = workers
        self.flags = flags  # more of the CLI's flags

    def serve_command(self) -> list[str]:
        return [*super().serve_command(), "--workers", str(self.workers), *self.flags]

    def ready(self) -> bool:
        """Once every worker serves (its startup complete), not only the first to answer."""
        started = self.count("Application startup complete.")  # uvicorn's line, once a worker
        return started >= self.workers and super().ready()

    def worker_processes(self) -> list[psutil.Process]:
        """The parent's children that listen on the port (not multiprocessing's helper)."""
        assert self.proc is not None
        return [
            child
            for child in psutil.Process(self.proc.pid).children()
            if any(
                c.status == psutil.CONN_LISTEN and c.laddr.port == self.port
                for c in child.net_connections("tcp")
            )
        ]

    def close(self) -> None:
        """Stop it, then kill whatever of its processes outlived the parent (a test that failed
        halfway, or a parent that was killed, leaves workers behind)."""
        children = psutil.Process(self.proc.pid).children(recursive=True) if self.running else []
        super().close()
        for child in children:
            with contextlib.suppress(psutil.NoSuchProcess):
                child.kill()  # psutil checks it is still the same process (its start time)


class UvicornGateway(GatewayProcess):
    """The gateway as `uvicorn sse_monitor.app:app --http <protocol>` runs it."""

    def __init__(self, kato_url: str, http: str, env: dict[str, str] | None = None) -> None:
        super().__init__(kato_url, env={"KATO_URL": kato_url, **(env or {})})
        self.http = http

    def serve_command(self) -> list[str]:
        uvicorn = [sys.executable, "-m", "uvicorn", "sse_monitor.app:app", "--http", self.http]
        options = ["--timeout-graceful-shutdown", "2", "--no-proxy-headers"]
        return [*uvicorn, "--port", str(self.port), *options]


def procfile_web_command() -> str:
    for line in (ROOT / "Procfile").read_text().splitlines():
        if line.startswith("web:"):
            return line.removeprefix("web:").strip()
    raise AssertionError("the Procfile has no web: line")


class ProcfileWeb(LoopbackServer):
    """The Procfile's web command run by a shell from the checkout, as a platform runs it: this
    process's environment with `env` on top and $PORT set; stopped as a process group. The
    shell execs the command, so that stop() waits for the server itself."""

    name = "the Procfile's web command"
    new_session = True
    cwd = ROOT

    def __init__(self, log_path: Path, env: dict[str, str]) -> None:
        super().__init__(log_path, {**os.environ, "PATH": PATH, **env})

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        return ["env", f"PORT={self.port}", "sh", "-c", f"exec {procfile_web_command()}"]

    def ready(self) -> bool:
        return answers_ready(self.url)

    def terminate(self) -> None:
        assert self.proc is not None
        os.killpg(self.proc.pid, signal.SIGTERM)


def run_until_exit(
    command: list[str] | str, env: dict[str, str], timeout: float = 20
) -> subprocess.CompletedProcess[str]:
    """Run a command from the checkout (a string through the shell) with `env` added, to its end."""
    return subprocess.run(
        command,
        env={**os.environ, "PATH": PATH, **env},
        capture_output=True,
        text=True,
        timeout=timeout,
        shell=isinstance(command, str),
        cwd=ROOT,
    )


def serve_until_exit(env: dict[str, str], timeout: float = 20) -> subprocess.CompletedProcess[str]:
    """`python -m sse_monitor serve` on a free port with `env` added, to its end: for settings
    that must stop start-up."""
    return run_until_exit([*SERVE, "--port", str(free_port())], env, timeout)
