"""The page's alerts (bell, panel, toasts) in a real Chromium, against the gateway process with
alert rules from a file and the simulated KATO made degraded or unhealthy."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from tests.support.alert_rules import STEADY, status_rule
from tests.support.browser import (
    ACCENT_COLOURS,
    WATCH_TOASTS,
    playwright_or_skip,
    redness,
    toast_log,
    watch_toasts,
)
from tests.support.gateway import GatewayProcess
from tests.support.kato import Kato
from tests.support.nginx import prefixed_nginx
from tests.support.page import (
    ENV,
    alert_rows,
    each_theme,
    hook,
    new_context,
    open_alerts_panel,
    open_page,
    toasts,
)
from tests.support.waiting import eventually

expect = playwright_or_skip().expect  # the module is skipped without them (10 s timeout)

if TYPE_CHECKING:
    from playwright.async_api import Browser, BrowserContext, Locator, Page

pytestmark = pytest.mark.asyncio(loop_scope="module")

ALERT_TOAST_LIFETIME = 10.0


# With an info alert when KATO is degraded too: two alerts of two severities at once. (Not
# "anything but healthy": an `unreachable` read would fire and resolve an alert of its own.)
RULES_WITH_INFO = STEADY + status_rule(
    "kato_degraded_info", "degraded", "info", clear_for="2s", message="KATO is degraded (info)"
)
# Four alerts in one poll. Rules are evaluated in file order, so the extra warning fires first
# and is the toast that leaves when the fourth arrives.
FOUR_AT_ONCE = "".join(
    status_rule(rule_id, "degraded", severity, for_="0s", message=message)
    for rule_id, severity, message in [
        ("degraded_extra", "warning", "First of four"),
        ("degraded_critical", "critical", "Second of four"),
        ("degraded_warning", "warning", "Third of four"),
        ("degraded_info", "info", "Fourth of four"),
    ]
)


@pytest.fixture
def gateway(kato: Kato, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[GatewayProcess]:
    """The gateway with alert rules (STEADY, or the test's via indirect
    parametrisation) and a store of its own."""
    rules = tmp_path / "rules.toml"
    rules.write_text(getattr(request, "param", STEADY))
    env = {
        **ENV,
        "SSE_MONITOR_ALERT_RULES": str(rules),
        "SSE_MONITOR_DB": str(tmp_path / "alerts.db"),
    }
    with GatewayProcess(kato.url, env=env) as process:
        yield process


async def show(page: Page, *, state: str | None = None, severity: str | None = None) -> None:
    """Set the panel's filters, and wait for the list it fetches (if any)."""
    if state is not None:
        await hook(page, "alert-filter-state").select_option(state)
    if severity is not None:
        await hook(page, "alert-filter-severity").select_option(severity)
    await expect(hook(page, "alert-list")).to_have_attribute("aria-busy", "false")


async def first_toast(log: Any, kind: str) -> dict[str, Any] | None:
    """The first toast of this kind in a toast log (an awaitable of toast_log)."""
    return next((r for r in (await log)["toasts"] if r["kind"] == kind), None)


async def at_least(log: Any, count: int) -> dict[str, Any] | None:
    """The toast log once it has recorded `count` toasts."""
    found = await log
    return found if len(found["toasts"]) >= count else None


# --- colours -------------------------------------------------------------------------------

# The contrast ratio (WCAG 2) of an element's text on its background, both painted over white.
TEXT_CONTRAST = """(el) => {
  const canvas = document.createElement('canvas');
  canvas.width = canvas.height = 1;
  const ctx = canvas.getContext('2d', {willReadFrequently: true});
  const luminance = (colour, under) => {
    ctx.fillStyle = under;
    ctx.fillRect(0, 0, 1, 1);
    ctx.fillStyle = colour;
    ctx.fillRect(0, 0, 1, 1);
    const [r, g, b] = [...ctx.getImageData(0, 0, 1, 1).data.slice(0, 3)].map(v => {
      const c = v / 255;
      return c <= 0.03928 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4;
    });
    return 0.2126 * r + 0.7152 * g + 0.0722 * b;
  };
  const style = getComputedStyle(el);
  const background = luminance(style.backgroundColor, '#fff');
  ctx.fillStyle = '#fff';
  ctx.fillRect(0, 0, 1, 1);
  ctx.fillStyle = style.backgroundColor;
  ctx.fillRect(0, 0, 1, 1);
  const [r, g, b] = ctx.getImageData(0, 0, 1, 1).data;
  const text = luminance(style.color, `rgb(${r}, ${g}, ${b})`);
  const [light, dark] = background > text ? [background, text] : [text, background];
  return (light + 0.05) / (dark + 0.05);
}"""


def amberness(colours: list[list[int]]) -> int:
    """Amber: red above green above blue (#f2a72a); 0 or less for red, green or blue."""
    return max(min(r - g, g - b) for r, g, b in colours)


def blueness(colours: list[list[int]]) -> int:
    return max(b - max(r, g) for r, g, b in colours)


async def check_palette(toast: Locator) -> None:
    """The toast's colour is its severity's, and its text reads at WCAG AA (4.5:1) on it."""
    kind = await toast.get_attribute("data-kind")
    colours = await toast.evaluate(ACCENT_COLOURS)
    if kind == "alert-critical":
        assert redness(colours) > 60 and amberness(colours) < 30, f"not red: {colours}"
    elif kind == "alert-warning":
        assert amberness(colours) > 30, f"not amber: {colours}"
    elif kind == "alert-info":
        assert blueness(colours) > 40, f"not blue: {colours}"
    else:
        raise AssertionError(f"not an alert toast: {kind}")
    contrast = await toast.evaluate(TEXT_CONTRAST)
    assert contrast >= 4.5, f"{kind}: text contrast {contrast:.2f}:1 is below 4.5:1"


# --- tests ---------------------------------------------------------------------------------


async def test_a_firing_alert_toasts_and_rings_the_bell(
    kato: Kato, gateway: GatewayProcess, context: BrowserContext
) -> None:
    page = await open_page(context, f"{gateway.url}/")
    await watch_toasts(page)
    bell, count = hook(page, "alert-bell"), hook(page, "alert-count")
    await expect(bell).to_have_attribute("aria-label", re.compile(r"none", re.I))
    await expect(count).to_be_hidden()

    await kato.fault("health", "degraded")
    warning = toasts(page, "alert-warning")
    await expect(warning).to_have_count(1)
    await expect(warning).to_contain_text("KATO is degraded")
    await expect(count).to_be_visible()
    await expect(count).to_have_text("1")
    await expect(bell).to_have_attribute("aria-label", re.compile(r"\b1\b"))
    await check_palette(warning)
    amber = await warning.evaluate(ACCENT_COLOURS)

    # Still there once a session toast's 5 s are over (waiting on the page's own clock), gone
    # after 10 s.
    record = await eventually(
        lambda: first_toast(toast_log(page), "alert-warning"), what="the warning toast in the log"
    )
    await page.wait_for_function(
        "appeared => performance.now() - appeared >= 6000", arg=record["appeared"], timeout=9000
    )
    await expect(warning).to_be_visible(timeout=100)
    await expect(warning).to_have_count(0, timeout=6500)
    record = await first_toast(toast_log(page), "alert-warning")
    lifetime = (record["gone"] - record["appeared"]) / 1000
    assert ALERT_TOAST_LIFETIME - 0.05 <= lifetime <= 11.5, f"the toast lived {lifetime:.2f} s"

    # Unhealthy: the warning resolves and a critical alert fires, in red.
    await kato.fault("health", "unhealthy")
    critical = toasts(page, "alert-critical")
    await expect(critical).to_have_count(1)
    await expect(critical).to_contain_text("KATO is unhealthy")
    await check_palette(critical)
    red = await critical.evaluate(ACCENT_COLOURS)
    assert redness(red) > redness(amber), (red, amber)
    await expect(count).to_have_text("1")
    await expect(warning).to_have_count(0)  # a resolution does not toast


async def test_an_ack_in_one_browser_reaches_another(
    kato: Kato, gateway: GatewayProcess, browser: Browser
) -> None:
    async with (
        await new_context(browser, "light") as first,
        await new_context(browser, "dark") as second,
    ):
        posts: list[str] = []
        first.on(
            "request",
            lambda r: posts.append(r.url) if r.method == "POST" and "/ack" in r.url else None,
        )
        page_a = await open_page(first, f"{gateway.url}/")
        page_b = await open_page(second, f"{gateway.url}/")
        await kato.fault("health", "degraded")
        for page in (page_a, page_b):
            await expect(hook(page, "alert-count")).to_have_text("1")
        await open_alerts_panel(page_b)
        row_b = alert_rows(page_b)
        await expect(row_b).to_have_count(1)
        await expect(row_b).to_have_attribute("data-acknowledged", "false")

        await open_alerts_panel(page_a)
        row_a = alert_rows(page_a)
        await expect(row_a).to_have_attribute("data-severity", "warning")
        await expect(row_a).to_have_attribute("data-state", "firing")
        await expect(row_a).to_contain_text("KATO is degraded")
        await expect(row_a).to_contain_text(re.compile(r"started \d+ s ago"))
        name, error = hook(page_a, "alert-ack-by"), hook(page_a, "alert-error")
        ack = row_a.get_by_test_id("alert-ack")

        # No name: the page asks for one, and posts nothing.
        await expect(name).to_have_value("")
        await ack.click()
        await expect(error).to_be_visible()
        await expect(error).to_contain_text("name")
        await expect(name).to_be_focused()
        assert posts == [], posts

        # The gateway refuses a name over 100 characters: its reason shows in the panel.
        alert_id = await row_a.get_attribute("data-id")
        async with httpx.AsyncClient(timeout=5) as client:
            url = f"{gateway.url}/api/alerts/{alert_id}/ack"
            refusal = await client.post(url, json={"by": "x" * 101})
        assert refusal.status_code == 400, refusal.text
        await name.fill("x" * 101)
        await ack.click()
        await expect(error).to_contain_text(refusal.json()["error"])
        assert len(posts) == 1, posts
        assert posts[0].startswith(f"{gateway.url}/api/alerts/{alert_id}/ack"), posts

        await name.fill("alice")
        await ack.click()
        await expect(row_a).to_have_attribute("data-acknowledged", "true")
        await expect(row_a).to_contain_text("acknowledged by alice")
        await expect(error).to_be_hidden()
        await expect(hook(page_a, "alert-count")).to_be_hidden()

        # The other browser: the bell goes quiet and the row says who acknowledged it.
        await expect(hook(page_b, "alert-count")).to_be_hidden()
        bell_b = hook(page_b, "alert-bell")
        await expect(bell_b).to_have_attribute("aria-label", re.compile(r"none", re.I))
        await expect(row_b).to_have_attribute("data-acknowledged", "true")
        await expect(row_b).to_contain_text("acknowledged by alice")
        await expect(row_b.get_by_test_id("alert-ack")).to_have_count(0)
        await expect(row_b).to_have_attribute("data-state", "firing")

        # The name is remembered.
        await page_a.reload()
        await expect(hook(page_a, "alert-ack-by")).to_have_value("alice")


@pytest.mark.parametrize("gateway", [RULES_WITH_INFO], ids=["with-info"], indirect=True)
async def test_the_panel_filters_by_severity_and_state(
    kato: Kato, gateway: GatewayProcess, context: BrowserContext
) -> None:
    lists: list[str] = []  # the page's requests for alert lists
    context.on("request", lambda r: lists.append(r.url) if "/api/alerts?" in r.url else None)
    page = await open_page(context, f"{gateway.url}/")
    panel = await open_alerts_panel(page)
    role_region = page.get_by_role("region", name="Alerts")
    await expect(role_region).to_have_attribute("data-testid", "alerts-panel")
    empty = hook(page, "alerts-empty")
    await expect(empty).to_be_visible()
    await expect(alert_rows(page)).to_have_count(0)

    await kato.fault("health", "degraded")  # a warning and an info alert
    await expect(alert_rows(page)).to_have_count(2)
    await expect(alert_rows(page, state="firing")).to_have_count(2)
    await show(page, severity="warning")
    await expect(alert_rows(page)).to_have_count(1)
    await expect(alert_rows(page, severity="warning")).to_contain_text("KATO is degraded")
    await show(page, severity="info")
    await expect(alert_rows(page)).to_have_count(1)
    await expect(alert_rows(page, severity="info")).to_contain_text("KATO is degraded (info)")
    await show(page, severity="critical")
    await expect(alert_rows(page)).to_have_count(0)
    await expect(empty).to_be_visible()
    await expect(empty).to_contain_text("critical")
    await show(page, severity="all")
    await expect(alert_rows(page)).to_have_count(2)
    assert lists == [], f"the firing list comes from the stream, yet it fetched {lists}"

    await kato.fault("health", "ok")  # both resolve: they leave the firing list
    await expect(alert_rows(page)).to_have_count(0)
    await expect(hook(page, "alert-count")).to_be_hidden()

    await show(page, state="resolved")
    await expect(alert_rows(page, state="resolved")).to_have_count(2)
    await expect(alert_rows(page)).to_have_count(2)
    await expect(alert_rows(page).first).to_contain_text("resolved")
    assert any("state=resolved" in url and "limit=50" in url for url in lists), lists
    await show(page, severity="info")
    await expect(alert_rows(page)).to_have_count(1)
    await expect(alert_rows(page, severity="info", state="resolved")).to_have_count(1)
    assert "severity=info" in lists[-1], lists
    await show(page, severity="all")
    await expect(alert_rows(page)).to_have_count(2)

    # Live, without fetching again: new alerts firing are not listed under "resolved" ...
    fetched = len(lists)
    await kato.fault("health", "degraded")
    await expect(hook(page, "alert-count")).to_have_text("2")
    await expect(alert_rows(page)).to_have_count(2)
    await expect(alert_rows(page, state="firing")).to_have_count(0)
    # ... until they resolve.
    await kato.fault("health", "ok")
    await expect(alert_rows(page, state="resolved")).to_have_count(4)
    assert len(lists) == fetched, f"fetched again: {lists[fetched:]}"

    await show(page, state="all")
    await expect(alert_rows(page)).to_have_count(4)
    await kato.fault("health", "degraded")
    await expect(alert_rows(page, state="firing")).to_have_count(2)
    await expect(alert_rows(page)).to_have_count(6)
    # Newest first: the firing pair on top.
    states = await alert_rows(page).evaluate_all("rows => rows.map(r => r.dataset.state)")
    assert states == ["firing"] * 2 + ["resolved"] * 4, states

    await hook(page, "alert-bell").click()
    await expect(panel).to_be_hidden()
    await expect(hook(page, "alert-bell")).to_have_attribute("aria-expanded", "false")


async def test_a_page_opened_later_shows_the_alert_without_a_toast(
    kato: Kato, gateway: GatewayProcess, browser: Browser, context: BrowserContext
) -> None:
    # The first tab is open when the alert fires: it toasts, and the browser's shared stream
    # keeps the event.
    first = await open_page(context, f"{gateway.url}/")
    await kato.fault("health", "degraded")
    await expect(toasts(first, "alert-warning")).to_have_count(1)
    alert_id = await eventually(
        lambda: first.evaluate(
            "() => document.querySelector('[data-testid=alert-row]')?.dataset.id"
        ),
        what="the alert's row in the first tab",
    )

    # A second tab joins that stream (the recent events come as a replay), and another browser
    # opens its own (the current state only). Both record their toasts from their first instant.
    async with await new_context(browser, "light") as other:
        for profile in (context, other):
            await profile.add_init_script(f"({WATCH_TOASTS})()")
        late = [
            await open_page(context, f"{gateway.url}/"),
            await open_page(other, f"{gateway.url}/"),
        ]
        for page in late:
            await expect(hook(page, "alert-count")).to_have_text("1")
            await expect(hook(page, "alert-bell")).to_have_attribute(
                "aria-label", re.compile(r"\b1\b")
            )
            await open_alerts_panel(page)
            row = alert_rows(page, id=alert_id)
            await expect(row).to_contain_text("KATO is degraded")
            await expect(row).to_have_attribute("data-acknowledged", "false")
            await expect(toasts(page)).to_have_count(0)
            log = await toast_log(page)
            assert log["max"] == 0, f"a toast for an old alert: {log['toasts']}"

        # A new alert does toast in both.
        await kato.fault("health", "unhealthy")
        for page in late:
            await expect(toasts(page, "alert-critical")).to_have_count(1)
            await expect(toasts(page, "alert-warning")).to_have_count(0)


@pytest.mark.parametrize("gateway", [FOUR_AT_ONCE], ids=["four-rules"], indirect=True)
async def test_at_most_three_toasts_when_four_alerts_fire_at_once(
    kato: Kato, gateway: GatewayProcess, context: BrowserContext
) -> None:
    page = await open_page(context, f"{gateway.url}/")
    await watch_toasts(page)
    await kato.fault("health", "degraded")
    await expect(hook(page, "alert-count")).to_have_text("4")
    shown = toasts(page)
    await expect(shown).to_have_count(3)
    log = await eventually(
        lambda: at_least(toast_log(page), 4), what="four alert toasts in the log"
    )
    assert log["max"] <= 3, f"{log['max']} toasts were visible at once: {log['toasts']}"
    first = log["toasts"][0]
    assert first["text"].startswith("First of four"), log["toasts"]
    assert first["gone"] is not None, "the oldest toast did not leave"
    assert first["gone"] - first["appeared"] < 1000, "it merely expired"
    kinds = await shown.evaluate_all("toasts => toasts.map(t => t.dataset.kind)")
    assert sorted(kinds) == ["alert-critical", "alert-info", "alert-warning"], kinds

    # Each severity's colour, with readable text, in both themes.
    async for _theme in each_theme(page):
        for toast in await shown.all():
            await check_palette(toast)
    await expect(shown).to_have_count(3)  # checked while all three were up


async def test_alerts_work_through_nginx_under_a_path_prefix(
    kato: Kato, gateway: GatewayProcess, context: BrowserContext
) -> None:
    """The list and the ack use URLs relative to the page: behind /monitor/ they stay there."""
    with prefixed_nginx(gateway.port) as nginx:
        page = await open_page(context, nginx.url)
        await kato.fault("health", "degraded")
        await expect(toasts(page, "alert-warning")).to_have_count(1)
        await open_alerts_panel(page)
        await show(page, state="all")
        row = alert_rows(page, state="firing")
        await expect(row).to_have_count(1)
        alert_id = await row.get_attribute("data-id")
        await hook(page, "alert-ack-by").fill("bob")
        await row.get_by_test_id("alert-ack").click()
        await expect(row).to_contain_text("acknowledged by bob")
        await expect(hook(page, "alert-error")).to_be_hidden()
        await page.close()
        seen = nginx.requests()
    assert any(line.startswith("/monitor/api/alerts?state=all") for line in seen), seen
    assert f"/monitor/api/alerts/{alert_id}/ack 200" in seen, seen
