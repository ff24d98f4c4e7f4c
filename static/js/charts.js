// A time chart drawn as plain SVG: one or more lines over a time window, a min-max band under
// the mean where the rows are buckets, alert periods shaded behind, session markers on top, and
// a gap wherever the data has one (each run between gaps is a path segment of its own, never a
// line drawn across). The SVG is drawn in pixels at its box's size and redrawn when that
// changes (ResizeObserver); text sits in HTML beside it, so nothing stretches.
//
// The chart only draws what it is given: chart-group.js loads the history, extends it live and
// moves the window. For tests and assistive technology the plot is role="img" with a label that
// names the figure and range, and data attributes saying what is drawn.

import { bandPath, fixed, linePath, trianglePath } from "./chart-paths.js";
import { attachReadout } from "./chart-readout.js";
import { axisTime, niceTop } from "./chart-scales.js";
import { Timeline } from "./timeline.js";

const SVG = "http://www.w3.org/2000/svg";
const PAD_TOP = 4; // px above the top grid line (the top value's label is above the plot)
const PAD_BOTTOM = 2;
const SESSION_MARKERS = { session_created: "up", session_destroyed: "down" };

/**
 * `lines`: [{series, label}] (a label only where a chart has several lines); `format`: a value
 * as text; `scale`: {minTop, bytes}; `curve`: "line", or "step" for a count held until it
 * changes; `markers`: whether session changes are marked; `value`: whether the caption shows a
 * current value (the panel sets it with showValue).
 */
export function createChart({
  id,
  title,
  subject = title,
  lines,
  format,
  scale = {},
  curve = "line",
  markers = false,
  value = false,
}) {
  const element = buildFigure({ id, title, lines, value });
  const plot = element.querySelector(".chart-plot");
  const svg = plot.querySelector("svg");
  const layers = Object.fromEntries(
    ["alerts", "grid", "bands", "lines", "markers", "cursor"].map((name) => [
      name,
      svg.querySelector(`.chart-${name}`),
    ]),
  );
  const topLabel = element.querySelector(".chart-top");
  const [startLabel, endLabel] = element.querySelectorAll(".chart-times time");
  const timelines = new Map(lines.map((line) => [line.series, new Timeline()]));
  let view = null; // {since, until, range: {key, ms, words}}
  let shownMarkers = [];
  let periods = [];
  let geometry = null; // the scales of the last drawing
  let cursorTime = null;
  let pending = false;

  const readout = attachReadout({
    plot,
    readout: element.querySelector(".chart-readout"),
    times: () => pointTimes(),
    xOf: (time) => (geometry ? geometry.x(centre(time)) : null),
    timeAt: (px) => (geometry ? geometry.timeAt(px) - (step() * 1000) / 2 : null),
    describe: (time) => describe(time),
    setCursor: (time) => {
      cursorTime = time;
      drawCursor();
    },
  });

  function step() {
    return timelines.values().next().value.step;
  }

  /** A row's time as drawn: a bucket at its middle. */
  function centre(time) {
    return time + (step() * 1000) / 2;
  }

  function pointTimes() {
    const all = new Set();
    for (const timeline of timelines.values()) {
      for (const row of timeline.rows) if (row[2] !== null) all.add(row[0]);
    }
    return [...all].sort((a, b) => a - b);
  }

  /** What the readout says of the point at `time`: each line's value (a bucket's mean, with
   * its min and max), a session change marked there, an alert firing then. */
  function describe(time) {
    const at = centre(time);
    const parts = lines.map(({ series, label }) => {
      const row = timelines.get(series).rows.find((r) => r[0] === time && r[2] !== null);
      const text = valueText(row, format);
      return label ? `${label} ${text}` : text;
    });
    const near = nearestMarker(at);
    if (near) parts.push(markerText(near));
    for (const period of periods) {
      if (period.start <= at && at <= (period.end ?? Infinity)) {
        parts.push(`alert: ${period.message}`);
      }
    }
    const first = timelines.get(lines[0].series).rows.find((r) => r[0] === time);
    return { time, step: step(), value: first ? first[2] : null, text: parts.join(" · ") };
  }

  /** The session marker within a few pixels (or the bucket) of `time`, if any. */
  function nearestMarker(time) {
    const tolerance = geometry ? geometry.msPerPx * 6 + (step() * 1000) / 2 : 0;
    let best = null;
    for (const marker of shownMarkers) {
      const distance = Math.abs(marker.time - time);
      const nearer = best === null || distance < Math.abs(best.time - time);
      if (distance <= tolerance && nearer) best = marker;
    }
    return best;
  }

  function requestDraw() {
    if (pending) return;
    pending = true;
    requestAnimationFrame(() => {
      pending = false;
      draw();
    });
  }

  function draw() {
    const width = plot.clientWidth;
    const height = plot.clientHeight;
    if (!view || !width || !height) return;
    const { since, until } = view;
    geometry = scales({ since, until, width, height, top: topValue() });
    svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
    topLabel.textContent = format(geometry.top);
    drawGrid(width);
    drawAlerts(height);
    drawLines();
    drawMarkers();
    drawCursor();
    startLabel.textContent = axisTime(since, until - since);
    endLabel.textContent = axisTime(until, until - since);
    describePlot();
    readout.refresh();
  }

  function topValue() {
    let highest = 0;
    for (const timeline of timelines.values()) {
      for (const row of timeline.rows) if (row[3] !== null) highest = Math.max(highest, row[3]);
    }
    for (const marker of shownMarkers) {
      if (typeof marker.count === "number") highest = Math.max(highest, marker.count);
    }
    return niceTop(highest, scale);
  }

  function drawGrid(width) {
    const { y, top } = geometry;
    layers.grid.replaceChildren(
      shape("line", { class: "chart-rule top", x1: 0, x2: width, y1: y(top), y2: y(top) }),
      shape("line", { class: "chart-rule base", x1: 0, x2: width, y1: y(0), y2: y(0) }),
    );
  }

  function drawAlerts(height) {
    const { x, since, until } = geometry;
    const rects = [];
    for (const period of periods) {
      const from = Math.max(period.start, since);
      const to = Math.min(period.end ?? until, until);
      if (to < since || from > until) continue;
      const left = x(from);
      const rect = shape("rect", {
        class: "chart-alert",
        x: left,
        y: 0,
        width: Math.max(2, x(to) - left),
        height,
      });
      Object.assign(rect.dataset, {
        alertId: period.id,
        severity: period.severity || "",
        start: new Date(from).toISOString(), // the shading's start: at the window's edge at most
      });
      if (period.end === null) rect.dataset.open = "true";
      else rect.dataset.end = new Date(period.end).toISOString();
      rects.push(rect);
    }
    layers.alerts.replaceChildren(...rects);
  }

  function drawLines() {
    const { x, y } = geometry;
    const at = (column) => (row) => [x(centre(row[0])), y(row[column])];
    const bands = [];
    const paths = [];
    lines.forEach(({ series }, index) => {
      const runs = timelines.get(series).segments();
      if (step()) {
        const d = bandPath(runs, at(3), at(1));
        bands.push(shape("path", { class: "chart-band", d, "data-line": index }));
      }
      const path = shape("path", {
        class: "chart-line",
        d: linePath(runs, at(2), curve),
        "data-line": index,
        "data-series": series,
        "data-segments": runs.length,
        "data-spans": JSON.stringify(runs.map((run) => [run[0][0], run[run.length - 1][0]])),
      });
      paths.push(path);
    });
    layers.bands.replaceChildren(...bands);
    layers.lines.replaceChildren(...paths);
  }

  function drawMarkers() {
    const { x, y } = geometry;
    const drawn = [];
    for (const marker of shownMarkers) {
      const shapeName = SESSION_MARKERS[marker.kind];
      if (!shapeName) continue;
      const level = typeof marker.count === "number" ? marker.count : 0;
      const d = trianglePath(x(marker.time), y(level), shapeName);
      const path = shape("path", { class: "chart-marker", d });
      Object.assign(path.dataset, {
        kind: marker.kind,
        shape: `triangle-${shapeName}`,
        time: new Date(marker.time).toISOString(),
        count: String(marker.count ?? ""),
      });
      drawn.push(path);
    }
    layers.markers.replaceChildren(...drawn);
  }

  function drawCursor() {
    if (!geometry || cursorTime === null) {
      layers.cursor.replaceChildren();
      return;
    }
    const { x, y } = geometry;
    const px = fixed(x(centre(cursorTime)));
    const parts = [
      shape("line", { class: "chart-cursor-line", x1: px, x2: px, y1: 0, y2: geometry.height }),
    ];
    for (const { series } of lines) {
      const row = timelines.get(series).rows.find((r) => r[0] === cursorTime && r[2] !== null);
      if (!row) continue;
      const dot = { class: "chart-cursor-dot", cx: px, cy: fixed(y(row[2])), r: 3 };
      parts.push(shape("circle", dot));
    }
    layers.cursor.replaceChildren(...parts);
  }

  /** What is drawn, said in attributes (tests read them) and in the plot's label. */
  function describePlot() {
    const runs = timelines.get(lines[0].series).segments();
    const points = runs.reduce((sum, run) => sum + run.length, 0);
    const set = (name, text) => setData(plot, name, text);
    set("since", new Date(view.since).toISOString());
    set("until", new Date(view.until).toISOString());
    set("step", String(step()));
    set("range", view.range.key);
    set("points", String(points));
    set("segments", String(runs.length));
    set("first", runs.length ? new Date(runs[0][0][0]).toISOString() : null);
    set("last", runs.length ? new Date(runs.at(-1).at(-1)[0]).toISOString() : null);
    set("alerts", String(layers.alerts.childElementCount));
    set("markers", String(layers.markers.childElementCount));
    const resolution = step() ? `, ${bucketWords(step())} mean with its min to max band` : "";
    plot.setAttribute("aria-label", `${subject}, last ${view.range.words}${resolution}`);
  }

  new ResizeObserver(requestDraw).observe(plot);

  return {
    element,
    series: lines.map((line) => line.series),
    /** The gateway's rows for this chart's series (a missing series: nothing recorded). */
    load(rowsBySeries, stepSeconds) {
      for (const [series, timeline] of timelines)
        timeline.load(rowsBySeries[series] || [], stepSeconds);
      requestDraw();
    },
    append(series, time, figure) {
      timelines.get(series)?.append(time, figure);
    },
    /** The time window drawn; what ended before it is let go (drawn or not: a hidden tab
     * draws nothing, and must not hoard). */
    setWindow(since, until, range) {
      view = { since, until, range };
      for (const timeline of timelines.values()) timeline.trim(since);
      requestDraw();
    },
    setMarkers(list) {
      shownMarkers = markers ? list.filter((marker) => marker.kind in SESSION_MARKERS) : [];
      requestDraw();
    },
    setAlerts(list) {
      periods = list;
      requestDraw();
    },
    setState(state) {
      plot.dataset.state = state;
    },
    showValue(text) {
      const output = element.querySelector(".chart-value");
      if (output && output.textContent !== text) output.textContent = text;
    },
  };
}

function scales({ since, until, width, height, top }) {
  const span = Math.max(1, until - since);
  const drawable = height - PAD_TOP - PAD_BOTTOM;
  return {
    since,
    until,
    height,
    top,
    msPerPx: span / width,
    x: (time) => ((time - since) / span) * width,
    timeAt: (px) => since + (px / width) * span,
    y: (value) => PAD_TOP + (1 - value / top) * drawable,
  };
}

function buildFigure({ id, title, lines, value }) {
  const figure = document.createElement("figure");
  figure.className = "chart";
  figure.dataset.chart = id;
  figure.innerHTML = `
    <figcaption class="chart-head">
      <span class="chart-title"></span>
      <span class="chart-keys"></span>
      ${value ? '<output class="chart-value value">—</output>' : ""}
    </figcaption>
    <div class="chart-top" aria-hidden="true"></div>
    <div class="chart-plot" role="img" tabindex="0" data-state="loading">
      <svg class="chart-svg" aria-hidden="true" focusable="false" preserveAspectRatio="none">
        <g class="chart-alerts"></g><g class="chart-grid"></g><g class="chart-bands"></g>
        <g class="chart-lines"></g><g class="chart-markers"></g><g class="chart-cursor"></g>
      </svg>
    </div>
    <div class="chart-times" aria-hidden="true"><time></time><time></time></div>
    <p class="chart-readout" aria-live="polite" hidden></p>`;
  figure.querySelector(".chart-title").textContent = title;
  figure.querySelector(".chart-plot").dataset.testid = `chart-${id}`;
  figure.querySelector(".chart-plot").dataset.series = lines.map((line) => line.series).join(",");
  figure.querySelector(".chart-readout").dataset.testid = `readout-${id}`;
  const keys = figure.querySelector(".chart-keys");
  if (lines.length > 1) {
    lines.forEach((line, index) => {
      const key = Object.assign(document.createElement("span"), {
        className: "chart-key",
        textContent: line.label,
      });
      key.dataset.line = String(index);
      keys.append(key);
    });
  }
  return figure;
}

/** A data attribute, or none for null. */
function setData(element, name, text) {
  if (text === null) delete element.dataset[name];
  else element.dataset[name] = text;
}

function shape(name, attributes) {
  const element = document.createElementNS(SVG, name);
  for (const [key, val] of Object.entries(attributes)) element.setAttribute(key, String(val));
  return element;
}

function bucketWords(stepSeconds) {
  return stepSeconds % 60 === 0 ? `${stepSeconds / 60}-minute` : `${stepSeconds}-second`;
}

function valueText(row, format) {
  if (!row) return "—";
  if (row[1] === row[3]) return format(row[2]);
  return `${format(row[2])} (${format(row[1])} to ${format(row[3])})`;
}

function markerText(marker) {
  const what = marker.kind === "session_created" ? "session created" : "session destroyed";
  return typeof marker.count === "number" ? `${what} (total ${marker.count})` : what;
}
