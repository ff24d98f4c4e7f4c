// One EventSource and what it has seen. Used inside the shared worker (one stream for every tab
// of the browser) or, where there is no SharedWorker, by the page itself.

export const EVENT_NAMES = [
  "metrics",
  "containers",
  "session_event",
  "container_event",
  "upstream",
  "alert",
  "alerts",
  "reset",
];
const OFFLINE_AFTER_ATTEMPTS = 3;
// Durable events kept for a tab that joins (it replays them to its lists, without toasts).
const RECENT = { session_event: 10, alert: 20 };
// State events: the newest of each is all a joining tab needs.
const STATE_EVENTS = new Set(["metrics", "containers", "alerts"]);
const RECREATE_AFTER_MS = 3000;

export class StreamSource {
  constructor(url, emit) {
    this.url = url;
    this.emit = emit;
    this.source = null;
    this.timer = null;
    this.attempt = 0;
    this.state = "reconnecting";
    this.lastEventId = null;
    this.latest = new Map(); // state events: the newest of each name, for a tab that joins
    this.recent = new Map(); // name -> its last durable events, for a tab that joins
  }

  start(lastEventId) {
    if (this.source || this.timer) return;
    this.lastEventId = this.lastEventId || lastEventId || null;
    this.open();
  }

  open() {
    this.timer = null;
    const url = new URL(this.url);
    // After a reload the browser sends no Last-Event-ID: the query parameter carries it.
    if (this.lastEventId) url.searchParams.set("last_event_id", this.lastEventId);
    const source = new EventSource(url);
    this.source = source;
    source.onopen = () => {
      this.attempt = 0;
      this.setState("live");
    };
    source.onerror = () => {
      this.attempt += 1;
      this.setState(this.attempt >= OFFLINE_AFTER_ATTEMPTS ? "offline" : "reconnecting");
      if (source.readyState === EventSource.CLOSED) {
        // The browser gives up for good after a non-200 answer; we do not.
        source.close();
        this.source = null;
        this.timer = setTimeout(() => this.open(), RECREATE_AFTER_MS);
      }
    };
    for (const name of EVENT_NAMES) {
      source.addEventListener(name, (event) => this.receive(name, event));
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

  setState(state) {
    this.state = state;
    this.emit({ kind: "state", state, attempt: this.attempt });
  }

  /** What a tab joining an open stream needs: the state, recent events, the latest figures. */
  catchUp() {
    const recent = [...this.recent.values()].flat();
    const replayed = recent.map((message) => ({ ...message, replayed: true }));
    return [
      { kind: "state", state: this.state, attempt: this.attempt },
      ...replayed,
      ...this.latest.values(),
    ];
  }

  stop() {
    clearTimeout(this.timer);
    this.timer = null;
    if (this.source) this.source.close();
    this.source = null;
  }
}
