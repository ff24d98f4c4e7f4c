// The series the gateway's history keeps, read from the stream's snapshots the way the gateway
// reads them (sse_monitor/history/figures.py): a chart extended live draws what a reload would
// fetch. A figure unknown or stale is a gap (null), never a zero.

// series name: [the metrics snapshot's group under `kato`, the figure in it]
const KATO_SERIES = {
  "kato.cpu_percent": ["resources", "cpu_percent"],
  "kato.memory_percent": ["resources", "memory_percent"],
  "kato.disk_percent": ["resources", "disk_percent"],
  "kato.requests_per_second": ["rates", "requests_per_second"],
  "kato.response_time_seconds": ["performance", "average_response_time"],
  "kato.error_rate": ["performance", "error_rate"],
};
export const SESSIONS_ACTIVE = "sessions.active";

/** Every series one tick has a say in: its `metrics` snapshot and the `containers` snapshot
 * appended before it (the gateway records both at the metrics' time). */
export function tickFigures(metrics, containers) {
  const figures = {};
  const kato = mapping(metrics?.kato);
  const stale = Boolean(metrics?.stale) || kato.status === "unreachable";
  for (const [series, [group, name]] of Object.entries(KATO_SERIES)) {
    figures[series] = stale ? null : number(mapping(kato[group])[name]);
  }
  figures[SESSIONS_ACTIVE] = number(mapping(metrics?.sessions).active_count);
  if (containers?.available) {
    for (const container of containers.containers || [])
      Object.assign(figures, containerFigures(container));
  }
  return figures;
}

/** The series of one container, named as the gateway names them. */
export function containerSeries(name) {
  const prefix = `container.${name}`;
  return {
    cpu: `${prefix}.cpu_percent`,
    memory: `${prefix}.memory_used`,
    rx: `${prefix}.rx_rate`,
    tx: `${prefix}.tx_rate`,
  };
}

function containerFigures(container) {
  if (typeof container?.name !== "string" || !container.name) return {};
  const series = containerSeries(container.name);
  const network = mapping(container.network);
  return {
    [series.cpu]: number(container.cpu_percent),
    [series.memory]: number(mapping(container.memory).used),
    [series.rx]: number(network.rx_rate),
    [series.tx]: number(network.tx_rate),
  };
}

function mapping(value) {
  return value && typeof value === "object" && !Array.isArray(value) ? value : {};
}

function number(value) {
  return typeof value === "number" && Number.isFinite(value) ? value : null;
}
