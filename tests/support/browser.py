"""Browser helpers for the page tests: Chromium, a request log that also sees SharedWorkers, a
watcher of the toasts, colour reading."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:  # the playwright package is imported only by tests that have it
    from playwright.async_api import Browser, BrowserContext, CDPSession, Page, Playwright
    from playwright.async_api import Request as PageRequest

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def playwright_or_skip() -> Any:
    """playwright's async API, its `expect` waiting up to 10 s; without it or without Chromium,
    the calling test module is skipped with the reason (and on CI every skip is a failure)."""
    if not CHROMIUM.exists():
        pytest.skip(
            f"{CHROMIUM} is missing (apt-get install chromium): the page tests need it",
            allow_module_level=True,
        )
    api = pytest.importorskip(
        "playwright.async_api", reason="the playwright package is missing: pip install playwright"
    )
    api.expect.set_options(timeout=10_000)
    return api


async def launch(playwright: Playwright) -> Browser:
    """Debian's Chromium (never a downloaded one)."""
    return await playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)


@dataclass
class SeenRequest:
    url: str
    at: float  # time.monotonic() when the test heard of it
    source: str  # "page" or "shared_worker"


@dataclass
class RequestLog:
    """Every request of one browser context, its SharedWorkers' included.

    Playwright reports the requests of pages and dedicated workers, not those of a SharedWorker
    (checked with Chromium 156 and Playwright 1.65). Those are read over a browser-level CDP
    session attached to each shared worker of the gateway's origin, from when it is attached:
    a worker's very first requests may come before that.
    """

    browser: Browser
    context: BrowserContext
    origin: str
    requests: list[SeenRequest] = field(default_factory=list)
    _cdp: CDPSession | None = None
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)

    async def start(self) -> RequestLog:
        self.context.on("request", self._on_page_request)
        self._cdp = await self.browser.new_browser_cdp_session()
        self._cdp.on("Target.targetCreated", self._on_target)
        self._cdp.on("Target.receivedMessageFromTarget", self._on_message)
        await self._cdp.send("Target.setDiscoverTargets", {"discover": True})
        return self

    async def stop(self) -> None:
        self.context.remove_listener("request", self._on_page_request)
        for task in self._tasks:
            task.cancel()
        if self._cdp is not None:
            with contextlib.suppress(Exception):
                await self._cdp.detach()

    def matching(self, fragment: str, after: float = 0.0) -> list[SeenRequest]:
        return [r for r in self.requests if fragment in r.url and r.at > after]

    def _on_page_request(self, request: PageRequest) -> None:
        if request.url.startswith(self.origin):
            self.requests.append(SeenRequest(request.url, time.monotonic(), "page"))

    def _on_target(self, event: dict[str, Any]) -> None:
        info = event["targetInfo"]
        if info["type"] == "shared_worker" and info["url"].startswith(self.origin):
            task = asyncio.create_task(self._attach(info["targetId"]))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _attach(self, target_id: str) -> None:
        assert self._cdp is not None
        # Not flattened: Playwright's CDPSession cannot address a child session's commands.
        attached = await self._cdp.send(
            "Target.attachToTarget", {"targetId": target_id, "flatten": False}
        )
        message = json.dumps({"id": 1, "method": "Network.enable", "params": {}})
        await self._cdp.send(
            "Target.sendMessageToTarget",
            {"sessionId": attached["sessionId"], "message": message},
        )

    def _on_message(self, event: dict[str, Any]) -> None:
        message = json.loads(event["message"])
        if message.get("method") == "Network.requestWillBeSent":
            url = message["params"]["request"]["url"]
            if url.startswith(self.origin):
                self.requests.append(SeenRequest(url, time.monotonic(), "shared_worker"))


# Records every toast the page renders: when it became visible and when it stopped being so
# (page clock, ms), and the most toasts visible at once, sampled on every DOM change and frame.
WATCH_TOASTS = """() => {
  const log = {max: 0, toasts: []};
  const seen = new Map();
  const sample = () => {
    const now = performance.now();
    const visible = [...document.querySelectorAll('[data-testid=toast]')]
      .filter(el => el.checkVisibility({visibilityProperty: true}));
    log.max = Math.max(log.max, visible.length);
    for (const el of visible) {
      if (!seen.has(el)) {
        const record = {text: '', kind: el.dataset.kind, appeared: now, gone: null};
        seen.set(el, record);
        log.toasts.push(record);
      }
      seen.get(el).text = el.textContent.replace(/\\s+/g, ' ').trim();
    }
    for (const [el, record] of seen) {
      if (record.gone === null && !visible.includes(el)) record.gone = now;
    }
  };
  new MutationObserver(sample).observe(
    document, {subtree: true, childList: true, attributes: true, characterData: true});
  const frame = () => { sample(); requestAnimationFrame(frame); };
  frame();
  window.__toastWatch = log;
}"""


async def watch_toasts(page: Page) -> None:
    await page.evaluate(WATCH_TOASTS)


async def toast_log(page: Page) -> dict[str, Any]:
    return await page.evaluate("window.__toastWatch")


# The colours a toast shows (background, non-zero borders, and those of its ::before/::after),
# each as [r, g, b] after painting it over white, so that any CSS colour syntax (oklch,
# color-mix, translucent rgba) reads the same way.
ACCENT_COLOURS = """(el) => {
  const canvas = document.createElement('canvas');
  canvas.width = canvas.height = 1;
  const ctx = canvas.getContext('2d', {willReadFrequently: true});
  const paint = (colour) => {
    ctx.fillStyle = '#fff';
    ctx.fillRect(0, 0, 1, 1);
    ctx.fillStyle = colour;
    ctx.fillRect(0, 0, 1, 1);
    return [...ctx.getImageData(0, 0, 1, 1).data.slice(0, 3)];
  };
  const colours = [];
  const read = (style) => {
    colours.push(paint(style.backgroundColor));
    for (const side of ['Top', 'Right', 'Bottom', 'Left']) {
      if (parseFloat(style[`border${side}Width`]) > 0) {
        colours.push(paint(style[`border${side}Color`]));
      }
    }
  };
  read(getComputedStyle(el));
  for (const pseudo of ['::before', '::after']) {
    const style = getComputedStyle(el, pseudo);
    if (style.content && style.content !== 'none') read(style);
  }
  return colours;
}"""


def greenness(colours: list[list[int]]) -> int:
    return max(g - max(r, b) for r, g, b in colours)


def redness(colours: list[list[int]]) -> int:
    return max(r - max(g, b) for r, g, b in colours)


# The luminance of what is painted at the page's top-left corner: the first opaque-ish background
# from the element there up to the root (white if none).
BACKDROP_LUMINANCE = """() => {
  let el = document.elementFromPoint(2, 2);
  while (el) {
    const colour = getComputedStyle(el).backgroundColor;
    const canvas = document.createElement('canvas');
    canvas.width = canvas.height = 1;
    const ctx = canvas.getContext('2d', {willReadFrequently: true});
    ctx.fillStyle = colour;
    ctx.fillRect(0, 0, 1, 1);
    const [r, g, b, a] = ctx.getImageData(0, 0, 1, 1).data;
    if (a > 200) return (0.2126 * r + 0.7152 * g + 0.0722 * b) / 255;
    el = el.parentElement;
  }
  return 1;
}"""
