"""Where each alert was sent, in the page's alerts panel (real Chromium): the gateway process
with receivers on loopback (RecordingReceiver), the simulated KATO made degraded. Each row
says per receiver how its latest transition went, live from the stream's `notification`
events and from the list the panel fetches, with the detail per transition one click away."""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from tests.support.alert_rules import STEADY, status_rule
from tests.support.axe import violations
from tests.support.browser import playwright_or_skip
from tests.support.gateway import GatewayProcess
from tests.support.kato import Kato
from tests.support.notify_hooks import new_hook, rules_file, serving
from tests.support.npm import missing_node
from tests.support.page import (
    ENV,
    alert_rows,
    each_theme,
    hook,
    new_context,
    open_alerts_panel,
    open_page,
)
from tests.support.waiting import eventually

expect = playwright_or_skip().expect  # the module is skipped without them (10 s timeout)

if TYPE_CHECKING:
    from playwright.async_api import Browser, BrowserContext, Locator, Page

pytestmark = pytest.mark.asyncio(loop_scope="module")

# KATO degraded: a warning, and an info alert beside it that no route takes.
RULES = STEADY + status_rule(
    "kato_degraded_info", "degraded", "info", clear_for="2s", message="KATO is degraded (info)"
)
# A receiver's retry count once it has failed at least twice: "2 attempts" and on.
TWO_OR_MORE = r"(?:[2-9]|\d{2,}) attempts"
# The computed colour of each receiver's state in a row.
STATE_COLOURS = """row => Object.fromEntries([...row.querySelectorAll(
  '[data-testid=alert-notification]')].map(n => [n.dataset.state, getComputedStyle(n).color]))"""


def sent_to(row: Locator, receiver: str) -> Locator:
    """The row's line for one receiver: its latest transition's state."""
    return row.locator(f'[data-testid=alert-notification][data-receiver="{receiver}"]')


def details(row: Locator, receiver: str | None = None) -> Locator:
    """The row's detail, one line per receiver and transition (shown once opened); those of
    one receiver."""
    selector = "[data-testid=alert-notification-detail]"
    return row.locator(selector + (f'[data-receiver="{receiver}"]' if receiver else ""))


async def show_all(page: Page) -> None:
    """The panel's "All" view, which fetches the list from api/alerts; once it has answered."""
    await hook(page, "alert-filter-state").select_option("all")
    await expect(hook(page, "alert-list")).to_have_attribute("aria-busy", "false")


async def gateway_notices(gateway: GatewayProcess, rule: str) -> list[dict[str, Any]]:
    """The notifications api/alerts gives the firing alert of this rule ([] before it fires)."""
    async with httpx.AsyncClient() as client:
        response = await client.get(f"{gateway.url}/api/alerts?state=firing")
    assert response.status_code == 200, response.text
    found = [a for a in response.json()["alerts"] if a["rule"] == rule]
    return list(found[0]["notifications"] or []) if found else []


async def test_the_panel_shows_live_where_an_alert_was_sent_and_after_a_fetch(
    kato: Kato, tmp_path: Path, context: BrowserContext, browser: Browser
) -> None:
    ops = new_hook("ops", rules=["kato_degraded"])
    with serving(ops):
        env = {**ENV, **rules_file(tmp_path / "rules.toml", RULES, [ops])}
        with GatewayProcess(kato.url, env=env) as gateway:
            page = await open_page(context, f"{gateway.url}/")
            await open_alerts_panel(page)
            await kato.fault("health", "degraded")
            warning, info = alert_rows(page, severity="warning"), alert_rows(page, severity="info")
            await expect(sent_to(warning, "ops")).to_have_text("ops: delivered")
            await expect(sent_to(warning, "ops")).to_have_attribute("data-state", "delivered")
            await expect(info).to_have_count(1)
            await expect(info.get_by_test_id("alert-notifications")).to_be_hidden()

            # The ack is sent too: the line follows the latest transition, the detail has both.
            alert_id = await warning.get_attribute("data-id")
            async with httpx.AsyncClient() as client:
                acked = await client.post(
                    f"{gateway.url}/api/alerts/{alert_id}/ack", json={"by": "alice"}
                )
            assert acked.status_code == 200, acked.text
            line = sent_to(warning, "ops")
            await expect(line).to_have_attribute("data-transition", "acknowledged")
            await expect(line).to_have_attribute("data-state", "delivered")
            await expect(details(warning).first).to_be_hidden()  # until opened
            await warning.locator("summary").click()
            await expect(details(warning)).to_have_text(
                ["ops · fired: delivered", "ops · acknowledged: delivered"]
            )
            assert ops.receiver.count() == 2

            # Another browser hears none of those events. Its "Firing" view (which fetches
            # nothing) has it from the `notifications` state; its "All" view from the list.
            async with await new_context(browser, "dark") as other:
                late = await open_page(other, f"{gateway.url}/")
                await open_alerts_panel(late)
                firing = alert_rows(late, severity="warning", id=str(alert_id))
                await expect(sent_to(firing, "ops")).to_have_text("ops: delivered")
                line = sent_to(firing, "ops")
                await expect(line).to_have_attribute("data-transition", "acknowledged")
                await show_all(late)
                warning = alert_rows(late, severity="warning", id=str(alert_id))
                await expect(sent_to(warning, "ops")).to_have_text("ops: delivered")
                line = sent_to(warning, "ops")
                await expect(line).to_have_attribute("data-transition", "acknowledged")
                await warning.locator("summary").click()
                await expect(details(warning)).to_have_count(2)
                info = alert_rows(late, severity="info")
                await expect(info).to_have_count(1)
                await expect(info.get_by_test_id("alert-notifications")).to_be_hidden()


async def test_a_refusal_shows_failed_and_a_busy_receiver_retrying_then_delivered(
    kato: Kato, tmp_path: Path, context: BrowserContext
) -> None:
    pager, chat = new_hook("pager"), new_hook("chat")
    pager.receiver.otherwise = 404  # refused: never retried
    chat.receiver.otherwise = 503  # busy, until the test says otherwise
    with serving(pager, chat):
        env = {**ENV, **rules_file(tmp_path / "rules.toml", STEADY, [pager, chat])}
        with GatewayProcess(kato.url, env=env) as gateway:
            page = await open_page(context, f"{gateway.url}/")
            await open_alerts_panel(page)
            await kato.fault("health", "degraded")
            row = alert_rows(page, severity="warning")
            refused, busy = sent_to(row, "pager"), sent_to(row, "chat")
            await expect(refused).to_have_text("pager: failed: HTTP 404")
            await expect(refused).to_have_attribute("data-state", "failed")
            # Each retry's count shows as it happens (the backoff: 1 s, then 2 s, full jitter).
            await expect(busy).to_have_text(
                re.compile(rf"^chat: retrying \({TWO_OR_MORE}\): HTTP 503$"), timeout=20_000
            )
            await expect(busy).to_have_attribute("data-state", "pending")

            chat.receiver.otherwise = 200
            await expect(busy).to_have_text("chat: delivered", timeout=30_000)
            await expect(busy).to_have_attribute("data-state", "delivered")
            await row.locator("summary").click()
            await expect(details(row, "pager")).to_have_text(
                "pager · fired: failed (1 attempt): HTTP 404"
            )
            await expect(details(row, "chat")).to_have_text(
                re.compile(rf"^chat · fired: delivered \({TWO_OR_MORE}\)$")
            )
            await expect(refused).to_have_text("pager: failed: HTTP 404")
    assert pager.receiver.count() == 1
    assert chat.receiver.keys(200) == chat.receiver.keys()[-1:]


@pytest.mark.skipif(missing_node() is not None, reason=f"axe-core from npm: {missing_node()}")
async def test_every_state_reads_in_words_in_its_own_colour_and_axe_passes(
    kato: Kato, tmp_path: Path, context: BrowserContext
) -> None:
    wanted = [
        new_hook("ok"),
        new_hook("gone"),
        new_hook("busy"),
        new_hook("later", group_wait="5m"),  # still gathering
    ]
    wanted[1].receiver.otherwise = 404
    wanted[2].receiver.otherwise = 503
    with serving(*wanted) as made:
        env = {**ENV, **rules_file(tmp_path / "rules.toml", STEADY, made)}
        with GatewayProcess(kato.url, env=env) as gateway:
            await kato.fault("health", "degraded")

            async def every_state() -> bool:
                states = {
                    n["receiver"]: (n["state"], n["attempts"])
                    for n in await gateway_notices(gateway, "kato_degraded")
                }
                return (
                    states.keys() == {"ok", "gone", "busy", "later"}
                    and states["ok"][0] == "delivered"
                    and states["gone"][0] == "failed"
                    and states["busy"][0] == "pending"
                    and states["busy"][1] >= 1
                    and states["later"][0] == "gathering"
                )

            await eventually(every_state, 20, "every receiver in its state")
            page = await open_page(context, f"{gateway.url}/")
            await open_alerts_panel(page)
            await show_all(page)  # the list: "gathering" is only there
            row = alert_rows(page, severity="warning")
            await expect(sent_to(row, "ok")).to_have_text("ok: delivered")
            await expect(sent_to(row, "gone")).to_have_text("gone: failed: HTTP 404")
            await expect(sent_to(row, "busy")).to_have_text(
                re.compile(r"^busy: retrying \(\d+ attempts?\): HTTP 503$")
            )
            await expect(sent_to(row, "later")).to_have_text("later: waiting to send")
            await expect(row.get_by_test_id("alert-notifications")).to_contain_text(
                "Notifications: ok: delivered; gone: failed"
            )
            await row.locator("summary").click()
            await expect(details(row)).to_have_count(4)

            async for theme in each_theme(page):
                colours = await row.evaluate(STATE_COLOURS)
                assert len(set(colours.values())) == 4, f"{theme}: {colours}"
                found = await violations(page)
                assert not found, f"{theme} theme:\n" + "\n".join(found)
