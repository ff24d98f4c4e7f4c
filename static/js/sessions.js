// The sessions panel: the active count (from the stream, or polled while it is down) and the
// last ten session changes.

import { icons } from "./icons.js";
import { DASH, clock } from "./format.js";

const KEEP = 10;

export function createSessionsPanel(panel) {
  const count = panel.querySelector("[data-testid=session-count]");
  const source = panel.querySelector("[data-testid=session-source]");
  const list = panel.querySelector("[data-testid=session-events]");
  const empty = panel.querySelector("[data-testid=session-events-empty]");
  const seen = new Set();

  function setCount(value, { polled = false, stale = false } = {}) {
    count.textContent = typeof value === "number" ? String(value) : DASH;
    source.textContent = polled ? "polled while the stream is down" : stale ? "last known" : "";
    panel.dataset.stale = String(stale);
  }

  /** Adds a change to the list; false if it was already there (a replay after reconnecting). */
  function add(id, event) {
    if (id && seen.has(id)) return false;
    if (id) seen.add(id);
    const created = event.event_type === "session_created";
    const item = document.createElement("li");
    item.dataset.kind = created ? "created" : "destroyed";
    const { delta, current_count: total } = event.data;
    item.innerHTML = `${created ? icons.userPlus : icons.userMinus}<span></span><time></time>`;
    item.querySelector("span").textContent =
      `${created ? "+" : "−"}${delta} (total ${total})`;
    const time = item.querySelector("time");
    time.dateTime = event.timestamp;
    time.textContent = clock(event.timestamp);
    list.prepend(item);
    while (list.children.length > KEEP) list.lastElementChild.remove();
    empty.hidden = true;
    return true;
  }

  return { setCount, add };
}
