"""The fixtures every test module may ask for: the servers on loopback (the simulated KATO, the
gateway, Redis, a Docker engine, a cluster of gateways), Chromium, and the hypothesis profiles."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from hypothesis import HealthCheck, settings

from sse_monitor.simulator.state import SimulatedKato
from tests.support.cluster import Cluster
from tests.support.docker_engine import DockerEngineProcess, missing_parts
from tests.support.gateway import GatewayProcess
from tests.support.kato import Kato, running_kato
from tests.support.page import new_context
from tests.support.redis_server import RedisServerProcess, missing_redis

# Hypothesis (the fuzz suite, tests/test_fuzz_http.py): `ci` is small, fixed and the same on
# every run (CI starts from a clean clone, so no example database); HYPOTHESIS_PROFILE=long
# explores at random, SSE_MONITOR_FUZZ_EXAMPLES examples per test (default 1000). No deadline:
# a loaded machine makes a slow example, not a wrong one.
FUZZ_SETTINGS = {
    "deadline": None,
    "database": None,
    "suppress_health_check": [HealthCheck.too_slow, HealthCheck.data_too_large],
}
settings.register_profile("ci", max_examples=100, derandomize=True, **FUZZ_SETTINGS)
settings.register_profile(
    "long",
    max_examples=int(os.environ.get("SSE_MONITOR_FUZZ_EXAMPLES", "1000")),
    **FUZZ_SETTINGS,
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

# A gateway started by a test keeps its alerts in memory unless the test says where to keep
# them (GatewayProcess gives each process a file of its own): no test writes into the checkout.
os.environ.setdefault("SSE_MONITOR_DB", ":memory:")


@pytest.fixture
def kato() -> Iterator[Kato]:
    with running_kato() as kato:
        yield kato


@pytest.fixture
def redis_kato() -> Iterator[Kato]:
    """KATO in Redis session mode (it pushes) with two workers, as a real deployment has."""
    with running_kato(SimulatedKato(session_backend="redis", workers=2)) as kato:
        yield kato


@pytest.fixture(scope="module")
def module_kato() -> Iterator[str]:
    """One simulated KATO for a whole module (its URL), for tests that never change its state."""
    with running_kato() as kato:
        yield kato.url


@pytest.fixture(scope="module")
def module_gateway(module_kato: str) -> Iterator[GatewayProcess]:
    """One default gateway for a module's read-only checks (bad parameters and the like): a
    process start per parametrised case would be most of those tests' time."""
    with GatewayProcess(module_kato) as process:
        yield process


@pytest.fixture
def gateway(kato: Kato) -> Iterator[GatewayProcess]:
    with GatewayProcess(kato.url) as process:
        yield process


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def browser() -> AsyncIterator[Any]:
    """Debian's Chromium, one per page-test module (which skips itself without it)."""
    from playwright.async_api import async_playwright

    from tests.support.browser import launch

    async with async_playwright() as playwright:
        browser = await launch(playwright)
        yield browser
        await browser.close()


@pytest_asyncio.fixture(loop_scope="module")
async def context(browser: Any) -> AsyncIterator[Any]:
    """A fresh browser profile for one page test (own cookies, storage and SharedWorkers), light
    colour scheme."""
    context = await new_context(browser, "light")
    yield context
    await context.close()


@pytest.fixture(scope="session")
def engine() -> Iterator[DockerEngineProcess]:
    reason = missing_parts()
    if reason:
        pytest.skip(f"no Docker engine: {reason}")
    with DockerEngineProcess() as process:
        process.import_busybox()
        yield process


@pytest.fixture
def docker(engine: DockerEngineProcess) -> Iterator[DockerEngineProcess]:
    if not engine.running:
        engine.start()  # a test that killed it failed before starting it again
    yield engine
    engine.remove_all()


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real redis-server for the whole test session (KATO's Redis): its URL."""
    reason = missing_redis()
    if reason:
        pytest.skip(f"no Redis: {reason}")
    with RedisServerProcess(tmp_path_factory.mktemp("redis")) as server:
        yield server.url


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisServerProcess]:
    """A redis-server of this test's own, which it may stop."""
    reason = missing_redis()
    if reason:
        pytest.skip(f"no Redis: {reason}")
    with RedisServerProcess(tmp_path) as server:
        yield server


@pytest.fixture
def redis_url(redis_server: str) -> str:
    """The session's Redis, emptied (FLUSHALL) for this test: its URL."""
    import redis

    with redis.Redis.from_url(redis_server) as client:
        client.flushall()
    return redis_server


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    """Three gateway nodes of one cluster, behind nginx (see tests/support/cluster.py)."""
    with Cluster(tmp_path) as cluster:
        yield cluster


ON_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def fail_if_skipped_on_ci(report: pytest.TestReport | pytest.CollectReport) -> None:
    """On CI every skip is a failure: a missing system component must not pass silently."""
    if ON_CI and report.skipped and not hasattr(report, "wasxfail"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else report.longrepr
        report.outcome = "failed"
        report.longrepr = f"skipped on CI (CI=true), where every test must run: {reason}"


# Both hooks run where the test runs (an xdist worker, or this process with -n 0): the worker
# sends the failed report on, so the rule holds either way.
@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):  # type: ignore[no-untyped-def]
    """A test (or its fixture) that skips itself: no Docker engine, no Redis, no nginx."""
    outcome = yield
    fail_if_skipped_on_ci(outcome.get_result())


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector: pytest.Collector):  # type: ignore[no-untyped-def]
    """A module that skips itself as a whole (the page tests without Chromium or playwright,
    the Sentry tests without sentry-sdk): on CI, an error collecting it."""
    outcome = yield
    fail_if_skipped_on_ci(outcome.get_result())
