"""The page's charts in a real Chromium, filled from the gateway's history (GET /api/history) and
extended by the stream: a page opened late shows what came before it at once, a range of 24 h
asks for minute buckets, session changes are markers, alerts shade the charts, a gap stays a
gap, and a readout tells the time and value of the point under the pointer or the keyboard.

The history a page opens on is written before its gateway starts, through the store's own
`record` (SqliteHistory): five minutes of ticks without waiting five minutes.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import pytest_asyncio

from sse_monitor.history.sqlite_store import SqliteHistory
from tests.support.alert_rules import DEGRADED_AND_UNHEALTHY
from tests.support.browser import playwright_or_skip
from tests.support.docker_engine import DockerEngineProcess
from tests.support.gateway import GatewayProcess
from tests.support.kato import Kato
from tests.support.nginx import prefixed_nginx
from tests.support.page import ENV, POLL, containers_env, hook, open_page
from tests.support.sse_client import SSEStream

expect = playwright_or_skip().expect  # the module is skipped without them (10 s timeout)

if TYPE_CHECKING:
    from playwright.async_api import BrowserContext, Locator, Page

pytestmark = pytest.mark.asyncio(loop_scope="module")

SEEDED_SECONDS = 300.0  # five minutes of history before the gateway starts
SPACING = 2 * POLL  # between seeded ticks: closer than the 3 intervals that read as a gap
HOLE = (180.0, 150.0)  # seconds before the seeding's end: no tick ran then (a gateway down)
CPU = "kato.cpu_percent"


@dataclass
class Seeded:
    """A gateway started on a history written beforehand: its ticks (time, figures), oldest
    first, and the stretch with no tick."""

    gateway: GatewayProcess
    ticks: list[tuple[float, dict[str, float | None]]]
    hole: tuple[float, float]

    def value_at(self, moment: datetime, series: str) -> float | None:
        """The seeded value at the history's time (milliseconds, as it answers)."""
        for at, figures in self.ticks:
            if abs(at - moment.timestamp()) < 0.001:
                return figures[series]
        raise AssertionError(f"no seeded tick at {moment}")


def seeded_figures(n: int) -> dict[str, float | None]:
    """Tick n's figures: every series the KATO and sessions charts draw, each varying."""
    return {
        CPU: 20.0 + n % 40,
        "kato.memory_percent": 50.0 + n % 7,
        "kato.disk_percent": 30.0,
        "kato.requests_per_second": 1.0 + (n % 5) / 2,
        "kato.response_time_seconds": 0.002 + (n % 3) / 1000,
        "kato.error_rate": 0.0,
        "sessions.active": float(n % 4),
    }


async def seed(
    path: Path, end: float
) -> tuple[list[tuple[float, dict[str, float | None]]], tuple[float, float]]:
    """SEEDED_SECONDS of ticks up to `end`, SPACING apart, none in the hole."""
    store = SqliteHistory(str(path))
    await store.open()
    hole = (end - HOLE[0], end - HOLE[1])
    ticks = []
    n = 0
    moment = end - SEEDED_SECONDS
    while moment <= end:
        if not hole[0] <= moment < hole[1]:
            figures = seeded_figures(n)
            store.record(moment, figures)
            ticks.append((moment, figures))
        n += 1
        moment += SPACING
    await store.flush()
    await store.aclose()
    return ticks, hole


@contextlib.asynccontextmanager
async def seeded_gateway(kato_url: str, folder: Path) -> AsyncIterator[Seeded]:
    """A gateway started on five minutes of history written beforehand."""
    path = folder / "sse-monitor.db"
    ticks, hole = await seed(path, time.time())
    with GatewayProcess(kato_url, env={**ENV, "SSE_MONITOR_DB": str(path)}) as gateway:
        yield Seeded(gateway, ticks, hole)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def seeded(
    module_kato: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Seeded]:
    """One gateway for the module's read-only tests."""
    async with seeded_gateway(module_kato, tmp_path_factory.mktemp("seeded")) as seeded:
        yield seeded


@pytest.fixture
def gateway(kato: Kato, tmp_path: Path) -> Iterator[GatewayProcess]:
    """A gateway of the test's own (history and alerts in its own file), alerting when KATO is
    degraded or unhealthy."""
    rules = tmp_path / "rules.toml"
    rules.write_text(DEGRADED_AND_UNHEALTHY)
    env = {
        **ENV,
        "SSE_MONITOR_ALERT_RULES": str(rules),
        "SSE_MONITOR_DB": str(tmp_path / "sse-monitor.db"),
    }
    with GatewayProcess(kato.url, env=env) as process:
        yield process


def chart(page: Page, series: str) -> Locator:
    """The chart's plot (role="img"), whose data attributes say what it draws."""
    return hook(page, f"chart-{series}")


async def ready(page: Page, series: str, **attributes: str) -> Locator:
    """The chart once it has drawn the history it asked for (with these data attributes)."""
    plot = chart(page, series)
    await expect(plot).to_have_attribute("data-state", "ready")
    for name, value in attributes.items():
        await expect(plot).to_have_attribute(f"data-{name}", value)
    await expect(plot).to_have_attribute("data-first", re.compile("."))
    return plot


async def moment(plot: Locator, attribute: str) -> datetime:
    value = await plot.get_attribute(f"data-{attribute}")
    assert value, f"the chart has no data-{attribute}"
    return datetime.fromisoformat(value)


async def spans(plot: Locator, line: int = 0) -> list[tuple[float, float]]:
    """Each path segment's first and last time (seconds): the runs between gaps."""
    text = await plot.locator(f".chart-line[data-line='{line}']").get_attribute("data-spans")
    return [(first / 1000, last / 1000) for first, last in json.loads(text or "[]")]


def milliseconds(stamp: str) -> datetime:
    """A gateway's ISO time to the millisecond (what the page and the history keep)."""
    moment = datetime.fromisoformat(stamp).astimezone(UTC)
    return moment.replace(microsecond=moment.microsecond // 1000 * 1000)


async def markers(plot: Locator) -> list[tuple[str, datetime, str]]:
    """The session markers drawn: (kind, time, shape), by time."""
    # Read in one step from the plot, which stays: every tick redraws the markers, and a
    # locator's evaluate_all finds them first and reads them in a second step.
    found = await plot.evaluate(
        """(plot) => [...plot.querySelectorAll('.chart-marker')].map(
            (m) => [m.dataset.kind, m.dataset.time, m.dataset.shape])"""
    )
    return sorted(
        ((kind, datetime.fromisoformat(at), shape) for kind, at, shape in found), key=lambda m: m[1]
    )


def triangle(d: str) -> list[tuple[float, float]]:
    """A marker's three corners from its path (`M x y L x y L x y Z`), its tip first."""
    numbers = [float(n) for n in re.findall(r"-?\d+(?:\.\d+)?", d)]
    assert len(numbers) == 6 and d.startswith("M") and d.endswith("Z"), d
    return [(numbers[0], numbers[1]), (numbers[2], numbers[3]), (numbers[4], numbers[5])]


async def test_a_page_opened_late_shows_the_five_minutes_before_it_at_once(
    seeded: Seeded, context: BrowserContext
) -> None:
    started = time.monotonic()
    page = await context.new_page()
    await page.goto(f"{seeded.gateway.url}/", wait_until="domcontentloaded")
    for series in (CPU, "kato.requests_per_second", "sessions.active"):
        plot = await ready(page, series, range="1h", step="0")
        first, last = await moment(plot, "first"), await moment(plot, "last")
        assert abs(first.timestamp() - seeded.ticks[0][0]) < 0.01, (series, first)
        assert (last - first).total_seconds() >= SEEDED_SECONDS, (series, first, last)
        assert int(await plot.get_attribute("data-points") or 0) >= len(seeded.ticks)
    # From the history, not from the stream: far sooner than five minutes of ticks.
    assert time.monotonic() - started < 30
    label = await chart(page, CPU).get_attribute("aria-label")
    assert label == "KATO host CPU, last hour"
    await expect(chart(page, CPU)).to_have_attribute("role", "img")
    await page.close()


async def test_a_gap_in_the_history_is_a_break_in_the_line(
    seeded: Seeded, context: BrowserContext
) -> None:
    """The seeded hole (no tick for 30 s, as while the gateway was down) and the gateway's own
    start each break the line: no segment is drawn across either."""
    page = await open_page(context, f"{seeded.gateway.url}/")
    plot = await ready(page, CPU)
    runs = await spans(plot)
    hole_start, hole_end = seeded.hole
    assert not [run for run in runs if run[0] < hole_start and run[1] >= hole_end], runs
    before = [run for run in runs if run[1] < hole_start]
    after = [run for run in runs if run[0] >= hole_end]
    assert before and after, runs
    assert await plot.get_attribute("data-segments") == str(len(runs))
    # The path itself: one move (M) per segment, so nothing joins them.
    d = await plot.locator(".chart-line[data-line='0']").get_attribute("d") or ""
    assert d.count("M") == len(runs) >= 3, d  # before the hole, after it, since the start
    await page.close()


async def test_the_readout_tells_the_time_and_value_under_the_pointer_and_the_keyboard(
    seeded: Seeded, context: BrowserContext
) -> None:
    page = await open_page(context, f"{seeded.gateway.url}/")
    await hook(page, "range-kato").get_by_role("button", name="15 min").click()
    plot = await ready(page, CPU, range="15m")
    readout = hook(page, f"readout-{CPU}")
    await expect(readout).to_be_hidden()

    # Over the middle of the seeded five minutes: the nearest seeded point, to the millisecond.
    first, last = seeded.ticks[0][0], seeded.ticks[-1][0]
    since = (await moment(plot, "since")).timestamp()
    until = (await moment(plot, "until")).timestamp()
    box = await plot.bounding_box()
    assert box is not None
    aim = first + (last - first) * 0.25  # before the hole
    seconds_per_pixel = (until - since) / box["width"]
    x = box["x"] + (aim - since) / seconds_per_pixel
    await page.mouse.move(x, box["y"] + box["height"] / 2)
    await expect(readout).to_be_visible()
    shown = await moment(readout, "time")
    assert abs(shown.timestamp() - aim) < 2 * seconds_per_pixel + SPACING, (shown, aim)
    value = seeded.value_at(shown, CPU)
    assert await readout.get_attribute("data-value") == str(
        int(value) if value == int(value) else value
    )
    text = await readout.text_content() or ""
    assert f"{value:.1f} %" in text, text
    assert re.search(r"\d{1,2}:\d\d:\d\d", text), text
    await page.mouse.move(0, 0)
    await expect(readout).to_be_hidden()

    # Focus: the newest point; Home: the oldest kept; Right: the next one.
    await plot.focus()
    await expect(readout).to_be_visible()
    await expect(readout).to_have_attribute("data-time", re.compile("."))
    await plot.press("Home")
    oldest = await plot.get_attribute("data-first") or ""
    await expect(readout).to_have_attribute("data-time", oldest)
    await plot.press("ArrowRight")
    await expect(readout).not_to_have_attribute("data-time", oldest)
    later = await moment(readout, "time")
    assert 0 < (later - datetime.fromisoformat(oldest)).total_seconds() <= SPACING + 0.01
    value = seeded.value_at(later, CPU)
    assert f"{value:.1f} %" in (await readout.text_content() or "")
    await plot.press("Escape")
    await expect(readout).to_be_hidden()
    await page.close()


async def test_24_hours_asks_for_minute_buckets_and_the_choice_is_kept(
    seeded: Seeded, context: BrowserContext
) -> None:
    page = await open_page(context, f"{seeded.gateway.url}/")
    await ready(page, CPU, range="1h", step="0")
    switch = hook(page, "range-kato")
    await expect(switch.get_by_role("button", name="1 h")).to_have_attribute("aria-pressed", "true")

    async with page.expect_response(
        lambda r: "api/history?" in r.url and "step=60" in r.url
    ) as answer:
        await switch.get_by_role("button", name="24 h").click()
    body = await (await answer.value).json()
    assert body["step"] == 60
    since = float(re.search(r"since=([\d.]+)", (await answer.value).url)[1])  # type: ignore[index]
    assert abs(since - (time.time() - 24 * 3600)) < 60
    plot = await ready(page, CPU, range="24h", step="60")
    await expect(switch.get_by_role("button", name="24 h")).to_have_attribute(
        "aria-pressed", "true"
    )
    await expect(switch.get_by_role("button", name="1 h")).to_have_attribute(
        "aria-pressed", "false"
    )
    # The seeded minutes as buckets: a mean line over a min-max band.
    assert int(await plot.get_attribute("data-points") or 0) >= 3
    await expect(plot.locator(".chart-band")).to_have_attribute("d", re.compile(r"^M.+Z$"))
    assert "1-minute mean" in (await plot.get_attribute("aria-label") or "")
    # The other panels keep their own range.
    await expect(chart(page, "sessions.active")).to_have_attribute("data-range", "1h")

    await page.reload()
    await ready(page, CPU, range="24h", step="60")
    await expect(switch.get_by_role("button", name="24 h")).to_have_attribute(
        "aria-pressed", "true"
    )

    async with page.expect_response(
        lambda r: "api/history?" in r.url and "step=900" in r.url
    ) as answer:
        await switch.get_by_role("button", name="7 d").click()
    assert (await (await answer.value).json())["step"] == 900
    await expect(chart(page, CPU)).to_have_attribute("data-step", "900")
    await page.close()


async def test_session_changes_are_markers_shaped_by_kind(
    kato: Kato, gateway: GatewayProcess, context: BrowserContext
) -> None:
    page = await open_page(context, f"{gateway.url}/")
    plot = await ready(page, "sessions.active")
    async with SSEStream(f"{gateway.url}/events?topics=sessions") as side:
        first = await kato.create_session()
        await side.wait_for(lambda events: len(side.of("session_event")) >= 1)
        await kato.create_session()
        await side.wait_for(lambda events: len(side.of("session_event")) >= 2)
        await kato.delete_session(first)
        await side.wait_for(lambda events: len(side.of("session_event")) >= 3)
    changes = [event.json() for event in side.of("session_event")]
    wanted = [
        (change["event_type"], milliseconds(change["timestamp"]), shape)
        for change, shape in zip(
            changes, ["triangle-up", "triangle-up", "triangle-down"], strict=True
        )
    ]
    assert [kind for kind, _, _ in wanted] == [
        "session_created",
        "session_created",
        "session_destroyed",
    ]

    await expect(plot.locator(".chart-marker")).to_have_count(3)
    assert await markers(plot) == wanted
    # Shape tells them apart, not only colour: a created one points up, a destroyed one down.
    for marker in await plot.locator(".chart-marker").all():
        tip, *base = triangle(await marker.get_attribute("d") or "")
        points_up = all(tip[1] < corner[1] for corner in base)
        points_down = all(tip[1] > corner[1] for corner in base)
        kind = await marker.get_attribute("data-kind")
        assert (points_up, points_down) == (kind == "session_created", kind == "session_destroyed")

    # A page opened afterwards has them from the history, at the same times.
    await page.reload()
    plot = await ready(page, "sessions.active")
    await expect(plot.locator(".chart-marker")).to_have_count(3)
    assert await markers(plot) == wanted
    await page.close()


async def test_an_alert_shades_the_charts_while_it_fires(
    kato: Kato, gateway: GatewayProcess, context: BrowserContext
) -> None:
    page = await open_page(context, f"{gateway.url}/")
    await ready(page, CPU)
    async with SSEStream(f"{gateway.url}/events?topics=alerts") as side:
        await kato.fault("health", "degraded")
        fired = (await side.wait_for_event("alert", lambda d: d["transition"] == "fired")).json()
        for series in (CPU, "sessions.active"):
            shade = chart(page, series).locator(f".chart-alert[data-alert-id='{fired['id']}']")
            await expect(shade).to_have_attribute("data-open", "true")
            assert await moment(shade, "start") == milliseconds(fired["started_at"])
            await expect(shade).to_have_attribute("data-severity", "warning")
        await kato.fault("health", "ok")
        resolved = (
            await side.wait_for_event("alert", lambda d: d["transition"] == "resolved")
        ).json()
    for series in (CPU, "sessions.active"):
        shade = chart(page, series).locator(f".chart-alert[data-alert-id='{fired['id']}']")
        await expect(shade).to_have_attribute("data-end", re.compile("."))
        assert await moment(shade, "end") == milliseconds(resolved["resolved_at"])
        assert (await shade.get_attribute("data-open")) is None

    # Reloaded: the period comes from the history's markers, fired to resolved.
    await page.reload()
    plot = await ready(page, CPU)
    shade = plot.locator(f".chart-alert[data-alert-id='{fired['id']}']")
    await expect(shade).to_have_count(1)
    assert await moment(shade, "start") == milliseconds(fired["started_at"])
    assert await moment(shade, "end") == milliseconds(resolved["resolved_at"])
    width = float(await shade.get_attribute("width") or 0)
    assert width >= 2
    await page.close()


async def test_charts_are_extended_live_and_fit_their_width(
    kato: Kato, tmp_path: Path, context: BrowserContext
) -> None:
    # A KATO of the test's own: the module's gateway has run through the tests before (a
    # clean-clone CI once saw its KATO unreachable for the whole wait).
    async with seeded_gateway(kato.url, tmp_path) as seeded:
        await extended_live_and_fitting(seeded, context)


async def extended_live_and_fitting(seeded: Seeded, context: BrowserContext) -> None:
    page = await open_page(context, f"{seeded.gateway.url}/")
    plot = await ready(page, CPU)
    first, last = await moment(plot, "first"), await moment(plot, "last")
    # The stream's ticks are appended to what was loaded, which stays. (A loaded machine can
    # time KATO's reads out for a while, each a gap rather than a point: hence the patience.)
    await expect(plot).not_to_have_attribute(
        "data-last", await plot.get_attribute("data-last") or "", timeout=30_000
    )
    assert await moment(plot, "last") > last
    assert await moment(plot, "first") == first

    for width in (1280, 700):
        await page.set_viewport_size({"width": width, "height": 800})
        await page.wait_for_function(
            """(id) => {
                const plot = document.querySelector(`[data-testid="${id}"]`);
                const box = plot.querySelector('svg').getAttribute('viewBox').split(' ');
                return Number(box[2]) === plot.clientWidth && plot.clientWidth > 0;
            }""",
            arg=f"chart-{CPU}",
        )
    await page.close()


async def test_container_charts(
    kato: Kato, docker: DockerEngineProcess, context: BrowserContext
) -> None:
    """A container's CPU, memory and network charts, the network's two lines told apart by
    their dash as well as their colour."""
    await asyncio.to_thread(docker.run, "shown", "--memory", "32m")
    with GatewayProcess(kato.url, env=containers_env(docker.host, "shown")) as gateway:
        page = await open_page(context, f"{gateway.url}/")
        for series in ("container.shown.cpu_percent", "container.shown.memory_used"):
            plot = chart(page, series)
            await expect(plot).to_have_attribute("data-state", "ready")
            await expect(plot).to_have_attribute("data-points", re.compile(r"^([2-9]|\d\d+)$"))
        network = chart(page, "container.shown.network")
        await expect(network).to_have_attribute(
            "data-series", "container.shown.rx_rate,container.shown.tx_rate"
        )
        await expect(network.locator(".chart-line")).to_have_count(2)
        dashes = await network.evaluate(  # in one step, as markers() reads
            """(plot) => [...plot.querySelectorAll('.chart-line')].map(
                (line) => getComputedStyle(line).strokeDasharray)"""
        )
        assert dashes[0] == "none" and dashes[1] != "none", dashes
        await hook(page, "range-containers").get_by_role("button", name="24 h").click()
        await expect(chart(page, "container.shown.cpu_percent")).to_have_attribute(
            "data-step", "60"
        )
        await page.close()


async def test_the_charts_load_through_nginx_under_a_path_prefix(
    seeded: Seeded, context: BrowserContext
) -> None:
    with prefixed_nginx(seeded.gateway.port) as nginx:
        page = await open_page(context, nginx.url)
        await ready(page, CPU)
        await page.close()
        seen = nginx.requests()
    assert any(
        line.startswith("/monitor/api/history?") and line.endswith(" 200") for line in seen
    ), seen
