// Reads the charts' history from the gateway: GET api/history for what was recorded before this
// page opened, GET api/history/series for the resolutions it keeps. Relative URLs, so the page
// works under a path prefix; the browser sends the login cookie as with every api call.

const SERIES_PER_REQUEST = 40; // the gateway takes at most 50 in one request

export class HistoryError extends Error {
  constructor(message, status = null) {
    super(message);
    this.status = status; // the HTTP status, or null when the gateway did not answer
  }
}

export function createHistory({ onUnauthorized = () => {} } = {}) {
  let tiers = null; // a promise of [{step, retention_seconds}], kept once it has an answer

  async function get(path, params = {}) {
    const url = new URL(path, document.baseURI);
    for (const [name, value] of Object.entries(params)) {
      if (value !== null && value !== undefined) url.searchParams.set(name, String(value));
    }
    let response;
    try {
      response = await fetch(url, { cache: "no-store", headers: { Accept: "application/json" } });
    } catch {
      throw new HistoryError("the gateway did not answer");
    }
    if (response.status === 401) onUnauthorized();
    const body = await response.json().catch(() => null);
    if (!response.ok || body === null) {
      const why = typeof body?.error === "string" ? body.error : `HTTP ${response.status}`;
      throw new HistoryError(why, response.status);
    }
    return body;
  }

  /** The step (seconds) to ask for a range: the finest resolution kept that long. Asked for
   * rather than left to the gateway, whose choice from `since` would tip to the coarser one
   * whenever this page's clock is a moment behind its own. null if the tiers are unknown. */
  async function stepFor(rangeMs) {
    tiers ??= get("api/history/series").then(
      (body) => (Array.isArray(body.tiers) ? body.tiers : []),
      (error) => {
        tiers = null; // ask again next time
        throw error;
      },
    );
    let known;
    try {
      known = await tiers;
    } catch {
      return null;
    }
    const sorted = [...known].sort((a, b) => a.step - b.step);
    const fits = sorted.find((tier) => tier.retention_seconds * 1000 >= rangeMs);
    return (fits ?? sorted[sorted.length - 1])?.step ?? null;
  }

  /** The series' rows and the markers over the last `rangeMs` before `now` (epoch ms, the
   * gateway's clock): {since, until, step, series: {name: [[ms, min, mean, max]]}, markers}. */
  async function read({ series, rangeMs, now }) {
    const step = await stepFor(rangeMs);
    const since = ((now - rangeMs) / 1000).toFixed(3);
    const chunks = [];
    for (let at = 0; at < series.length; at += SERIES_PER_REQUEST) {
      chunks.push(series.slice(at, at + SERIES_PER_REQUEST));
    }
    const bodies = await Promise.all(
      chunks.map((names) => get("api/history", { series: names.join(","), since, step })),
    );
    const [first] = bodies;
    return {
      since: Date.parse(first.since),
      until: Date.parse(first.until),
      step: Number(first.step) || 0,
      series: Object.fromEntries(
        bodies.flatMap((body) =>
          Object.entries(body.series || {}).map(([name, points]) => [name, points.map(row)]),
        ),
      ),
      markers: (first.markers || []).map((marker) => ({
        ...marker,
        time: Date.parse(marker.time),
      })),
    };
  }

  return { read };
}

/** A point [time, value] or a bucket [time, min, mean, max] as [ms, min, mean, max]. */
function row(point) {
  const time = Date.parse(point[0]);
  if (point.length === 2) return [time, point[1], point[1], point[1]];
  return [time, point[1], point[2], point[3]];
}
