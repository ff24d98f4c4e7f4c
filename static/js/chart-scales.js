// A chart's scales and labels: the top of its value axis rounded up to a figure that reads
// well, and times written as precisely as the range needs.

const BINARY = 1024;

/** The least round figure at or above `value` (and `minTop`): 1, 2, 2.5 or 5 times a power of
 * ten; for bytes, of 1024 (KiB, MiB, ...) so that the label reads "50.0 MiB", not "47.7 MiB". */
export function niceTop(value, { minTop = 0, bytes = false } = {}) {
  const wanted = Math.max(value, minTop);
  if (!(wanted > 0) || !Number.isFinite(wanted)) return minTop > 0 ? minTop : 1;
  if (!bytes) return roundUp(wanted);
  let unit = 1;
  while (wanted / unit >= BINARY) unit *= BINARY;
  return roundUp(wanted / unit) * unit;
}

function roundUp(value) {
  const power = 10 ** Math.floor(Math.log10(value));
  for (const multiple of [1, 2, 2.5, 5, 10]) {
    if (multiple * power >= value * (1 - 1e-9)) return multiple * power;
  }
  return 10 * power;
}

/** A time on a chart's axis: the clock within a day, with the weekday from a day on. */
export function axisTime(ms, rangeMs) {
  const options = { hour: "2-digit", minute: "2-digit" };
  if (rangeMs >= 24 * 3600 * 1000) options.weekday = "short";
  return new Date(ms).toLocaleString(undefined, options);
}

/** The time of a point in a readout: to the second for raw points, else the bucket's span. */
export function readoutTime(ms, stepSeconds) {
  const date = new Date(ms);
  if (!stepSeconds) return date.toLocaleTimeString();
  const options = { hour: "2-digit", minute: "2-digit" };
  if (stepSeconds >= 900) Object.assign(options, { weekday: "short" });
  const end = new Date(ms + stepSeconds * 1000);
  const to = end.toLocaleTimeString(undefined, { hour: "2-digit", minute: "2-digit" });
  return `${date.toLocaleString(undefined, options)}–${to}`;
}
