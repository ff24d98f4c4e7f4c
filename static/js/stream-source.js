// One EventSource and what it has seen. Used inside the shared worker (one stream for every tab
// of the browser) or, where there is no SharedWorker, by the page itself.

export const EVENT_NAMES = [
  "metrics",
  "containers",
  "session_event",
  "container_event",
  "upstream",
  "reset",
];
const OFFLINE_AFTER_ATTEMPTS = 3;
const RECENT_SESSION_EVENTS = 10;
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
    this.recent = []; // the last session events, for a tab that joins
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
    if (name === "metrics" || name === "containers") this.latest.set(name, message);
    if (name === "session_event") {
      this.recent = [...this.recent, message].slice(-RECENT_SESSION_EVENTS);
    }
    this.emit(message);
  }

  setState(state) {
    this.state = state;
    this.emit({ kind: "state", state, attempt: this.attempt });
  }

  /** What a tab joining an open stream needs: the state, recent events, the latest figures. */
  catchUp() {
    const recent = this.recent.map((message) => ({ ...message, replayed: true }));
    return [
      { kind: "state", state: this.state, attempt: this.attempt },
      ...recent,
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
