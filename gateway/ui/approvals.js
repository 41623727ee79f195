// The approvals view: the pending queue (a card per held or deferred call, with Approve and
// Deny and a reason) and the history of decided ones. Over GET /admin/approvals and
// POST /admin/approvals/{id}/approve|deny.
//
// The queue is refreshed every 2 s, even while another view shows (it feeds the count in
// the menu). Cards are keyed by approval id and only added or removed, never rebuilt, so a
// refresh never wipes a reason being typed.

import {api, query} from "./api.js";
import {byId, chip, fill, h, table} from "./dom.js";
import {NONE, prettyJson, span, utc} from "./format.js";

const STATUS_TONES = {pending: "warn", approved: "good", denied: "bad", expired: "neutral"};
const cards = new Map(); // approval id -> its card, for the pending ones shown
const decided = new Set(); // decided here: a queue answer already in flight must not bring them back
let tab = "pending";
let generation = 0;
let refreshNow = () => {}; // set by init: a refresh the user asked for

function note(text, tone = "good") {
  const element = byId("decision-note");
  element.textContent = text;
  element.className = `note ${tone}`;
  element.hidden = false;
}

function what(record) {
  return record.tool_name || (record.stage === "request" ? "Request" : record.stage);
}

function detail(label, value) {
  return h("div", {}, h("dt", {}, label), h("dd", {}, value ?? NONE));
}

function countdown(record) {
  return h("span", {class: "countdown", "data-expires": record.expires_at, "data-on-timeout": record.on_timeout});
}

function tickCountdowns() {
  const now = Date.now() / 1000;
  for (const element of document.querySelectorAll(".countdown")) {
    const left = Number(element.dataset.expires) - now;
    element.textContent = left > 0 ? `${element.dataset.onTimeout === "approve" ? "approves" : "denies"} itself in `
      + span(left) : "timed out";
    element.classList.toggle("urgent", left < 30);
  }
}

async function decide(record, verb, form) {
  const buttons = form.querySelectorAll("button");
  buttons.forEach((button) => { button.disabled = true; });
  const reason = form.elements.reason.value.trim();
  try {
    const result = await api(`/admin/approvals/${encodeURIComponent(record.id)}/${verb}`,
                             {method: "POST", body: reason ? {reason} : {}});
    decided.add(record.id);
    cards.get(record.id)?.remove();
    cards.delete(record.id);
    note(`${what(record)} for ${record.tenant}: ${result.status}${result.reason ? ` (${result.reason})` : ""}.`,
         result.status === "approved" ? "good" : "bad");
    showEmptiness();
  } catch (error) {
    form.querySelector(".card-error").textContent = error.message;
    buttons.forEach((button) => { button.disabled = false; });
  }
}

function card(record) {
  const form = h("form", {class: "decide"},
    h("label", {class: "reason"}, "Reason",
      h("input", {name: "reason", type: "text", maxlength: 500, placeholder: "optional, kept in the audit trail"})),
    h("button", {type: "submit", value: "approve", class: "approve"}, "Approve"),
    h("button", {type: "submit", value: "deny", class: "deny"}, "Deny"),
    h("p", {class: "card-error error", role: "alert"}));
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    decide(record, event.submitter?.value === "deny" ? "deny" : "approve", form);
  });
  const payload = record.tool_name
    ? [h("div", {class: "payload-label"}, "Arguments"),
       h("pre", {class: "arguments"}, prettyJson(record.arguments || ""))]
    : [h("div", {class: "payload-label"}, "Request"), h("pre", {class: "summary"}, record.summary || NONE)];
  return h("article", {class: "card approval", "data-id": record.id},
    h("header", {},
      h("h3", {}, what(record)), chip(record.stage), chip(record.mode), countdown(record)),
    h("dl", {},
      detail("Tenant", record.tenant), detail("Agent", record.agent),
      detail("Policy / rule", `${record.policy} / ${record.rule}`), detail("Request id", record.request_id),
      detail("Created", `${utc(record.created_at)} UTC`), detail("Expires", `${utc(record.expires_at)} UTC`)),
    payload, form);
}

function showEmptiness() {
  const list = byId("approvals-pending");
  const empty = list.querySelector(".empty-queue");
  if (cards.size && empty) empty.remove();
  if (!cards.size && !empty) {
    list.append(h("p", {class: "empty-queue muted"}, "No approvals are waiting. Held calls show up here within 2 s."));
  }
}

const cardExpiry = (element) => Number(element.querySelector(".countdown").dataset.expires);

function showQueue(records) {
  const list = byId("approvals-pending");
  const waiting = records.filter((record) => !decided.has(record.id));
  const ids = new Set(waiting.map((record) => record.id));
  for (const [id, element] of cards) {
    if (!ids.has(id)) {
      element.remove();
      cards.delete(id);
    }
  }
  for (const record of waiting) {
    if (!cards.has(record.id)) cards.set(record.id, card(record));
  }
  // The first to time out on top. Only misplaced cards move: moving a card would drop the
  // focus from a reason being typed in it.
  const ordered = [...cards.values()].sort((a, b) => cardExpiry(a) - cardExpiry(b)
                                                      || a.dataset.id.localeCompare(b.dataset.id));
  list.querySelector(".empty-queue")?.remove();
  ordered.forEach((element, index) => {
    if (list.children[index] !== element) list.insertBefore(element, list.children[index] || null);
  });
  showEmptiness();
  tickCountdowns();
  const badge = byId("pending-count");
  badge.textContent = String(waiting.length);
  badge.hidden = !waiting.length;
}

const HISTORY_COLUMNS = [
  {label: "Decided", key: "decided_at", cell: (r) => utc(r.decided_at)},
  {label: "Status", key: "status", cell: (r) => chip(r.status, STATUS_TONES[r.status])},
  {label: "Tenant", key: "tenant", cell: (r) => r.tenant},
  {label: "Agent", key: "agent", cell: (r) => r.agent ?? NONE},
  {label: "Rule", key: "rule", cell: (r) => `${r.policy} / ${r.rule}`},
  {label: "Call", key: "call", cell: (r) => (r.tool_name ? h("code", {}, r.tool_name) : r.summary ?? NONE)},
  {label: "Decided by", key: "decided_by", cell: (r) => r.decided_by ?? NONE},
  {label: "Reason", key: "reason", cell: (r) => r.reason ?? NONE},
];

async function refreshHistory() {
  const status = byId("history-status").value;
  const answer = await api(`/admin/approvals${query({status, limit: 100})}`);
  const records = answer.data.filter((record) => record.status !== "pending");
  fill(byId("approvals-history"), table(HISTORY_COLUMNS, records, {rowKey: (r) => r.id,
                                                                   empty: "No decided approvals yet."}));
}

function showTab(name) {
  tab = name;
  for (const button of document.querySelectorAll("#view-approvals [data-tab]")) {
    button.setAttribute("aria-selected", String(button.dataset.tab === name));
  }
  byId("approvals-pending").hidden = name !== "pending";
  byId("approvals-history").hidden = name !== "history";
  byId("history-filter").hidden = name !== "history";
  refreshNow();
}

export const approvalsView = {
  id: "approvals",
  everyMs: 2000,
  alwaysRefresh: true, // the menu's pending count

  init(refresh) {
    refreshNow = refresh;
    for (const button of document.querySelectorAll("#view-approvals [data-tab]")) {
      button.addEventListener("click", () => showTab(button.dataset.tab));
    }
    byId("history-status").addEventListener("change", refresh);
    setInterval(tickCountdowns, 1000);
  },

  async refresh() {
    const mine = ++generation;
    const answer = await api(`/admin/approvals${query({status: "pending", limit: 1000})}`);
    if (mine === generation) showQueue(answer.data);
    if (tab === "history" && !byId("view-approvals").hidden) await refreshHistory();
  },

  reset() {
    cards.clear();
    decided.clear();
    fill(byId("approvals-pending"));
  },
};
