// One EventSource and what it has seen. Used inside the shared worker (one stream for every tab
// of the browser) or, where there is no SharedWorker, by the page itself.
//
// The browser gives up on an EventSource for good after a non-200 answer, and does not say what
// the answer was. So when it closes, the same URL is fetched once (its body aborted at once) to
// learn why: 401 (or 403) waits for a login ("retry" from a tab), 429 and 503 wait for their
// Retry-After, a 200 reopens at once, anything else (or no answer) retries after a few seconds.
//
// In cluster mode the node sends `cluster` (no id) when it loses or regains the cluster's Redis:
// news about that node, for this connection. A new connection may be on another node, so what
// the last one said is forgotten at its opening (a node without Redis says so again at once).

import { retryAfterSeconds } from "./retry-after.js";

export const EVENT_NAMES = [
  "metrics",
  "containers",
  "session_event",
  "container_event",
  "upstream",
  "alert",
  "alerts",
  "notification",
  "notifications",
  "reset",
  "cluster",
];
const OFFLINE_AFTER_ATTEMPTS = 3;
// Durable events kept for a tab that joins (it replays them to its lists, without toasts).
const RECENT = { session_event: 10, alert: 20, notification: 20 };
// State events: the newest of each is all a joining tab needs.
const STATE_EVENTS = new Set(["metrics", "containers", "alerts", "notifications", "cluster"]);
const RECREATE_AFTER_MS = 3000;
const DIAGNOSE_TIMEOUT_MS = 10_000;

export class StreamSource {
  constructor(url, emit) {
    this.url = url;
    this.emit = emit;
    this.source = null;
    this.timer = null;
    this.diagnosis = null; // the AbortController of the fetch asking why the stream closed
    this.attempt = 0;
    this.state = "reconnecting";
    this.retryAt = null; // busy: when the next attempt is due (epoch ms)
    this.reopenedOnOk = false; // a 200 diagnosis reopens at once, but only once in a row
    this.lastEventId = null;
    this.latest = new Map(); // state events: the newest of each name, for a tab that joins
    this.recent = new Map(); // name -> its last durable events, for a tab that joins
  }

  start(lastEventId) {
    if (this.source || this.timer || this.diagnosis) return;
    this.lastEventId = this.lastEventId || lastEventId || null;
    this.open();
  }

  /** A tab logged in: try again now, unless the stream is open, being asked about, or told to
   * wait (a Retry-After is honoured whatever happens). */
  retry() {
    if (this.source || this.diagnosis || this.state === "busy") return;
    this.open();
  }

  /** A tab logged out: a new stream with the credentials as they are now. */
  reconnect() {
    this.stop();
    this.attempt = 0;
    this.open();
  }

  streamUrl() {
    if (!this.lastEventId) return this.url;
    // After a reload the browser sends no Last-Event-ID: the query parameter carries it. Added
    // by hand: URLSearchParams would rewrite the commas of `topics=` as %2C.
    const joiner = new URL(this.url).search ? "&" : "?";
    return `${this.url}${joiner}last_event_id=${encodeURIComponent(this.lastEventId)}`;
  }

  open() {
    clearTimeout(this.timer);
    this.timer = null;
    const source = new EventSource(this.streamUrl());
    this.source = source;
    source.onopen = () => {
      this.latest.delete("cluster"); // the last connection's node news
      this.attempt = 0;
      this.reopenedOnOk = false;
      this.setState("live");
    };
    source.onerror = () => {
      if (source !== this.source) return;
      if (source.readyState === EventSource.CLOSED) {
        source.close();
        this.source = null;
        this.diagnose();
        return;
      }
      // The browser reconnects by itself (the connection dropped, or the gateway is away).
      this.attempt += 1;
      this.setState(this.attempt >= OFFLINE_AFTER_ATTEMPTS ? "offline" : "reconnecting");
    };
    for (const name of EVENT_NAMES) {
      source.addEventListener(name, (event) => this.receive(name, event));
    }
  }

  /** The EventSource was refused: fetch the same URL to read the answer's status and headers. */
  async diagnose() {
    const controller = new AbortController();
    this.diagnosis = controller;
    const deadline = setTimeout(() => controller.abort(), DIAGNOSE_TIMEOUT_MS);
    let answer = null;
    try {
      const response = await fetch(this.streamUrl(), {
        cache: "no-store",
        headers: { Accept: "text/event-stream" },
        signal: controller.signal,
      });
      answer = { status: response.status, retryAfter: response.headers.get("Retry-After") };
    } catch {
      answer = null; // no answer at all: the gateway is away
    } finally {
      clearTimeout(deadline);
      controller.abort(); // the body is not wanted; a 200 must not hold a stream
    }
    if (this.diagnosis !== controller) return; // stopped, or reconnected, meanwhile
    this.diagnosis = null;
    this.react(answer);
  }

  react(answer) {
    const status = answer ? answer.status : 0;
    if (status === 200 && !this.reopenedOnOk) {
      this.reopenedOnOk = true; // the stream works again
      this.open();
    } else if (status === 401 || status === 403) {
      this.attempt = 0;
      this.retryAt = null;
      this.setState("unauthorized"); // until a tab logs in and says "retry"
    } else if (status === 429 || status === 503) {
      const seconds = retryAfterSeconds(answer.retryAfter);
      this.attempt += 1;
      this.retryAt = Date.now() + seconds * 1000;
      this.setState("busy");
      this.timer = setTimeout(() => {
        this.retryAt = null;
        this.open();
      }, seconds * 1000);
    } else {
      this.attempt += 1;
      this.setState(this.attempt >= OFFLINE_AFTER_ATTEMPTS ? "offline" : "reconnecting");
      this.timer = setTimeout(() => this.open(), RECREATE_AFTER_MS);
    }
  }

  receive(name, event) {
    if (event.lastEventId) this.lastEventId = event.lastEventId;
    const message = { kind: "event", name, id: event.lastEventId, data: JSON.parse(event.data) };
    if (STATE_EVENTS.has(name)) this.latest.set(name, message);
    if (name in RECENT) {
      // Each name keeps its own last few: a burst of alerts does not push out session changes.
      this.recent.set(name, [...(this.recent.get(name) || []), message].slice(-RECENT[name]));
    }
    this.emit(message);
  }

  stateMessage() {
    return { kind: "state", state: this.state, attempt: this.attempt, retryAt: this.retryAt };
  }

  setState(state) {
    this.state = state;
    if (state !== "busy") this.retryAt = null;
    this.emit(this.stateMessage());
  }

  /** What a tab joining an open stream needs: the state, recent events, the latest figures. */
  catchUp() {
    const recent = [...this.recent.values()].flat();
    const replayed = recent.map((message) => ({ ...message, replayed: true }));
    return [this.stateMessage(), ...replayed, ...this.latest.values()];
  }

  stop() {
    clearTimeout(this.timer);
    this.timer = null;
    if (this.diagnosis) this.diagnosis.abort();
    this.diagnosis = null;
    if (this.source) this.source.close();
    this.source = null;
  }
}
