// The containers panel: status, health, CPU, memory as a bar, network rates and restarts; under
// the table, each container's CPU, memory and network charts. Hidden while the gateway has no
// container stats; says so when the engine is down.

import { createChartGroup } from "./chart-group.js";
import { createChart } from "./charts.js";
import { DASH, bytes, percent, rate } from "./format.js";
import { containerSeries } from "./figures.js";

export function createContainersPanel(panel, { history, gatewayNow } = {}) {
  const body = panel.querySelector("tbody");
  const note = panel.querySelector("[data-testid=containers-note]");
  const chartList = panel.querySelector("[data-testid=container-charts]");
  const charted = new Map(); // container name -> {element, charts}
  const group = createChartGroup({
    history,
    gatewayNow,
    switchElement: panel.querySelector("[data-testid=range-containers]"),
    storageKey: "sse-monitor.range.containers",
  });

  function render(snapshot) {
    panel.hidden = false;
    panel.dataset.stale = String(!snapshot.available);
    note.textContent = snapshot.available
      ? `${snapshot.totals.running} of ${snapshot.totals.watched} running`
      : `Docker engine unavailable: ${snapshot.error}`;
    body.replaceChildren(...snapshot.containers.map(row));
    panel.querySelector("table").hidden = snapshot.containers.length === 0;
    if (snapshot.available) chartContainers(snapshot.containers);
  }

  /** Charts for each container listed, in the snapshot's order; none for one no longer listed. */
  function chartContainers(containers) {
    const names = containers.map((container) => container.name);
    const gone = [...charted.keys()].filter((name) => !names.includes(name));
    if (gone.length) group.remove(gone.flatMap((name) => charted.get(name).charts));
    for (const name of gone) charted.delete(name);
    const added = [];
    for (const container of containers) {
      if (charted.has(container.name)) continue;
      const entry = containerCharts(container);
      charted.set(container.name, entry);
      added.push(...entry.charts);
    }
    if (!added.length && !gone.length) return; // moving a chart would take its focus away
    chartList.replaceChildren(...names.map((name) => charted.get(name).element));
    if (added.length) group.add(...added);
  }

  return { render, charts: group };
}

function containerCharts(container) {
  const series = containerSeries(container.name);
  const cpuTop = Math.max(100, (container.cpu_limit || 0) * 100);
  const charts = [
    createChart({
      id: series.cpu,
      title: "CPU",
      subject: `Container ${container.name}: CPU`,
      lines: [{ series: series.cpu }],
      format: percent,
      scale: { minTop: cpuTop },
    }),
    createChart({
      id: series.memory,
      title: "Memory",
      subject: `Container ${container.name}: memory used`,
      lines: [{ series: series.memory }],
      format: bytes,
      scale: { minTop: 1024 * 1024, bytes: true },
    }),
    createChart({
      id: `container.${container.name}.network`,
      title: "Network",
      subject: `Container ${container.name}: network in (solid line) and out (dashed line)`,
      lines: [
        { series: series.rx, label: "in" },
        { series: series.tx, label: "out" },
      ],
      format: rate,
      scale: { minTop: 1024, bytes: true },
    }),
  ];
  const element = document.createElement("section");
  element.className = "container-charts";
  element.dataset.name = container.name;
  const heading = Object.assign(document.createElement("h3"), { textContent: container.name });
  const grid = Object.assign(document.createElement("div"), { className: "charts" });
  grid.append(...charts.map((chart) => chart.element));
  element.append(heading, grid);
  return { element, charts };
}

function row(container) {
  const tr = document.createElement("tr");
  tr.dataset.testid = "container-row";
  tr.dataset.name = container.name;
  const memory = container.memory || {};
  const network = container.network || {};
  const level = (memory.percent || 0) >= 90 ? "high" : "normal";
  tr.innerHTML = `
    <th scope="row"></th>
    <td><span class="badge status"></span></td>
    <td class="health"></td>
    <td><div class="cpu"><span class="cpu-value"></span></div></td>
    <td><span class="memory-value"></span>
      <div class="meter" data-level="${level}" role="img"><span></span></div></td>
    <td class="network"></td>
    <td class="restarts"></td>`;
  tr.querySelector("th").textContent = container.name;
  const status = tr.querySelector(".status");
  status.dataset.status = container.status;
  status.textContent = container.status;
  const health = tr.querySelector(".health");
  if (container.health) {
    const badge = Object.assign(document.createElement("span"), { className: "badge" });
    badge.dataset.status = container.health;
    badge.textContent = container.health;
    health.append(badge);
  } else {
    health.textContent = DASH;
  }
  tr.querySelector(".cpu-value").textContent = percent(container.cpu_percent);
  const memoryText = memory.used == null ? DASH : `${bytes(memory.used)} / ${bytes(memory.limit)}`;
  tr.querySelector(".memory-value").textContent = memoryText;
  const meter = tr.querySelector(".meter");
  meter.setAttribute("aria-label", `memory ${percent(memory.percent)}`);
  meter.firstElementChild.style.width = `${Math.min(100, memory.percent || 0)}%`;
  meter.hidden = memory.used == null;
  tr.querySelector(".network").textContent =
    network.rx_rate == null && network.tx_rate == null
      ? DASH
      : `${rate(network.rx_rate)} / ${rate(network.tx_rate)}`;
  tr.querySelector(".restarts").textContent = container.restart_count ?? DASH;
  return tr;
}
