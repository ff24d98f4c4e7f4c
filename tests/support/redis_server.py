"""A real redis-server on loopback, its files in a folder of the test's: KATO's Redis in tests."""

from __future__ import annotations

import shutil
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
    """redis-server on a free port, nothing saved to disk, its log in `root`. Started again
    after stop(), it comes back on the same port, empty: a restarted Redis."""

    name = "redis-server"
    probe_interval = 0.02

    def __init__(self, root: Path) -> None:
        super().__init__(root / "redis.log")
        self.root = root

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def command(self) -> list[str]:
        return [
            "redis-server",
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--save", "",
            "--appendonly", "no",
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
