"""The page's layout and accessibility in a real Chromium: on a phone (390 px, touch), a laptop
and wall screens (1280 to 2560 px), in both themes, checked with axe-core; screenshots of each in
artifacts/screenshots/.

The page is shown whole: KATO's sessions listed from its Redis, containers from a real Docker
engine (one with a long name, one missing), alert rules that fire.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import pytest
import pytest_asyncio

from sse_monitor.simulator.state import SimulatedKato
from tests.support.alert_rules import STEADY
from tests.support.axe import violations
from tests.support.browser import playwright_or_skip
from tests.support.docker_engine import DockerEngineProcess
from tests.support.gateway import GatewayProcess
from tests.support.kato import Kato, running_kato
from tests.support.npm import missing_node
from tests.support.page import (
    ENV,
    alert_rows,
    containers_env,
    each_theme,
    goto,
    hook,
    new_context,
    open_alerts_panel,
    open_page,
    settled,
    toasts,
)

expect = playwright_or_skip().expect  # the module is skipped without them (10 s timeout)

if TYPE_CHECKING:
    from playwright.async_api import Browser, BrowserContext, Locator, Page

pytestmark = [
    pytest.mark.asyncio(loop_scope="module"),
    pytest.mark.skipif(missing_node() is not None, reason=f"axe-core from npm: {missing_node()}"),
]

SCREENSHOTS = Path(__file__).resolve().parents[1] / "artifacts" / "screenshots"
PHONE = (390, 844)
WIDE = (1280, 1440, 1920, 2560)
THUMB = 44  # px: the smallest touch target (WCAG 2.5.5, Apple's and Google's guidelines)
SESSIONS = 12  # more than the session list's page of ten
VIEWER_TOKEN = "viewer-token-7d2e9b4c1a"

# How wide the document is, and where each visible panel and the main column sit (CSS px).
LAYOUT = """() => {
  const box = (el) => {
    const r = el.getBoundingClientRect();
    return {left: r.left, right: r.right, top: r.top, bottom: r.bottom, width: r.width};
  };
  const main = document.querySelector('main');
  const style = getComputedStyle(main);
  const content = box(main);
  content.left += parseFloat(style.paddingLeft);
  content.right -= parseFloat(style.paddingRight);
  const panels = [...main.querySelectorAll(':scope > .panel')]
    .filter(el => el.checkVisibility())
    .map(el => [el.getAttribute('aria-labelledby'), box(el)]);
  return {
    scrollWidth: document.documentElement.scrollWidth,
    innerWidth: innerWidth,
    content: content,
    panels: Object.fromEntries(panels),
  };
}"""

# Each grid of charts: its panel, its width, and how much of it its charts reach across.
CHART_GRIDS = """() => [...document.querySelectorAll('main .charts')]
  .filter(grid => grid.checkVisibility())
  .map(grid => {
    const box = grid.getBoundingClientRect();
    const rights = [...grid.querySelectorAll('.chart')].map(c => c.getBoundingClientRect().right);
    return {
      panel: grid.closest('main > .panel').getAttribute('aria-labelledby'),
      width: box.width,
      used: Math.max(box.left, ...rights) - box.left,
    };
  })"""

# Scroll a table's region to its far end, in one go (the rows are drawn again at every tick):
# how far it could and did scroll, and where the first row's name sat before and after.
SCROLL_ACROSS = """(region) => {
  const name = () => region.querySelector('tbody th').getBoundingClientRect().left;
  const before = name();
  region.scrollLeft = region.scrollWidth;
  return {
    overflow: region.scrollWidth - region.clientWidth,
    scrolled: region.scrollLeft,
    before: before,
    after: name(),
  };
}"""

# The toasts' strip, and each toast's dismiss button (width, height), measured at once.
TOASTS_LAYOUT = """(region) => {
  const r = region.getBoundingClientRect();
  const buttons = [...region.querySelectorAll('[data-testid=toast-dismiss]')]
    .map(b => b.getBoundingClientRect())
    .map(b => [b.width, b.height]);
  return {left: r.left, right: r.right, top: r.top, bottom: r.bottom, buttons: buttons};
}"""


@dataclass
class Dashboard:
    kato: Kato
    gateway: GatewayProcess

    @property
    def url(self) -> str:
        return f"{self.gateway.url}/"


@pytest.fixture(scope="module")
def dashboard(
    redis_server: str, engine: DockerEngineProcess, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Dashboard]:
    """One gateway showing every panel, for the module: KATO (pushing, its sessions in Redis)
    with more sessions than a page of the list, two containers running and one missing."""
    import redis

    with redis.Redis.from_url(redis_server) as client:
        client.flushall()
    if not engine.running:
        engine.start()
    engine.run("kato", "--memory", "64m")
    engine.run("kato-clickhouse-with-a-long-name", "--memory", "32m")
    rules = tmp_path_factory.mktemp("rules") / "rules.toml"
    rules.write_text(STEADY)
    names = "kato,kato-clickhouse-with-a-long-name,kato-qdrant"
    env = {
        **containers_env(engine.host, names),
        "KATO_REDIS_URL": redis_server,
        "SSE_MONITOR_ALERT_RULES": str(rules),
    }
    state = SimulatedKato(session_backend="redis", redis_url=redis_server)
    try:
        with running_kato(state) as kato, GatewayProcess(kato.url, env=env) as gateway:
            for _ in range(SESSIONS):
                httpx.post(f"{kato.url}/sessions", json={"node_id": "test"}).raise_for_status()
            yield Dashboard(kato, gateway)
    finally:
        engine.remove_all()


@pytest_asyncio.fixture(loop_scope="module")
async def phone(browser: Browser) -> AsyncIterator[BrowserContext]:
    """A phone: 390 x 844, touch, a mobile browser's viewport (light; each_theme shows both)."""
    async with await new_context(browser, "light", *PHONE, phone=True) as context:
        yield context


async def open_dashboard(context: BrowserContext, dashboard: Dashboard) -> Page:
    """The page, live, with a page of the session list and every container's row."""
    page = await open_page(context, dashboard.url)
    await expect(page.locator("[data-testid=session-list] tbody tr")).to_have_count(10)
    await expect(page.locator("[data-testid=container-row]")).to_have_count(3)
    return page


async def screenshot(page: Page, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    await page.screenshot(path=path, full_page=True)
    assert path.stat().st_size > 10_000, f"{path} is nearly empty"


async def assert_thumb_sized(locator: Locator, width: float = THUMB) -> None:
    """Every element `locator` matches (at least one) is a thumb's height, and `width` wide
    (a text control: any width)."""
    count = await locator.count()
    assert count > 0, f"nothing matches {locator}"
    for index in range(count):
        box = await locator.nth(index).bounding_box()
        assert box is not None, f"{locator} #{index} is not shown"
        assert box["width"] >= width and box["height"] >= THUMB, f"{locator} #{index}: {box}"


# --- a phone --------------------------------------------------------------------------------


async def test_a_phone_never_scrolls_sideways(dashboard: Dashboard, phone: BrowserContext) -> None:
    """No horizontal scroll of the page at 390 px: the containers table, wider than the phone,
    scrolls inside its panel with the names kept in sight; the header's buttons are thumb-sized."""
    page = await open_dashboard(phone, dashboard)
    layout = await page.evaluate(LAYOUT)
    assert layout["innerWidth"] == PHONE[0], layout  # a mobile viewport did not zoom out
    assert layout["scrollWidth"] <= PHONE[0], f"the page scrolls sideways: {layout}"
    assert set(layout["panels"]) >= {"kato-title", "containers-title", "session-list-title"}
    for name, box in layout["panels"].items():
        assert box["left"] >= 0 and box["right"] <= PHONE[0], f"{name} spills out: {box}"
    await assert_thumb_sized(page.locator("header button:visible"))
    await assert_thumb_sized(page.locator(".range-switch button"))
    await assert_thumb_sized(page.locator("[data-testid=session-list-panel] .pager button"), 0)
    async for theme in each_theme(page):
        await screenshot(page, f"layout-390-{theme}")

    table = hook(page, "containers").locator(".table-scroll")
    scroll = await table.evaluate(SCROLL_ACROSS)
    assert scroll["overflow"] > 0, f"the containers table fits a phone: nothing checked {scroll}"
    assert scroll["scrolled"] > 0, f"the containers table does not scroll: {scroll}"
    assert scroll["after"] == pytest.approx(scroll["before"], abs=1), f"names hidden: {scroll}"
    assert (await page.evaluate(LAYOUT))["scrollWidth"] <= PHONE[0]


async def test_toasts_on_a_phone_leave_the_screen_usable(
    dashboard: Dashboard, phone: BrowserContext
) -> None:
    """Three toasts take a strip at the bottom, inside the screen; each X is thumb-sized and
    a tap on it dismisses that toast."""
    page = await open_dashboard(phone, dashboard)
    count = hook(page, "session-count")
    total = int(await count.text_content() or "")
    for _ in range(3):  # one change at a time, each a toast of its own
        await dashboard.kato.create_session()
        total += 1
        await expect(count).to_have_text(str(total))
    await expect(toasts(page)).to_have_count(3)
    await settled(page)
    strip = await hook(page, "toasts").evaluate(TOASTS_LAYOUT)
    assert len(strip["buttons"]) == 3, f"a toast left before it was measured: {strip}"
    assert strip["left"] >= 0 and strip["right"] <= PHONE[0], strip
    assert strip["bottom"] <= PHONE[1], strip
    assert strip["bottom"] - strip["top"] <= 0.4 * PHONE[1], f"three toasts cover it: {strip}"
    for width, height in strip["buttons"]:
        assert width >= THUMB and height >= THUMB, f"an X is {width} x {height}: {strip}"

    newest = toasts(page).last
    text = await newest.text_content()
    await newest.get_by_test_id("toast-dismiss").tap()
    await expect(toasts(page).filter(has_text=text)).to_have_count(0, timeout=1000)
    await expect(toasts(page)).not_to_have_count(0)  # the others stay


async def test_the_alerts_panel_on_a_phone_is_a_sheet_a_thumb_can_close(
    dashboard: Dashboard, phone: BrowserContext
) -> None:
    """The bell opens the panel full-width over the bottom of the screen; its controls are
    thumb-sized, and its close button, in sight, closes it and gives the focus back to the bell."""
    page = await open_dashboard(phone, dashboard)
    await dashboard.kato.fault("health", "degraded")  # a warning fires: a row to acknowledge
    try:
        await expect(hook(page, "kato-status")).to_have_attribute("data-status", "degraded")
        await hook(page, "alert-bell").tap()
        panel = hook(page, "alerts-panel")
        await expect(panel).to_be_visible()
        await expect(alert_rows(page, state="firing")).not_to_have_count(0)
        await settled(page)
        box = await panel.bounding_box()
        assert box is not None
        assert box["x"] == 0 and box["width"] == PHONE[0], f"not full-width: {box}"
        bottom = box["y"] + box["height"]
        assert bottom == pytest.approx(PHONE[1], abs=1), f"not at the bottom: {box}"
        assert box["y"] >= 0.2 * PHONE[1], f"it hides the whole screen: {box}"
        close = hook(page, "alerts-close")
        await expect(close).to_be_in_viewport()
        await assert_thumb_sized(close)
        await assert_thumb_sized(panel.locator("select, input, [data-testid=alert-ack]"), 0)
        async for theme in each_theme(page):
            await screenshot(page, f"alerts-390-{theme}")

        await close.tap()
        await expect(panel).to_be_hidden()
        await expect(hook(page, "alert-bell")).to_have_attribute("aria-expanded", "false")
        await expect(hook(page, "alert-bell")).to_be_focused()
    finally:
        await dashboard.kato.fault("health", "ok")


# --- wide screens ---------------------------------------------------------------------------


async def test_wide_screens_are_filled_and_the_charts_grow_with_them(
    dashboard: Dashboard, context: BrowserContext
) -> None:
    """From a laptop to a wall screen the top row (KATO, Sessions) spans the whole width, the
    wide panels too, KATO's panel grows with the screen, and every row of charts fills its
    panel."""
    page = await open_dashboard(context, dashboard)
    kato_widths = []
    for width in WIDE:
        await page.set_viewport_size({"width": width, "height": 1000})
        layout = await page.evaluate(LAYOUT)
        assert layout["scrollWidth"] <= width, layout
        content, panels = layout["content"], layout["panels"]
        kato, sessions = panels["kato-title"], panels["sessions-title"]
        assert kato["top"] == sessions["top"], f"not one row at {width}: {panels}"
        assert kato["left"] == pytest.approx(content["left"], abs=1), (width, layout)
        assert sessions["right"] == pytest.approx(content["right"], abs=1), (width, layout)
        for name in ("session-list-title", "containers-title"):
            box = panels[name]
            assert box["left"] == pytest.approx(content["left"], abs=1), (width, name, box)
            assert box["right"] == pytest.approx(content["right"], abs=1), (width, name, box)
        assert content["right"] - content["left"] >= 0.95 * width, (width, content)
        grids = await page.evaluate(CHART_GRIDS)
        assert {g["panel"] for g in grids} >= {"kato-title", "containers-title"}, grids
        for grid in grids:
            assert grid["used"] >= 0.9 * grid["width"], f"charts leave room at {width}: {grid}"
        kato_widths.append(kato["width"])
        if width in (1280, 1920):
            async for theme in each_theme(page):
                await screenshot(page, f"layout-{width}-{theme}")
    assert kato_widths == sorted(kato_widths) and kato_widths[-1] > 1.8 * kato_widths[0], (
        f"KATO's panel at {WIDE} px: {kato_widths}"
    )


# --- accessibility --------------------------------------------------------------------------


async def assert_accessible(page: Page, state: str) -> None:
    """No axe violation in either theme, with the alerts panel closed and open."""
    bell = hook(page, "alert-bell")
    async for theme in each_theme(page):
        for panel in ("closed", "open"):
            if panel == "open":
                await open_alerts_panel(page)
                await expect(hook(page, "alert-list")).to_have_attribute("aria-busy", "false")
                await settled(page)
            found = await violations(page)
            assert not found, f"{state}, {theme} theme, alerts panel {panel}:\n" + "\n".join(found)
            if panel == "open":
                await bell.click()
                await expect(bell).to_have_attribute("aria-expanded", "false")


@pytest.mark.parametrize("screen", ["laptop", "phone"])
async def test_axe_finds_nothing_wrong_in_either_theme(
    dashboard: Dashboard, browser: Browser, screen: str
) -> None:
    """Live with toasts showing; KATO degraded with an alert firing; KATO unreachable and its
    push channel down (every badge colour, stale figures)."""
    width, height = PHONE if screen == "phone" else (1280, 800)
    async with await new_context(browser, "light", width, height, phone=screen == "phone") as ctx:
        page = await open_dashboard(ctx, dashboard)
        await dashboard.kato.create_session()
        await expect(toasts(page, "created")).not_to_have_count(0)
        await assert_accessible(page, "live")
        try:
            await dashboard.kato.fault("health", "degraded")
            await expect(alert_rows(page, state="firing")).not_to_have_count(0)
            await expect(hook(page, "kato-status")).to_have_attribute("data-status", "degraded")
            await assert_accessible(page, "KATO degraded, an alert firing")

            await dashboard.kato.push("refuse")
            await dashboard.kato.push("drop")
            await dashboard.kato.fault("all", "http500")
            await expect(hook(page, "kato-status")).to_have_attribute("data-status", "unreachable")
            await expect(hook(page, "push-state")).to_have_attribute("data-state", "down")
            await assert_accessible(page, "KATO unreachable, push down")
        finally:
            await dashboard.kato.fault("all", "ok")
            await dashboard.kato.push("on")


async def test_axe_finds_nothing_wrong_while_the_stream_is_down_or_asks_for_a_login(
    kato: Kato, context: BrowserContext
) -> None:
    """The connection badge's other colours: reconnecting, and the login form of a gateway that
    wants a token."""
    with GatewayProcess(kato.url, env=ENV) as gateway:
        page = await open_page(context, f"{gateway.url}/")
        await asyncio.to_thread(gateway.stop)
        state = hook(page, "connection-state")
        await expect(state).to_have_attribute("data-state", "reconnecting")
        await assert_accessible(page, "stream reconnecting")
        await page.close()

    with GatewayProcess(kato.url, env={**ENV, "SSE_MONITOR_TOKEN": VIEWER_TOKEN}) as gateway:
        page = await goto(context, f"{gateway.url}/")
        await expect(hook(page, "login-form")).to_be_visible()
        await expect(hook(page, "connection-state")).to_have_attribute("data-state", "unauthorized")
        async for theme in each_theme(page):
            found = await violations(page)
            assert not found, f"login form, {theme} theme:\n" + "\n".join(found)
        await page.close()
