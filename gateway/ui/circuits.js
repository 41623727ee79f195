// The circuits view: each provider target's breaker (GET /admin/circuits): closed while
// healthy, open after repeated failures (no traffic until `retry_after_s`), half-open
// while a probe request decides.

import {api} from "./api.js";
import {byId, chip, fill, table} from "./dom.js";
import {count, milliseconds, span} from "./format.js";

const TONES = {closed: "good", half_open: "warn", open: "bad"};

const COLUMNS = [
  {label: "Provider", key: "provider", cell: (target) => target.provider},
  {label: "Model", key: "model", cell: (target) => target.model},
  {label: "State", key: "state", cell: (target) => chip(target.state.replace("_", "-"), TONES[target.state])},
  {label: "Retry in", key: "retry_after_s", numeric: true,
   cell: (target) => (target.retry_after_s > 0 ? span(target.retry_after_s) : "–")},
  {label: "In flight", key: "in_flight", numeric: true, cell: (target) => count(target.in_flight)},
  {label: "Latency (EWMA)", key: "latency_ewma_ms", numeric: true,
   cell: (target) => (target.latency_ewma_ms ? milliseconds(target.latency_ewma_ms) : "–")}, // 0: never used
];

export const circuitsView = {
  id: "circuits",
  everyMs: 2000,

  init() {},

  async refresh() {
    const answer = await api("/admin/circuits");
    fill(byId("circuits-table"), table(COLUMNS, answer.data, {rowKey: (target) => `${target.provider}/${target.model}`,
                                                              empty: "No provider targets configured."}));
  },
};
