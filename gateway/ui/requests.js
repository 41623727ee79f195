// The recent-requests view: the newest ledger rows (GET /admin/requests), with what policy
// decided on each (the `decisions` labels) and what it cost.

import {api, query} from "./api.js";
import {byId, chip, fill, h, table} from "./dom.js";
import {count, milliseconds, NONE, usd, utc} from "./format.js";

function status(row) {
  const tone = row.status < 400 ? "good" : row.status < 500 ? "warn" : "bad";
  return chip(row.error_type ? `${row.status} ${row.error_type}` : String(row.status), tone);
}

function served(row) {
  if (!row.provider) return row.alias ?? NONE;
  return [row.alias ?? NONE, h("span", {class: "sub muted"}, `${row.provider}/${row.model}`)];
}

const COLUMNS = [
  {label: "Time (UTC)", key: "ts", nowrap: true, cell: (row) => utc(row.ts, {short: true})},
  {label: "Tenant", key: "tenant", cell: (row) => row.tenant},
  {label: "Agent", key: "agent", cell: (row) => row.agent ?? NONE},
  {label: "Model", key: "model", nowrap: true, cell: served},
  {label: "API", key: "api", cell: (row) => (row.stream ? `${row.api} (stream)` : row.api)},
  {label: "Status", key: "status", nowrap: true, cell: status},
  {label: "In", key: "input_tokens", numeric: true, cell: (row) => count(row.input_tokens)},
  {label: "Out", key: "output_tokens", numeric: true, cell: (row) => count(row.output_tokens)},
  {label: "Cost", key: "cost_usd", numeric: true, cell: (row) => usd(row.cost_usd)},
  {label: "Latency", key: "latency_ms", numeric: true, cell: (row) => milliseconds(row.latency_ms)},
  {label: "Tries", key: "attempts", numeric: true, cell: (row) => count(row.attempts)},
  {label: "Decisions", key: "decisions", cell: (row) => (row.decisions.length
    ? row.decisions.map((label) => chip(label)) : h("span", {class: "muted"}, NONE))},
];

export const requestsView = {
  id: "requests",
  everyMs: 5000,

  init() {},

  async refresh() {
    const answer = await api(`/admin/requests${query({limit: 100})}`);
    fill(byId("requests-table"), table(COLUMNS, answer.data, {rowKey: (row) => row.request_id,
                                                              empty: "No requests in the last day."}));
  },
};
