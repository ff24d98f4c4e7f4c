"""The page's sessions in a real Chromium against the gateway process: whether KATO's push
channel is live (the badge), pushed changes with their session and node, and the session list
read from a real redis-server that the simulated KATO (Redis session mode) writes as KATO does."""

from __future__ import annotations

import asyncio
import itertools
import re
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from sse_monitor.simulator.state import SimulatedKato
from tests.support.browser import playwright_or_skip
from tests.support.gateway import GatewayProcess
from tests.support.http import tls
from tests.support.kato import Kato, running_kato
from tests.support.kato_redis import seed
from tests.support.nginx import prefixed_nginx
from tests.support.page import ENV, hook, log_in, open_page, toasts
from tests.support.processes import free_port
from tests.support.redis_server import RedisServerProcess
from tests.support.sse_client import SSEStream
from tests.support.waiting import eventually

expect = playwright_or_skip().expect  # the module is skipped without them (10 s timeout)

if TYPE_CHECKING:
    from playwright.async_api import BrowserContext, Locator, Page, Request

pytestmark = pytest.mark.asyncio(loop_scope="module")

REFRESH = 1.0  # the session list's refresh in these tests (?sessions_interval=)
SLOW = {"SSE_MONITOR_POLL_INTERVAL": "30"}  # no tick comes between a push and the check
PUSH_DEADLINE = 0.5  # a pushed change on the page, counted from before the POST
VIEWER_TOKEN = "viewer-token-4f9c2a7e1b"  # tokens must be at least 16 characters


@pytest.fixture
def listing_kato(redis_url: str) -> Iterator[Kato]:
    """KATO in Redis session mode writing every session into a real Redis, in KATO's layout."""
    with running_kato(SimulatedKato(session_backend="redis", redis_url=redis_url)) as kato:
        yield kato


class ListRequests:
    """The page's requests of api/sessions (the list), as this process hears of them."""

    def __init__(self, context: BrowserContext) -> None:
        self.seen: list[tuple[float, str]] = []
        context.on("request", self._on_request)

    def _on_request(self, request: Request) -> None:
        if "/api/sessions?" in request.url:
            self.seen.append((time.monotonic(), request.url))

    def since(self, moment: float) -> list[tuple[float, str]]:
        return [(at, url) for at, url in self.seen if at > moment]


MINUS = "\N{MINUS SIGN}"  # how the page writes a destroyed change (a minus sign)


def span(first: int, last: int, total: int) -> str:
    """The pager's text: "11, en dash, 20 of 23"."""
    return f"{first}\N{EN DASH}{last} of {total}"


def rows(page: Page) -> Locator:
    return page.locator("[data-testid=session-list] [data-testid=session-row]")


async def listed(page: Page) -> list[str]:
    return await rows(page).evaluate_all("(rows) => rows.map((row) => row.dataset.sessionId)")


async def expect_listed(page: Page, ids: list[str], timeout: float = 10) -> None:
    """Wait until the rows are these sessions, in this order."""

    async def shown() -> bool:
        return await listed(page) == ids

    await eventually(shown, timeout=timeout, what=f"the list to show {ids}")


def short(session_id: str) -> str:
    """How the page shortens KATO's ids: the first 8 hex digits after `session-`."""
    return session_id.removeprefix("session-")[:8] + "…"


# Stamps (Date.now(), this machine's clock) when each change naming a session enters the list.
WATCH_CHANGES = """() => {
  window.__changesAt = {};
  const list = document.querySelector('[data-testid=session-events]');
  new MutationObserver((records) => {
    const now = Date.now();
    for (const record of records) {
      for (const node of record.addedNodes) {
        if (node.dataset && node.dataset.sessionId) {
          window.__changesAt[`${node.dataset.kind}:${node.dataset.sessionId}`] = now;
        }
      }
    }
  }).observe(list, {childList: true});
}"""


# --- push state -------------------------------------------------------------------------------


async def test_the_push_badge_follows_the_push_channel(
    redis_kato: Kato, context: BrowserContext
) -> None:
    """Live against KATO in Redis mode; down (polling only, with the reason) when KATO refuses
    and drops the socket; live again once KATO takes it."""
    with GatewayProcess(redis_kato.url, env=ENV) as gateway:
        page = await open_page(context, f"{gateway.url}/")
        badge = hook(page, "push-state")
        await expect(badge).to_have_attribute("data-state", "live")
        await expect(badge).to_have_text("push live")
        await expect(badge).to_have_attribute("title", re.compile(r"live since \d"))

        await redis_kato.push("refuse")
        await redis_kato.push("drop")
        await expect(badge).to_have_attribute("data-state", "down")
        await expect(badge).to_have_text("polling only")
        # The reconnections are refused (HTTP 403): the title says so, as the metrics do.
        await expect(badge).to_have_attribute("title", re.compile(r"down since .*403"))
        async with httpx.AsyncClient(timeout=5, verify=tls()) as client:
            push = (await client.get(f"{gateway.url}/api/snapshot")).json()["sessions"]["push"]
        assert push["state"] == "down" and "403" in push["error"], push
        await expect(badge).to_have_attribute("title", re.compile(re.escape(push["error"])))

        await redis_kato.push("on")
        await expect(badge).to_have_attribute("data-state", "live", timeout=40_000)
        await expect(badge).to_have_text("push live")
        await page.close()


async def test_with_push_off_the_badge_says_polling_only(
    redis_kato: Kato, context: BrowserContext
) -> None:
    env = {**ENV, "SSE_MONITOR_KATO_PUSH": "off"}
    with GatewayProcess(redis_kato.url, env=env) as gateway:
        page = await open_page(context, f"{gateway.url}/")
        badge = hook(page, "push-state")
        await expect(badge).to_have_attribute("data-state", "off")
        await expect(badge).to_have_text("polling only")
        await expect(badge).to_have_attribute("title", re.compile("SSE_MONITOR_KATO_PUSH=off"))

        # A change found by the poll says so, and names no session.
        await redis_kato.create_session()
        change = page.locator("[data-testid=session-events] li")
        await expect(change).to_have_count(1)
        await expect(change).to_have_attribute("data-source", "poll")
        await expect(change.locator(".who")).to_have_text("polled")
        await expect(change.locator("code")).to_have_count(0)
        await expect(toasts(page, "created")).to_contain_text("1 session created")
        await page.close()


# --- pushed changes ---------------------------------------------------------------------------


async def test_a_pushed_session_shows_its_id_and_node_within_500_ms(
    redis_kato: Kato, context: BrowserContext
) -> None:
    # A poll every 3 s: a change on the page within 500 ms of its POST came by push.
    with GatewayProcess(redis_kato.url, env={"SSE_MONITOR_POLL_INTERVAL": "3"}) as gateway:
        page = await open_page(context, f"{gateway.url}/")
        await expect(hook(page, "push-state")).to_have_attribute("data-state", "live")
        await expect(hook(page, "session-count")).to_have_text("0")
        worker = await redis_kato.push_worker()
        await page.evaluate(WATCH_CHANGES)

        posted = time.time()
        session_id = await redis_kato.create_session("push-test", worker)
        item = page.locator(f"[data-testid=session-events] li[data-session-id='{session_id}']")
        await expect(item).to_have_count(1, timeout=2000)
        shown = await page.evaluate(f"window.__changesAt['created:{session_id}']")
        created_after = shown / 1000 - posted
        await expect(item).to_have_attribute("data-source", "push")
        await expect(item).to_have_attribute("data-kind", "created")
        await expect(item).to_have_attribute("data-node-id", "push-test")
        await expect(item.locator("code")).to_have_text(short(session_id))
        await expect(item.locator("code")).to_have_attribute("title", session_id)
        await expect(item.locator(".who")).to_have_text(f"{short(session_id)} on push-test")
        await expect(item).to_contain_text("+1 (total 1)")
        toast = toasts(page, "created")
        await expect(toast).to_contain_text("1 session created")
        await expect(toast).to_contain_text(re.compile(r"Total:\s*1 · on push-test"))

        posted = time.time()
        await redis_kato.delete_session(session_id, worker)
        gone = page.locator(
            f"[data-testid=session-events] li[data-kind=destroyed][data-session-id='{session_id}']"
        )
        await expect(gone).to_have_count(1, timeout=2000)
        shown = await page.evaluate(f"window.__changesAt['destroyed:{session_id}']")
        destroyed_after = shown / 1000 - posted
        await expect(gone).to_have_attribute("data-source", "push")
        await expect(gone.locator(".who")).to_have_text(f"{short(session_id)} · explicit delete")
        await expect(gone).to_contain_text(f"{MINUS}1 (total 0)")
        await expect(toasts(page, "destroyed")).to_contain_text("1 session destroyed")

        delays = [created_after, destroyed_after]
        assert all(0 <= delay < PUSH_DEADLINE for delay in delays), delays
        print(f"pushed change on the page: {[f'{d * 1000:.0f} ms' for d in delays]}")
        await page.close()


# --- the count follows every change -----------------------------------------------------------

# For each toast, as it is added: its text, and what the count and the newest change in the
# recent list said at that moment (the observer runs at the end of the task that added it); and
# each change of the count's text (performance.now()).
WATCH_COUNT = """() => {
  const count = document.querySelector('[data-testid=session-count]');
  const recent = document.querySelector('[data-testid=session-events]');
  const region = document.querySelector('[data-testid=toasts]');
  const log = {counts: [{text: count.textContent, at: performance.now()}], toasts: []};
  const logged = new WeakSet();
  new MutationObserver(() => {
    const now = performance.now();
    if (log.counts.at(-1).text !== count.textContent) {
      log.counts.push({text: count.textContent, at: now});
    }
    for (const toast of region.querySelectorAll('[data-testid=toast]')) {
      if (logged.has(toast)) continue;
      logged.add(toast);
      log.toasts.push({
        text: toast.textContent.replace(/\\s+/g, ' ').trim(),
        count: count.textContent,
        recent: recent.firstElementChild ? recent.firstElementChild.textContent : null,
        at: now,
      });
    }
  }).observe(document.body, {subtree: true, childList: true, characterData: true});
  window.__countLog = log;
}"""


async def push_socket(kato: Kato) -> int:
    """Once the gateway holds KATO's push socket: the simulated worker holding it."""

    async def held() -> bool:
        by_worker = (await kato.stats())["websockets_by_worker"]
        return sum(by_worker) == 1

    await eventually(held, what="the gateway's push socket")
    return await kato.push_worker()


async def snapshot(gateway: GatewayProcess) -> dict[str, Any]:
    """The latest metrics (what a tick published last, and what a joining tab is given)."""
    async with httpx.AsyncClient(timeout=5, verify=tls()) as client:
        response = await client.get(f"{gateway.url}/api/snapshot")
    response.raise_for_status()
    return response.json()


async def test_the_count_moves_with_each_session_event_not_at_the_next_tick(
    redis_kato: Kato, context: BrowserContext
) -> None:
    """Created, created, destroyed (pushed), with no tick between: when each toast appears the
    count already says its "Total", as the recent list does."""
    with GatewayProcess(redis_kato.url, env=SLOW) as gateway:
        page = await open_page(context, f"{gateway.url}/")
        count = hook(page, "session-count")
        await expect(count).to_have_text("0")  # the first tick's figure, whenever it came
        worker = await push_socket(redis_kato)
        tick = (await snapshot(gateway))["timestamp"]
        await page.evaluate(WATCH_COUNT)

        first = await redis_kato.create_session("push-test", worker)
        await redis_kato.create_session("push-test", worker)
        await redis_kato.delete_session(first, worker)
        await expect(count).to_have_text("1")
        log = await eventually(
            lambda: page.evaluate("window.__countLog.toasts.length >= 3 && window.__countLog"),
            what="three toasts",
        )
        assert (await snapshot(gateway))["timestamp"] == tick, "a tick came in between"

        toasted = log["toasts"]
        assert [re.search(r"Total: (\d+)", t["text"]).group(1) for t in toasted] == ["1", "2", "1"]
        assert [t["count"] for t in toasted] == ["1", "2", "1"], toasted
        assert [re.search(r"total (\d+)", t["recent"]).group(1) for t in toasted] == [
            "1",
            "2",
            "1",
        ]
        # Each figure was on the count no later than its toast (the same task: no gap at all).
        assert [c["text"] for c in log["counts"]] == ["0", "1", "2", "1"], log["counts"]
        lags = [t["at"] - c["at"] for t, c in zip(toasted, log["counts"][1:], strict=True)]
        assert all(0 <= lag < 200 for lag in lags), lags
        await page.close()


async def test_a_tab_joining_between_ticks_keeps_the_newer_count(
    redis_kato: Kato, context: BrowserContext
) -> None:
    """A real older-after-newer order: a tab joining the shared stream is given the recent
    changes, then the latest metrics, read before the last change. The count stays at the
    change's figure; the replayed change is listed, not toasted."""
    with GatewayProcess(redis_kato.url, env=SLOW) as gateway:
        first = await open_page(context, f"{gateway.url}/")
        await expect(hook(first, "session-count")).to_have_text("0")
        worker = await push_socket(redis_kato)
        session_id = await redis_kato.create_session("push-test", worker)
        await expect(hook(first, "session-count")).to_have_text("1")
        tick = await snapshot(gateway)
        assert tick["sessions"]["active_count"] == 0, tick  # the latest metrics: older, 0

        second = await open_page(context, f"{gateway.url}/")
        item = second.locator(f"[data-testid=session-events] li[data-session-id='{session_id}']")
        await expect(item).to_have_count(1)
        await expect(hook(second, "push-state")).to_be_visible()  # the metrics are handled too
        assert await hook(second, "session-count").text_content() == "1"
        await expect(toasts(second)).to_have_count(0)
        assert (await snapshot(gateway))["timestamp"] == tick["timestamp"], "a tick came"
        await second.close()
        await first.close()


# A panel of the page's own module, fed readings in an order the stream does not produce.
COUNT_ORDER = """async () => {
  const { createSessionsPanel } = await import(new URL('static/js/sessions.js', document.baseURI));
  const panel = document.querySelector('[aria-labelledby=sessions-title]').cloneNode(true);
  const sessions = createSessionsPanel(panel);
  const at = (seconds) => `2026-11-30T10:00:${seconds}+00:00`;
  const step = (value, seconds, options) => {
    const taken = sessions.setCount(value, at(seconds), options);
    return [taken, panel.querySelector('[data-testid=session-count]').textContent,
            panel.querySelector('[data-testid=session-source]').textContent];
  };
  const steps = [
    step(6, '00.000000', {}),  // a tick
    step(7, '01.000000'),  // a session event
    step(6, '00.500000', {}),  // a tick read before it, arriving after it
    step(8, '02.000400'),  // a session event...
    step(7, '02.000200', {}),  // ... and a tick 200 µs older (the same millisecond)
    step(5, '03', {}),  // a newer tick (a TTL expiry): the poll is the truth
    step(9, '02.900000', {polled: true}),  // an older fallback answer
    step(4, '04.000001', {polled: true}),  // a newer one
  ];
  sessions.forgetCountTime();  // a reset: another gateway process, its clock maybe behind
  steps.push(step(3, '00.100000', {}));
  return steps;
}"""


async def test_the_count_shows_the_newest_reading_whatever_their_order(
    module_gateway: GatewayProcess, context: BrowserContext
) -> None:
    """Synthesized readings through the page's module (in Chromium): orders the real gateway
    cannot be made to produce on demand (a tie within a millisecond, an older fallback answer)."""
    page = await open_page(context, f"{module_gateway.url}/")
    polled = "polled while the stream is down"
    assert await page.evaluate(COUNT_ORDER) == [
        [True, "6", ""],
        [True, "7", ""],
        [False, "7", ""],
        [True, "8", ""],
        [False, "8", ""],
        [True, "5", ""],
        [False, "5", ""],
        [True, "4", polled],
        [True, "3", ""],
    ]
    await page.close()


async def test_the_fallback_count_is_stamped_no_earlier_than_the_changes_it_counts(
    redis_kato: Kato,
) -> None:
    """api/sessions/count moves with pushes between ticks: its timestamp must be as new, or the
    page (which keeps the newest reading) would refuse it until the next tick."""
    with GatewayProcess(redis_kato.url, env=SLOW) as gateway:
        async with SSEStream(f"{gateway.url}/events?topics=metrics,sessions") as stream:
            await stream.wait_for_event("metrics", lambda d: d["sessions"]["active_count"] == 0)
            worker = await push_socket(redis_kato)
            await redis_kato.create_session("push-test", worker)
            change = (await stream.wait_for_event("session_event")).json()
        async with httpx.AsyncClient(timeout=5, verify=tls()) as client:
            count = (await client.get(f"{gateway.url}/api/sessions/count")).json()
        tick = await snapshot(gateway)
    assert count["active_sessions"] == 1 == change["data"]["current_count"], (count, change)
    changed_at = datetime.fromisoformat(change["timestamp"])
    assert datetime.fromisoformat(tick["timestamp"]) < changed_at, "a tick came in between"
    assert datetime.fromisoformat(count["timestamp"]) >= changed_at, (count, change)


# --- the session list -------------------------------------------------------------------------


async def test_the_session_list_pages_ten_at_a_time_and_refreshes(
    listing_kato: Kato, redis_url: str, context: BrowserContext
) -> None:
    """23 sessions: 10, 10 and 3 rows, newest first; one created meanwhile appears at the next
    refresh; the list is read again every `sessions_interval`."""
    ids = [await listing_kato.create_session(f"node-{index % 3}") for index in range(23)]
    newest_first = ids[::-1]
    requests = ListRequests(context)
    env = {**ENV, "KATO_REDIS_URL": redis_url}
    with GatewayProcess(listing_kato.url, env=env) as gateway:
        page = await open_page(context, f"{gateway.url}/?sessions_interval={REFRESH:g}")
        panel = hook(page, "session-list-panel")
        await expect(panel).to_be_visible()
        table = page.get_by_role("table", name="Active sessions")
        await expect(table).to_have_attribute("data-testid", "session-list")
        await expect(rows(page)).to_have_count(10)
        await expect_listed(page, newest_first[:10])
        await expect(hook(page, "sessions-range")).to_have_text(span(1, 10, 23))
        prev = page.get_by_role("button", name=re.compile("Previous"))
        following = page.get_by_role("button", name=re.compile("Next"))
        await expect(prev).to_have_attribute("data-testid", "sessions-prev")
        await expect(following).to_have_attribute("data-testid", "sessions-next")
        await expect(prev).to_be_disabled()
        await expect(following).to_be_enabled()
        await expect(hook(page, "session-list-off")).to_be_hidden()
        await expect(hook(page, "session-list-error")).to_be_hidden()

        first = rows(page).first
        await expect(first.locator("code")).to_have_text(short(newest_first[0]))
        await expect(first.locator("code")).to_have_attribute("title", newest_first[0])
        await expect(first.locator(".node")).to_have_text("node-1")  # index 22
        await expect(first.locator(".created")).to_have_text(re.compile(r"^\d+ s ago$"))
        await expect(first.locator(".ttl")).to_have_text(re.compile(r"^in 59 min \d+ s$"))

        await following.click()
        await expect_listed(page, newest_first[10:20])
        await expect(hook(page, "sessions-range")).to_have_text(span(11, 20, 23))
        await expect(prev).to_be_enabled()
        await following.click()
        await expect_listed(page, newest_first[20:])
        await expect(hook(page, "sessions-range")).to_have_text(span(21, 23, 23))
        await expect(following).to_be_disabled()

        # A session created meanwhile (its session_event reads the list again, else the next
        # refresh does): it is the newest, and the last page has one more row.
        newest = await listing_kato.create_session("node-new")
        await expect(hook(page, "sessions-range")).to_have_text(span(21, 24, 24), timeout=6000)
        await expect_listed(page, [newest, *newest_first][20:])
        await expect(following).to_be_disabled()

        # Read every REFRESH seconds while nothing else happens (the last page, untouched).
        on_last_page = time.monotonic()
        refreshes = await eventually(
            lambda: len(r := [at for at, url in requests.since(on_last_page)]) >= 3 and r,
            timeout=3 * REFRESH + 5,
            what="three refreshes of the last page",
        )
        assert all("offset=20" in url for _, url in requests.since(on_last_page)), requests.seen
        gaps = [b - a for a, b in itertools.pairwise(refreshes)]
        assert all(REFRESH * 0.5 < gap < REFRESH * 1.6 for gap in gaps), gaps
        await prev.click()
        await prev.click()
        await expect(hook(page, "sessions-range")).to_have_text(span(1, 10, 24))
        await expect_listed(page, [newest, *newest_first][:10])
        await expect(rows(page).first.locator(".node")).to_have_text("node-new")
        assert all("limit=10" in url for _, url in requests.seen), requests.seen
        await page.close()


async def test_a_session_change_reads_the_list_again_at_once(
    listing_kato: Kato, redis_url: str, context: BrowserContext
) -> None:
    """The list refreshes every 30 s here, and the gateway polls every 30 s: a pushed change
    reads it again at once (and once more if the gateway's shared 2 s read predates it); a
    burst of changes reads it at most about once a second."""
    requests = ListRequests(context)
    env = {**SLOW, "KATO_REDIS_URL": redis_url}
    with GatewayProcess(listing_kato.url, env=env) as gateway:
        page = await open_page(context, f"{gateway.url}/?sessions_interval=30")
        await expect(hook(page, "sessions-range")).to_have_text("No sessions")
        await expect(hook(page, "session-count")).to_have_text("0")
        worker = await push_socket(listing_kato)

        session_id = await listing_kato.create_session("push-test", worker)
        await expect(hook(page, "session-count")).to_have_text("1")
        await expect_listed(page, [session_id], timeout=5)
        await expect(hook(page, "sessions-range")).to_have_text(span(1, 1, 1))

        burst_at = time.monotonic()
        ids = [await listing_kato.create_session("push-test", worker) for _ in range(5)]
        await expect(hook(page, "session-count")).to_have_text("6")
        await expect_listed(page, [*ids[::-1], session_id], timeout=5)
        window = time.monotonic() - burst_at
        reads = requests.since(burst_at)
        assert len(reads) <= window + 2, (window, reads)
        await page.close()


async def test_without_kato_redis_url_the_list_is_not_shown(
    module_gateway: GatewayProcess, context: BrowserContext
) -> None:
    """No list, and one line in the sessions panel saying how to turn it on."""
    page = await open_page(context, f"{module_gateway.url}/?sessions_interval={REFRESH:g}")
    note = hook(page, "session-list-off")
    await expect(note).to_be_visible()  # only once the gateway has answered
    await expect(note).to_contain_text("KATO_REDIS_URL")
    async with httpx.AsyncClient(timeout=5, verify=tls()) as client:
        answer = (await client.get(f"{module_gateway.url}/api/sessions")).json()
    assert answer["available"] is False
    await expect(note).to_have_attribute("title", answer["error"])
    await expect(hook(page, "session-list-panel")).to_be_hidden()
    await expect(rows(page)).to_have_count(0)
    await page.close()


async def test_a_stopped_redis_shows_the_error_and_keeps_the_list_stale(
    kato: Kato, own_redis: RedisServerProcess, tmp_path: Path, context: BrowserContext
) -> None:
    """Redis stops: the error shows and the last list stays, marked stale; Redis back on its
    port: the list is current again."""
    newest_first = seed(own_redis.url, 3)
    env = {**ENV, "KATO_REDIS_URL": own_redis.url}
    with GatewayProcess(kato.url, env=env) as gateway:
        page = await open_page(context, f"{gateway.url}/?sessions_interval={REFRESH:g}")
        panel, error = hook(page, "session-list-panel"), hook(page, "session-list-error")
        await expect_listed(page, newest_first)
        await expect(panel).to_have_attribute("data-stale", "false")
        await expect(error).to_be_hidden()

        port = own_redis.port
        await asyncio.to_thread(own_redis.stop)
        await expect(error).to_be_visible()
        await expect(error).to_contain_text("cannot be read")
        await expect(error).to_contain_text(f"127.0.0.1:{port}")
        await expect(panel).to_have_attribute("data-stale", "true")
        assert await listed(page) == newest_first, "the last list went"
        await expect(hook(page, "sessions-range")).to_have_text(span(1, 3, 3))
        cell = rows(page).first.locator("td").first
        stale_colour = await cell.evaluate("(td) => getComputedStyle(td).color")
        body_colour = await page.evaluate("getComputedStyle(document.body).color")
        assert stale_colour != body_colour, "a stale row looks like a current one"

        # The same redis-server port again (empty: it saves nothing), as a restarted Redis.
        await asyncio.to_thread(own_redis.start)
        assert own_redis.port == port
        await expect(panel).to_have_attribute("data-stale", "false", timeout=15_000)
        await expect(error).to_be_hidden()
        await expect(hook(page, "sessions-range")).to_have_text("No sessions")
        await expect(hook(page, "session-list-empty")).to_be_visible()
        await expect(rows(page)).to_have_count(0)
        await page.close()


async def test_an_unreachable_redis_from_the_start_shows_why(
    kato: Kato, context: BrowserContext
) -> None:
    url = f"redis://:hunter2-password@127.0.0.1:{free_port()}/0"  # nothing listens there
    with GatewayProcess(kato.url, env={**ENV, "KATO_REDIS_URL": url}) as gateway:
        page = await open_page(context, f"{gateway.url}/?sessions_interval={REFRESH:g}")
        panel, error = hook(page, "session-list-panel"), hook(page, "session-list-error")
        await expect(panel).to_be_visible()
        await expect(error).to_contain_text("Session list unavailable")
        await expect(error).to_contain_text("cannot be read")
        await expect(panel).to_have_attribute("data-stale", "true")
        await expect(hook(page, "session-list")).to_be_hidden()
        await expect(hook(page, "sessions-prev")).to_be_disabled()
        await expect(hook(page, "sessions-next")).to_be_disabled()
        assert "hunter2" not in await page.content()
        await page.close()


async def test_no_refresh_while_the_tab_is_hidden_and_one_at_once_when_shown(
    module_gateway: GatewayProcess, context: BrowserContext
) -> None:
    """document.visibilityState, as the browser sets it when the tab goes to the background
    (headless Chromium never does: the test sets it and fires the event)."""
    requests = ListRequests(context)
    page = await open_page(context, f"{module_gateway.url}/?sessions_interval={REFRESH:g}")
    await eventually(lambda: len(requests.seen) >= 2, what="two refreshes of the list")
    await page.evaluate(
        """() => {
          Object.defineProperty(document, 'visibilityState',
                                {configurable: true, get: () => 'hidden'});
          document.dispatchEvent(new Event('visibilitychange'));
        }"""
    )
    hidden_at = time.monotonic()
    # A window of several refresh intervals in which nothing may be read (one in flight aside).
    deadline = hidden_at + 4 * REFRESH
    await eventually(
        lambda: len(requests.since(hidden_at + 0.2)) > 0 or time.monotonic() > deadline,
        timeout=4 * REFRESH + 5,
        what="a quiet window",
    )
    assert not requests.since(hidden_at + 0.2), "read while hidden"

    shown_at = time.monotonic()
    await page.evaluate(
        """() => {
          Object.defineProperty(document, 'visibilityState',
                                {configurable: true, get: () => 'visible'});
          document.dispatchEvent(new Event('visibilitychange'));
        }"""
    )
    await eventually(lambda: requests.since(shown_at), what="a read once visible")
    assert requests.since(shown_at)[0][0] - shown_at < REFRESH / 2, "not at once"
    await page.close()


async def test_a_401_on_the_list_asks_for_a_login_then_it_reads_again(
    kato: Kato, own_redis: RedisServerProcess, context: BrowserContext
) -> None:
    """The login cookie is gone while the stream stays open: the list's next read is a 401,
    the login form shows (with Cancel: the dashboard still works) and reading stops; after the
    login it reads again."""
    newest_first = seed(own_redis.url, 2)
    requests = ListRequests(context)
    env = {**ENV, "KATO_REDIS_URL": own_redis.url, "SSE_MONITOR_TOKEN": VIEWER_TOKEN}
    with GatewayProcess(kato.url, env=env) as gateway:
        page = await context.new_page()
        await page.goto(f"{gateway.url}/?sessions_interval={REFRESH:g}")
        await log_in(page, VIEWER_TOKEN)
        await expect(hook(page, "connection-state")).to_have_attribute("data-state", "live")
        await expect_listed(page, newest_first)  # read again after the login

        await context.clear_cookies()
        form = hook(page, "login-form")
        await expect(form).to_be_visible()
        await expect(hook(page, "login-cancel")).to_be_visible()
        await expect(hook(page, "session-list-error")).to_contain_text("log in")
        await expect(hook(page, "session-list-panel")).to_have_attribute("data-stale", "true")
        refused_at = time.monotonic()
        deadline = refused_at + 3 * REFRESH
        await eventually(
            lambda: requests.since(refused_at) or time.monotonic() > deadline,
            timeout=3 * REFRESH + 5,
            what="a quiet window",
        )
        assert not requests.since(refused_at), "the list was read again without a login"

        await log_in(page, VIEWER_TOKEN)
        await expect(form).to_be_hidden()
        await expect(hook(page, "session-list-panel")).to_have_attribute("data-stale", "false")
        await expect(hook(page, "session-list-error")).to_be_hidden()
        await page.close()


async def test_the_list_works_through_nginx_under_a_path_prefix(
    listing_kato: Kato, redis_url: str, context: BrowserContext
) -> None:
    session_id = await listing_kato.create_session("behind-nginx")
    env = {**ENV, "KATO_REDIS_URL": redis_url}
    with (
        GatewayProcess(listing_kato.url, env=env) as gateway,
        prefixed_nginx(gateway.port) as nginx,
    ):
        page = await open_page(context, nginx.url)
        await expect_listed(page, [session_id])
        await expect(hook(page, "sessions-range")).to_have_text(span(1, 1, 1))
        await page.close()
        seen = nginx.requests()
    assert "/monitor/api/sessions?offset=0&limit=10 200" in seen, seen
