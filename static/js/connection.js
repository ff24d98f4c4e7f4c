// Connects the page to the stream: through the shared worker where the browser has one, else
// with an EventSource of its own. Either way the page gets the same messages:
// {kind: "state", state, attempt, retryAt} and {kind: "event", name, id, data, replayed?}, and
// gets back a handle: retry() after a login, reconnect() after a logout.

import { StreamSource } from "./stream-source.js";

export function connectStream({ url, lastEventId, onMessage }) {
  const handle = { retry() {}, reconnect() {} };
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
        if (!working) Object.assign(handle, connectDirectly({ url, lastEventId, onMessage }));
      };
      worker.port.start();
      worker.port.postMessage({ type: "start", url, lastEventId });
      addEventListener("pagehide", () => worker.port.postMessage({ type: "stop" }));
      handle.retry = () => worker.port.postMessage({ type: "retry" });
      handle.reconnect = () => worker.port.postMessage({ type: "reconnect" });
      return handle;
    } catch {
      // fall through: one stream for this tab
    }
  }
  return Object.assign(handle, connectDirectly({ url, lastEventId, onMessage }));
}

function connectDirectly({ url, lastEventId, onMessage }) {
  const stream = new StreamSource(url, onMessage);
  stream.start(lastEventId);
  addEventListener("pagehide", () => stream.stop());
  return { retry: () => stream.retry(), reconnect: () => stream.reconnect() };
}
