// The usage view: totals, hourly and daily charts, a per-tenant table, and for one tenant
// its per-agent and per-model breakdown. All from GET /admin/usage (docs/usage.md).

import {api, query} from "./api.js";
import {barChart} from "./charts.js";
import {byId, fill, h, table} from "./dom.js";
import {count, milliseconds, percent, usd} from "./format.js";

const HOUR_MS = 3600 * 1000;
const DAY_MS = 24 * HOUR_MS;
const dayLabel = new Intl.DateTimeFormat("en-US", {timeZone: "UTC", month: "short", day: "numeric"});
const METRICS = {
  requests: (summary) => summary.requests,
  tokens: (summary) => summary.input_tokens + summary.output_tokens,
  cost: (summary) => summary.cost_usd,
};
let generation = 0; // a slower, older answer must never overwrite a newer one
let refreshNow = () => {}; // set by init: a refresh the user asked for

const controls = () => ({since: byId("usage-since").value, tenant: byId("usage-tenant").value,
                         metric: byId("usage-metric").value});

const failed = (summary) => Object.values(summary.errors).reduce((sum, number) => sum + number, 0);

function errorBreakdown(summary) {
  const kinds = Object.entries(summary.errors).filter(([, number]) => number);
  return kinds.length ? kinds.map(([kind, number]) => `${kind}: ${number}`).join(", ") : "no errors";
}

const FIGURES = [
  {label: "Requests", key: "requests", numeric: true, cell: (s) => count(s.requests)},
  {label: "Input tokens", key: "input_tokens", numeric: true, cell: (s) => count(s.input_tokens)},
  {label: "Output tokens", key: "output_tokens", numeric: true, cell: (s) => count(s.output_tokens)},
  {label: "Cached tokens", key: "cached_tokens", numeric: true, cell: (s) => count(s.cached_tokens)},
  {label: "Cost", key: "cost_usd", numeric: true, cell: (s) => usd(s.cost_usd, s.unpriced_requests)},
  {label: "Error rate", key: "error_rate", numeric: true,
   cell: (s) => h("span", {title: errorBreakdown(s)}, percent(s.error_rate))},
  {label: "p50", key: "p50", numeric: true, cell: (s) => milliseconds(s.latency_ms.p50)},
  {label: "p99", key: "p99", numeric: true, cell: (s) => milliseconds(s.latency_ms.p99)},
];

function emptySummary(key) {
  return {key, requests: 0, errors: {}, error_rate: 0, input_tokens: 0, output_tokens: 0, cached_tokens: 0,
          cost_usd: 0, unpriced_requests: 0, latency_ms: {p50: null, p99: null}};
}

function groupTable(report, label, {onPick, alsoKeys = []} = {}) {
  const listed = new Set(report.groups.map((group) => group.key));
  const rows = [...report.groups, ...alsoKeys.filter((key) => !listed.has(key)).map(emptySummary)];
  const name = (group) => (group.key === null ? h("span", {class: "muted"}, "(none)")
    : onPick && !group.total ? h("button", {type: "button", class: "link", onclick: () => onPick(group.key)}, group.key)
      : group.key);
  const columns = [{label, key: "key", cell: name}, ...FIGURES];
  const footer = {...report.totals, key: "Total", total: true};
  return table(columns, rows, {rowKey: (group) => group.key ?? "", footer,
                               rowClass: (group) => (group.requests ? null : "idle")});
}

function cards(totals) {
  const card = (label, value, detail) => h("div", {class: "card stat", "data-stat": label},
    h("div", {class: "stat-label"}, label), h("div", {class: "stat-value"}, value),
    detail ? h("div", {class: "stat-detail muted", title: detail}, detail) : null);
  return [
    card("Requests", count(totals.requests), `${count(failed(totals))} failed`),
    card("Tokens in", count(totals.input_tokens), `${count(totals.cached_tokens)} cached`),
    card("Tokens out", count(totals.output_tokens), `${count(totals.reasoning_tokens)} reasoning`),
    card("Cost", usd(totals.cost_usd, totals.unpriced_requests),
         totals.unpriced_requests ? `${count(totals.unpriced_requests)} unpriced` : "all priced"),
    card("Error rate", percent(totals.error_rate), errorBreakdown(totals)),
    card("Latency p50 / p99", milliseconds(totals.latency_ms.p50), `p99 ${milliseconds(totals.latency_ms.p99)}`),
  ];
}

/** Every hour (or day) of the report's window, in order, including those with no requests. */
function timeBuckets(report, unit, metric) {
  const size = unit === "hour" ? HOUR_MS : DAY_MS;
  const groups = new Map(report.groups.map((group) => [group.key, group]));
  const until = Date.parse(report.until);
  const buckets = [];
  for (let start = Math.floor(Date.parse(report.since) / size) * size; start < until; start += size) {
    const iso = new Date(start).toISOString();
    const key = unit === "hour" ? `${iso.slice(0, 13)}:00Z` : iso.slice(0, 10);
    const group = groups.get(key) || emptySummary(key);
    buckets.push({key, value: METRICS[metric](group),
                  label: unit === "hour" ? iso.slice(11, 16) : dayLabel.format(new Date(start)),
                  title: `${key} UTC: ${count(group.requests)} requests, `
                    + `${count(group.input_tokens + group.output_tokens)} tokens, ${usd(group.cost_usd)}`});
  }
  return buckets;
}

function fillTenantChoices(names, selected) {
  const select = byId("usage-tenant");
  if (select.dataset.names === names.join("\n")) return; // rebuilding would close the list while it is open
  select.dataset.names = names.join("\n");
  fill(select, h("option", {value: ""}, "All tenants"), names.map((name) => h("option", {value: name}, name)));
  select.value = selected;
}

function pickTenant(name) {
  byId("usage-tenant").value = name;
  refreshNow();
}

export const usageView = {
  id: "usage",
  everyMs: 10000,

  /** `refresh` re-renders now, reporting failures like a timed refresh. */
  init(refresh) {
    refreshNow = refresh;
    for (const id of ["usage-since", "usage-tenant", "usage-metric"]) byId(id).addEventListener("change", refresh);
  },

  async refresh() {
    const mine = ++generation;
    const {since, tenant, metric} = controls();
    const [tenants, byTenant, hourly, daily, byAgent, byModel] = await Promise.all([
      api("/admin/tenants"),
      api(`/admin/usage${query({by: "tenant", since})}`),
      api(`/admin/usage${query({tenant, by: "hour", since: "24h"})}`),
      api(`/admin/usage${query({tenant, by: "day", since: "30d"})}`),
      tenant ? api(`/admin/usage${query({tenant, by: "agent", since})}`) : null,
      tenant ? api(`/admin/usage${query({tenant, by: "model", since})}`) : null,
    ]);
    if (mine !== generation) return;
    const names = tenants.data.map((entry) => entry.name);
    fillTenantChoices(names, tenant);
    fill(byId("usage-cards"), cards(tenant ? byAgent.totals : byTenant.totals));
    fill(byId("chart-hourly"), barChart(timeBuckets(hourly, "hour", metric), metric, `${metric} per hour`));
    fill(byId("chart-daily"), barChart(timeBuckets(daily, "day", metric), metric, `${metric} per day`));
    fill(byId("usage-tenants"), groupTable(byTenant, "Tenant", {onPick: pickTenant, alsoKeys: names}));
    for (const row of byId("usage-tenants").querySelectorAll("tbody tr")) {
      row.classList.toggle("selected", Boolean(tenant) && row.dataset.key === tenant);
    }
    byId("usage-breakdown").hidden = !tenant;
    if (tenant) {
      for (const element of document.querySelectorAll("#usage-breakdown .tenant-name")) element.textContent = tenant;
      fill(byId("usage-agents"), groupTable(byAgent, "Agent"));
      fill(byId("usage-models"), groupTable(byModel, "Model"));
    }
  },
};
