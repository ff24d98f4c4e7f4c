// While the stream is down, the session count comes from the JSON endpoint instead, at a slow
// pace; polling stops the moment the stream is back.

export function createFallbackPoller({ url, intervalMs, onCount }) {
  let timer = null;

  async function poll() {
    try {
      const response = await fetch(url, { cache: "no-store", headers: { Accept: "application/json" } });
      if (response.ok) onCount(await response.json());
    } catch {
      // the gateway is down too: the next poll will tell
    }
  }

  return {
    start() {
      if (timer !== null) return;
      poll();
      timer = setInterval(poll, intervalMs);
    },
    stop() {
      clearInterval(timer);
      timer = null;
    },
  };
}
