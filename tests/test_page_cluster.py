"""The page in a real Chromium against a cluster of gateway nodes: it survives the loss of the
node its stream is on (through nginx, resuming on another node), and says plainly when its node
has lost the cluster's Redis."""

from __future__ import annotations

import asyncio
import re
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from tests.support.browser import RequestLog, playwright_or_skip, toast_log, watch_toasts
from tests.support.cluster import Cluster, ClusterNode
from tests.support.page import hook, new_context, open_page
from tests.support.sse_client import SSEStream
from tests.support.waiting import eventually

expect = playwright_or_skip().expect  # the module is skipped without them (10 s timeout)

if TYPE_CHECKING:
    from playwright.async_api import Browser, BrowserContext, Page

pytestmark = pytest.mark.asyncio(loop_scope="module")

# How long the browser waits before reconnecting (the gateway's `retry:`): long enough for the
# session changes to be logged while the page is away, even when the node killed was the
# producer (its lease, 5 s, runs out first), so that they reach the page by its resume.
RETRY_MS = 12_000
PAUSED = "Live updates paused · the gateway lost its Redis"
# The page's connection states, stamped with the page's clock as they change.
WATCH_STATES = """() => {
  const pill = document.querySelector('[data-testid=connection-state]');
  window.__states = [];
  const record = () => window.__states.push([pill.dataset.state, Date.now()]);
  new MutationObserver(record).observe(pill, {attributes: true, attributeFilter: ['data-state']});
  window.__sameDocument = true;  // gone if the page is reloaded
}"""
TOAST_TEXT = re.compile(r"^(\d+) sessions? (created|destroyed)\s*Total:\s*(\d+)")


@pytest.fixture
def nodes_behind_nginx(tmp_path: Path) -> Iterator[Cluster]:
    with Cluster(tmp_path, nodes=3, env={"SSE_MONITOR_RETRY_MS": str(RETRY_MS)}) as cluster:
        yield cluster


@pytest.fixture
def one_node(tmp_path: Path) -> Iterator[Cluster]:
    with Cluster(tmp_path, nodes=1, nginx=False) as cluster:
        yield cluster


def streams_answered(cluster: Cluster) -> list[int]:
    """How many /events requests each node has answered (an open stream counts)."""
    return [node.answered("/events") for node in cluster.nodes]


async def the_page_stream_node(cluster: Cluster) -> ClusterNode:
    """The one node serving a stream: the page's, as no other stream is open."""
    answered = await eventually(
        lambda: sum(counts := streams_answered(cluster)) == 1 and counts,
        10,
        "the node serving the page's stream",
    )
    return cluster.nodes[answered.index(1)]


async def change_sessions(cluster: Cluster, side: SSEStream, first: str) -> None:
    """Create two sessions, then destroy `first` (1 -> 2 -> 3 -> 2), each seen by the cluster
    (a `session_event` on `side`) before the next."""
    assert cluster.kato is not None
    for count, gone in ((2, None), (3, None), (2, first)):
        if gone is None:
            await cluster.kato.create_session()
        else:
            await cluster.kato.delete_session(gone)
        # 20 s: after a kill of the producer, its lease runs out before another one polls.
        await side.wait_for(lambda _, n=count: latest_count(side) == n, timeout=20)


def latest_count(stream: SSEStream) -> int | None:
    changes = stream.of("session_event")
    return changes[-1].json()["data"]["current_count"] if changes else None


def listed_changes(events: list[dict[str, Any]]) -> Counter[tuple[str, str]]:
    """What the page's list shows for these session events: the time and the text of each."""
    shown = Counter[tuple[str, str]]()
    for event in events:
        data = event["data"]
        sign = "+" if event["event_type"] == "session_created" else "\N{MINUS SIGN}"
        shown[(event["timestamp"], f"{sign}{data['delta']} (total {data['current_count']})")] += 1
    return shown


async def page_changes(page: Page) -> Counter[tuple[str, str]]:
    items = page.locator("[data-testid=session-events] li")
    pairs = await items.evaluate_all(
        "(items) => items.map((li) => [li.querySelector('time').dateTime,"
        " li.querySelector('.what').textContent])"
    )
    return Counter((when, what) for when, what in pairs)


def toasted_changes(events: list[dict[str, Any]]) -> Counter[tuple[str, int, int]]:
    return Counter(
        (
            "created" if event["event_type"] == "session_created" else "destroyed",
            event["data"]["delta"],
            event["data"]["current_count"],
        )
        for event in events
    )


async def page_toasts(page: Page, after: float) -> Counter[tuple[str, int, int]]:
    """The session toasts the page showed since `after` (page clock), each counted once."""
    shown = Counter[tuple[str, int, int]]()
    for toast in (await toast_log(page))["toasts"]:
        match = TOAST_TEXT.match(toast["text"])
        if toast["appeared"] > after and match:
            shown[(match[2], int(match[1]), int(match[3]))] += 1
    return shown


async def lists_each_once(page: Page, made: list[dict[str, Any]], before: int) -> bool:
    """Whether the page's list holds each of these changes once, after the `before` it had."""
    listed = await page_changes(page)
    expected = listed_changes(made)
    return all(listed[c] == 1 for c in expected) and listed.total() == before + len(expected)


async def toasts_for(
    page: Page, after: float, made: list[dict[str, Any]]
) -> Counter[tuple[str, int, int]] | None:
    """The session toasts shown since `after`, once there are as many as changes `made`."""
    shown = await page_toasts(page, after)
    return shown if sum(shown.values()) >= len(made) else None


async def readyz(node: ClusterNode) -> dict[str, Any]:
    async with httpx.AsyncClient(timeout=5) as client:
        return (await client.get(f"{node.url}/readyz")).json()


async def producing_again(node: ClusterNode) -> None:
    """Wait until the node is ready again (a producer appends its figures); fail with what its
    /readyz says."""

    async def ready() -> bool:
        return (await readyz(node))["ready"] is True

    try:
        await eventually(ready, 20, "the node to produce again")
    except AssertionError as exc:
        raise AssertionError(f"{exc}; /readyz: {await readyz(node)}") from None


async def test_the_page_resumes_on_another_node_when_its_node_is_killed(
    nodes_behind_nginx: Cluster, browser: Browser, context: BrowserContext
) -> None:
    """kill -9 of the page's node: EventSource reconnects by itself through nginx (no reload,
    its Last-Event-ID sent), lands on another node, and shows the changes made meanwhile
    (listed and toasted) each once."""
    cluster = nodes_behind_nginx
    assert cluster.kato is not None and cluster.nginx is not None
    # A long fallback interval: the count the page shows after resuming is the stream's.
    page = await open_page(context, f"{cluster.url}/?fallback_interval=600")
    await page.evaluate(WATCH_STATES)
    await watch_toasts(page)
    first = await cluster.kato.create_session()
    count = hook(page, "session-count")
    await expect(count).to_have_text("1")

    serving = await the_page_stream_node(cluster)
    survivors = [node for node in cluster.nodes if node is not serving]
    log = await RequestLog(browser, context, cluster.url).start()
    async with SSEStream(f"{survivors[0].url}/events") as side:
        await side.wait_for_event("metrics")
        answered = streams_answered(cluster)
        seen_before = len(side.of("session_event"))
        killed_at = await page.evaluate("performance.now()")
        killed_at_ms = await page.evaluate("Date.now()")
        await asyncio.to_thread(serving.kill)
        state = hook(page, "connection-state")
        await expect(state).not_to_have_attribute("data-state", "live")

        await change_sessions(cluster, side, first)
        made = [event.json() for event in side.of("session_event")[seen_before:]]
        states = await page.evaluate("window.__states")
        went_live = [at for name, at in states if name == "live" and at > killed_at_ms]
        assert not went_live, f"the page came back before the changes were logged: {states}"

        await expect(state).to_have_attribute("data-state", "live", timeout=RETRY_MS + 15_000)
        await expect(count).to_have_text("2")
        assert await page.evaluate("window.__sameDocument === true"), "the page was reloaded"

    # Every change made while the page was away, in its list and as a toast, once.
    await eventually(
        lambda: lists_each_once(page, made, before=1), 10, f"the list to add {listed_changes(made)}"
    )
    shown = await eventually(lambda: toasts_for(page, killed_at, made), 10, "a toast per change")
    assert shown == toasted_changes(made)

    # EventSource's own reconnect: the same URL, without the page's ?last_event_id=. The
    # changes reached it all the same, so it sent Last-Event-ID (which the browser adds below
    # what CDP reports of a shared worker's request): without an id a node sends the state only.
    retried = log.matching("/events")
    assert retried, "no reconnect request was seen"
    assert all(request.url == retried[0].url for request in retried), retried
    assert "last_event_id" not in retried[0].url, retried[0].url
    await log.stop()

    # It went live on a survivor; nginx logged the cut stream as the killed node's.
    after = streams_answered(cluster)
    moved = [node for node in survivors if after[node.index] > answered[node.index]]
    assert len(moved) == 1, (answered, after)
    cut = await eventually(lambda: cluster.nginx.upstreams("/events"), 5, "the cut stream")
    assert cut[0][1][-1] == f"127.0.0.1:{serving.port}", cut
    await page.close()


async def test_the_page_says_updates_are_paused_while_its_node_has_no_redis(
    one_node: Cluster, browser: Browser, context: BrowserContext
) -> None:
    """Redis stopped: the header says live updates are paused (in this tab, a tab joining the
    shared stream, and a page opened meanwhile); Redis back: Live again, and updates flow."""
    cluster = one_node
    (node,) = cluster.nodes
    assert cluster.kato is not None
    name = (await readyz(node))["node"]
    page = await open_page(context, f"{node.url}/")
    state = hook(page, "connection-state")
    await expect(state).to_have_text("Live")
    await expect(state).to_have_attribute("data-paused", "false")
    live_colour = await state.evaluate("(el) => getComputedStyle(el).backgroundColor")

    await asyncio.to_thread(cluster.redis.stop)
    await expect(state).to_have_text(PAUSED)
    await expect(state).to_have_attribute("data-state", "live")  # the stream itself stays open
    await expect(state).to_have_attribute("data-paused", "true")
    await expect(state).to_have_attribute("title", re.compile(re.escape(f"node {name} cannot")))
    paused_colour = await state.evaluate("(el) => getComputedStyle(el).backgroundColor")
    assert paused_colour != live_colour

    joined = await open_page(context, f"{node.url}/")  # shares the stream: told by the worker
    await expect(hook(joined, "connection-state")).to_have_text(PAUSED)
    async with await new_context(browser, "light") as elsewhere:
        opened = await open_page(elsewhere, f"{node.url}/")  # a stream of its own, opened now
        await expect(hook(opened, "connection-state")).to_have_text(PAUSED)

        await asyncio.to_thread(cluster.redis.start)
        for tab in (page, joined, opened):
            tab_state = hook(tab, "connection-state")
            await expect(tab_state).to_have_text("Live", timeout=20_000)
            await expect(tab_state).to_have_attribute("data-paused", "false")
            await expect(tab_state).to_have_attribute("title", "")
        # Updates flow again (Redis came back empty: a `reset` came first, and the state), once
        # the node produces again.
        await producing_again(node)
        await cluster.kato.create_session()
        for tab in (page, joined, opened):
            await expect(hook(tab, "session-count")).to_have_text("1", timeout=20_000)
