// The path data a chart draws (SVG `d`), from its rows placed in pixels: lines with a segment
// of their own per run between gaps, min-max bands, and the triangles that mark session changes.

const MARKER_SIZE = 5; // px from a marker's centre to its tip

/** A line through each run; each starts with its own move (M), so no gap is drawn across.
 * `place(row)`: [x, y]; `curve`: "line", or "step" (held level until the next row). */
export function linePath(runs, place, curve) {
  return runs
    .map((run) => {
      const [first, ...rest] = run.map(place);
      let d = `M${fixed(first[0])} ${fixed(first[1])}`;
      for (const [x, y] of rest) {
        d += curve === "step" ? `H${fixed(x)}V${fixed(y)}` : `L${fixed(x)} ${fixed(y)}`;
      }
      return rest.length ? d : `${d}h0`; // a lone point shows as a dot (round caps)
    })
    .join("");
}

/** Each run's band from its rows' max (`upper(row)`: [x, y]) back along their min. */
export function bandPath(runs, upper, lower) {
  return runs
    .map((run) => {
      const top = run.map(upper).map(([x, y]) => `${fixed(x)} ${fixed(y)}`);
      const bottom = [...run]
        .reverse()
        .map(lower)
        .map(([x, y]) => `${fixed(x)} ${fixed(y)}`);
      return `M${top.join("L")}L${bottom.join("L")}Z`;
    })
    .join("");
}

/** A triangle centred on (x, y), its tip up or down: the tip is the path's first point. */
export function trianglePath(x, y, direction) {
  const tip = direction === "up" ? -MARKER_SIZE : MARKER_SIZE;
  const base = y - tip * 0.8;
  return (
    `M${fixed(x)} ${fixed(y + tip)}L${fixed(x + MARKER_SIZE)} ${fixed(base)}` +
    `L${fixed(x - MARKER_SIZE)} ${fixed(base)}Z`
  );
}

export function fixed(number) {
  return Number.isFinite(number) ? number.toFixed(1) : "0";
}
