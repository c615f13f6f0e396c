// The nbplane page: sign in with a token, then see and drive your sessions and the recent
// executions of jobs and notebook APIs. Plain DOM, no framework, no build, nothing fetched
// from anywhere but this server. Every change sends X-Nbplane-Csrf: the server refuses a
// cookie-authenticated change without it, so another site cannot use the sign-in.
"use strict";

const CSRF_HEADER = "X-Nbplane-Csrf";
const FAST_REFRESH_MS = 1000; // while a session starts or stops, or an execution runs
const SLOW_REFRESH_MS = 5000;
const LIST_LIMIT = 20;
const SESSION_BUSY = new Set(["starting", "stopping"]);
const EXECUTION_ACTIVE = new Set(["queued", "running"]);

class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

const $ = (id) => document.getElementById(id);

async function api(method, path, body) {
  const headers = { Accept: "application/json" };
  if (method !== "GET") headers[CSRF_HEADER] = "1";
  const options = { method, headers, credentials: "same-origin" };
  if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    options.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(path, options);
  } catch (error) {
    throw new ApiError(0, `The nbplane server cannot be reached (${error.message}).`);
  }
  if (response.status === 204) return null;
  let data = null;
  try {
    data = await response.json();
  } catch {
    // not JSON: the status line has to do
  }
  if (!response.ok) {
    const said = data && (data.message || data.detail);
    throw new ApiError(response.status, `${said || response.statusText} (HTTP ${response.status})`);
  }
  return data;
}

// DOM helpers: text always goes in as text, never as HTML.
function el(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value === undefined || value === null || value === false) continue;
    if (name === "className") node.className = value;
    else if (name === "onclick") node.addEventListener("click", value);
    else node.setAttribute(name, value === true ? "" : value);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function when(iso) {
  if (!iso) return "—";
  const date = new Date(iso);
  return el("time", { datetime: iso, title: iso }, date.toLocaleString());
}

function badge(status) {
  return el("span", { className: `status status-${status}` }, status.replace("_", " "));
}

function link(href, text, label) {
  return el("a", { href, target: "_blank", rel: "noopener noreferrer", "aria-label": label },
    text);
}

function say(text) {
  $("message").textContent = text;
}

function short(id) {
  return id.length > 12 ? id.slice(0, 12) : id;
}

// A table is redrawn only when its data changed, and the focused button keeps its focus.
const drawn = new Map();

function redraw(tbodyId, emptyId, items, row) {
  const key = JSON.stringify(items);
  if (drawn.get(tbodyId) === key) return;
  drawn.set(tbodyId, key);
  const focused = document.activeElement && document.activeElement.dataset.key;
  $(tbodyId).replaceChildren(...items.map(row));
  $(emptyId).hidden = items.length > 0;
  if (focused) {
    const again = document.querySelector(`[data-key="${CSS.escape(focused)}"]`);
    if (again) again.focus();
  }
}

// Sessions

function sessionAction(session, label, method, suffix, done) {
  return el("button", {
    type: "button",
    "data-key": `${label}:${session.id}`,
    "aria-label": `${label} session ${short(session.id)}`,
    onclick: async (event) => {
      event.currentTarget.disabled = true;
      try {
        await api(method, `/api/v1/sessions/${encodeURIComponent(session.id)}${suffix}`);
        say(`Session ${short(session.id)}: ${done}.`);
      } catch (error) {
        showError("sessions-error", error);
      }
      refreshSoon(0);
    },
  }, label);
}

function sessionSteps(session) {
  const parts = [];
  if (session.status === "running") {
    parts.push(el("div", {}, session.ready ? "ready" : "waiting for the server to answer"));
  }
  const steps = session.steps || [];
  if (steps.length === 0) return parts;
  const done = steps.filter((step) => step.status === "done").length;
  const list = el("ol", { className: "steps" }, steps.map((step) =>
    el("li", { className: `step-${step.status}` },
      `${step.name}: ${step.status}`, step.detail ? ` — ${step.detail}` : "")));
  const summary = `${done} of ${steps.length} steps done`;
  if (session.status !== "running") {
    parts.push(el("progress", {
      max: steps.length, value: done, "aria-label": `Session ${short(session.id)}: ${summary}`,
    }));
  }
  // Steps stay readable once running, folded away; while starting or failed they show.
  parts.push(el("details", { open: session.status !== "running" },
    el("summary", {}, summary), list));
  return parts;
}

function sessionCulling(session) {
  const parts = [];
  if (session.hibernate_at) parts.push(el("div", {}, "hibernates if idle at ", when(session.hibernate_at)));
  if (session.delete_at) parts.push(el("div", {}, "deleted at ", when(session.delete_at)));
  return parts.length ? parts : "—";
}

function sessionRow(session) {
  const actions = [];
  if (session.status === "running" && session.ready && session.url) {
    actions.push(link(session.url, "Open", `Open session ${short(session.id)} in a new tab`));
  }
  if (session.status === "running" || session.status === "starting") {
    actions.push(sessionAction(session, "Hibernate", "POST", "/hibernate", "hibernating"));
  }
  if (session.status === "hibernated" || session.status === "failed") {
    actions.push(sessionAction(session, "Resume", "POST", "/resume", "resuming"));
  }
  if (session.status !== "stopping") {
    actions.push(sessionAction(session, "Stop", "DELETE", "", "stopping"));
  }
  actions.push(link(`/api/v1/sessions/${encodeURIComponent(session.id)}/logs`, "Logs",
    `Server log of session ${short(session.id)}`));
  const resources = [session.resource_class, session.cpu && `${session.cpu} CPU`, session.memory]
    .filter(Boolean).join(", ");
  return el("tr", { "data-session": session.id, "data-status": session.status },
    el("td", {}, el("code", { title: session.id }, short(session.id))),
    el("td", {}, resources),
    el("td", {}, badge(session.status),
      session.reason ? el("div", { className: "reason" }, session.reason) : null),
    el("td", {}, sessionSteps(session)),
    el("td", {}, when(session.last_activity_at)),
    el("td", {}, sessionCulling(session)),
    el("td", { className: "actions" }, actions));
}

async function loadResourceClasses() {
  const classes = await api("GET", "/api/v1/sessions/resource-classes");
  $("resource-class").replaceChildren(...classes.map((described) =>
    el("option", { value: described.name, selected: described.default },
      described.description ? `${described.name} — ${described.description}` : described.name)));
  $("start").disabled = classes.length === 0;
}

async function startSession(event) {
  event.preventDefault();
  const button = $("start");
  button.disabled = true;
  clearError("sessions-error");
  try {
    const session = await api("POST", "/api/v1/sessions", { resource_class: $("resource-class").value });
    say(`Started session ${short(session.id)} (${session.resource_class}).`);
  } catch (error) {
    showError("sessions-error", error);
  } finally {
    button.disabled = false;
  }
  refreshSoon(0);
}

// Executions

function jobRow(execution) {
  const base = `/api/v1/teams/${encodeURIComponent(execution.team)}/jobs/` +
    `${encodeURIComponent(execution.job)}/executions/${encodeURIComponent(execution.id)}`;
  const steps = execution.steps || [];
  const succeeded = steps.filter((step) => step.status === "succeeded").length;
  const name = `${execution.team}/${execution.job}`;
  return el("tr", { "data-execution": execution.id, "data-status": execution.status },
    el("td", {}, name),
    el("td", {}, badge(execution.status)),
    el("td", {}, steps.length ? `${succeeded} of ${steps.length} succeeded` : "—"),
    el("td", {}, execution.started_by),
    el("td", {}, when(execution.created_at)),
    el("td", {}, when(execution.finished_at)),
    el("td", { className: "reason" }, execution.reason || ""),
    el("td", { className: "actions" },
      link(base, "Details", `Details of ${name} execution ${short(execution.id)}`),
      link(`${base}/logs`, "Log", `Log of ${name} execution ${short(execution.id)}`)));
}

function apiRow(execution) {
  const base = `/api/v1/executions/${encodeURIComponent(execution.id)}`;
  const what = `${execution.notebook} execution ${short(execution.id)}`;
  const links = [link(base, "Details", `Details of ${what}`)];
  if (!EXECUTION_ACTIVE.has(execution.status)) {
    links.push(link(`${base}/html`, "HTML", `Executed notebook of ${what} as HTML`));
    links.push(link(`${base}/logs`, "Log", `Log of ${what}`));
  }
  if (execution.has_output) links.push(link(`${base}/output`, "Output", `Output of ${what}`));
  return el("tr", { "data-execution": execution.id, "data-status": execution.status },
    el("td", {}, execution.notebook),
    el("td", {}, badge(execution.status)),
    el("td", {}, execution.created_by || ""),
    el("td", {}, when(execution.created_at)),
    el("td", {}, when(execution.finished_at)),
    el("td", { className: "reason" }, execution.reason || ""),
    el("td", { className: "actions" }, links));
}

// Refresh: each section on its own, so one failing API does not blank the others.

let timer = null;
let signedIn = false;

function showError(id, error) {
  $(id).textContent = error instanceof ApiError || error instanceof Error ? error.message : String(error);
}

function clearError(id) {
  $(id).textContent = "";
}

async function section(errorId, load) {
  try {
    const busy = await load();
    clearError(errorId);
    return busy;
  } catch (error) {
    if (error.status === 401) throw error;
    showError(errorId, error);
    return false;
  }
}

async function refresh() {
  timer = null;
  if (!signedIn) return;
  const results = await Promise.allSettled([
    section("sessions-error", async () => {
      const sessions = await api("GET", "/api/v1/sessions");
      redraw("session-rows", "no-sessions", sessions, sessionRow);
      return sessions.some((session) => SESSION_BUSY.has(session.status) ||
        (session.status === "running" && !session.ready));
    }),
    section("jobs-error", async () => {
      const page = await api("GET", `/api/v1/job-executions?limit=${LIST_LIMIT}`);
      redraw("job-rows", "no-jobs", page.items, jobRow);
      return page.items.some((execution) => EXECUTION_ACTIVE.has(execution.status));
    }),
    section("apis-error", async () => {
      const page = await api("GET", `/api/v1/executions?limit=${LIST_LIMIT}`);
      redraw("api-rows", "no-apis", page.items, apiRow);
      return page.items.some((execution) => EXECUTION_ACTIVE.has(execution.status));
    }),
  ]);
  if (results.some((result) => result.status === "rejected")) {
    showSignIn("Your sign-in is no longer valid: sign in again.");
    return;
  }
  const busy = results.some((result) => result.value);
  // A hidden tab asks less often; showing it again refreshes at once (see main).
  refreshSoon(busy && !document.hidden ? FAST_REFRESH_MS : SLOW_REFRESH_MS * (document.hidden ? 6 : 1));
}

function refreshSoon(delay) {
  if (timer !== null) clearTimeout(timer);
  timer = setTimeout(refresh, delay);
}

// Sign-in

async function offerOAuth() {
  try {
    const provider = await api("GET", "/api/v1/auth/oauth");
    $("oauth-link").textContent = `sign in with ${new URL(provider.authorize_url).host}`;
    $("oauth").hidden = false;
  } catch {
    $("oauth").hidden = true; // no provider configured: the token is the way in
  }
}

function showSignIn(reason) {
  signedIn = false;
  offerOAuth();
  if (timer !== null) clearTimeout(timer);
  timer = null;
  drawn.clear();
  $("loading").hidden = true;
  $("signed-in").hidden = true;
  $("who").hidden = true;
  $("sign-in").hidden = false;
  $("sign-in-error").textContent = reason || "";
  $("token").focus();
}

async function showSignedIn(me) {
  signedIn = true;
  $("loading").hidden = true;
  $("sign-in").hidden = true;
  $("user-name").textContent = me.user;
  $("sign-out").hidden = me.token === null; // a --no-auth server has nobody to sign out
  $("who").hidden = false;
  $("signed-in").hidden = false;
  try {
    await loadResourceClasses();
    clearError("sessions-error");
  } catch (error) {
    if (error.status === 401) return showSignIn("Your sign-in is no longer valid: sign in again.");
    showError("sessions-error", error);
  }
  refreshSoon(0);
}

async function signIn(event) {
  event.preventDefault();
  const input = $("token");
  const button = event.submitter || event.target.querySelector("button");
  button.disabled = true;
  $("sign-in-error").textContent = "";
  try {
    const me = await api("POST", "/api/v1/auth/sign-in", { token: input.value.trim() });
    input.value = "";
    say("");
    await showSignedIn(me);
    $("sessions-title").focus(); // the form is gone: keyboard and screen reader users land here
  } catch (error) {
    $("sign-in-error").textContent = error.status === 401
      ? "This token is unknown or revoked. Check it, or make a new one with nbplane token create."
      : error.message;
    input.focus();
  } finally {
    button.disabled = false;
  }
}

async function signOut() {
  try {
    await api("POST", "/api/v1/auth/sign-out");
    say("Signed out.");
    showSignIn();
  } catch (error) {
    say(`Sign-out failed: ${error.message}`);
  }
}

async function main() {
  $("sign-in-form").addEventListener("submit", signIn);
  $("sign-out").addEventListener("click", signOut);
  $("start-form").addEventListener("submit", startSession);
  document.addEventListener("visibilitychange", () => {
    if (!document.hidden && signedIn) refreshSoon(0);
  });
  // An OAuth sign-in that failed comes back with its reason in the fragment.
  const returned = new URLSearchParams(location.hash.slice(1)).get("error");
  if (location.hash) history.replaceState(null, "", location.pathname);
  try {
    await showSignedIn(await api("GET", "/api/v1/me"));
  } catch (error) {
    if (error.status === 401) showSignIn(returned);
    else {
      $("loading").hidden = true;
      say(`The page cannot load: ${error.message}`);
    }
  }
}

document.addEventListener("DOMContentLoaded", main);
