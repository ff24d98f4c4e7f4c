// A chart's readout: the time and value(s) of the point nearest the pointer (mouse or touch),
// or of the point chosen with the keyboard once the chart has focus (Left / Right step one
// point, Home / End go to the ends, Escape hides it). It is a live region beside the chart's
// image, so a screen reader says each point as it is chosen.

import { readoutTime } from "./chart-scales.js";

/**
 * `times()`: the times of the points, oldest first; `xOf(time)` and `timeAt(px)`: the chart's
 * scale; `describe(time)`: {time, step, value, text}; `setCursor(time | null)`: marks it.
 */
export function attachReadout({ plot, readout, times, xOf, timeAt, describe, setCursor }) {
  let chosen = null; // the time shown, or null
  let touching = false;

  function show(time) {
    chosen = time;
    setCursor(time);
    refresh();
  }

  function hide() {
    chosen = null;
    setCursor(null);
    readout.hidden = true;
    delete readout.dataset.time;
    delete readout.dataset.value;
  }

  /** Write the readout again (the chart was redrawn: new points, another scale). */
  function refresh() {
    if (chosen === null) return;
    const all = times();
    if (!all.includes(chosen)) {
      if (!all.length) return hide();
      chosen = nearest(all, chosen);
      setCursor(chosen);
    }
    const { time, step, value, text } = describe(chosen);
    const when = readoutTime(time, step);
    // Written again only when it says something new: a live region would repeat it each tick.
    if (readout.hidden || readout.textContent !== `${when} · ${text}`) {
      const stamp = document.createElement("time");
      stamp.dateTime = new Date(time).toISOString();
      stamp.textContent = when;
      readout.replaceChildren(stamp, ` · ${text}`);
    }
    readout.dataset.time = new Date(time).toISOString();
    readout.dataset.value = value === null ? "" : String(value);
    readout.hidden = false;
    place(xOf(time));
  }

  /** Over the chosen point, kept inside the chart's width. */
  function place(px) {
    const room = plot.clientWidth - readout.offsetWidth;
    const left = Math.min(Math.max(0, (px ?? 0) - readout.offsetWidth / 2), Math.max(0, room));
    readout.style.left = `${plot.offsetLeft + left}px`;
  }

  function atPointer(event) {
    const all = times();
    const time = timeAt(event.clientX - plot.getBoundingClientRect().left);
    if (!all.length || time === null) return;
    show(nearest(all, time));
  }

  plot.addEventListener("pointermove", (event) => {
    if (event.pointerType !== "touch" || touching) atPointer(event);
  });
  plot.addEventListener("pointerdown", (event) => {
    touching = event.pointerType === "touch";
    atPointer(event);
  });
  plot.addEventListener("pointerup", () => {
    touching = false; // the readout stays after a tap, until the pointer leaves or focus goes
  });
  plot.addEventListener("pointerleave", (event) => {
    if (event.pointerType === "mouse" && document.activeElement !== plot) hide();
  });
  plot.addEventListener("focus", () => {
    const all = times();
    if (all.length) show(chosen ?? all[all.length - 1]);
  });
  plot.addEventListener("blur", hide);
  plot.addEventListener("keydown", (event) => {
    const all = times();
    if (!all.length) return;
    const index = chosen === null ? all.length - 1 : all.indexOf(nearest(all, chosen));
    const moves = {
      ArrowLeft: index - 1,
      ArrowRight: index + 1,
      Home: 0,
      End: all.length - 1,
      PageUp: index - 10,
      PageDown: index + 10,
    };
    if (event.key === "Escape") {
      hide();
    } else if (event.key in moves) {
      show(all[Math.min(all.length - 1, Math.max(0, moves[event.key]))]);
    } else {
      return;
    }
    event.preventDefault();
  });

  return { refresh };
}

function nearest(sorted, time) {
  let low = 0;
  let high = sorted.length - 1;
  while (low < high) {
    const middle = (low + high) >> 1;
    if (sorted[middle] < time) low = middle + 1;
    else high = middle;
  }
  const before = sorted[Math.max(0, low - 1)];
  return Math.abs(before - time) <= Math.abs(sorted[low] - time) ? before : sorted[low];
}
