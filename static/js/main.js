// The page's wiring: stream messages in, panels, toasts and the connection state out; the login
// form when the gateway asks for a token.

import { createAccess } from "./access.js";
import { createAlertsPanel } from "./alerts.js";
import { createContainersPanel } from "./containers.js";
import { connectStream } from "./connection.js";
import { createFallbackPoller } from "./fallback.js";
import { tickFigures } from "./figures.js";
import { age, clock } from "./format.js";
import { createHistory } from "./history.js";
import { createKatoPanel } from "./kato.js";
import { createSessionList } from "./session-list.js";
import { createSessionsPanel } from "./sessions.js";
import { setUpTheme } from "./theme.js";
import { alertToast, createToasts, sessionToast } from "./toasts.js";

const params = new URLSearchParams(location.search);
const FALLBACK_SECONDS = Number(params.get("fallback_interval")) || 10;
// The session list's refresh; `?sessions_interval=SECONDS` changes it (tests shorten it).
const SESSIONS_SECONDS = Math.max(0.2, Number(params.get("sessions_interval")) || 10);
const TOAST_IF_NEWER_THAN_MS = 60_000; // replayed older changes and alerts go to the lists only
const LAST_ID_KEY = "sse-monitor.last-event-id";
// What the page shows, so what its stream subscribes to (`upstream` and `reset` come anyway).
const TOPICS = ["metrics", "containers", "sessions", "alerts"];

const $ = (selector) => document.querySelector(selector);
// The charts' history. A 401 there comes with one on the stream, which shows the login form;
// a login loads the charts again.
const chartHistory = createHistory();
const gatewayNow = () => Date.now() - skewMs; // the charts' clock: the history's times are the gateway's
const kato = createKatoPanel($("[aria-labelledby=kato-title]"), {
  history: chartHistory,
  gatewayNow,
});
const sessions = createSessionsPanel($("[aria-labelledby=sessions-title]"), {
  history: chartHistory,
  gatewayNow,
});
const containers = createContainersPanel($("[data-testid=containers]"), {
  history: chartHistory,
  gatewayNow,
});
const chartGroups = [kato.charts, sessions.charts, containers.charts];
const toasts = createToasts($("[data-testid=toasts]"));
const alerts = createAlertsPanel({
  bell: $("[data-testid=alert-bell]"),
  panel: $("[data-testid=alerts-panel]"),
  gatewayNow, // "started 2 min ago" by the gateway's clock
  onUnauthorized: () => access.show("login"),
  onLoginAsAdmin: () => access.show("admin"),
});
const sessionList = createSessionList({
  panel: $("[data-testid=session-list-panel]"),
  offNote: $("[data-testid=session-list-off]"),
  intervalMs: SESSIONS_SECONDS * 1000,
  gatewayNow, // "created 2 min ago" by the gateway's clock
  // Not over a form that is already up because nothing shows without a login (no Cancel there).
  onUnauthorized: () => access.required || access.show("login"),
});
const access = createAccess({
  form: $("[data-testid=login-form]"),
  logout: $("[data-testid=logout]"),
  role: $("[data-testid=access-role]"),
  onLogin: ({ role }) => {
    fallback.resume();
    sessionList.resume();
    for (const group of chartGroups) group.reload();
    stream.retry(); // at once: the stream was refused for want of this cookie
    alerts.setRole(role);
  },
  onLogout: () => {
    alerts.setRole(null);
    stream.reconnect(); // the open stream was let in with the cookie just cleared
  },
});
const connection = $("[data-testid=connection-state]");
const dataAge = $("[data-testid=data-age]");

setUpTheme($("[data-testid=theme-toggle]"));

let live = false;
let connectionState = { state: "reconnecting", attempt: 0, retryAt: null };
let redisLost = null; // the `cluster` event of this stream's node while it has no Redis
let lastDataAt = null;
let interval = null; // seconds between metrics, as observed
let skewMs = 0; // this browser's clock minus the gateway's, from the metrics' timestamps
let lastContainers = null; // the newest `containers` snapshot: the charts record it with each tick

const fallback = createFallbackPoller({
  url: new URL("api/sessions/count", document.baseURI),
  intervalMs: FALLBACK_SECONDS * 1000,
  onCount: (body) => {
    if (!live) {
      sessions.setCount(body.active_sessions, body.timestamp, { polled: true, stale: body.stale });
    }
  },
  onUnauthorized: () => access.show("login"),
});

/** The stream's state: live, reconnecting, offline, busy (a 429 or 503: waiting for its
 * Retry-After) or unauthorized (a 401: waiting for a login). */
function showState(state, attempt, retryAt) {
  const was = connectionState.state;
  connectionState = { state, attempt, retryAt };
  live = state === "live";
  // A new connection (or this tab joining the shared one): its node says it again if it holds.
  if (live) redisLost = null;
  connection.dataset.state = state;
  document.body.dataset.connection = state;
  if (state === "live" || state === "unauthorized") fallback.stop();
  else fallback.start();
  if (state === "unauthorized") {
    access.show("login", { required: true });
  } else if (access.required) {
    access.hide(); // another tab logged in, or the gateway no longer asks
  }
  // A login or a logout in another tab (they share the stream): what may this page do now?
  if (state !== was && (state === "unauthorized" || was === "unauthorized")) access.refresh();
  if (was === "unauthorized" && state === "live") sessionList.resume(); // logged in elsewhere
  // Ticks are not replayed: the charts fetch from the history what passed while away.
  for (const group of chartGroups) {
    if (was === "live" && !live) group.missedTicks();
    if (live && was !== "live") group.catchUp();
  }
  showConnection();
  showAge();
}

function showConnection() {
  const { state, attempt, retryAt } = connectionState;
  let text;
  if (state === "live" && redisLost) text = "Live updates paused · the gateway lost its Redis";
  else if (state === "live") text = "Live";
  else if (state === "offline") text = "Offline";
  else if (state === "unauthorized") text = "Login needed";
  else if (state === "busy") {
    const seconds = Math.ceil(((retryAt ?? Date.now()) - Date.now()) / 1000);
    text = seconds > 0 ? `Gateway busy · retrying in ${seconds} s` : "Gateway busy · retrying now";
  } else text = `Reconnecting (attempt ${attempt})`;
  if (state !== "live" && state !== "unauthorized") text += " · polling the count";
  if (connection.textContent !== text) connection.textContent = text;
  const paused = state === "live" && redisLost !== null;
  connection.dataset.paused = String(paused);
  const title = paused ? pausedTitle(redisLost) : "";
  if (connection.title !== title) connection.title = title;
}

function pausedTitle({ node, timestamp, error }) {
  const why = error ? ` (${error})` : "";
  return (
    `Gateway node ${node} cannot reach the cluster's Redis since ${clock(timestamp)}${why}. ` +
    "The stream stays open; updates resume by themselves when Redis is back."
  );
}

function showAge() {
  if (lastDataAt === null) {
    dataAge.textContent = "no data yet";
    return;
  }
  const elapsed = Date.now() - lastDataAt;
  const late = elapsed > Math.max(10_000, 3 * (interval || 3) * 1000);
  dataAge.textContent = `updated ${age(elapsed)} ago`;
  dataAge.dataset.stale = String(!live || late);
}

function onEvent({ name, id, data, replayed }) {
  if (id && !replayed) {
    try {
      sessionStorage.setItem(LAST_ID_KEY, id);
    } catch {
      // storage off: a reload starts from the current state
    }
  }
  const now = Date.now();
  if (name === "metrics") {
    if (lastDataAt !== null && !replayed) interval = (now - lastDataAt) / 1000;
    lastDataAt = now;
    skewMs = now - new Date(data.timestamp).getTime();
    kato.render(data);
    sessions.setCount(data.sessions.active_count, data.timestamp, { stale: data.stale });
    sessions.setPush(data.sessions.push);
    const figures = tickFigures(data, lastContainers);
    for (const group of chartGroups) group.tick(Date.parse(data.timestamp), figures);
    showAge();
  } else if (name === "containers") {
    lastContainers = data;
    containers.render(data);
  } else if (name === "session_event") {
    sessions.charts.sessionEvent(data);
    // The count moves with the change (not at the next tick), unless a later reading is shown.
    sessions.setCount(data.data.current_count, data.timestamp);
    const added = sessions.add(id, data);
    if (added) sessionList.changed(data.timestamp);
    const recent = now - skewMs - new Date(data.timestamp).getTime() < TOAST_IF_NEWER_THAN_MS;
    if (added && !replayed && recent) toasts.show(sessionToast(data));
  } else if (name === "reset") {
    sessions.forgetCountTime();
  } else if (name === "cluster") {
    // The node serving this stream lost (or regained) the cluster's Redis: the stream stays
    // open, but nothing new reaches it meanwhile.
    redisLost = data.log === "unavailable" ? data : null;
    showConnection();
  } else if (name === "alerts") {
    alerts.setState(data);
    for (const group of chartGroups) group.setFiring(data.firing || []);
  } else if (name === "alert") {
    for (const group of chartGroups) group.alert(data);
    const added = alerts.add(id, data);
    const recent = now - skewMs - new Date(data.started_at).getTime() < TOAST_IF_NEWER_THAN_MS;
    if (added && data.transition === "fired" && !replayed && recent) toasts.show(alertToast(data));
  } else if (name === "notification") {
    alerts.notified(id, data);
  } else if (name === "notifications") {
    alerts.noticesOf(data.alerts);
  }
  // After a "reset" (the gateway restarted, or this page was away too long) the current state
  // follows, and the changes already listed did happen: only the count's clock starts afresh.
}

let storedId = null;
try {
  storedId = sessionStorage.getItem(LAST_ID_KEY);
} catch {
  storedId = null;
}

// The topics are joined by hand: URLSearchParams would write the commas as %2C.
const streamUrl = new URL(`events?topics=${TOPICS.join(",")}`, document.baseURI).href;
const stream = connectStream({
  url: streamUrl,
  lastEventId: storedId,
  onMessage: (message) => {
    if (message.kind === "state") showState(message.state, message.attempt, message.retryAt);
    else onEvent(message);
  },
});
access.refresh();
sessionList.start();
for (const group of chartGroups) group.start();
setInterval(() => {
  showAge();
  if (connectionState.state === "busy") showConnection();
}, 1000);
