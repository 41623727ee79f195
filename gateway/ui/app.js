// The dashboard's entry point: sign in and out, switch views by the URL's #hash, and keep
// the shown view fresh (each view says how often; the approvals queue always refreshes,
// for the pending count in the menu).

import {api, ApiError, forgetKey, onSignedOut, savedKey, saveKey} from "./api.js";
import {approvalsView} from "./approvals.js";
import {circuitsView} from "./circuits.js";
import {byId} from "./dom.js";
import {requestsView} from "./requests.js";
import {tenantsView} from "./tenants.js";
import {usageView} from "./usage.js";

const VIEWS = Object.fromEntries([usageView, approvalsView, requestsView, circuitsView, tenantsView]
  .map((view) => [view.id, view]));
const DEFAULT_VIEW = "usage";
const TICK_MS = 500;
const lastRun = new Map(); // view id -> when its last refresh started (ms)
const running = new Set();
let timer = null;

function currentView() {
  const id = location.hash.slice(1);
  return VIEWS[id] ? id : DEFAULT_VIEW;
}

function showProblem(message) {
  const banner = byId("problem");
  banner.textContent = message || "";
  banner.hidden = !message;
}

/** Refresh `view`; a timed refresh skips a view still busy, one the user asked for (`now`) does not. */
async function refresh(view, {now = false} = {}) {
  if ((running.has(view.id) && !now) || !savedKey()) return;
  running.add(view.id);
  lastRun.set(view.id, Date.now());
  try {
    await view.refresh();
    showProblem("");
    byId("updated").textContent = `updated ${new Date().toLocaleTimeString()}`;
  } catch (error) {
    // A 401/403 has already signed us out; anything else is shown until a refresh works.
    if (!(error instanceof ApiError && (error.status === 401 || error.status === 403))) showProblem(error.message);
  } finally {
    running.delete(view.id);
  }
}

function tick() {
  const now = Date.now();
  for (const view of Object.values(VIEWS)) {
    const shown = view.id === currentView();
    if ((shown || view.alwaysRefresh) && now - (lastRun.get(view.id) || 0) >= view.everyMs) refresh(view);
  }
}

function showView() {
  const id = currentView();
  for (const view of Object.values(VIEWS)) byId(`view-${view.id}`).hidden = view.id !== id;
  for (const link of document.querySelectorAll("#nav a")) {
    if (link.dataset.view === id) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  document.title = `${id[0].toUpperCase()}${id.slice(1)} · Lockgate`;
  refresh(VIEWS[id]);
}

function setSignedIn(signedIn) {
  byId("login").hidden = signedIn;
  byId("nav").hidden = !signedIn;
  byId("session").hidden = !signedIn;
  if (!signedIn) {
    for (const view of Object.values(VIEWS)) byId(`view-${view.id}`).hidden = true;
    showProblem("");
  }
}

function signIn() {
  setSignedIn(true);
  showView();
  timer ??= setInterval(tick, TICK_MS);
}

function signOut(message) {
  clearInterval(timer);
  timer = null;
  lastRun.clear();
  forgetKey();
  approvalsView.reset();
  setSignedIn(false);
  byId("login-error").textContent = message || "";
  byId("admin-key").value = "";
  byId("admin-key").focus();
}

async function submitLogin(event) {
  event.preventDefault();
  const key = byId("admin-key").value.trim();
  byId("login-error").textContent = "";
  saveKey(key);
  try {
    await api("/admin/tenants"); // any admin call proves the key; a wrong one signs out with the reason
    signIn();
  } catch (error) {
    if (!(error.status === 401 || error.status === 403)) {
      forgetKey();
      byId("login-error").textContent = error.message;
    }
  }
}

function start() {
  for (const view of Object.values(VIEWS)) view.init(() => refresh(view, {now: true}));
  onSignedOut(signOut);
  byId("login-form").addEventListener("submit", submitLogin);
  byId("sign-out").addEventListener("click", () => signOut("Signed out."));
  window.addEventListener("hashchange", () => savedKey() && showView());
  if (savedKey()) signIn();
  else signOut("");
}

start();
