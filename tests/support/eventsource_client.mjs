// A third-party SSE client, as an application would run one: Node's `eventsource` package
// (installed under the npm prefix EVENTSOURCE_PREFIX) reading the URL given. The package
// reconnects by itself, after the server's `retry:`, sending the last id it saw as
// Last-Event-ID. Each event received is printed as one JSON line {"event", "id", "data"};
// each open and each error as {"state": "open" | "error"}.
import { createRequire } from "node:module";

const require = createRequire(`${process.env.EVENTSOURCE_PREFIX}/`);
const { EventSource } = require("eventsource");

const NAMES = [
  "metrics",
  "session_event",
  "upstream",
  "reset",
  "containers",
  "container_event",
  "alerts",
  "alert",
];

const print = (line) => process.stdout.write(`${JSON.stringify(line)}\n`);
const source = new EventSource(process.argv[2]);
for (const name of NAMES) {
  source.addEventListener(name, (message) => {
    print({ event: name, id: message.lastEventId, data: JSON.parse(message.data) });
  });
}
source.onopen = () => print({ state: "open" });
source.onerror = (error) => print({ state: "error", message: error.message ?? null });
