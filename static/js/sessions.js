// The sessions panel: the active count (from the stream, or polled while it is down), whether
// KATO's push channel is live (metrics.sessions.push), the count as a chart with each change
// marked, and the last ten session changes: a pushed change names its session and node, a
// change found by the poll only says so.
//
// The count has three sources: each session_event (at once), each metrics tick, and the
// fallback poll. They do not arrive in the order they were read (a tick taken before a push can
// arrive after it, e.g. in a tab joining the shared stream), so each reading carries the
// gateway's timestamp and the count shows the newest reading, never an older one.

import { createChartGroup } from "./chart-group.js";
import { createChart } from "./charts.js";
import { icons } from "./icons.js";
import { DASH, clock, shortId } from "./format.js";
import { SESSIONS_ACTIVE } from "./figures.js";

const KEEP = 10;

export function createSessionsPanel(panel, { history, gatewayNow } = {}) {
  const count = panel.querySelector("[data-testid=session-count]");
  const source = panel.querySelector("[data-testid=session-source]");
  const push = panel.querySelector("[data-testid=push-state]");
  const list = panel.querySelector("[data-testid=session-events]");
  const empty = panel.querySelector("[data-testid=session-events-empty]");
  const seen = new Set();
  let countReadAt = -Infinity; // when the count shown was read (gateway clock, µs)
  const chart = createChart({
    id: SESSIONS_ACTIVE,
    title: "Active sessions",
    subject: "KATO's active sessions, with each session created or destroyed marked",
    lines: [{ series: SESSIONS_ACTIVE }],
    format: (value) =>
      typeof value !== "number" ? DASH : Number.isInteger(value) ? String(value) : value.toFixed(1),
    scale: { minTop: 1 },
    curve: "step",
    markers: true,
  });
  panel.querySelector("[data-testid=sessions-charts]").replaceChildren(chart.element);
  const charts = createChartGroup({
    history,
    gatewayNow,
    switchElement: panel.querySelector("[data-testid=range-sessions]"),
    storageKey: "sse-monitor.range.sessions",
  });
  charts.add(chart);

  /** A count read at `timestamp` (ISO-8601, the gateway's); false, and nothing shown, if the
   * count shown was read later. */
  function setCount(value, timestamp, { polled = false, stale = false } = {}) {
    const readAt = microseconds(timestamp);
    if (readAt < countReadAt) return false;
    if (!Number.isNaN(readAt)) countReadAt = readAt;
    count.textContent = typeof value === "number" ? String(value) : DASH;
    source.textContent = polled ? "polled while the stream is down" : stale ? "last known" : "";
    panel.dataset.stale = String(stale);
    return true;
  }

  /** The gateway restarted (a `reset`): its clock may be behind the last one's. */
  function forgetCountTime() {
    countReadAt = -Infinity;
  }

  /** metrics.sessions.push: {state: live | connecting | down | off, since, error, messages}. */
  function setPush(state) {
    if (!state || typeof state.state !== "string") {
      push.hidden = true;
      return;
    }
    const { text, title } = describePush(state);
    push.hidden = false;
    if (push.dataset.state !== state.state) push.dataset.state = state.state;
    if (push.textContent !== text) push.textContent = text;
    if (push.title !== title) push.title = title;
  }

  /** Adds a change to the list; false if it was already there (a replay after reconnecting). */
  function add(id, event) {
    if (id && seen.has(id)) return false;
    if (id) seen.add(id);
    const created = event.event_type === "session_created";
    const data = event.data;
    const item = document.createElement("li");
    item.dataset.kind = created ? "created" : "destroyed";
    if (data.source) item.dataset.source = data.source;
    item.innerHTML =
      `${created ? icons.userPlus : icons.userMinus}<span class="what"></span>` +
      `<span class="who"></span><time></time>`;
    item.querySelector(".what").textContent =
      `${created ? "+" : "−"}${data.delta} (total ${data.current_count})`;
    fillWho(item, data);
    const time = item.querySelector("time");
    time.dateTime = event.timestamp;
    time.textContent = clock(event.timestamp);
    list.prepend(item);
    while (list.children.length > KEEP) list.lastElementChild.remove();
    empty.hidden = true;
    return true;
  }

  return { setCount, forgetCountTime, setPush, add, charts };
}

/** An ISO-8601 time as microseconds since the epoch. The gateway writes microseconds and
 * Date.parse keeps milliseconds only: a push and a tick in the same millisecond would tie. */
function microseconds(iso) {
  const parts = /^(.*T\d\d:\d\d:\d\d)(?:\.(\d+))?(.*)$/.exec(String(iso));
  if (!parts) return NaN;
  const [, whole, fraction = "", zone] = parts;
  return Date.parse(whole + zone) * 1000 + Number(fraction.padEnd(6, "0").slice(0, 6));
}

/** Which session, on which node (pushed changes), or that the poll found it. */
function fillWho(item, data) {
  const who = item.querySelector(".who");
  if (data.source === "poll") {
    who.textContent = "polled";
    who.title = "Found by polling KATO's count: no push said which session it was";
    return;
  }
  if (data.source !== "push" || !data.session_id) {
    who.remove();
    return;
  }
  item.dataset.sessionId = data.session_id;
  if (data.node_id) item.dataset.nodeId = data.node_id;
  const code = document.createElement("code");
  code.textContent = shortId(data.session_id);
  code.title = data.session_id;
  who.append(code);
  const on = data.node_id ? ` on ${data.node_id}` : "";
  const reason = data.reason ? ` · ${String(data.reason).replaceAll("_", " ")}` : "";
  if (on || reason) who.append(on + reason);
  who.title = `Pushed by KATO: session ${data.session_id}` +
    (data.node_id ? `, node ${data.node_id}` : "") +
    (data.reason ? `, ${data.reason}` : "");
}

function describePush({ state, since, error, messages }) {
  const at = since ? ` since ${clock(since)}` : "";
  if (state === "live") {
    const heard = typeof messages === "number" ? `, ${messages} messages` : "";
    return {
      text: "push live",
      title:
        `KATO pushes session changes at once (live${at}${heard}); ` +
        "the poll corrects what pushes miss",
    };
  }
  if (state === "connecting") {
    return {
      text: "push connecting",
      title: "Connecting to KATO's push channel: session changes come from polling meanwhile",
    };
  }
  if (state === "down") {
    return {
      text: "polling only",
      title: `KATO's push channel is down${at}: ${error || "no reason given"}. ` +
        "Session changes come from polling.",
    };
  }
  if (state === "off") {
    return {
      text: "polling only",
      title:
        "The gateway does not follow KATO's push channel (SSE_MONITOR_KATO_PUSH=off): " +
        "session changes come from polling",
    };
  }
  return { text: `push ${state}`, title: error || "" };
}
