// Where each alert was sent: per alert, receiver and transition, the latest state of its
// notification, merged from the alert list (each alert's `notifications`) and the stream's
// `notification` events; and the line an alert row shows of it, with the detail per transition
// one click (or Enter) away. Receiver names and errors are data: written as text, never markup.

// How far a notification has gone: a copy never replaces one further on (a list fetched before
// an attempt may answer after that attempt's event).
const PROGRESS = { gathering: 0, pending: 1, delivered: 2, failed: 2 };

export function createNotices() {
  const byAlert = new Map(); // alert id -> Map(receiver + transition -> notice), in order gathered
  const shown = new WeakMap(); // a row's part -> what it shows, as JSON

  /** An alert from api/alerts: its `notifications` are in the order gathered (null or missing
   * when the gateway could not say: what is known stays). */
  function fromAlert(alert) {
    if (!Array.isArray(alert.notifications)) return;
    const known = byAlert.get(alert.id) || new Map();
    const ordered = new Map();
    for (const item of alert.notifications) {
      const notice = cleaned(item);
      const key = keyOf(notice);
      if (known.has(key)) ordered.set(key, known.get(key));
      keepFurther(ordered, notice);
    }
    for (const [key, notice] of known) if (!ordered.has(key)) ordered.set(key, notice);
    byAlert.set(alert.id, ordered);
  }

  /** A `notification` event: one message's attempt, for each alert (and transition) it names. */
  function fromEvent(data) {
    if (!data || !Array.isArray(data.alerts)) return;
    for (const named of data.alerts) {
      const alertId = String(named.id);
      if (!byAlert.has(alertId)) byAlert.set(alertId, new Map());
      keepFurther(byAlert.get(alertId), cleaned({ ...data, transition: named.transition }));
    }
  }

  /** Per receiver (in the order first sent to), its notices in the order gathered. */
  function of(alertId) {
    const receivers = new Map();
    for (const notice of byAlert.get(alertId)?.values() || []) {
      receivers.set(notice.receiver, [...(receivers.get(notice.receiver) || []), notice]);
    }
    return receivers;
  }

  /** Fill a row's part (newNoticesPart) for this alert, unless it shows that already: the
   * panel redraws its rows on every change. */
  function show(part, alertId) {
    const receivers = of(alertId);
    const signature = JSON.stringify([...receivers]);
    if (shown.get(part) === signature) return;
    shown.set(part, signature);
    fill(part, receivers);
  }

  return { fromAlert, fromEvent, show };
}

/** Put the notice in `notices`, unless the copy there has gone further. */
function keepFurther(notices, notice) {
  const key = keyOf(notice);
  const old = notices.get(key);
  if (!old || !further(old, notice)) notices.set(key, notice);
}

function keyOf(notice) {
  return `${notice.receiver}\n${notice.transition}`;
}

function further(old, notice) {
  const was = PROGRESS[old.state] ?? -1;
  const now = PROGRESS[notice.state] ?? -1;
  return was > now || (was === now && old.attempts > notice.attempts);
}

function cleaned(item) {
  return {
    receiver: String(item.receiver),
    transition: String(item.transition),
    state: String(item.state),
    attempts: Number(item.attempts) || 0,
    last_error: typeof item.last_error === "string" ? item.last_error : null,
  };
}

/** The row's part for its notifications, empty and hidden until there are some. */
export function newNoticesPart() {
  const part = document.createElement("details");
  part.className = "notices";
  part.dataset.testid = "alert-notifications";
  part.hidden = true;
  const summary = document.createElement("summary");
  const list = document.createElement("ul");
  list.className = "notice-detail";
  part.append(summary, list);
  return part;
}

/** In the summary, each receiver's latest transition; in the list, every transition. Nothing
 * shows where nothing was sent. */
function fill(part, receivers) {
  part.hidden = receivers.size === 0;
  const summary = part.querySelector("summary");
  const list = part.querySelector(".notice-detail");
  const label = document.createElement("span");
  label.className = "label";
  label.textContent = "Notifications:";
  const latest = [...receivers].flatMap(([receiver, notices], index) => {
    const notice = notices[notices.length - 1];
    const item = stateSpan(notice, `${receiver}: ${described(notice)}`);
    item.dataset.testid = "alert-notification";
    item.dataset.receiver = receiver;
    item.dataset.transition = notice.transition;
    return index === 0 ? [item] : ["; ", item];
  });
  summary.replaceChildren(label, " ", ...latest); // the summary itself stays: it may have the focus
  const lines = [...receivers.values()].flat().map((notice) => {
    const line = document.createElement("li");
    line.dataset.testid = "alert-notification-detail";
    line.dataset.receiver = notice.receiver;
    line.dataset.transition = notice.transition;
    line.dataset.state = notice.state;
    const receiver = document.createElement("span");
    receiver.className = "receiver";
    receiver.textContent = notice.receiver;
    const what = stateSpan(notice, `${notice.transition}: ${described(notice, true)}`);
    line.append(receiver, " · ", what);
    return line;
  });
  list.replaceChildren(...lines);
}

function stateSpan(notice, text) {
  const span = document.createElement("span");
  span.className = "notice";
  span.dataset.state = notice.state;
  span.textContent = text;
  return span;
}

/** "delivered", "retrying (3 attempts): HTTP 503", "failed: HTTP 404", "waiting to send";
 * in `detail`, how many attempts a delivery took too. */
function described(notice, detail = false) {
  const { state, attempts } = notice;
  const error = notice.last_error ? `: ${notice.last_error}` : "";
  if (state === "gathering") return "waiting to send";
  if (state === "pending" && attempts === 0) return "sending";
  if (state === "pending") return `retrying (${counted(attempts)})${error}`;
  const tries = detail && attempts > 0 ? ` (${counted(attempts)})` : "";
  if (state === "delivered") return attempts > 1 ? `delivered${tries}` : "delivered";
  if (state === "failed") return `failed${tries}${error}`;
  return state;
}

function counted(attempts) {
  return attempts === 1 ? "1 attempt" : `${attempts} attempts`;
}
