// How long a 429 or 503 answer asks us to wait: its Retry-After header, in seconds or as an HTTP
// date. Used by the stream (in the shared worker or the page) and by the fallback polling.

export const RETRY_AFTER_FALLBACK_SECONDS = 10; // a busy answer that does not say
const AT_LEAST_SECONDS = 1; // "Retry-After: 0" must not turn into hammering
const AT_MOST_SECONDS = 3600;

export function retryAfterSeconds(header, fallback = RETRY_AFTER_FALLBACK_SECONDS) {
  const text = (header || "").trim();
  let seconds = NaN;
  if (/^\d+$/.test(text)) {
    seconds = Number(text);
  } else if (text) {
    const at = Date.parse(text);
    if (!Number.isNaN(at)) seconds = Math.ceil((at - Date.now()) / 1000);
  }
  if (!Number.isFinite(seconds)) seconds = fallback;
  return Math.min(AT_MOST_SECONDS, Math.max(AT_LEAST_SECONDS, seconds));
}
