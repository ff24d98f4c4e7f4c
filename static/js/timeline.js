// One series as a chart holds it: rows [time ms, min, mean, max], oldest first, with nulls for
// a gap (the gateway's answer marks one wherever the figure was unknown or no tick ran). Raw
// points (step 0) have min = mean = max. Live values are appended to the loaded rows, or folded
// into the bucket of their minute (or quarter hour) as the gateway would fold them.

export class Timeline {
  constructor() {
    this.step = 0; // seconds: 0 for raw points, else the buckets' width
    this.rows = [];
    this.counts = []; // values folded into each row here; null for a row from the gateway
  }

  get stepMs() {
    return this.step * 1000;
  }

  /** Rows from the gateway's answer, in place of whatever was held. */
  load(rows, step) {
    this.step = step;
    this.rows = rows.map((row) => [...row]);
    this.counts = rows.map(() => null);
  }

  /** A value (null: a gap) at `time`: a new point, or folded into its bucket. A time the
   * loaded rows already cover is dropped: the gateway's answer has it. */
  append(time, value) {
    const last = this.rows[this.rows.length - 1];
    const start = this.step ? Math.floor(time / this.stepMs) * this.stepMs : time;
    if (last && start < last[0]) return;
    if (last && start === last[0]) {
      if (this.step) this.fold(value);
      return;
    }
    if (value === null && last && last[2] === null) return; // still the same gap
    this.rows.push([start, value, value, value]);
    this.counts.push(value === null ? 0 : 1);
  }

  /** A value into the newest bucket, made here (one from the gateway is complete). */
  fold(value) {
    const index = this.rows.length - 1;
    const count = this.counts[index];
    if (count === null || value === null) return;
    const [time, min, mean, max] = this.rows[index];
    this.rows[index] =
      count === 0
        ? [time, value, value, value]
        : [time, Math.min(min, value), (mean * count + value) / (count + 1), Math.max(max, value)];
    this.counts[index] = count + 1;
  }

  /** Forget what ended before `since`, and a gap left leading. */
  trim(since) {
    let drop = 0;
    while (drop < this.rows.length) {
      const [time, , mean] = this.rows[drop];
      if (time + this.stepMs >= since && mean !== null) break;
      drop += 1;
    }
    if (drop) {
      this.rows.splice(0, drop);
      this.counts.splice(0, drop);
    }
  }

  /** Runs of rows with values, between gaps: each drawn as a path segment of its own. */
  segments() {
    const runs = [];
    let run = [];
    for (const row of this.rows) {
      if (row[2] === null) {
        if (run.length) runs.push(run);
        run = [];
      } else {
        run.push(row);
      }
    }
    if (run.length) runs.push(run);
    return runs;
  }

  /** The row with a value nearest to `time`, or null. */
  nearest(time) {
    let best = null;
    for (const row of this.rows) {
      if (row[2] === null) continue;
      if (best === null || Math.abs(row[0] - time) < Math.abs(best[0] - time)) best = row;
    }
    return best;
  }
}
