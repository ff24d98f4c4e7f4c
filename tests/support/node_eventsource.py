"""Node's `eventsource` package as the tests run it: a third-party SSE client in a process of
its own (eventsource_client.mjs), printing what it receives as JSON lines.

The package comes from the npm registry (tests.support.npm).
"""

from __future__ import annotations

import json
import os
import subprocess
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, Self

from tests.support.npm import installed
from tests.support.waiting import eventually

# The newest release that runs on Debian's Node 20 (5.x needs Node 22).
PACKAGE = "eventsource@4.1.1"
CLIENT = Path(__file__).resolve().parent / "eventsource_client.mjs"


def eventsource_prefix() -> Path:
    """The npm prefix holding the package, installed into the cache on first use."""
    return installed(PACKAGE)


class NodeEventSource:
    """The Node client reading `url` for the block; `lines` is what it printed so far."""

    def __init__(self, url: str, prefix: Path) -> None:
        self.url = url
        self.prefix = prefix
        self.lines: list[dict[str, Any]] = []
        self.said: list[str] = []  # anything else it printed (a stack trace)
        self._proc: subprocess.Popen[str] | None = None
        self._reader: threading.Thread | None = None

    def __enter__(self) -> Self:
        self._proc = subprocess.Popen(
            ["node", str(CLIENT), self.url],
            env={**os.environ, "EVENTSOURCE_PREFIX": str(self.prefix)},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        assert self._proc is not None and self._reader is not None
        self._proc.terminate()
        self._proc.wait(timeout=10)
        self._reader.join(timeout=10)

    def _read(self) -> None:
        assert self._proc is not None and self._proc.stdout is not None
        for line in self._proc.stdout:
            if line.startswith("{"):
                self.lines.append(json.loads(line))
            else:
                self.said.append(line)

    def events(self, name: str, since: int = 0) -> list[dict[str, Any]]:
        """The events of this name received, from line `since` on."""
        return [line for line in self.lines[since:] if line.get("event") == name]

    def opens(self) -> int:
        """How many times its connection opened."""
        return sum(1 for line in self.lines if line.get("state") == "open")

    async def wait_for(self, predicate: Callable[[], Any], what: str, timeout: float = 20) -> Any:
        """`predicate`'s first truthy answer; on timeout, fail with what Node printed."""
        try:
            return await eventually(predicate, timeout=timeout, what=what)
        except AssertionError as exc:
            said = "".join(self.said)
            raise AssertionError(f"{exc}\nit printed: {self.lines[-20:]}\nand: {said}") from None
