"""The page under access control and stream limits, in a real Chromium against the gateway
process: the login form (401), busy answers (429 / 503) retried after their Retry-After, the
admin token for acknowledging, logging out, and the topics the page subscribes to."""

from __future__ import annotations

import itertools
import json
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from tests.support.alert_rules import DEGRADED_AND_UNHEALTHY
from tests.support.browser import RequestLog, playwright_or_skip
from tests.support.gateway import GatewayProcess
from tests.support.kato import Kato
from tests.support.nginx import prefixed_nginx
from tests.support.page import (
    ENV,
    alert_rows,
    goto,
    hook,
    log_in,
    open_alerts_panel,
    toasts,
)
from tests.support.sse_client import SSEStream
from tests.support.waiting import eventually

expect = playwright_or_skip().expect  # the module is skipped without them (10 s timeout)

if TYPE_CHECKING:
    from playwright.async_api import Browser, BrowserContext, Page, Route

pytestmark = pytest.mark.asyncio(loop_scope="module")

VIEWER_TOKEN = "viewer-token-4f9c2a7e1b"  # tokens must be at least 16 characters
ADMIN_TOKEN = "admin-token-8d3b6e0c5a71"
RETRY_AFTER = 2  # seconds, in the tests of the stream limits
TOPICS = ["metrics", "containers", "sessions", "alerts"]
COOKIE = "sse_monitor_session"


@pytest.fixture
def token_gateway(kato: Kato) -> Iterator[GatewayProcess]:
    """The gateway with one token (which then also does the admin things)."""
    with GatewayProcess(kato.url, env={**ENV, "SSE_MONITOR_TOKEN": VIEWER_TOKEN}) as process:
        yield process


# --- a request log with statuses ----------------------------------------------------------


@dataclass
class Exchange:
    """One request of the shared worker, timed by the browser's own clock (seconds)."""

    url: str
    kind: str  # Chromium's resource type: EventSource, Fetch, Script, ...
    sent: float
    status: int | None = None
    answered: float | None = None

    @property
    def query(self) -> dict[str, list[str]]:
        return parse_qs(urlsplit(self.url).query)


@dataclass
class ExchangeLog(RequestLog):
    """tests.support.browser.RequestLog that also keeps the shared worker's requests with their
    resource type, status and the browser's timestamps. It sees a worker from when it is attached
    (its first requests may come before that): `attached` counts the workers it listens to."""

    exchanges: list[Exchange] = field(default_factory=list)
    attached: int = 0
    _open: dict[tuple[str, str], Exchange] = field(default_factory=dict)

    def _on_message(self, event: dict[str, Any]) -> None:
        super()._on_message(event)
        message = json.loads(event["message"])
        if message.get("id") == 1 and "result" in message:  # the answer to Network.enable
            self.attached += 1
            return
        method, params = message.get("method"), message.get("params", {})
        key = (event.get("sessionId", ""), params.get("requestId", ""))
        if method == "Network.requestWillBeSent":
            url = params["request"]["url"]
            if url.startswith(self.origin):
                exchange = Exchange(url, params.get("type", ""), params["timestamp"])
                self.exchanges.append(exchange)
                self._open[key] = exchange
        elif method == "Network.responseReceived" and key in self._open:
            self._open[key].status = params["response"]["status"]
            self._open[key].answered = params["timestamp"]

    def streams(self) -> list[Exchange]:
        """The shared worker's requests of the stream (EventSource and diagnosing fetches)."""
        return [e for e in self.exchanges if urlsplit(e.url).path.endswith("/events")]


@asynccontextmanager
async def logged(
    browser: Browser, context: BrowserContext, origin: str
) -> AsyncIterator[ExchangeLog]:
    log = ExchangeLog(browser, context, origin)
    await log.start()
    try:
        yield log
    finally:
        await log.stop()


async def session_cookie(context: BrowserContext) -> dict[str, Any] | None:
    return next((c for c in await context.cookies() if c["name"] == COOKIE), None)


async def quiet(log: ExchangeLog, since: int, seconds: float, what: str) -> None:
    """A window in which the worker must make no stream request (it is waiting, as it should)."""
    deadline = time.monotonic() + seconds
    await eventually(
        lambda: len(log.streams()) > since or time.monotonic() > deadline,
        timeout=seconds + 5,
        what=what,
    )
    late = log.streams()[since:]
    assert not late, f"{what}: {[(e.kind, e.url, e.status) for e in late]}"


def topics_of(exchange: Exchange) -> list[str]:
    [value] = exchange.query["topics"]
    return value.split(",")


# --- tests ---------------------------------------------------------------------------------


async def test_a_token_gateway_shows_the_login_form_and_never_keeps_the_token(
    kato: Kato, token_gateway: GatewayProcess, browser: Browser, context: BrowserContext
) -> None:
    gateway = token_gateway
    posts: list[tuple[str, str | None]] = []
    context.on(
        "request", lambda r: posts.append((r.url, r.post_data)) if r.method == "POST" else None
    )
    async with logged(browser, context, gateway.url) as log:
        page = await goto(context, f"{gateway.url}/?fallback_interval=1")
        form, state = hook(page, "login-form"), hook(page, "connection-state")
        await expect(form).to_be_visible()
        await expect(state).to_have_attribute("data-state", "unauthorized")
        await expect(state).to_have_text("Login needed")
        token_field = hook(page, "login-token")
        await expect(token_field).to_have_attribute("type", "password")
        await expect(token_field).to_be_focused()
        await expect(hook(page, "login-cancel")).to_be_hidden()  # nothing shows without it
        # Not a blank dashboard: the panels make way for the form.
        await expect(page.locator("[aria-labelledby=kato-title]")).to_be_hidden()
        await expect(page.locator("[aria-labelledby=sessions-title]")).to_be_hidden()
        await expect(hook(page, "logout")).to_be_hidden()

        # It waits for the login: no stream request, no count polled (every 1 s if it did).
        await eventually(lambda: log.attached, what="the request log on the shared worker")
        await quiet(log, len(log.streams()), 4, "stream requests while waiting for a login")
        polls = [r for r in log.requests if "/api/sessions/count" in r.url]
        assert not polls, f"the count was polled while logged out: {polls}"

        await token_field.fill("not-the-token-0123456789")
        await hook(page, "login-submit").click()
        error = hook(page, "login-error")
        await expect(error).to_be_visible()
        await expect(error).to_contain_text("not accepted")
        await expect(form).to_be_visible()
        await expect(state).to_have_attribute("data-state", "unauthorized")
        assert await session_cookie(context) is None

        before = len(log.streams())
        await token_field.fill(VIEWER_TOKEN)
        await hook(page, "login-submit").click()
        await expect(form).to_be_hidden()
        await expect(state).to_have_attribute("data-state", "live")
        await expect(hook(page, "kato-status")).to_have_attribute("data-status", "healthy")
        await expect(hook(page, "logout")).to_be_visible()
        await expect(hook(page, "access-role")).to_have_text("Admin")  # the only token does all
        await kato.create_session()
        await expect(toasts(page, "created")).to_contain_text("1 session created")
        await expect(hook(page, "session-count")).to_have_text("1")

        # The stream was reopened at once, by the worker, with the page's topics.
        [reopened] = [e for e in log.streams()[before:] if e.kind == "EventSource"]
        assert reopened.status == 200, reopened
        assert topics_of(reopened) == TOPICS, reopened.url
        assert all(topics_of(e) == TOPICS for e in log.streams()), log.streams()

        # The token: posted once to login, as JSON; nowhere else.
        logins = [(url, body) for url, body in posts if urlsplit(url).path == "/login"]
        assert [json.loads(body or "") for _, body in logins] == [
            {"token": "not-the-token-0123456789"},
            {"token": VIEWER_TOKEN},
        ]
        await expect(token_field).to_have_value("")
        urls = [r.url for r in log.requests]
        assert not [u for u in urls if VIEWER_TOKEN in u or "token=" in u], urls
        stored = await page.evaluate(
            """() => JSON.stringify([Object.entries(localStorage),
                                     Object.entries(sessionStorage), document.cookie])"""
        )
        assert VIEWER_TOKEN not in stored, stored
        assert COOKIE not in await page.evaluate("document.cookie"), "the cookie is not HttpOnly"
        cookie = await session_cookie(context)
        assert cookie is not None and cookie["httpOnly"], cookie
        assert cookie["sameSite"] == "Strict", cookie
        assert VIEWER_TOKEN not in cookie["value"], "the cookie carries the token"


async def test_the_stream_subscribes_to_what_the_page_shows(
    kato: Kato, token_gateway: GatewayProcess, browser: Browser, context: BrowserContext
) -> None:
    """The EventSource URL says topics=metrics,containers,sessions,alerts; the gateway agrees."""
    gateway = token_gateway
    async with logged(browser, context, gateway.url) as log:
        page = await goto(context, f"{gateway.url}/")
        await eventually(lambda: log.attached, what="the request log on the shared worker")
        await log_in(page, VIEWER_TOKEN)  # the stream opens now: the log sees it
        await expect(hook(page, "connection-state")).to_have_attribute("data-state", "live")
        opened = await eventually(
            lambda: [e for e in log.streams() if e.kind == "EventSource" and e.status == 200],
            what="the page's EventSource in the request log",
        )
    assert urlsplit(opened[-1].url).query.startswith("topics=metrics,containers,sessions,alerts"), (
        opened[-1].url
    )
    headers = {"Authorization": f"Bearer {VIEWER_TOKEN}"}
    async with httpx.AsyncClient(base_url=gateway.url, headers=headers, timeout=5) as client:
        streams = (await client.get("/api/streams")).json()
    assert [s["topics"] for s in streams["streams"]] == [TOPICS], streams
    assert streams["by_topic"] == dict.fromkeys(TOPICS, 1), streams


async def busy_page(
    browser: Browser,
    context: BrowserContext,
    gateway: GatewayProcess,
    status: int,
    check: Callable[[Page, ExchangeLog], Awaitable[None]] | None = None,
) -> None:
    """The only stream the gateway allows is held by another client: the page says the gateway
    is busy, retries no sooner than Retry-After says (and not much later), and goes live once
    the other stream closes."""
    async with (
        SSEStream(f"{gateway.url}/events") as other,
        logged(browser, context, gateway.url) as log,
    ):
        assert other.response is not None and other.response.status_code == 200
        page = await goto(context, f"{gateway.url}/")
        state = hook(page, "connection-state")
        await expect(state).to_have_attribute("data-state", "busy")
        await expect(state).to_have_text(
            re.compile(rf"^Gateway busy · retrying (in [1-{RETRY_AFTER}] s|now)\b")
        )
        await eventually(lambda: log.attached, what="the request log on the shared worker")
        seen = len(log.streams())

        def refusals() -> list[Exchange]:
            return [e for e in log.streams()[seen:] if e.kind == "Fetch" and e.status == status]

        # Two refusals seen whole (the EventSource's, then the fetch asking why), and the retry
        # after the second.
        await eventually(
            lambda: len(refusals()) >= 2 and log.streams()[-1].sent > refusals()[1].sent,
            timeout=3 * RETRY_AFTER + 5,
            what="two refused attempts and a retry",
        )
        exchanges = log.streams()[seen:]
        for before, after in itertools.pairwise(exchanges):
            if before.kind == "EventSource":
                # Refused: the worker asks why at once, with a fetch of the same URL.
                assert after.kind == "Fetch" and after.url == before.url, (before, after)
                assert before.status == status, before
                assert after.sent - before.sent < 1, (before, after)
            else:
                assert before.answered is not None, before
                waited = after.sent - before.answered
                assert RETRY_AFTER - 0.05 <= waited <= RETRY_AFTER + 1.5, (
                    f"retried {waited:.2f} s after a Retry-After of {RETRY_AFTER} s"
                )
        assert all(topics_of(e) == TOPICS for e in exchanges), exchanges
        if check is not None:
            await check(page, log)

        await other.close()
        await expect(state).to_have_attribute(
            "data-state", "live", timeout=(RETRY_AFTER + 5) * 1000
        )
        await expect(state).to_have_text("Live")
        await expect(hook(page, "session-count")).to_have_text("0")


async def test_a_full_gateway_is_retried_after_its_retry_after(
    kato: Kato, browser: Browser, context: BrowserContext
) -> None:
    env = {**ENV, "SSE_MONITOR_MAX_STREAMS": "1", "SSE_MONITOR_RETRY_AFTER": str(RETRY_AFTER)}
    with GatewayProcess(kato.url, env=env) as gateway:
        await busy_page(browser, context, gateway, 503)
        await kato.create_session()
        page = context.pages[-1]
        await expect(toasts(page, "created")).to_contain_text("1 session created")


async def test_the_per_client_limit_is_retried_after_its_retry_after(
    kato: Kato, browser: Browser, context: BrowserContext
) -> None:
    env = {
        **ENV,
        "SSE_MONITOR_MAX_STREAMS_PER_CLIENT": "1",
        "SSE_MONITOR_RETRY_AFTER": str(RETRY_AFTER),
    }
    with GatewayProcess(kato.url, env=env) as gateway:
        await busy_page(browser, context, gateway, 429)


async def test_fallback_polling_honours_retry_after_and_a_401_asks_for_a_login(
    kato: Kato, browser: Browser, context: BrowserContext
) -> None:
    """While the stream waits (busy), the count is polled: a 429 on it pushes the next poll back
    by its Retry-After, a 401 shows the login form and stops the polling. (The gateway limits
    streams only, so these two answers are the test's.)"""
    interval = 0.5
    polls: list[float] = []
    answers = iter(
        [
            {"status": 429, "headers": {"Retry-After": str(RETRY_AFTER)}},
            {"status": 401, "headers": {"WWW-Authenticate": "Bearer"}},
        ]
    )

    async def answer(route: Route) -> None:
        polls.append(time.monotonic())
        reply = next(answers, None)
        if reply is None:
            await route.continue_()
            return
        body = json.dumps({"error": "refused by the test", "status": reply["status"]})
        await route.fulfill(
            status=reply["status"],
            headers=reply["headers"],
            content_type="application/json",
            body=body,
        )

    env = {**ENV, "SSE_MONITOR_MAX_STREAMS": "1", "SSE_MONITOR_RETRY_AFTER": "30"}
    with GatewayProcess(kato.url, env=env) as gateway:
        async with SSEStream(f"{gateway.url}/events"):
            await context.route("**/api/sessions/count", answer)
            page = await goto(context, f"{gateway.url}/?fallback_interval={interval:g}")
            await expect(hook(page, "connection-state")).to_have_attribute("data-state", "busy")
            form = hook(page, "login-form")
            await expect(form).to_be_visible(timeout=(RETRY_AFTER + 5) * 1000)
            assert len(polls) == 2, polls
            # Timed by the page (its resource timing), not by when this process heard of them.
            # (An entry is made once its body is read: wait for the second.)
            entries = await page.wait_for_function(
                """() => {
                  const found = performance.getEntriesByType('resource')
                    .filter(e => e.name.includes('api/sessions/count')).map(e => e.startTime);
                  return found.length >= 2 && found;
                }"""
            )
            started = await entries.json_value()
            assert len(started) == 2, started
            waited = (started[1] - started[0]) / 1000
            assert RETRY_AFTER - 0.1 <= waited <= RETRY_AFTER + 1, (
                f"polled again after {waited:.2f} s"
            )
            # A login that is not required (the stream is busy, not refused): it can be put off.
            await expect(hook(page, "login-cancel")).to_be_visible()
            await expect(page.locator("[aria-labelledby=kato-title]")).to_be_visible()
            # No more polling: several intervals in which nothing may be asked.
            deadline = time.monotonic() + 4 * interval
            await eventually(
                lambda: len(polls) > 2 or time.monotonic() > deadline, what="a quiet interval"
            )
            assert len(polls) == 2, f"still polling after a 401: {polls}"
            await page.close()


async def test_acknowledging_needs_the_admin_token(
    kato: Kato, browser: Browser, context: BrowserContext, tmp_path: Path
) -> None:
    rules = tmp_path / "rules.toml"
    rules.write_text(DEGRADED_AND_UNHEALTHY)
    env = {
        **ENV,
        "SSE_MONITOR_TOKEN": VIEWER_TOKEN,
        "SSE_MONITOR_ADMIN_TOKEN": ADMIN_TOKEN,
        "SSE_MONITOR_ALERT_RULES": str(rules),
    }
    with GatewayProcess(kato.url, env=env) as gateway:
        page = await goto(context, f"{gateway.url}/")
        await log_in(page, VIEWER_TOKEN)
        await expect(hook(page, "connection-state")).to_have_attribute("data-state", "live")
        role = hook(page, "access-role")
        await expect(role).to_have_text("Viewer")

        await kato.fault("health", "degraded")
        await expect(hook(page, "alert-count")).to_have_text("1")
        await open_alerts_panel(page)
        row = alert_rows(page, state="firing")
        await expect(row).to_have_count(1)
        await hook(page, "alert-ack-by").fill("alice")
        async with page.expect_response(lambda r: r.url.endswith("/ack")) as refused:
            await row.get_by_test_id("alert-ack").click()
        assert (await refused.value).status == 403
        needs_admin = hook(page, "alert-needs-admin")
        await expect(needs_admin).to_be_visible()
        await expect(needs_admin).to_contain_text("needs the admin token")
        await expect(row).to_have_attribute("data-acknowledged", "false")
        await expect(hook(page, "alert-count")).to_have_text("1")

        # Log in with the admin token, from the message: the same form, the dashboard stays.
        await needs_admin.get_by_test_id("alert-admin-login").click()
        form = hook(page, "login-form")
        await expect(form).to_be_visible()
        await expect(hook(page, "login-reason")).to_contain_text("admin token")
        await expect(hook(page, "login-token")).to_be_focused()
        await expect(page.locator("[aria-labelledby=kato-title]")).to_be_visible()
        await log_in(page, ADMIN_TOKEN)
        await expect(form).to_be_hidden()
        await expect(needs_admin).to_be_hidden()
        await expect(role).to_have_text("Admin")
        await expect(hook(page, "connection-state")).to_have_attribute("data-state", "live")

        async with page.expect_response(lambda r: r.url.endswith("/ack")) as accepted:
            await row.get_by_test_id("alert-ack").click()
        assert (await accepted.value).status == 200
        await expect(row).to_have_attribute("data-acknowledged", "true")
        await expect(row).to_contain_text("acknowledged by alice")
        await expect(hook(page, "alert-count")).to_be_hidden()
        await expect(hook(page, "alert-error")).to_be_hidden()
        await page.close()


async def test_log_out_shows_the_login_form_in_every_tab(
    kato: Kato, token_gateway: GatewayProcess, context: BrowserContext
) -> None:
    """Tabs share the worker's stream: a logout in one reaches the other, and so does a login."""
    gateway = token_gateway
    first = await goto(context, f"{gateway.url}/")
    await log_in(first, VIEWER_TOKEN)
    await expect(hook(first, "connection-state")).to_have_attribute("data-state", "live")
    second = await goto(context, f"{gateway.url}/")
    await expect(hook(second, "connection-state")).to_have_attribute("data-state", "live")
    await expect(hook(second, "login-form")).to_be_hidden()
    logout = hook(first, "logout")
    await expect(logout).to_be_visible()
    assert await session_cookie(context) is not None

    await logout.click()
    for page in (first, second):
        await expect(hook(page, "login-form")).to_be_visible()
        await expect(hook(page, "connection-state")).to_have_attribute("data-state", "unauthorized")
    for page in (first, second):  # the other tab, too, forgets it was logged in
        await expect(hook(page, "logout")).to_be_hidden()
        await expect(hook(page, "access-role")).to_be_hidden()
    assert await session_cookie(context) is None

    await log_in(second, VIEWER_TOKEN)
    for page in (first, second):
        await expect(hook(page, "connection-state")).to_have_attribute("data-state", "live")
        await expect(hook(page, "login-form")).to_be_hidden()
        await expect(hook(page, "logout")).to_be_visible()
    await kato.create_session()
    for page in (first, second):
        # Up to 30 s: both tabs' stream starts again after the login, which a loaded machine
        # (a clean-clone CI, once) took more than the default 10 s to show.
        await expect(hook(page, "session-count")).to_have_text("1", timeout=30_000)


async def test_without_access_control_there_is_no_login_nor_logout(
    kato: Kato, browser: Browser, context: BrowserContext
) -> None:
    with GatewayProcess(kato.url, env=ENV) as gateway:
        page = await goto(context, f"{gateway.url}/")
        await expect(hook(page, "connection-state")).to_have_attribute("data-state", "live")
        async with httpx.AsyncClient(base_url=gateway.url, timeout=5) as client:
            assert (await client.get("/api/access")).json()["enabled"] is False
            streams = (await client.get("/api/streams")).json()
        assert [s["topics"] for s in streams["streams"]] == [TOPICS], streams
        await page.wait_for_function(
            "() => performance.getEntriesByName(new URL('api/access', document.baseURI).href)"
            ".some(e => e.responseEnd > 0)"
        )
        await expect(hook(page, "logout")).to_be_hidden()
        await expect(hook(page, "access-role")).to_be_hidden()
        await expect(hook(page, "login-form")).to_be_hidden()
        await page.close()


async def test_too_many_wrong_tokens_say_how_long_to_wait(
    kato: Kato, context: BrowserContext
) -> None:
    env = {**ENV, "SSE_MONITOR_TOKEN": VIEWER_TOKEN, "SSE_MONITOR_AUTH_FAILURE_LIMIT": "2"}
    with GatewayProcess(kato.url, env=env) as gateway:
        page = await goto(context, f"{gateway.url}/")
        error = hook(page, "login-error")
        for attempt in ("not-the-token-0000000001", "not-the-token-0000000002"):
            await log_in(page, attempt)
            await expect(error).to_have_text("That token was not accepted.")
            await hook(page, "login-token").fill("")  # the next fill is seen as a change
        await log_in(page, VIEWER_TOKEN)  # right, but this address is locked out for now
        await expect(error).to_have_text(
            re.compile(r"^Too many wrong tokens from this address: try again in \d+ s\.$")
        )
        seconds = int(re.findall(r"\d+", await error.inner_text())[0])
        assert 50 <= seconds <= 60, seconds  # the default window, a minute
        await expect(hook(page, "login-form")).to_be_visible()
        assert await session_cookie(context) is None
        await page.close()


async def test_login_works_through_nginx_under_a_path_prefix(
    kato: Kato, token_gateway: GatewayProcess, context: BrowserContext
) -> None:
    """Behind /monitor/ the login URL is relative too, and the cookie is scoped to /monitor."""
    with prefixed_nginx(token_gateway.port) as nginx:
        page = await goto(context, nginx.url)
        await log_in(page, VIEWER_TOKEN)
        await expect(hook(page, "connection-state")).to_have_attribute("data-state", "live")
        await kato.create_session()
        await expect(hook(page, "session-count")).to_have_text("1")
        cookie = await session_cookie(context)
        assert cookie is not None and cookie["path"] == "/monitor", cookie
        await page.close()
        seen = nginx.requests()
    assert "/monitor/login 200" in seen, seen
    assert any(
        re.match(r"/monitor/events\?topics=metrics,containers,sessions,alerts \d+", line)
        for line in seen
    ), seen
