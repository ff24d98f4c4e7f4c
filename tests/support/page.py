"""The dashboard page as the page tests drive it in Chromium: the gateway settings they share,
a browser profile, a tab on the live page, its parts by test id, its toasts, its two themes,
logging in, and the alerts panel.

playwright is imported only when called: a page-test module skips itself without it
(tests.support.browser.playwright_or_skip) before any of these runs.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from playwright.async_api import Browser, BrowserContext, Locator, Page

POLL = 0.3  # the gateway's poll interval in the page tests: a change reaches the page quickly
ENV = {"SSE_MONITOR_POLL_INTERVAL": str(POLL)}  # the settings every page test's gateway starts from
THEME = "document.documentElement.dataset.theme"  # the page's theme, in JavaScript


def containers_env(docker_host: str, names: str) -> dict[str, str]:
    """A page test's gateway settings with container figures on, from the Docker engine at
    `docker_host`, for the containers `names` (comma-separated)."""
    return {
        **ENV,
        "DOCKER_HOST": docker_host,
        "SSE_MONITOR_CONTAINER_STATS": "on",
        "SSE_MONITOR_CONTAINERS": names,
    }


async def new_context(
    browser: Browser,
    color_scheme: Literal["light", "dark"],
    width: int = 1280,
    height: int = 800,
    phone: bool = False,
) -> BrowserContext:
    """A fresh browser profile (own cookies, storage and SharedWorkers) in this colour scheme,
    on a screen of this size; `phone`: a touch screen with a mobile browser's viewport."""
    context = await browser.new_context(
        viewport={"width": width, "height": height},
        color_scheme=color_scheme,
        is_mobile=phone,
        has_touch=phone,
    )
    context.set_default_timeout(10_000)
    return context


def hook(page: Page, name: str) -> Locator:
    """The page's part with this `data-testid`."""
    return page.get_by_test_id(name)


def toasts(page: Page, kind: str | None = None) -> Locator:
    selector = "[data-testid=toasts] [data-testid=toast]"
    return page.locator(selector + (f"[data-kind={kind}]" if kind else ""))


async def goto(context: BrowserContext, url: str) -> Page:
    """A new tab on the page, not waiting for any state."""
    page = await context.new_page()
    await page.goto(url, wait_until="domcontentloaded")
    return page


async def open_page(context: BrowserContext, url: str) -> Page:
    """A new tab on the dashboard, once its stream is live."""
    from playwright.async_api import expect

    page = await goto(context, url)
    await expect(hook(page, "connection-state")).to_have_attribute("data-state", "live")
    return page


async def settled(page: Page) -> None:
    """Wait until every finite animation and transition (a toast sliding in) has finished."""
    await page.wait_for_function(
        """document.getAnimations().every(a => a.playState !== 'running'
             || a.effect === null || a.effect.getComputedTiming().endTime === Infinity)"""
    )


async def each_theme(page: Page) -> AsyncIterator[str]:
    """Show the page in the light theme, then in the dark one (with its toggle), each settled:
    for a test that checks something in both."""
    for theme in ("light", "dark"):
        if await page.evaluate(THEME) != theme:
            await hook(page, "theme-toggle").click()
            await page.wait_for_function(f"{THEME} === '{theme}'")
        await settled(page)
        yield theme


async def log_in(page: Page, token: str) -> None:
    """Log in with the login form the page shows in place of the dashboard."""
    from playwright.async_api import expect

    await expect(hook(page, "login-form")).to_be_visible()
    await hook(page, "login-token").fill(token)
    await hook(page, "login-submit").click()


def alert_rows(page: Page, **attributes: str) -> Locator:
    """The alerts panel's rows, those with these `data-` attributes (state="firing")."""
    selector = "[data-testid=alerts-panel] [data-testid=alert-row]"
    selector += "".join(f'[data-{name}="{value}"]' for name, value in attributes.items())
    return page.locator(selector)


async def open_alerts_panel(page: Page) -> Locator:
    """Click the bell; the panel, once it shows."""
    from playwright.async_api import expect

    bell = hook(page, "alert-bell")
    await expect(bell).to_have_attribute("aria-expanded", "false")
    await bell.click()
    await expect(bell).to_have_attribute("aria-expanded", "true")
    panel = hook(page, "alerts-panel")
    await expect(panel).to_be_visible()
    return panel
