"""One thread and one connection for one SQLite store: every statement of the store runs in its
thread, none on the event loop (a slow disk never stalls a stream). The alert store and the
charts' history each have one."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from sse_monitor.settings import StoreError

T = TypeVar("T")


class StoreThread:
    def __init__(self, name: str) -> None:
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=name)

    async def run(self, function: Callable[..., T], *args: Any) -> T:
        """`function(*args)` in the store's thread, awaited."""
        return await asyncio.get_running_loop().run_in_executor(self._executor, function, *args)

    def submit(self, function: Callable[..., Any], *args: Any) -> None:
        """`function(*args)` in the store's thread, after what was submitted before; not
        awaited (it must handle its own errors)."""
        self._executor.submit(function, *args)

    def shutdown(self) -> None:
        self._executor.shutdown(wait=True)


def require_folder(path: str) -> None:
    """A database file's folder must exist (sqlite3 would say only "unable to open")."""
    if path != ":memory:" and not Path(path).parent.is_dir():
        raise StoreError(f"{path}: the folder {Path(path).parent} does not exist")


def open_database(
    path: str, what: str, *, synchronous: str, prepare: Callable[[sqlite3.Connection], None]
) -> sqlite3.Connection:
    """A connection in autocommit mode, in WAL, waiting up to 5 s for another writer, with
    `synchronous` as the store needs it; `prepare` makes the store's tables. Any failure is a
    StoreError naming the file and `what` it holds."""
    require_folder(path)
    db = None
    try:
        db = sqlite3.connect(path, isolation_level=None)
        db.execute("PRAGMA busy_timeout = 5000")
        db.execute("PRAGMA journal_mode = WAL")
        db.execute(f"PRAGMA synchronous = {synchronous}")
        prepare(db)
    except (sqlite3.Error, StoreError) as exc:
        if db is not None:
            db.close()
        if isinstance(exc, StoreError):
            raise
        raise StoreError(f"{path}: cannot open {what}: {exc}") from None
    return db
