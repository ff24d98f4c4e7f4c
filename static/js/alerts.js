// The alerts bell and panel. The bell counts the firing alerts nobody has acknowledged (the
// `alerts` state event says how many). The panel lists the firing alerts from that same state;
// resolved (or all) alerts are fetched from api/alerts when asked for, then kept current by the
// live `alert` events, each updating its row in place. Where access control is on, a 401
// (from the list or an ack) asks for a login, and an ack refused with 403 says it needs the
// admin token, with a button to log in with it. Each row says where its alert was sent: from the
// list's `notifications` and the live `notification` events (alert-notices.js).

import { createNotices, newNoticesPart } from "./alert-notices.js";
import { DASH, age, clock } from "./format.js";
import { icons } from "./icons.js";

const NAME_KEY = "sse-monitor.ack-by";
const FETCH_LIMIT = 50;
const RESOLVED_FIELDS = ["state", "resolved_at", "resolved_value"];
const ACK_FIELDS = ["acknowledged_by", "acknowledged_at", "ack_note"];
const EMPTY = { firing: "Nothing is firing", resolved: "No resolved alerts", all: "No alerts" };

export function createAlertsPanel({
  bell,
  panel,
  gatewayNow = () => Date.now(),
  onUnauthorized = () => {},
  onLoginAsAdmin = () => {},
}) {
  const count = bell.querySelector("[data-testid=alert-count]");
  const severityFilter = panel.querySelector("[data-testid=alert-filter-severity]");
  const stateFilter = panel.querySelector("[data-testid=alert-filter-state]");
  const ackBy = panel.querySelector("[data-testid=alert-ack-by]");
  const note = panel.querySelector("[data-testid=alert-error]");
  const needsAdmin = panel.querySelector("[data-testid=alert-needs-admin]");
  const needsAdminText = needsAdmin.querySelector(".text");
  const adminLogin = needsAdmin.querySelector("[data-testid=alert-admin-login]");
  const list = panel.querySelector("[data-testid=alert-list]");
  const empty = panel.querySelector("[data-testid=alerts-empty]");
  const close = panel.querySelector("[data-testid=alerts-close]");
  close.innerHTML = icons.close;

  const known = new Map(); // alert id -> the most advanced copy of it seen
  const notices = createNotices(); // where each alert was sent
  const seenEvents = new Set(); // stream event ids: a replay is handled once
  const rows = new Map(); // alert id -> its <li>, reused so focus and state survive updates
  let firing = []; // alert ids firing, from the latest `alerts` state
  let firedSince = new Set(); // ids fired by live events after that state (it follows shortly)
  let listed = new Set(); // resolved / all views: ids fetched, plus those heard of since
  let heard = null; // ids heard of while a fetch is in flight, or null
  let fetches = 0; // only the newest fetch's answer is used

  bell.insertAdjacentHTML("afterbegin", icons.bell);
  ackBy.value = storedName();
  showCount(0);

  /** Keeps the most advanced copy of each alert. An alert (one firing: the next gets a new id)
   * only moves forward, firing to resolved and unacknowledged to acknowledged, so whatever order
   * a fetch answer and live events arrive in, a row never goes back. */
  function remember(alert) {
    notices.fromAlert(alert);
    const copy = { ...alert };
    delete copy.transition; // the event's, not the alert's
    delete copy.notifications; // kept (and kept current) by `notices`
    const old = known.get(copy.id);
    if (old?.state === "resolved" && copy.state !== "resolved") keep(copy, old, RESOLVED_FIELDS);
    if (old?.acknowledged_at && !copy.acknowledged_at) keep(copy, old, ACK_FIELDS);
    known.set(copy.id, copy);
  }

  /** The `alerts` state: the bell's number and the firing list. */
  function setState(state) {
    for (const alert of state.firing) remember(alert);
    firing = state.firing.map((alert) => alert.id);
    firedSince = new Set();
    showCount(state.unacknowledged_count);
    render();
  }

  /** An `alert` event; false if this page has handled it already (a replay). */
  function add(eventId, alert) {
    if (eventId) {
      if (seenEvents.has(eventId)) return false;
      seenEvents.add(eventId);
    }
    remember(alert);
    if (alert.transition === "fired") firedSince.add(alert.id);
    listed.add(alert.id);
    if (heard) heard.add(alert.id);
    render();
    return true;
  }

  /** A `notification` event (an attempt to send a message naming some alerts); false if this
   * page has handled it already (a replay). */
  function notified(eventId, data) {
    if (eventId) {
      if (seenEvents.has(eventId)) return false;
      seenEvents.add(eventId);
    }
    notices.fromEvent(data);
    render();
    return true;
  }

  /** The `notifications` state: where the firing alerts' notifications stand (a page opened
   * after they were sent learns it here: the firing view fetches nothing). */
  function noticesOf(byAlertId) {
    if (!byAlertId || typeof byAlertId !== "object") return;
    for (const [id, notifications] of Object.entries(byAlertId)) {
      notices.fromAlert({ id, notifications });
    }
    render();
  }

  function showCount(unacknowledged) {
    const n = Number(unacknowledged) || 0;
    count.textContent = n > 99 ? "99+" : String(n);
    count.hidden = n === 0;
    bell.dataset.count = String(n);
    const label = n === 0 ? "Alerts: none unacknowledged" : `Alerts: ${n} firing, unacknowledged`;
    bell.setAttribute("aria-label", label);
    bell.title = label;
  }

  function setOpen(open) {
    panel.hidden = !open;
    bell.setAttribute("aria-expanded", String(open));
    if (open) load();
  }

  /** Resolved and all alerts live in the gateway's store: ask it (the firing ones are here). */
  async function load() {
    fetches += 1;
    const mine = fetches;
    render();
    if (stateFilter.value === "firing") {
      heard = null;
      list.setAttribute("aria-busy", "false");
      return;
    }
    heard = new Set();
    list.setAttribute("aria-busy", "true");
    const url = new URL("api/alerts", document.baseURI);
    url.searchParams.set("state", stateFilter.value);
    if (severityFilter.value !== "all") url.searchParams.set("severity", severityFilter.value);
    url.searchParams.set("limit", String(FETCH_LIMIT));
    try {
      const headers = { Accept: "application/json" };
      const response = await fetch(url, { cache: "no-store", headers });
      const body = await response.json().catch(() => null);
      if (mine !== fetches) return;
      if (response.ok && body && Array.isArray(body.alerts)) {
        for (const alert of body.alerts) remember(alert);
        listed = new Set([...body.alerts.map((alert) => alert.id), ...heard]);
        say("");
      } else if (response.status === 401) {
        say("Could not load the alerts: log in first.");
        onUnauthorized();
      } else {
        say(`Could not load the alerts: ${errorText(response, body)}`);
      }
    } catch {
      if (mine === fetches) say("Could not load the alerts: the gateway did not answer.");
    } finally {
      if (mine === fetches) {
        heard = null;
        list.setAttribute("aria-busy", "false");
        render();
      }
    }
  }

  async function acknowledge(id, button) {
    const by = ackBy.value.trim();
    if (!by) {
      say("Type your name above to acknowledge: every acknowledgement says who made it.");
      ackBy.focus();
      return;
    }
    storeName(by);
    say("");
    showNeedsAdmin(null);
    button.disabled = true;
    try {
      const url = new URL(`api/alerts/${encodeURIComponent(id)}/ack`, document.baseURI);
      const response = await fetch(url, {
        method: "POST",
        headers: { "Content-Type": "application/json", Accept: "application/json" },
        body: JSON.stringify({ by }),
      });
      const body = await response.json().catch(() => null);
      if (response.ok && body && body.id) {
        remember(body); // the `alert` event follows, for this page as for every other
        render();
      } else if (response.status === 403 || response.status === 401) {
        showNeedsAdmin(response.status);
      } else {
        say(`Not acknowledged: ${errorText(response, body)}`);
      }
    } catch {
      say("Not acknowledged: the gateway did not answer.");
    } finally {
      button.disabled = false;
    }
  }

  function say(text) {
    note.textContent = text;
    note.hidden = !text;
  }

  /** An ack refused: 403 (a viewer's login) or 401 (no login, or it expired); null hides it. */
  function showNeedsAdmin(status) {
    needsAdmin.hidden = status === null;
    if (status === null) return;
    needsAdmin.dataset.status = String(status);
    needsAdminText.textContent =
      status === 403
        ? "Not acknowledged: acknowledging needs the admin token, and this page is logged in " +
          "with the viewer token."
        : "Not acknowledged: acknowledging needs the admin token, and this page is not logged in.";
  }

  /** The page's role changed (a login or a logout). */
  function setRole(role) {
    if (role === "admin") showNeedsAdmin(null);
    if (!panel.hidden && !note.hidden && note.textContent.includes("log in first")) load();
  }

  function visible() {
    const view = stateFilter.value;
    const severity = severityFilter.value;
    const ids = view === "firing" ? [...firing, ...firedSince] : [...listed];
    if (view === "all") ids.push(...firing);
    return [...new Set(ids)]
      .map((id) => known.get(id))
      .filter((alert) => alert && (view === "all" || alert.state === view))
      .filter((alert) => severity === "all" || alert.severity === severity)
      .sort(newestFirst);
  }

  function render() {
    const alerts = visible();
    const wanted = new Set(alerts.map((alert) => alert.id));
    for (const [id, row] of rows) {
      if (!wanted.has(id)) {
        row.remove();
        rows.delete(id);
      }
    }
    alerts.forEach((alert, index) => {
      let row = rows.get(alert.id);
      if (!row) {
        row = newRow(alert.id);
        rows.set(alert.id, row);
      }
      fill(row, alert);
      // Moved only when out of place: moving a row would take the focus off its button.
      if (list.children[index] !== row) list.insertBefore(row, list.children[index] || null);
    });
    const busy = list.getAttribute("aria-busy") === "true";
    empty.hidden = alerts.length > 0;
    empty.textContent = busy ? "Loading…" : emptyText();
  }

  function emptyText() {
    const view = stateFilter.value;
    const severity = severityFilter.value;
    const what = EMPTY[view];
    return severity === "all" ? `${what}.` : `${what} at severity ${severity}.`;
  }

  function newRow(id) {
    const row = document.createElement("li");
    row.dataset.testid = "alert-row";
    row.dataset.id = id;
    row.innerHTML = `
      <span class="badge severity"></span>
      <div class="what">
        <strong class="message"></strong>
        <span class="subject"></span>
        <span class="times">started <time class="started"></time>
          <span class="resolved"></span></span>
        <span class="acked" data-testid="alert-acked"></span>
      </div>`;
    row.querySelector(".what").append(newNoticesPart());
    return row;
  }

  function fill(row, alert) {
    const acknowledged = Boolean(alert.acknowledged_at || alert.acknowledged_by);
    row.dataset.severity = alert.severity;
    row.dataset.state = alert.state;
    row.dataset.acknowledged = String(acknowledged);
    const badge = row.querySelector(".severity");
    badge.dataset.severity = alert.severity;
    badge.textContent = alert.severity;
    row.querySelector(".message").textContent = alert.message;
    const subject = row.querySelector(".subject");
    subject.textContent = alert.subject || "";
    subject.hidden = !alert.subject;
    const started = row.querySelector(".started");
    started.dateTime = alert.started_at;
    started.title = new Date(alert.started_at).toLocaleString();
    started.textContent = relative(alert.started_at);
    const resolved = row.querySelector(".resolved");
    resolved.textContent = alert.resolved_at ? `· resolved ${clock(alert.resolved_at)}` : "";
    const acked = row.querySelector(".acked");
    const noteText = alert.ack_note ? `: ${alert.ack_note}` : "";
    const who = alert.acknowledged_by || "someone";
    acked.textContent = acknowledged ? `acknowledged by ${who}${noteText}` : "";
    acked.hidden = !acknowledged;
    notices.show(row.querySelector(".notices"), alert.id);
    let button = row.querySelector("[data-testid=alert-ack]");
    if (acknowledged && button) {
      button.remove();
      button = null;
    }
    if (!acknowledged && !button) {
      button = document.createElement("button");
      button.type = "button";
      button.className = "ack";
      button.dataset.testid = "alert-ack";
      button.textContent = "Acknowledge";
      button.addEventListener("click", () => acknowledge(alert.id, button));
      row.append(button);
    }
    if (button) button.setAttribute("aria-label", `Acknowledge: ${alert.message}`);
  }

  function relative(isoTime) {
    const at = Date.parse(isoTime);
    return Number.isNaN(at) ? DASH : `${age(gatewayNow() - at)} ago`;
  }

  // Relative times move on their own; only while someone can see them.
  setInterval(() => {
    if (panel.hidden) return;
    for (const time of list.querySelectorAll("time.started")) {
      time.textContent = relative(time.dateTime);
    }
  }, 1000);

  function closeToBell() {
    setOpen(false);
    bell.focus();
  }

  bell.addEventListener("click", () => setOpen(panel.hidden));
  close.addEventListener("click", closeToBell);
  panel.addEventListener("keydown", (event) => {
    if (event.key === "Escape") closeToBell();
  });
  severityFilter.addEventListener("change", load);
  stateFilter.addEventListener("change", load);
  ackBy.addEventListener("change", () => storeName(ackBy.value.trim()));
  ackBy.addEventListener("input", () => say(""));
  adminLogin.addEventListener("click", () => onLoginAsAdmin());

  return { setState, add, notified, noticesOf, setRole };
}

/** The gateway's order: newest first, alerts of one poll by id. */
function newestFirst(a, b) {
  const byTime = Date.parse(b.started_at) - Date.parse(a.started_at);
  return byTime || (a.id < b.id ? 1 : a.id > b.id ? -1 : 0);
}

function keep(target, source, fields) {
  for (const field of fields) target[field] = source[field];
}

function errorText(response, body) {
  return body && typeof body.error === "string" ? body.error : `HTTP ${response.status}`;
}

function storedName() {
  try {
    return localStorage.getItem(NAME_KEY) || "";
  } catch {
    return "";
  }
}

function storeName(name) {
  try {
    if (name) localStorage.setItem(NAME_KEY, name);
  } catch {
    // private mode: the name lasts for this page only
  }
}
