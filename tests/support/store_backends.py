"""The backend a store test runs on, one of each kind by the test's parameter: a SQLite file of
the test's own, or the session's redis-server, emptied for the test."""

from __future__ import annotations

from pathlib import Path

import pytest

KINDS = ("sqlite", "redis")


def backend_of(request: pytest.FixtureRequest, tmp_path: Path, file_name: str) -> str:
    """Where this test's stores live: a file `file_name` in `tmp_path`, or the Redis's URL."""
    if request.param == "sqlite":
        return str(tmp_path / file_name)
    return request.getfixturevalue("redis_url")
