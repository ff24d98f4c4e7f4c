// How figures are written on the page; "—" whenever a figure is unknown, never 0.

export const DASH = "—";

export function percent(value, digits = 1) {
  return typeof value === "number" ? `${value.toFixed(digits)} %` : DASH;
}

export function bytes(value) {
  if (typeof value !== "number") return DASH;
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let size = value;
  let unit = 0;
  while (size >= 1024 && unit < units.length - 1) {
    size /= 1024;
    unit += 1;
  }
  return `${size.toFixed(unit === 0 ? 0 : 1)} ${units[unit]}`;
}

export function rate(bytesPerSecond) {
  return typeof bytesPerSecond === "number" ? `${bytes(bytesPerSecond)}/s` : DASH;
}

export function duration(seconds) {
  if (typeof seconds !== "number") return DASH;
  const s = Math.floor(seconds);
  const days = Math.floor(s / 86400);
  const hours = Math.floor((s % 86400) / 3600);
  const minutes = Math.floor((s % 3600) / 60);
  if (days) return `${days} d ${hours} h`;
  if (hours) return `${hours} h ${minutes} min`;
  if (minutes) return `${minutes} min ${s % 60} s`;
  return `${s} s`;
}

export function milliseconds(seconds) {
  return typeof seconds === "number" ? `${(seconds * 1000).toFixed(1)} ms` : DASH;
}

export function clock(isoTime) {
  const date = new Date(isoTime);
  return Number.isNaN(date.getTime()) ? DASH : date.toLocaleTimeString();
}

export function age(milliseconds) {
  const seconds = Math.max(0, Math.round(milliseconds / 1000));
  return seconds < 60 ? `${seconds} s` : duration(seconds);
}

/** KATO's ids are `session-<32 hex>-<ms>`: the first 8 hex digits tell them apart. */
export function shortId(id) {
  if (typeof id !== "string") return DASH;
  const kato = /^session-([0-9a-f]{8})[0-9a-f]*-\d+$/i.exec(id);
  if (kato) return `${kato[1]}…`;
  return id.length > 12 ? `${id.slice(0, 12)}…` : id;
}
