// Sparklines of the last ten minutes, kept in the page: a series per figure, drawn as an SVG
// polyline in a 100 x 24 box stretched to its place.

export const WINDOW_MS = 10 * 60 * 1000;

export class Series {
  constructor(windowMs = WINDOW_MS) {
    this.windowMs = windowMs;
    this.points = [];
  }

  push(time, value) {
    if (typeof value !== "number") return;
    this.points.push([time, value]);
    const oldest = time - this.windowMs;
    while (this.points.length && this.points[0][0] < oldest) this.points.shift();
  }
}

export function drawSparkline(svg, series, { min = 0, max = 100, now = Date.now() } = {}) {
  // Until ten minutes have been seen, the line spans what there is rather than a corner.
  const first = series.points.length ? series.points[0][0] : now;
  const start = Math.max(now - series.windowMs, Math.min(first, now - 1000));
  const span = now - start;
  const top = Math.max(max, ...series.points.map(([, value]) => value));
  const coordinates = series.points.map(([time, value]) => {
    const x = ((time - start) / span) * 100;
    const y = 24 - ((value - min) / (top - min || 1)) * 22 - 1;
    return `${x.toFixed(2)},${y.toFixed(2)}`;
  });
  if (coordinates.length === 0) {
    svg.innerHTML = "";
    return;
  }
  const line = coordinates.join(" ");
  const left = coordinates[0].split(",")[0];
  const right = coordinates[coordinates.length - 1].split(",")[0];
  svg.innerHTML =
    `<polygon class="area" points="${left},24 ${line} ${right},24"/>` +
    `<polyline points="${line}"/>`;
}
