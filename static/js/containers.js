// The containers panel: status, health, CPU with a sparkline, memory as a bar, network rates and
// restarts. Hidden while the gateway has no container stats; says so when the engine is down.

import { Series, drawSparkline } from "./charts.js";
import { DASH, bytes, percent, rate } from "./format.js";

export function createContainersPanel(panel) {
  const body = panel.querySelector("tbody");
  const note = panel.querySelector("[data-testid=containers-note]");
  const cpu = new Map(); // container name -> Series

  function render(snapshot, arrivedAt) {
    panel.hidden = false;
    panel.dataset.stale = String(!snapshot.available);
    note.textContent = snapshot.available
      ? `${snapshot.totals.running} of ${snapshot.totals.watched} running`
      : `Docker engine unavailable: ${snapshot.error}`;
    body.replaceChildren(...snapshot.containers.map((c) => row(c, arrivedAt)));
    panel.querySelector("table").hidden = snapshot.containers.length === 0;
  }

  function row(container, arrivedAt) {
    const tr = document.createElement("tr");
    tr.dataset.testid = "container-row";
    tr.dataset.name = container.name;
    if (!cpu.has(container.name)) cpu.set(container.name, new Series());
    const series = cpu.get(container.name);
    series.push(arrivedAt, container.cpu_percent);
    const memory = container.memory || {};
    const network = container.network || {};
    const level = (memory.percent || 0) >= 90 ? "high" : "normal";
    tr.innerHTML = `
      <th scope="row"></th>
      <td><span class="badge status"></span></td>
      <td class="health"></td>
      <td><div class="cpu"><span class="cpu-value"></span>
        <svg class="spark" viewBox="0 0 100 24" preserveAspectRatio="none" aria-hidden="true"></svg></div></td>
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
    const top = Math.max(100, (container.cpu_limit || 0) * 100);
    drawSparkline(tr.querySelector("svg"), series, { max: top, now: arrivedAt });
    const memoryText =
      memory.used == null ? DASH : `${bytes(memory.used)} / ${bytes(memory.limit)}`;
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

  return { render };
}
