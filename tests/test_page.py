"""The dashboard page in a real Chromium, against the gateway process and the simulated KATO."""

from __future__ import annotations

import asyncio
import itertools
import re
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest
import pytest_asyncio

from tests.support.browser import (
    ACCENT_COLOURS,
    BACKDROP_LUMINANCE,
    RequestLog,
    greenness,
    playwright_or_skip,
    redness,
    toast_log,
    watch_toasts,
)
from tests.support.docker_engine import DockerEngineProcess
from tests.support.gateway import GatewayProcess
from tests.support.http import tls
from tests.support.kato import Kato
from tests.support.nginx import prefixed_nginx
from tests.support.page import (
    ENV,
    THEME,
    containers_env,
    each_theme,
    hook,
    new_context,
    open_page,
    settled,
    toasts,
)
from tests.support.processes import free_port
from tests.support.sse_client import SSEStream
from tests.support.waiting import eventually

expect = playwright_or_skip().expect  # the module is skipped without them (10 s timeout)

if TYPE_CHECKING:
    from playwright.async_api import Browser, BrowserContext, Page

pytestmark = pytest.mark.asyncio(loop_scope="module")

TOAST_LIFETIME = 5.0
SCREENSHOTS = Path(__file__).resolve().parents[1] / "artifacts" / "screenshots"


@pytest.fixture
def gateway(kato: Kato) -> Iterator[GatewayProcess]:
    """The gateway as a process, polling the simulated KATO every POLL seconds."""
    with GatewayProcess(kato.url, env=ENV) as process:
        yield process


@pytest_asyncio.fixture(loop_scope="module")
async def page(gateway: GatewayProcess, context: BrowserContext) -> Page:
    """A tab on the gateway's dashboard, once its stream is live."""
    return await open_page(context, f"{gateway.url}/")


def total(count: int) -> re.Pattern[str]:
    return re.compile(rf"Total:\s*{count}(?!\d)")


def totals(texts: list[str]) -> list[int]:
    return sorted(int(m.group(1)) for t in texts if (m := re.search(r"Total:\s*(\d+)", t)))


async def readyz(gateway: GatewayProcess) -> dict[str, Any]:
    async with httpx.AsyncClient(timeout=5, verify=tls()) as client:
        return (await client.get(f"{gateway.url}/readyz")).json()


@asynccontextmanager
async def side_stream(gateway: GatewayProcess) -> AsyncIterator[SSEStream]:
    """A stream of the test's own beside the page's, live (its first `metrics` came): what the
    test waits on to know a change has reached the gateway."""
    async with SSEStream(f"{gateway.url}/events") as side:
        await side.wait_for_event("metrics")
        yield side


async def create_sessions(kato: Kato, side: SSEStream, count: int) -> None:
    """Create sessions one at a time, each seen by its own tick (a session_event apiece)."""
    for _ in range(count):
        before = len(side.of("session_event"))
        await kato.create_session()
        await side.wait_for(lambda events, n=before: len(side.of("session_event")) > n)


async def test_page_shows_the_live_count(
    kato: Kato, gateway: GatewayProcess, context: BrowserContext
) -> None:
    await kato.create_session()
    await kato.create_session()
    page = await open_page(context, f"{gateway.url}/")
    await expect(hook(page, "session-count")).to_have_text("2")
    state = hook(page, "connection-state")
    await expect(state).to_have_text(re.compile(r"^\s*Live\s*$"))
    await expect(hook(page, "kato-status")).to_have_attribute("data-status", "healthy")
    await expect(hook(page, "data-age")).to_have_text(re.compile(r"\bago\b|\bnow\b", re.I))
    await expect(hook(page, "containers")).to_be_hidden()  # container stats are off

    await kato.create_session()  # and one after the page loaded
    await expect(hook(page, "session-count")).to_have_text("3")


async def test_unknown_count_and_unreachable_kato(context: BrowserContext) -> None:
    """A gateway that has never reached KATO: the count is unknown, not 0."""
    nowhere = f"http://127.0.0.1:{free_port()}"
    with GatewayProcess(nowhere, env=ENV, kato_answers=False) as gateway:
        page = await open_page(context, f"{gateway.url}/")
        await expect(hook(page, "kato-status")).to_have_attribute("data-status", "unreachable")
        await expect(hook(page, "session-count")).to_have_text("—")
        await page.close()


async def test_created_and_destroyed_toasts(kato: Kato, page: Page) -> None:
    await expect(hook(page, "session-count")).to_have_text("0")
    region = hook(page, "toasts")
    await expect(region).to_have_attribute("aria-live", "polite")

    # Pushed (KATO's socket), so at once; but how soon is for a benchmark, not this test: on a
    # loaded machine the page's own work can take longer than a poll.
    session = await kato.create_session()
    created = toasts(page, "created")
    await expect(created).to_have_count(1)
    await expect(created).to_contain_text("1 session created")
    await expect(created).to_contain_text(total(1))
    await expect(created.locator("svg:not(button svg)")).not_to_have_count(0)
    dismiss = created.get_by_test_id("toast-dismiss")
    await expect(dismiss).to_have_attribute("aria-label", "Dismiss notification")

    await kato.delete_session(session)
    destroyed = toasts(page, "destroyed")
    await expect(destroyed).to_have_count(1)
    await expect(destroyed).to_contain_text("1 session destroyed")
    await expect(destroyed).to_contain_text(total(0))
    await expect(destroyed.locator("svg:not(button svg)")).not_to_have_count(0)

    green = await created.evaluate(ACCENT_COLOURS)
    red = await destroyed.evaluate(ACCENT_COLOURS)
    assert green != red, f"created and destroyed toasts look alike: {green}"
    assert greenness(green) > 0, f"the created toast is not green: {green}"
    assert redness(red) > 0, f"the destroyed toast is not red: {red}"
    assert greenness(green) > greenness(red) and redness(red) > redness(green), (green, red)

    # Toasts sit at the bottom right of the viewport.
    box = await region.bounding_box()
    viewport = page.viewport_size
    assert box is not None and viewport is not None
    assert box["x"] + box["width"] > viewport["width"] * 0.75, box
    assert box["y"] + box["height"] > viewport["height"] * 0.75, box


async def test_a_toast_counts_several_sessions_of_one_change(
    kato: Kato, gateway: GatewayProcess, page: Page
) -> None:
    """Two sessions created while KATO's health failed arrive as one change of 2."""
    async with side_stream(gateway) as side:
        await kato.fault("health", "http500")
        down = await side.wait_for_event("metrics", lambda d: d["kato"]["status"] != "healthy")
        await expect(hook(page, "kato-status")).to_have_attribute(
            "data-status", down.json()["kato"]["status"]
        )
        await kato.create_session()
        await kato.create_session()
        await kato.fault("health", "ok")
        change = await side.wait_for_event("session_event")
        assert change.json()["data"]["delta"] == 2
    created = toasts(page, "created")
    await expect(created).to_contain_text("2 sessions created")
    await expect(created).to_contain_text(total(2))
    await expect(hook(page, "kato-status")).to_have_attribute("data-status", "healthy")


async def test_a_toast_leaves_after_five_seconds(kato: Kato, page: Page) -> None:
    await watch_toasts(page)
    await kato.create_session()
    toast = toasts(page, "created")
    await expect(toast).to_have_count(1)
    await expect(toast).to_be_hidden(timeout=8_000)

    # Timed in the page (a MutationObserver stamps arrival and removal), so that a busy test
    # process cannot blur the measurement.
    [record] = (await toast_log(page))["toasts"]
    lifetime = (record["gone"] - record["appeared"]) / 1000
    assert TOAST_LIFETIME - 0.05 <= lifetime <= 6.5, f"the toast lived {lifetime:.2f} s"


async def test_at_most_three_toasts_the_oldest_leaving_first(
    kato: Kato, gateway: GatewayProcess, page: Page
) -> None:
    await watch_toasts(page)
    async with side_stream(gateway) as side:
        await create_sessions(kato, side, 4)
    shown = toasts(page)
    await expect(shown.filter(has_text=total(4))).to_have_count(1)
    await expect(shown).to_have_count(3)
    assert totals(await shown.all_text_contents()) == [2, 3, 4]

    log = await toast_log(page)
    assert log["max"] <= 3, f"{log['max']} toasts were visible at once: {log['toasts']}"
    records = {totals([r["text"]])[0]: r for r in log["toasts"]}
    assert sorted(records) == [1, 2, 3, 4], log["toasts"]
    first, fourth = records[1], records[4]
    assert first["gone"] is not None, "the oldest toast did not leave"
    assert [r for r in records.values() if r["gone"] is not None] == [first]
    assert first["gone"] - first["appeared"] < (TOAST_LIFETIME - 1) * 1000, "it merely expired"
    assert first["gone"] <= fourth["appeared"] + 50, "the fourth came before the first left"

    events = page.locator("[data-testid=session-events] li")
    await expect(events).to_have_count(4)
    assert re.search(r"\b4\b", await events.first.text_content() or ""), "newest first"


async def test_the_dismiss_button_removes_a_toast_at_once(
    kato: Kato, gateway: GatewayProcess, page: Page
) -> None:
    async with side_stream(gateway) as side:
        await create_sessions(kato, side, 2)
    first = toasts(page).filter(has_text=total(1))
    second = toasts(page).filter(has_text=total(2))
    await expect(second).to_have_count(1)
    dismiss = first.get_by_role("button", name="Dismiss notification")
    await expect(dismiss).to_have_attribute("data-testid", "toast-dismiss")
    clicked = time.monotonic()
    await dismiss.click()
    await expect(first).to_have_count(0, timeout=1000)
    assert time.monotonic() - clicked < 1
    assert await second.is_visible(), "the other toast went too"


async def test_a_page_coming_back_gets_the_changes_made_while_it_was_away(
    kato: Kato, gateway: GatewayProcess, page: Page
) -> None:
    """The tab resumes its stream from the last id it saw (`?last_event_id=`)."""
    changes = page.locator("[data-testid=session-events] li")
    async with side_stream(gateway) as side:
        await create_sessions(kato, side, 1)
        await expect(changes).to_have_count(1)
        await page.goto("about:blank")
        await create_sessions(kato, side, 1)  # while the tab shows something else
    await page.goto(f"{gateway.url}/")
    await expect(hook(page, "connection-state")).to_have_attribute("data-state", "live")
    await expect(changes.filter(has_text=re.compile(r"total\D*2\b", re.I))).to_have_count(1)


async def test_fallback_polling_while_the_stream_is_down(
    kato: Kato, browser: Browser, context: BrowserContext
) -> None:
    """Gateway gone: the page polls the count; a gateway back on the port: live, no polling."""
    fallback = 1.0
    env = {**ENV, "SSE_MONITOR_RETRY_MS": "1000"}  # the browser retries the stream every 1 s
    first = await asyncio.to_thread(GatewayProcess(kato.url, env=env).start)
    back = GatewayProcess(kato.url, env=env, port=first.port)
    log = RequestLog(browser, context, first.url)
    page = await open_page(context, f"{first.url}/?fallback_interval={fallback:g}")
    try:
        await expect(hook(page, "session-count")).to_have_text("0")
        await log.start()
        first.terminate()
        state = hook(page, "connection-state")
        await expect(state).not_to_have_attribute("data-state", "live", timeout=5000)
        down_at = time.monotonic()
        await expect(state).to_have_text(re.compile(r"Reconnecting \(attempt \d+\)|Offline"))
        await asyncio.to_thread(first.stop)

        polls = await eventually(
            lambda: len(found := log.matching("/api/sessions/count", down_at)) >= 3 and found,
            timeout=3 * fallback + 2,
            what="three fallback requests to api/sessions/count",
        )
        gaps = [b.at - a.at for a, b in itertools.pairwise(polls)]
        assert all(fallback / 2 < gap < fallback * 1.5 for gap in gaps), f"not every 1 s: {gaps}"
        retries = log.matching("/events", down_at)
        assert retries, "the stream was not retried while the gateway was away"
        assert {r.source for r in retries} == {"shared_worker"}, retries

        await kato.create_session()  # while the gateway is away
        await asyncio.to_thread(back.start)
        await expect(state).to_have_attribute("data-state", "live", timeout=15_000)
        live_at = time.monotonic()
        await expect(state).to_have_text(re.compile(r"^\s*Live\s*$"))
        await expect(hook(page, "session-count")).to_have_text("1")
        # A window of several fallback intervals in which nothing may happen.
        await asyncio.sleep(3.5 * fallback)
        late = log.matching("/api/sessions/count", live_at + 0.2)
        assert not late, f"still polling after the stream came back: {late}"
        assert (await readyz(back))["streams"] == 1
    finally:
        await log.stop()
        await page.close()
        for process in (first, back):
            await asyncio.to_thread(process.__exit__, None, None, None)


async def test_two_tabs_share_one_stream(
    kato: Kato, gateway: GatewayProcess, context: BrowserContext
) -> None:
    first = await open_page(context, f"{gateway.url}/")
    second = await open_page(context, f"{gateway.url}/")
    for page in (first, second):
        await expect(hook(page, "session-count")).to_have_text("0")
    assert (await readyz(gateway))["streams"] == 1

    await kato.create_session()
    for page in (first, second):
        await expect(hook(page, "session-count")).to_have_text("1")
    assert (await readyz(gateway))["streams"] == 1

    await first.close()  # the worker lives on for the other tab
    await kato.create_session()
    await expect(hook(second, "session-count")).to_have_text("2")
    assert (await readyz(gateway))["streams"] == 1


async def test_theme_follows_the_os_then_the_stored_choice(
    gateway: GatewayProcess, browser: Browser
) -> None:
    async with await new_context(browser, "light") as light_os:
        page = await light_os.new_page()
        await page.goto(f"{gateway.url}/")
        await page.wait_for_function(f"{THEME} === 'light'")

    async with await new_context(browser, "dark") as dark_os:
        page = await dark_os.new_page()
        await page.goto(f"{gateway.url}/")
        await page.wait_for_function(f"{THEME} === 'dark'")
        dark = await settled_backdrop(page)

        await hook(page, "theme-toggle").click()
        await page.wait_for_function(f"{THEME} === 'light'")
        light = await settled_backdrop(page)
        assert light > dark + 0.3, f"the backdrop luminance went from {dark:.2f} to {light:.2f}"

        await page.reload()
        await expect(hook(page, "theme-toggle")).to_be_visible()
        assert await page.evaluate(THEME) == "light", "the choice was forgotten on reload"

        await hook(page, "theme-toggle").click()
        await page.wait_for_function(f"{THEME} === 'dark'")


async def settled_backdrop(page: Page) -> float:
    """The backdrop's luminance once colour transitions have finished."""
    await settled(page)
    return await page.evaluate(BACKDROP_LUMINANCE)


async def test_screenshots_light_and_dark(kato: Kato, gateway: GatewayProcess, page: Page) -> None:
    """Saves artifacts/screenshots/dashboard-{light,dark}.png with toasts and events showing."""
    async with side_stream(gateway) as side:
        await create_sessions(kato, side, 3)
        session = await kato.create_session()
        await side.wait_for_event("session_event", lambda d: d["data"]["current_count"] == 4)
        await kato.delete_session(session)
        await side.wait_for_event("session_event", lambda d: d["data"]["current_count"] == 3)
    await expect(page.locator("[data-testid=session-events] li")).to_have_count(5)
    await expect(toasts(page, "destroyed")).to_have_count(1)
    await expect(toasts(page)).to_have_count(3)

    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    async for theme in each_theme(page):
        path = SCREENSHOTS / f"dashboard-{theme}.png"
        await page.screenshot(path=path, full_page=True)
        assert path.stat().st_size > 10_000
    await expect(toasts(page)).to_have_count(3)  # both shots were taken with the toasts up


async def test_containers_panel(
    kato: Kato, docker: DockerEngineProcess, context: BrowserContext
) -> None:
    """Rows from a real engine, a missing name shown as such, and the engine going away."""
    # A stopping engine stops its containers first, each within its stop timeout: 10 s by
    # default, all of which `sh -c "sleep ..."` (PID 1, deaf to SIGTERM) takes. 1 s is enough.
    await asyncio.to_thread(docker.run, "shown", "--memory", "32m", "--stop-timeout", "1")
    with GatewayProcess(kato.url, env=containers_env(docker.host, "shown,ghost")) as gateway:
        page = await open_page(context, f"{gateway.url}/")
        await expect(hook(page, "containers")).to_be_visible()
        shown = page.locator("[data-testid=container-row][data-name=shown]")
        await expect(shown.locator(".status")).to_have_text("running")
        await expect(shown).to_contain_text("/ 32.0 MiB")
        await expect(shown.locator(".cpu-value")).to_have_text(re.compile(r"\d+\.\d %"))
        ghost = page.locator("[data-testid=container-row][data-name=ghost]")
        await expect(ghost.locator(".status")).to_have_text("missing")
        await expect(hook(page, "containers-note")).to_have_text("1 of 2 running")

        await asyncio.to_thread(docker.stop)
        await expect(hook(page, "containers-note")).to_contain_text("Docker engine unavailable")
        await expect(hook(page, "containers")).to_have_attribute("data-stale", "true")
        await asyncio.to_thread(docker.start)
        await expect(hook(page, "containers-note")).to_have_text(
            re.compile(r"\d of 2 running"), timeout=30_000
        )
        await page.close()


async def test_the_page_works_through_nginx_under_a_path_prefix(
    kato: Kato, gateway: GatewayProcess, context: BrowserContext
) -> None:
    """Every URL in the page is relative: behind nginx at /monitor/ it works unchanged."""
    with prefixed_nginx(gateway.port) as nginx:
        page = await open_page(context, nginx.url)
        await kato.create_session()
        await expect(hook(page, "session-count")).to_have_text("1")
        await expect(toasts(page, "created")).to_have_count(1)
        await expect(hook(page, "connection-state")).to_have_attribute("data-state", "live")
        await page.close()
        seen = nginx.requests()
    assert any(line.startswith("/monitor/static/js/stream-worker.js 200") for line in seen)
