"""axe-core, Deque's accessibility engine (npm, MPL-2.0), run inside the page under test: what it
finds wrong with the page as it is at that moment, in lines a failing assert can show.

The package is installed from npm at first use (tests.support.npm); its axe.min.js is added to
the page as a script tag, so it sees the page exactly as Chromium renders it (colours, hidden
parts, the theme).
"""

from __future__ import annotations

from functools import cache
from typing import TYPE_CHECKING

from tests.support.npm import installed

if TYPE_CHECKING:
    from playwright.async_api import Page

PACKAGE = "axe-core@4.14.1"

# Every rule axe runs by default (WCAG 2.0-2.2 A and AA, and its best practices), whole page.
RUN = """async () => {
  const result = await axe.run(document, {resultTypes: ['violations']});
  return result.violations.map(v => ({
    id: v.id,
    impact: v.impact,
    nodes: v.nodes.map(n => ({target: n.target.join(' '), summary: n.failureSummary})),
  }));
}"""


@cache
def axe_source() -> str:
    """axe.min.js, installed into the test cache on first use."""
    return (installed(PACKAGE) / "node_modules" / "axe-core" / "axe.min.js").read_text()


async def violations(page: Page) -> list[str]:
    """axe's violations on the page now, one line per element: rule (impact): where: why."""
    if not await page.evaluate("typeof window.axe === 'object'"):
        await page.add_script_tag(content=axe_source())
    found = await page.evaluate(RUN)
    return [
        f"{v['id']} ({v['impact']}): {node['target']}: {' '.join(node['summary'].split())}"
        for v in found
        for node in v["nodes"]
    ]
