"""A real redis-server on loopback (or another address of this host), its files in a folder of
the test's: KATO's Redis in tests, and the cluster's."""

from __future__ import annotations

import shutil
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.support.processes import LoopbackServer


def missing_redis() -> str | None:
    if shutil.which("redis-server") is None:
        return "redis-server is not installed (apt-get install redis-server; .ci/run does)"
    try:
        import redis  # noqa: F401
    except ImportError:
        return "the redis package is not installed (pip install redis)"
    return None


class RedisServerProcess(LoopbackServer):
    """redis-server on a free port of `host`, its log in `root`. Started again after stop(), it
    comes back on the same port: empty, or with `persistent` with all it had (every write is
    in its append-only file in `root` before it answers), as a Redis with appendonly restarts.
    """

    name = "redis-server"
    probe_interval = 0.02

    def __init__(self, root: Path, *, host: str = "127.0.0.1", persistent: bool = False) -> None:
        super().__init__(root / "redis.log")
        self.root = root
        self.host = host
        self.persistent = persistent

    @property
    def url(self) -> str:
        return f"redis://{self.host}:{self.port}/0"

    def command(self) -> list[str]:
        append_only = ["yes", "--appendfsync", "always"] if self.persistent else ["no"]
        # Off the loopback, Redis refuses clients without a password unless told not to: it
        # listens on `host` alone, a test address of this machine (a veth's end).
        protected = "yes" if self.host == "127.0.0.1" else "no"
        return [
            "redis-server",
            "--port", str(self.port),
            "--bind", self.host,
            "--protected-mode", protected,
            "--save", "",
            "--appendonly", *append_only,
            "--dir", str(self.root),
        ]  # fmt: skip

    def ready(self) -> bool:
        import redis

        client = redis.Redis.from_url(self.url, socket_timeout=1, socket_connect_timeout=1)
        try:
            return bool(client.ping())
        except (redis.ConnectionError, redis.TimeoutError):
            return False
        finally:
            client.close()


@contextmanager
def paused(server: RedisServerProcess) -> Iterator[None]:
    """The server stopped by SIGSTOP: it accepts connections and answers nothing."""
    assert server.proc is not None
    server.proc.send_signal(signal.SIGSTOP)
    try:
        yield
    finally:
        server.proc.send_signal(signal.SIGCONT)
