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

/** The smallest of `multiples` times a power of ten that is at least `value` (1 for nothing). */
export function roundCeiling(value, multiples = [1, 2, 2.5, 5, 10]) {
  if (!(value > 0)) return 1;
  const power = 10 ** Math.floor(Math.log10(value));
  return multiples.map((multiple) => multiple * power).find((candidate) => candidate >= value);
}

/** A round tick step (whole for counts) and the axis top: at most TICKS steps above zero. */
function axis(highest, metric) {
  const counted = metric !== "cost";
  const step = counted ? Math.max(1, roundCeiling(highest / TICKS, [1, 2, 5, 10])) : roundCeiling(highest / TICKS);
  return {step, top: step * Math.max(1, Math.ceil(highest / step - 1e-9))};
}

/**
 * An <svg> bar chart of `buckets` ([{key, label, value, title}], in time order) for
 * `metric` (requests, tokens or cost: it picks the axis format).
 */
export function barChart(buckets, metric, description) {
  const plotWidth = WIDTH - MARGIN.left - MARGIN.right;
  const plotHeight = HEIGHT - MARGIN.top - MARGIN.bottom;
  const {step: tickStep, top} = axis(Math.max(0, ...buckets.map((bucket) => bucket.value)), metric);
  const y = (value) => MARGIN.top + plotHeight - (value / top) * plotHeight;
  const slot = plotWidth / Math.max(1, buckets.length);
  const barWidth = Math.max(1, slot * 0.72);
  const labelEvery = Math.ceil(buckets.length / MAX_X_LABELS);

  const grid = Array.from({length: Math.round(top / tickStep) + 1}, (_, index) => {
    const value = tickStep * index;
    return svg("g", {class: "tick"},
      svg("line", {x1: MARGIN.left, x2: WIDTH - MARGIN.right, y1: y(value), y2: y(value)}),
      svg("text", {x: MARGIN.left - 6, y: y(value) + 4, "text-anchor": "end"}, short(value, metric)));
  });
  const bars = buckets.map((bucket, index) => {
    const x = MARGIN.left + index * slot + (slot - barWidth) / 2;
    return svg("rect", {class: bucket.value ? "bar" : "bar zero", x, width: barWidth, y: y(bucket.value),
                        height: Math.max(0, MARGIN.top + plotHeight - y(bucket.value)),
                        "data-key": bucket.key, "data-value": bucket.value},
               svg("title", {}, bucket.title));
  });
  const labels = buckets.map((bucket, index) => (index % labelEvery === 0
    ? svg("text", {class: "x-label", x: MARGIN.left + index * slot + slot / 2, y: HEIGHT - 8,
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
