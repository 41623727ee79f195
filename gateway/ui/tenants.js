// The tenants view: each tenant's policies, models, limits and budgets (GET /admin/tenants),
// with what it has spent so far this UTC day and month (GET /admin/usage, by tenant), the
// periods the gateway's budgets count in.

import {api, query} from "./api.js";
import {byId, fill, h, table} from "./dom.js";
import {count, dollars, NONE, percent, usd} from "./format.js";

function periodStarts(now = new Date()) {
  const day = now.toISOString().slice(0, 10);
  return {day, month: `${day.slice(0, 7)}-01`};
}

function spentBy(report) {
  return new Map(report.groups.map((group) => [group.key, group]));
}

function budget(spent, limit) {
  const used = spent ? spent.cost_usd : 0;
  const unpriced = spent ? spent.unpriced_requests : 0;
  if (limit === null || limit === undefined) return [usd(used, unpriced), h("span", {class: "muted"}, " no budget")];
  return h("div", {class: "budget"},
    h("span", {}, `${usd(used, unpriced)} of ${dollars(limit)}`),
    h("meter", {min: 0, max: limit, low: limit * 0.5, high: limit * 0.8, optimum: 0, value: Math.min(used, limit),
                title: `${percent(limit ? used / limit : 0)} used`}),
    h("span", {class: "muted"}, percent(limit ? used / limit : 0)));
}

const limit = (value) => (value === null || value === undefined ? NONE : count(value));

function columns(today, month) {
  return [
    {label: "Tenant", key: "name", cell: (t) => t.name},
    {label: "Policies", key: "policies", cell: (t) => (t.policies.length ? t.policies.join(", ") : NONE)},
    {label: "Models", key: "models", cell: (t) => (t.models ? t.models.join(", ") : "all")},
    {label: "Today", key: "budget_day", cell: (t) => budget(today.get(t.name), t.budget.usd_per_day)},
    {label: "This month", key: "budget_month", cell: (t) => budget(month.get(t.name), t.budget.usd_per_month)},
    {label: "RPM", key: "rpm", numeric: true, cell: (t) => limit(t.limits.rpm)},
    {label: "TPM", key: "tpm", numeric: true, cell: (t) => limit(t.limits.tpm)},
    {label: "Concurrent", key: "max_concurrent", numeric: true, cell: (t) => limit(t.limits.max_concurrent)},
  ];
}

export const tenantsView = {
  id: "tenants",
  everyMs: 10000,

  init() {},

  async refresh() {
    const starts = periodStarts();
    const [tenants, today, month] = await Promise.all([
      api("/admin/tenants"),
      api(`/admin/usage${query({by: "tenant", since: starts.day})}`),
      api(`/admin/usage${query({by: "tenant", since: starts.month})}`),
    ]);
    fill(byId("tenants-table"), table(columns(spentBy(today), spentBy(month)), tenants.data,
                                      {rowKey: (t) => t.name, empty: "No tenants configured."}));
  },
};
