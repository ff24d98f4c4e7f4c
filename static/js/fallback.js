// While the stream is down, the session count comes from the JSON endpoint instead, at a slow
// pace; polling stops the moment the stream is back. A 429 or 503 answer pushes the next poll
// back by its Retry-After; a 401 stops polling (onUnauthorized shows the login form) until
// resume() after a login.

import { retryAfterSeconds } from "./retry-after.js";

export function createFallbackPoller({ url, intervalMs, onCount, onUnauthorized = () => {} }) {
  let running = false;
  let locked = false; // a 401: nothing to poll until someone logs in
  let timer = null;
  let run = 0; // each start() is a run; a poll answering for an older one is dropped
  let notBefore = 0; // epoch ms before which no poll is made (a Retry-After)

  function schedule(mine, delayMs) {
    timer = setTimeout(() => poll(mine), Math.max(0, delayMs, notBefore - Date.now()));
  }

  async function poll(mine) {
    timer = null;
    const started = Date.now();
    let response = null;
    try {
      response = await fetch(url, { cache: "no-store", headers: { Accept: "application/json" } });
      if (mine === run && response.ok) onCount(await response.json());
    } catch {
      // the gateway is down too: the next poll will tell
    }
    if (mine !== run) return;
    if (response?.status === 401) {
      locked = true;
      running = false;
      onUnauthorized();
      return;
    }
    if (response && (response.status === 429 || response.status === 503)) {
      notBefore = Date.now() + retryAfterSeconds(response.headers.get("Retry-After")) * 1000;
    }
    schedule(mine, started + intervalMs - Date.now());
  }

  return {
    start() {
      if (running || locked) return;
      running = true;
      run += 1;
      schedule(run, 0);
    },
    stop() {
      running = false;
      run += 1;
      clearTimeout(timer);
      timer = null;
    },
    /** After a login: polling may start again (it does if the stream is still down). */
    resume() {
      locked = false;
    },
  };
}
