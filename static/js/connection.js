// Connects the page to the stream: through the shared worker where the browser has one, else
// with an EventSource of its own. Either way the page gets the same messages:
// {kind: "state", state, attempt} and {kind: "event", name, id, data, replayed?}.

import { StreamSource } from "./stream-source.js";

export function connectStream({ url, lastEventId, onMessage }) {
  if ("SharedWorker" in window) {
    try {
      const worker = new SharedWorker(new URL("./stream-worker.js", import.meta.url), {
        type: "module",
        name: "sse-monitor-stream",
      });
      let working = false;
      worker.port.onmessage = ({ data }) => {
        working = true;
        onMessage(data);
      };
      worker.onerror = () => {
        if (!working) connectDirectly({ url, lastEventId, onMessage });
      };
      worker.port.start();
      worker.port.postMessage({ type: "start", url, lastEventId });
      addEventListener("pagehide", () => worker.port.postMessage({ type: "stop" }));
      return;
    } catch {
      // fall through: one stream for this tab
    }
  }
  connectDirectly({ url, lastEventId, onMessage });
}

function connectDirectly({ url, lastEventId, onMessage }) {
  const stream = new StreamSource(url, onMessage);
  stream.start(lastEventId);
  addEventListener("pagehide", () => stream.stop());
}
