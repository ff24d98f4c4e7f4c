// The KATO panel: status and issues, CPU / memory / disk with sparklines, request figures.

import { Series, drawSparkline } from "./charts.js";
import { DASH, clock, duration, milliseconds, percent } from "./format.js";

const GAUGES = ["cpu_percent", "memory_percent", "disk_percent"];

export function createKatoPanel(panel) {
  const status = panel.querySelector("[data-testid=kato-status]");
  const issues = panel.querySelector("[data-testid=kato-issues]");
  const note = panel.querySelector("[data-testid=kato-note]");
  const series = Object.fromEntries(GAUGES.map((name) => [name, new Series()]));

  function render(metrics, arrivedAt) {
    const kato = metrics.kato;
    status.dataset.status = kato.status;
    status.textContent = kato.status;
    issues.replaceChildren(
      ...kato.issues.map((text) => Object.assign(document.createElement("li"), { textContent: text })),
    );
    issues.hidden = kato.issues.length === 0;
    note.hidden = !metrics.stale;
    if (metrics.stale) {
      const since = metrics.last_success ? `last good data at ${clock(metrics.last_success)}` : "no data yet";
      note.textContent = `${metrics.error || "KATO could not be read"} (${since})`;
    }
    panel.dataset.stale = String(Boolean(metrics.stale));

    const resources = kato.resources || {};
    for (const name of GAUGES) {
      const gauge = panel.querySelector(`[data-metric=${name}]`);
      gauge.querySelector(".value").textContent = percent(resources[name]);
      if (!metrics.stale) series[name].push(arrivedAt, resources[name]);
      drawSparkline(gauge.querySelector("svg"), series[name], { now: arrivedAt });
    }
    const rates = kato.rates || {};
    const performance = kato.performance || {};
    panel.querySelector("[data-fact=rate]").textContent =
      typeof rates.requests_per_second === "number" ? `${rates.requests_per_second.toFixed(2)} /s` : DASH;
    panel.querySelector("[data-fact=response]").textContent = milliseconds(performance.average_response_time);
    panel.querySelector("[data-fact=uptime]").textContent = duration(kato.uptime_seconds);
  }

  return { render };
}
