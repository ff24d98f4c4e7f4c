// The session list: KATO's sessions as its Redis holds them (GET api/sessions), ten a page,
// newest first, refreshed every `intervalMs` while the tab is visible (and at once when it
// becomes visible again). Only where the gateway has KATO_REDIS_URL: otherwise the panel stays
// hidden and a one-line note in the sessions panel says how to turn it on. A failed read (503:
// Redis unreachable) shows why and keeps the last list, marked stale; a 401 asks for a login
// (onUnauthorized) and stops refreshing until resume(). A session change (changed()) reads it
// at once rather than at the next refresh, and again shortly while the gateway still answers
// with a read taken before the change (it shares one Redis read for 2 s).

import { DASH, age, clock, duration, shortId } from "./format.js";
import { retryAfterSeconds } from "./retry-after.js";

const LIMIT = 10;
const CATCH_UP_MS = 1000; // after a read older than the last change: the next one, soon

export function createSessionList({
  panel,
  offNote,
  intervalMs,
  gatewayNow = () => Date.now(),
  onUnauthorized = () => {},
}) {
  const table = panel.querySelector("[data-testid=session-list]");
  const body = table.querySelector("tbody");
  const range = panel.querySelector("[data-testid=sessions-range]");
  const prev = panel.querySelector("[data-testid=sessions-prev]");
  const next = panel.querySelector("[data-testid=sessions-next]");
  const error = panel.querySelector("[data-testid=session-list-error]");
  const empty = panel.querySelector("[data-testid=session-list-empty]");
  const readAt = panel.querySelector("[data-testid=session-list-read-at]");

  let offset = 0; // the page asked for
  let last = null; // the last good answer (available), or null
  let timer = null;
  let fetches = 0; // only the newest fetch's answer is used
  let locked = false; // a 401: nothing to read until someone logs in
  let started = false;
  let reading = false; // a read in flight (its answer checks `wanted`)
  let lastReadAt = -Infinity; // when the last read started (epoch ms)
  let wanted = -Infinity; // the last session change (epoch ms, the gateway's): read after it
  let due = Infinity; // when the timer reads next (epoch ms)

  function schedule(delayMs) {
    clearTimeout(timer);
    due = Date.now() + Math.max(0, delayMs);
    timer = setTimeout(refresh, Math.max(0, delayMs));
  }

  /** Reads the asked-for page now, unless the tab is hidden (it reads when it is shown). */
  async function refresh() {
    clearTimeout(timer);
    timer = null;
    due = Infinity;
    if (locked || document.visibilityState === "hidden") return;
    fetches += 1;
    const mine = fetches;
    const url = new URL("api/sessions", document.baseURI);
    url.searchParams.set("offset", String(offset));
    url.searchParams.set("limit", String(LIMIT));
    let response = null;
    let answer = null;
    reading = true;
    lastReadAt = Date.now();
    try {
      response = await fetch(url, { cache: "no-store", headers: { Accept: "application/json" } });
      answer = await response.json().catch(() => null);
    } catch {
      response = null; // the gateway did not answer
    }
    if (mine !== fetches) return; // a newer read (a page change) answers instead
    reading = false;
    let delayMs = intervalMs;
    if (response?.ok && answer && answer.available === false) {
      showOff(answer.error);
    } else if (response?.ok && answer && Array.isArray(answer.sessions)) {
      if (answer.sessions.length === 0 && answer.offset > 0 && answer.total > 0) {
        // The sessions of this page are gone: show the last page there is.
        offset = Math.floor((answer.total - 1) / LIMIT) * LIMIT;
        return refresh();
      }
      show(answer);
      if (Date.parse(answer.read_at) < wanted) delayMs = Math.min(delayMs, CATCH_UP_MS);
    } else if (response?.status === 401) {
      locked = true;
      fail("log in to see it");
      onUnauthorized();
      return;
    } else {
      const why = response
        ? typeof answer?.error === "string"
          ? answer.error
          : `HTTP ${response.status}`
        : "the gateway did not answer";
      fail(why, { available: response?.status === 503 && answer?.available === true });
      if (response && (response.status === 429 || response.status === 503)) {
        const told = response.headers.get("Retry-After") || answer?.retry_after_seconds;
        if (told != null) delayMs = Math.max(delayMs, retryAfterSeconds(String(told)) * 1000);
      }
    }
    schedule(delayMs);
  }

  function showOff(reason) {
    last = null;
    panel.hidden = true;
    offNote.hidden = false;
    offNote.title = reason || "";
  }

  function show(answer) {
    last = answer;
    offset = answer.offset;
    panel.hidden = false;
    offNote.hidden = true;
    panel.dataset.stale = "false";
    say("");
    const rows = answer.sessions.map(row);
    body.replaceChildren(...rows);
    table.hidden = rows.length === 0;
    empty.hidden = rows.length > 0;
    showRange();
    readAt.textContent = `Read from KATO's Redis at ${clock(answer.read_at)}`;
    readAt.dataset.readAt = answer.read_at;
  }

  /** A failed read: why, and the last list (if any) marked stale. */
  function fail(why, { available = false } = {}) {
    if (last || available) panel.hidden = false;
    panel.dataset.stale = "true";
    say(
      last
        ? `Session list not updated: ${why}. Showing the list read at ${clock(last.read_at)}.`
        : `Session list unavailable: ${why}.`,
    );
    if (!last) {
      table.hidden = true;
      empty.hidden = true;
      readAt.textContent = "";
      showRange();
    }
  }

  function say(text) {
    if (error.textContent !== text) error.textContent = text;
    error.hidden = !text;
  }

  function showRange() {
    if (!last) {
      range.textContent = "";
      prev.disabled = next.disabled = true;
      return;
    }
    const { total, truncated } = last;
    const first = last.sessions.length ? last.offset + 1 : 0;
    const end = last.offset + last.sessions.length;
    const of = truncated ? `${total}+` : String(total);
    range.textContent = total === 0 ? "No sessions" : `${first}–${end} of ${of}`;
    range.title = truncated
      ? `More sessions than the gateway reads at once: the list shows the first ${total} found`
      : "";
    prev.disabled = last.offset === 0;
    next.disabled = end >= total;
  }

  function row(session) {
    const tr = document.createElement("tr");
    tr.dataset.testid = "session-row";
    tr.dataset.sessionId = session.session_id;
    tr.innerHTML = `
      <th scope="row"><code class="sid"></code></th>
      <td class="node"></td>
      <td><time class="created"></time></td>
      <td class="ttl"></td>`;
    const id = tr.querySelector(".sid");
    id.textContent = shortId(session.session_id);
    id.title = session.session_id;
    tr.querySelector(".node").textContent = session.node_id || DASH;
    const created = tr.querySelector(".created");
    if (session.created_at) {
      created.dateTime = session.created_at;
      created.title = new Date(session.created_at).toLocaleString();
    }
    const ttl = tr.querySelector(".ttl");
    ttl.dataset.ttl = session.ttl_remaining_seconds ?? "";
    ttl.title = session.expires_at
      ? `The session says it expires at ${new Date(session.expires_at).toLocaleString()}; ` +
        "KATO's Redis drops it when its TTL runs out"
      : "KATO's Redis drops it when its TTL runs out";
    tick(tr);
    return tr;
  }

  /** The relative times of one row, by the gateway's clock: they move between reads. */
  function tick(tr) {
    const created = tr.querySelector(".created");
    created.textContent = created.dateTime
      ? `${age(gatewayNow() - Date.parse(created.dateTime))} ago`
      : DASH;
    const ttl = tr.querySelector(".ttl");
    if (ttl.dataset.ttl === "" || !last) {
      ttl.textContent = "no expiry";
      return;
    }
    const sinceRead = (gatewayNow() - Date.parse(last.read_at)) / 1000;
    const left = Number(ttl.dataset.ttl) - Math.max(0, sinceRead);
    ttl.textContent = left > 0 ? `in ${duration(left)}` : "expired";
  }

  function go(to) {
    offset = Math.max(0, to);
    refresh();
  }

  prev.addEventListener("click", () => last && go(last.offset - LIMIT));
  next.addEventListener("click", () => last && go(last.offset + LIMIT));
  document.addEventListener("visibilitychange", () => {
    if (!started) return;
    if (document.visibilityState === "visible") refresh();
    else {
      clearTimeout(timer); // nothing is read while nobody can see it
      timer = null;
    }
  });
  setInterval(() => {
    if (panel.hidden || document.visibilityState === "hidden") return;
    for (const tr of body.children) tick(tr);
  }, 1000);

  return {
    start() {
      started = true;
      refresh();
    },
    /** A session was created or destroyed at `timestamp` (the gateway's): read the list now
     * (at most one read a CATCH_UP_MS), unless a read is in flight (its answer checks), the
     * list shown was read after it, or the list is off or failing (it keeps its schedule). */
    changed(timestamp) {
      const at = Date.parse(timestamp);
      if (!(at > wanted)) return;
      wanted = at;
      if (!started || locked || reading || !last || panel.dataset.stale === "true") return;
      if (Date.parse(last.read_at) >= at) return;
      const delayMs = lastReadAt + CATCH_UP_MS - Date.now();
      if (Date.now() + delayMs < due) schedule(delayMs);
    },
    /** After a login: read again at once. */
    resume() {
      if (!locked) return;
      locked = false;
      refresh();
    },
  };
}
