// A panel's charts kept full: loaded from the gateway's history for the range chosen (at start,
// on a new range, after the stream was away), extended by each tick the stream brings, the
// window sliding with the gateway's clock and dropping what falls out of it. Alert periods
// shade each chart of the group: from an alert's firing to its resolution (matched by the
// alert's id), or to now while it still fires.

import { createRangeSwitch } from "./range-switch.js";

const SESSION_KINDS = new Set(["session_created", "session_destroyed"]);

/** `switchElement`: where the range switch goes; `storageKey`: where its choice is kept;
 * `gatewayNow()`: epoch ms by the gateway's clock. Nothing is fetched before start(): a panel
 * made without a history (a test of its other parts) just draws what it is given. */
export function createChartGroup({ history, switchElement, storageKey, gatewayNow }) {
  let charts = [];
  let loads = 0; // only the newest load's answer is used
  let started = false; // loads wait for start(): the page's clock is known by then
  let loaded = false; // the charts hold the history of the range shown
  let queued = null; // ticks and markers heard while a load is in flight
  let markers = []; // session and alert markers, oldest first
  let firing = new Map(); // alert id -> period, from the latest `alerts` state
  const rangeSwitch = createRangeSwitch(switchElement, { storageKey, onChange: () => load() });

  async function load() {
    if (!started || !charts.length) return;
    const mine = ++loads;
    queued = { ticks: [], markers: [] };
    for (const chart of charts) chart.setState("loading");
    const range = rangeSwitch.range;
    let answer;
    try {
      const series = charts.flatMap((chart) => chart.series);
      answer = await history.read({ series, rangeMs: range.ms, now: gatewayNow() });
    } catch (error) {
      if (mine !== loads) return;
      // No history here (or not for this viewer): what arrives from now on is drawn.
      loaded = false;
      for (const chart of charts) {
        chart.setState("error");
        chart.element.title = `History not available (${error.message}): live figures only`;
      }
      return flush();
    }
    if (mine !== loads) return;
    loaded = true;
    // Markers heard live are kept too: the gateway writes its history a moment after it
    // publishes, so the newest may not be in the answer yet (a held one is not doubled).
    const heard = [...markers, ...queued.markers];
    markers = answer.markers;
    for (const chart of charts) {
      chart.load(answer.series, answer.step);
      chart.setState("ready");
      chart.element.removeAttribute("title");
    }
    remember(heard);
    flush();
  }

  /** Apply what was heard during a load, then draw. */
  function flush() {
    const { ticks } = queued;
    queued = null;
    for (const [time, figures] of ticks) append(time, figures);
    slide();
  }

  function append(time, figures) {
    for (const chart of charts) {
      for (const series of chart.series) {
        if (series in figures) chart.append(series, time, figures[series]);
      }
    }
  }

  /** Move the window to end now; hand each chart the markers and alert periods within it. */
  function slide() {
    const range = rangeSwitch.range;
    const until = gatewayNow();
    const since = until - range.ms;
    markers = markers.filter((marker) => marker.time >= since);
    const sessionMarkers = markers.filter((marker) => SESSION_KINDS.has(marker.kind));
    const periods = alertPeriods();
    for (const chart of charts) {
      chart.setWindow(since, until, range);
      chart.setMarkers(sessionMarkers);
      chart.setAlerts(periods);
    }
  }

  function alertPeriods() {
    const periods = new Map();
    for (const marker of markers) {
      if (marker.kind === "alert_fired") {
        periods.set(marker.id, { ...describeAlert(marker), start: marker.time, end: null });
      } else if (marker.kind === "alert_resolved") {
        // fired before the window: shaded from its start
        const period = periods.get(marker.id) ?? { ...describeAlert(marker), start: -Infinity };
        periods.set(marker.id, { ...period, end: marker.time });
      }
    }
    for (const [id, period] of firing) if (!periods.has(id)) periods.set(id, period);
    return [...periods.values()];
  }

  /** Markers heard live; one already held (a replay, or in the loaded history) is skipped. */
  function remember(heard) {
    const key = (marker) => `${marker.kind} ${marker.time} ${marker.id ?? ""}`;
    const held = new Set(markers.map(key));
    const added = heard.filter((marker) => !held.has(key(marker)));
    if (!added.length) return;
    markers = [...markers, ...added].sort((a, b) => a.time - b.time);
  }

  function mark(marker) {
    if (Number.isNaN(marker.time) || !marker.kind) return;
    if (queued) queued.markers.push(marker);
    remember([marker]);
    if (!queued) slide();
  }

  return {
    start() {
      started = true;
      load();
    },
    /** Load the history again (after a login). */
    reload: load,
    /** New charts (a container seen for the first time): their history is loaded. */
    add(...more) {
      charts.push(...more);
      load();
    },
    remove(gone) {
      charts = charts.filter((chart) => !gone.includes(chart));
    },
    /** One tick's figures (tickFigures) at its time (epoch ms, the gateway's clock). */
    tick(time, figures) {
      if (Number.isNaN(time)) return;
      if (queued) {
        queued.ticks.push([time, figures]);
        return;
      }
      append(time, figures);
      slide();
    },
    /** A session_event from the stream. */
    sessionEvent(event) {
      const data = event.data || {};
      mark({
        time: Date.parse(event.timestamp),
        kind: event.event_type,
        count: data.current_count,
      });
    },
    /** An `alert` event: fired or resolved (an acknowledgement changes no chart). */
    alert(alert) {
      if (alert.transition === "fired") {
        mark({ ...describeAlert(alert), kind: "alert_fired", time: Date.parse(alert.started_at) });
      } else if (alert.transition === "resolved") {
        firing.delete(alert.id);
        mark({
          ...describeAlert(alert),
          kind: "alert_resolved",
          time: Date.parse(alert.resolved_at),
        });
      }
    },
    /** The `alerts` state: what fires now, even if it fired before the window. */
    setFiring(list) {
      firing = new Map(
        list.map((alert) => [
          alert.id,
          { ...describeAlert(alert), start: Date.parse(alert.started_at), end: null },
        ]),
      );
      if (!queued) slide();
    },
    /** The stream went away: ticks were missed, to be fetched when it is back. */
    missedTicks() {
      loaded = false;
    },
    /** The stream is back: fetch what was missed, if anything was. */
    catchUp() {
      if (!loaded) load();
    },
  };
}

function describeAlert(alert) {
  return {
    id: alert.id,
    severity: alert.severity,
    message: alert.message || alert.rule || "alert",
  };
}
