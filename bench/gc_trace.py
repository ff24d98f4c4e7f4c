"""Run a server with its garbage-collection pauses logged: `fanout.py --gc-trace` uses it.

With thousands of connections a full collection walks every object of every connection and
stops the event loop for hundreds of milliseconds, which shows as a fan-out latency tail. This
wrapper records each collection (end time, generation, pause) as one line of a file, so the
orchestrator can count the pauses that fell in its window. Tracing costs a clock read per
collection; the server runs exactly as it would otherwise.

    python bench/gc_trace.py OUT -m sse_monitor serve --port 8080
    python bench/gc_trace.py OUT bench/naive_server.py --port 8090
"""

from __future__ import annotations

import gc
import runpy
import sys
import time
from typing import Any


def main() -> None:
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    out = open(sys.argv[1], "a", buffering=1, encoding="utf-8")  # noqa: SIM115 - lives as long as the process
    started = 0.0

    def on_collect(phase: str, info: dict[str, Any]) -> None:
        nonlocal started
        if phase == "start":
            started = time.perf_counter()
        else:
            pause_ms = (time.perf_counter() - started) * 1000
            out.write(f"{time.time():.6f} {info['generation']} {pause_ms:.3f}\n")

    gc.callbacks.append(on_collect)
    target = sys.argv[2:]
    if target[0] == "-m":
        sys.argv = [target[1], *target[2:]]
        runpy.run_module(target[1], run_name="__main__", alter_sys=True)
    else:
        sys.argv = target
        runpy.run_path(target[0], run_name="__main__")


if __name__ == "__main__":
    main()
