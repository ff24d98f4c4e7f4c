"""Garbage-collection pauses of gateway processes that bench/cluster.py starts itself.

The nodes of a cluster are started by the tests' harness (`python -m sse_monitor serve`), which
gc_trace.py cannot wrap; this folder on their PYTHONPATH makes Python import this module at
start-up instead. When SSE_BENCH_GC_TRACE is a folder and the process is a gateway (`serve`),
each collection is logged there as gc_trace.py logs it (end time, generation, pause in ms), in
a file per process. Any other process is left alone.
"""

from __future__ import annotations

import gc
import os
import sys
import time
from typing import Any


def _trace(folder: str) -> None:
    out = open(f"{folder}/{os.getpid()}.txt", "a", buffering=1, encoding="utf-8")  # noqa: SIM115 - lives as long as the process
    started = 0.0

    def on_collect(phase: str, info: dict[str, Any]) -> None:
        nonlocal started
        if phase == "start":
            started = time.perf_counter()
        else:
            pause_ms = (time.perf_counter() - started) * 1000
            out.write(f"{time.time():.6f} {info['generation']} {pause_ms:.3f}\n")

    gc.callbacks.append(on_collect)


if (folder := os.environ.get("SSE_BENCH_GC_TRACE")) and "serve" in sys.argv:
    _trace(folder)
