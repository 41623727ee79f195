// A small SVG bar chart, enough for usage over time: one bar per time bucket, a y axis
// with round ticks, every few buckets labelled, a tooltip (<title>) on each bar. Drawn
// with viewBox units so it scales to its box; colours come from app.css.

import {svg} from "./dom.js";
import {short} from "./format.js";

const WIDTH = 720;
const HEIGHT = 220;
const MARGIN = {top: 12, right: 8, bottom: 26, left: 52};
const MAX_X_LABELS = 8;
const TICKS = 4;

/** The smallest 1, 2, 2.5 or 5 times a power of ten that is at least `value`. */
export function roundCeiling(value) {
  if (!(value > 0)) return 1;
  const power = 10 ** Math.floor(Math.log10(value));
  return [1, 2, 2.5, 5, 10].map((step) => step * power).find((candidate) => candidate >= value);
}

/**
 * An <svg> bar chart of `buckets` ([{key, label, value, title}], in time order) for
 * `metric` (requests, tokens or cost: it picks the axis format).
 */
export function barChart(buckets, metric, description) {
  const plotWidth = WIDTH - MARGIN.left - MARGIN.right;
  const plotHeight = HEIGHT - MARGIN.top - MARGIN.bottom;
  const top = roundCeiling(Math.max(0, ...buckets.map((bucket) => bucket.value)));
  const y = (value) => MARGIN.top + plotHeight - (value / top) * plotHeight;
  const step = plotWidth / Math.max(1, buckets.length);
  const barWidth = Math.max(1, step * 0.72);
  const labelEvery = Math.ceil(buckets.length / MAX_X_LABELS);

  const grid = Array.from({length: TICKS + 1}, (_, index) => {
    const value = (top * index) / TICKS;
    return svg("g", {class: "tick"},
      svg("line", {x1: MARGIN.left, x2: WIDTH - MARGIN.right, y1: y(value), y2: y(value)}),
      svg("text", {x: MARGIN.left - 6, y: y(value) + 4, "text-anchor": "end"}, short(value, metric)));
  });
  const bars = buckets.map((bucket, index) => {
    const x = MARGIN.left + index * step + (step - barWidth) / 2;
    return svg("rect", {class: bucket.value ? "bar" : "bar zero", x, width: barWidth, y: y(bucket.value),
                        height: Math.max(0, MARGIN.top + plotHeight - y(bucket.value)),
                        "data-key": bucket.key, "data-value": bucket.value},
               svg("title", {}, bucket.title));
  });
  const labels = buckets.map((bucket, index) => (index % labelEvery === 0
    ? svg("text", {class: "x-label", x: MARGIN.left + index * step + step / 2, y: HEIGHT - 8,
                   "text-anchor": "middle"}, bucket.label)
    : null));
  const empty = buckets.every((bucket) => !bucket.value)
    ? svg("text", {class: "empty", x: MARGIN.left + plotWidth / 2, y: MARGIN.top + plotHeight / 2,
                   "text-anchor": "middle"}, "No requests in this window")
    : null;
  return svg("svg", {viewBox: `0 0 ${WIDTH} ${HEIGHT}`, role: "img", "aria-label": description,
                     class: "bar-chart", "data-metric": metric},
             svg("title", {}, description), grid, bars, labels, empty);
}
