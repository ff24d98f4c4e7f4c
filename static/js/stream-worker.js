// The shared worker: one EventSource for every tab of this browser. Browsers allow only six
// connections per origin over HTTP/1.1; a stream per tab would hang the seventh tab. A tab that
// logs in says "retry" (every tab then hears the stream's new state); one that logs out says
// "reconnect" (the open stream was allowed by the cookie just cleared).

import { StreamSource } from "./stream-source.js";

const ports = new Set();
let stream = null;

function broadcast(message) {
  for (const port of ports) port.postMessage(message);
}

self.onconnect = (event) => {
  const port = event.ports[0];
  port.onmessage = ({ data }) => {
    if (data.type === "start") {
      ports.add(port);
      if (stream) {
        for (const message of stream.catchUp()) port.postMessage(message);
      } else {
        stream = new StreamSource(data.url, broadcast);
        stream.start(data.lastEventId);
      }
    } else if (data.type === "retry") {
      stream?.retry();
    } else if (data.type === "reconnect") {
      stream?.reconnect();
    } else if (data.type === "stop") {
      ports.delete(port);
      if (ports.size === 0 && stream) {
        stream.stop();
        stream = null;
      }
    }
  };
  port.start();
};
