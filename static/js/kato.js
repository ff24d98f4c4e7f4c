// The KATO panel: status and issues, charts of CPU / memory / disk, request rate, response time
// and error rate (each with its current figure), uptime.

import { createChartGroup } from "./chart-group.js";
import { createChart } from "./charts.js";
import { DASH, clock, duration, milliseconds, percent } from "./format.js";

const perSecond = (value) => (typeof value === "number" ? `${value.toFixed(2)} /s` : DASH);
const fraction = (value) => (typeof value === "number" ? percent(value * 100) : DASH);

// The response time: the gateway's series `kato.response_time_seconds` holds KATO's
// average_response_time as KATO gives it, in seconds; it is written as milliseconds here.
const PERCENT = { format: percent, scale: { minTop: 100 } };
const CHARTS = [
  { id: "kato.cpu_percent", title: "CPU", subject: "KATO host CPU", ...PERCENT },
  { id: "kato.memory_percent", title: "Memory", subject: "KATO host memory", ...PERCENT },
  { id: "kato.disk_percent", title: "Disk", subject: "KATO host disk", ...PERCENT },
  {
    id: "kato.requests_per_second",
    title: "Requests",
    subject: "KATO requests per second",
    format: perSecond,
    scale: { minTop: 1 },
  },
  {
    id: "kato.response_time_seconds",
    title: "Response time",
    subject: "KATO average response time",
    format: milliseconds,
    scale: { minTop: 0.01 },
  },
  {
    id: "kato.error_rate",
    title: "Error rate",
    subject: "KATO error rate",
    format: fraction,
    scale: { minTop: 0.01 },
  },
];

export function createKatoPanel(panel, { history, gatewayNow } = {}) {
  const status = panel.querySelector("[data-testid=kato-status]");
  const issues = panel.querySelector("[data-testid=kato-issues]");
  const note = panel.querySelector("[data-testid=kato-note]");
  const charts = new Map(
    CHARTS.map((spec) => [
      spec.id,
      createChart({ ...spec, lines: [{ series: spec.id }], value: true }),
    ]),
  );
  panel
    .querySelector("[data-testid=kato-charts]")
    .replaceChildren(...[...charts.values()].map((chart) => chart.element));
  const group = createChartGroup({
    history,
    gatewayNow,
    switchElement: panel.querySelector("[data-testid=range-kato]"),
    storageKey: "sse-monitor.range.kato",
  });
  group.add(...charts.values());

  function render(metrics) {
    const kato = metrics.kato;
    status.dataset.status = kato.status;
    status.textContent = kato.status;
    issues.replaceChildren(
      ...kato.issues.map((text) =>
        Object.assign(document.createElement("li"), { textContent: text }),
      ),
    );
    issues.hidden = kato.issues.length === 0;
    note.hidden = !metrics.stale;
    if (metrics.stale) {
      const since = metrics.last_success
        ? `last good data at ${clock(metrics.last_success)}`
        : "no data yet";
      note.textContent = `${metrics.error || "KATO could not be read"} (${since})`;
    }
    panel.dataset.stale = String(Boolean(metrics.stale));

    // The figures as KATO last gave them (greyed while stale); the charts break there instead.
    const resources = kato.resources || {};
    const rates = kato.rates || {};
    const performance = kato.performance || {};
    const current = {
      "kato.cpu_percent": resources.cpu_percent,
      "kato.memory_percent": resources.memory_percent,
      "kato.disk_percent": resources.disk_percent,
      "kato.requests_per_second": rates.requests_per_second,
      "kato.response_time_seconds": performance.average_response_time,
      "kato.error_rate": performance.error_rate,
    };
    for (const spec of CHARTS) charts.get(spec.id).showValue(spec.format(current[spec.id]));
    panel.querySelector("[data-fact=uptime]").textContent = duration(kato.uptime_seconds);
  }

  return { render, charts: group };
}
