// The console's entry point: sign-in, the account picker, and the wiring of the board, the
// stream, the drawer and the nodes panel. Everything it knows comes from the public API.

import { FormError, buildAction, buildCall } from "./actions.js";
import { Api, ApiError, inBatches } from "./api.js";
import { Board } from "./board.js";
import { $, h, setText } from "./dom.js";
import { Drawer } from "./drawer.js";
import { HealthPanel } from "./health.js";
import { BOARD_EVENTS, STATES, STATE_LABELS, accountsInScope, pickerOptions } from "./model.js";
import { Session } from "./session.js";
import { LiveStream } from "./stream.js";
import { describeSuccess } from "./words.js";

/** The daemon's root as seen from this page ("/" unless it is served under a prefix). */
const BASE = new URL("../", document.baseURI).pathname;
const SCOPE_STORE = "eslchan.console.scope";
const LISTING_LANES = 4;

const session = new Session(null);
const api = new Api(session, BASE);
session.api = api;

const ui = {
  loginView: $("#login-view"),
  loginForm: $("#login-form"),
  loginError: $("#login-error"),
  loginSubmit: $("#login-submit"),
  apiKey: $("#api-key"),
  appView: $("#app-view"),
  picker: $("#account-picker"),
  subAccounts: $("#subaccounts"),
  subAccountsWrap: $("#subaccounts-wrap"),
  linkStatus: $("#link-status"),
  whoName: $("#who-name"),
  callCount: $("#call-count"),
  summary: $("#state-summary"),
  filters: $("#filters"),
  text: $("#f-text"),
  direction: $("#f-direction"),
  state: $("#f-state"),
  user: $("#f-user"),
  device: $("#f-device"),
  clear: $("#f-clear"),
  sort: $("#sort-duration"),
  toasts: $("#toasts"),
  announcer: $("#announcer"),
};

const console_ = {
  own: null, // {id, name, superduper}
  descendants: [],
  names: new Map(),
  chosen: null,
  scope: [],
  stream: null,
  loading: null, // stream events received while a listing is on its way
  loadGeneration: 0,
  streamState: "connecting",
  streamWait: 0,
  downNodes: new Set(),
};

// --- board, drawer, health ------------------------------------------------------------------

const board = new Board($("#board"), {
  details: (uuid) => drawer.open(uuid),
  hangup: async (uuid) => {
    const result = await perform(uuid, "hangup", {}, buildAction("hangup"));
    toast(result.ok ? `${callName(uuid)}: hung up.` : result.message, result.ok ? "ok" : "error");
  },
  changed: showSummary,
  announce: (text) => setText(ui.announcer, text),
});

const drawer = new Drawer($("#drawer"), {
  api,
  board,
  perform,
  request,
  channelPath,
  callflowsPath: () => `${BASE}v2/accounts/${console_.chosen}/callflows`,
});

const health = new HealthPanel(
  $("#health"),
  $("#health-foot"),
  BASE,
  (down) => {
    console_.downNodes = down;
    board.setDownNodes(down);
    showLinkStatus();
  },
  () => (session.token() ? { "X-Auth-Token": session.token() } : {}),
);

setInterval(() => {
  board.tick();
  drawer.tick();
}, 1000);

function channelPath(uuid) {
  const channel = board.channel(uuid);
  const account = channel ? channel.account : null;
  return account ? `${BASE}v2/accounts/${account}/channels/${uuid}` : null;
}

function callName(uuid) {
  const channel = board.channel(uuid);
  if (!channel) return "The call";
  const r = channel.row;
  return `The call from ${r.caller_id_name || r.caller_id_number || "unknown"}`;
}

/** One API call for an action, as {ok, message} in plain words. */
async function request(method, path, kind, fields, body) {
  try {
    const answer = await api.request(method, path, { body });
    return { ok: true, message: describeSuccess(kind, fields, answer.data) };
  } catch (err) {
    if (!(err instanceof ApiError)) throw err;
    return { ok: false, message: err.message };
  }
}

async function perform(uuid, kind, fields, built) {
  const path = channelPath(uuid);
  if (!path) return { ok: false, message: "This call has already ended." };
  return request(built.method, path, kind, fields, built.body);
}

// --- starting a call ---------------------------------------------------------------------------

const newCall = {
  dialog: $("#new-call"),
  form: $("#new-call-form"),
  outcome: $("#new-call-outcome"),
  submit: $("#new-call-submit"),
  flows: $("#c-flow"),
  account: $("#new-call-account"),
};

function callOutcome(message, kind) {
  newCall.outcome.className = `outcome ${kind}`;
  setText(newCall.outcome, message);
}

async function openNewCall() {
  setText(newCall.account, console_.names.get(console_.chosen) || console_.chosen);
  callOutcome("", "");
  newCall.submit.disabled = false;
  newCall.dialog.showModal();
  $("#c-endpoint").focus();
  try {
    const flows = (await api.get(`${BASE}v2/accounts/${console_.chosen}/callflows`)).data.filter((f) => !f.error);
    newCall.flows.replaceChildren(
      newCall.flows.options[0],
      ...flows.map((f) => h("option", { value: f.id }, f.name === f.id ? f.id : `${f.name} (${f.id})`)),
    );
  } catch {
    // no stored flow to offer: the call can still be started
  }
}

/** Open the details of a call the console just started, once the stream has put it on the board. */
function showWhenListed(uuid, tries = 50) {
  if (board.channel(uuid)) drawer.open(uuid);
  else if (tries > 0) setTimeout(() => showWhenListed(uuid, tries - 1), 100);
}

$("#new-call-open").addEventListener("click", openNewCall);
for (const id of ["#new-call-close", "#new-call-cancel"]) $(id).addEventListener("click", () => newCall.dialog.close());
newCall.form.addEventListener("submit", async (e) => {
  e.preventDefault();
  const fields = Object.fromEntries(new FormData(newCall.form));
  let built;
  try {
    built = buildCall(fields);
  } catch (err) {
    if (!(err instanceof FormError)) throw err;
    callOutcome(err.message, "error");
    const field = newCall.form.elements[err.field];
    if (field) field.focus();
    return;
  }
  newCall.submit.disabled = true;
  callOutcome("Calling…", "pending");
  try {
    const answer = await api.request("PUT", `${BASE}v2/accounts/${console_.chosen}/channels`, { body: built.body });
    newCall.dialog.close();
    toast(describeSuccess("call", built.body.data, answer.data), "ok");
    showWhenListed(answer.data.uuid);
  } catch (err) {
    if (!(err instanceof ApiError)) throw err;
    callOutcome(err.message, "error");
  } finally {
    newCall.submit.disabled = false;
  }
});

// --- status, summary, toasts ------------------------------------------------------------------

function showLinkStatus() {
  const down = [...console_.downNodes];
  let state = console_.streamState;
  let text;
  if (state === "live") {
    text = "Live";
    if (down.length) {
      state = "degraded";
      text = `Live · ${down.join(", ")} down (rows marked stale)`;
    }
  } else if (state === "reconnecting") {
    text = console_.streamWait ? `Reconnecting in ${Math.ceil(console_.streamWait / 1000)} s…` : "Reconnecting…";
  } else {
    text = "Connecting…";
  }
  ui.linkStatus.dataset.state = state;
  setText(ui.linkStatus.querySelector(".text"), text);
}

let summaryButtons = null;

function showSummary({ counts, calls, shownCalls, users, devices }) {
  setText(ui.callCount, shownCalls === calls ? String(calls) : `${shownCalls} of ${calls}`);
  if (!summaryButtons) {
    summaryButtons = new Map();
    const make = (state, label) => {
      const button = h(
        "button",
        { type: "button", class: `chip chip-${state || "all"}`, "aria-pressed": "false", "data-state": state },
        h("span", { class: "chip-label" }, label),
        h("span", { class: "chip-count" }, "0"),
      );
      button.addEventListener("click", () => {
        ui.state.value = ui.state.value === state ? "" : state;
        applyFilters();
      });
      summaryButtons.set(state, button);
      return button;
    };
    ui.summary.append(make("", "All channels"), ...STATES.map((s) => make(s, STATE_LABELS[s])));
    const stale = h(
      "span",
      { class: "chip chip-stale", title: "On a node that is not connected", hidden: true },
      h("span", { class: "chip-label" }, "Stale"),
      h("span", { class: "chip-count" }, "0"),
    );
    summaryButtons.set("stale", stale);
    ui.summary.append(stale);
  }
  for (const [state, button] of summaryButtons) {
    const value = state === "" ? counts.total : counts[state];
    setText(button.querySelector(".chip-count"), value);
    if (state === "stale") button.hidden = !value;
    else button.setAttribute("aria-pressed", String(ui.state.value === state));
  }
  fillOptions(ui.user, [...users].sort().map((u) => [u, u]));
  fillOptions(
    ui.device,
    [...devices].sort((a, b) => a[1].localeCompare(b[1])).map(([id, label]) => [id, label]),
  );
}

/** Replace a filter's options only when the set changed, keeping the selection. */
function fillOptions(select, entries) {
  const key = entries.map(([v]) => v).join("\n");
  if (select.dataset.key === key) return;
  select.dataset.key = key;
  const chosen = select.value;
  const options = [h("option", { value: "" }, "Any"), ...entries.map(([v, label]) => h("option", { value: v }, label))];
  if (chosen && !entries.some(([v]) => v === chosen)) options.push(h("option", { value: chosen }, `${chosen} (gone)`));
  select.replaceChildren(...options);
  select.value = chosen;
}

function toast(message, kind = "info") {
  const close = h("button", { type: "button", class: "icon-btn small", "aria-label": "Dismiss" }, "✕");
  const item = h("div", { class: `toast ${kind}` }, h("span", {}, message), close);
  close.addEventListener("click", () => item.remove());
  ui.toasts.append(item);
  while (ui.toasts.children.length > 4) ui.toasts.firstChild.remove();
  setTimeout(() => item.remove(), kind === "error" ? 12000 : 6000);
}

// --- filters ----------------------------------------------------------------------------------

let textTimer = null;

function currentFilter() {
  return {
    text: ui.text.value,
    direction: ui.direction.value,
    state: ui.state.value,
    user: ui.user.value,
    device: ui.device.value,
  };
}

function applyFilters() {
  const filter = currentFilter();
  board.setFilter(filter);
  ui.clear.hidden = !Object.values(filter).some(Boolean);
}

ui.text.addEventListener("input", () => {
  clearTimeout(textTimer);
  textTimer = setTimeout(applyFilters, 120);
});
for (const select of [ui.direction, ui.state, ui.user, ui.device]) select.addEventListener("change", applyFilters);
ui.filters.addEventListener("submit", (e) => e.preventDefault());
ui.filters.addEventListener("reset", () => setTimeout(applyFilters, 0));
ui.sort.addEventListener("click", () => {
  const th = ui.sort.closest("th");
  const newestFirst = th.getAttribute("aria-sort") !== "ascending";
  th.setAttribute("aria-sort", newestFirst ? "ascending" : "descending");
  ui.sort.title = newestFirst ? "Shortest calls first; press for the longest first" : "Longest calls first; press for the newest first";
  board.setNewestFirst(newestFirst);
});

document.addEventListener("keydown", (e) => {
  const typing = e.target.closest("input, textarea, select");
  if (e.key === "/" && !typing && !ui.appView.hidden) {
    e.preventDefault();
    ui.text.focus();
  }
});

// --- the stream and the listing -----------------------------------------------------------------

function streamUrl() {
  const params = new URLSearchParams({
    auth_token: session.token() || "",
    descendants: String(console_.scope.length > 1),
    events: BOARD_EVENTS.join(","),
  });
  return `${BASE}v2/accounts/${console_.chosen}/events?${params}`;
}

function applyEvent(name, data) {
  if (!data || !data.channel) return;
  board.apply(name, data, data.account_id || console_.chosen);
  drawer.touched(data.uuid);
}

/** The listing of every account in scope; the board becomes it, then the events that came in
 * meanwhile are applied on top (they are at least as new as the listing). */
async function reload() {
  const generation = ++console_.loadGeneration;
  console_.loading = [];
  let pages;
  try {
    pages = await inBatches(console_.scope, LISTING_LANES, (account) =>
      api.get(`${BASE}v2/accounts/${account}/channels`).then((answer) => ({ account, rows: answer.data })),
    );
  } catch (err) {
    if (generation !== console_.loadGeneration) return;
    console_.loading = null;
    if (err.status !== 401) toast(`The calls could not be listed: ${err.message}`, "error");
    return;
  }
  if (generation !== console_.loadGeneration) return;
  board.replaceAll(pages.flatMap(({ account, rows }) => rows.map((row) => ({ row, accountId: account }))));
  const queued = console_.loading;
  console_.loading = null;
  for (const [name, data] of queued) applyEvent(name, data);
}

function startBoard() {
  const withSub = ui.subAccounts.checked && console_.descendants.length > 0;
  console_.scope = accountsInScope(console_.chosen, console_.descendants, withSub);
  board.setAccounts(console_.names, console_.scope.length > 1);
  board.clear();
  if (console_.stream) console_.stream.stop();
  console_.stream = new LiveStream(streamUrl, BOARD_EVENTS, {
    open: reload,
    event: (name, data) => {
      if (console_.loading) console_.loading.push([name, data]);
      else applyEvent(name, data);
    },
    status: (state, wait) => {
      console_.streamState = state;
      console_.streamWait = wait || 0;
      showLinkStatus();
    },
    expired: () => session.renew(),
    beforeRetry: async () => {
      // an expired token looks like any refusal to EventSource: ask the API, which renews
      try {
        await api.get(`${BASE}v2/accounts/${console_.chosen}/descendants`);
        return true;
      } catch (err) {
        return err.status !== 401;
      }
    },
  });
  console_.stream.start();
  sessionStorage.setItem(SCOPE_STORE, JSON.stringify({ account: console_.chosen, sub: ui.subAccounts.checked }));
}

// --- signing in and out -------------------------------------------------------------------------

async function startConsole() {
  const own = session.account;
  console_.own = own;
  ui.loginView.hidden = true;
  ui.appView.hidden = false;
  document.title = `Live calls · ${own.name} · eslchan`;
  setText(ui.whoName, own.superduper ? `${own.name} (superduper admin)` : own.name);
  let descendants = [];
  try {
    descendants = (await api.get(`${BASE}v2/accounts/${own.id}/descendants`)).data;
  } catch (err) {
    if (err.status === 401) return; // the session ended; the login is showing
    toast(`Sub-accounts could not be listed: ${err.message}`, "error");
  }
  console_.descendants = descendants;
  console_.names = new Map([[own.id, own.name], ...descendants.map((d) => [d.id, d.name])]);
  const options = pickerOptions({ id: own.id, name: own.name }, descendants);
  ui.picker.replaceChildren(
    ...options.map((o) => h("option", { value: o.id }, `${"\u2003".repeat(o.depth)}${o.label}`)),
  );
  let saved = null;
  try {
    saved = JSON.parse(sessionStorage.getItem(SCOPE_STORE) || "null");
  } catch {
    saved = null;
  }
  console_.chosen = saved && console_.names.has(saved.account) ? saved.account : own.id;
  ui.picker.value = console_.chosen;
  ui.subAccounts.checked = saved ? Boolean(saved.sub) : true;
  ui.picker.disabled = options.length < 2;
  ui.subAccountsWrap.hidden = descendants.length === 0;
  health.start();
  startBoard();
}

function stopConsole() {
  if (console_.stream) console_.stream.stop();
  console_.stream = null;
  health.stop();
  drawer.close();
  board.clear();
}

function showLogin(reason) {
  stopConsole();
  ui.appView.hidden = true;
  ui.loginView.hidden = false;
  document.title = "Sign in · eslchan";
  setText(ui.loginError, reason || "");
  ui.apiKey.setAttribute("aria-invalid", reason ? "true" : "false");
  ui.apiKey.focus();
}

let loginCooldown = null;

ui.loginForm.addEventListener("submit", async (e) => {
  e.preventDefault();
  const key = ui.apiKey.value.trim();
  if (!key) {
    setText(ui.loginError, "Enter your API key.");
    ui.apiKey.setAttribute("aria-invalid", "true");
    ui.apiKey.focus();
    return;
  }
  ui.loginSubmit.disabled = true;
  setText(ui.loginSubmit, "Signing in…");
  setText(ui.loginError, "");
  try {
    await session.login(key);
  } catch (err) {
    ui.loginSubmit.disabled = false;
    setText(ui.loginSubmit, "Sign in");
    const message = err.status === 401 ? "That API key was not accepted. Check it and try again." : err.message;
    setText(ui.loginError, message);
    ui.apiKey.setAttribute("aria-invalid", "true");
    ui.apiKey.select();
    if (err.status === 429 && err.retryAfter) cooldown(err.retryAfter);
    return;
  }
  ui.apiKey.value = "";
  ui.loginSubmit.disabled = false;
  setText(ui.loginSubmit, "Sign in");
  ui.apiKey.setAttribute("aria-invalid", "false");
  startConsole();
});

/** After a 429 the button waits out Retry-After, counting down. */
function cooldown(seconds) {
  clearInterval(loginCooldown);
  let left = Math.ceil(seconds);
  ui.loginSubmit.disabled = true;
  const show = () => setText(ui.loginSubmit, `Try again in ${left} s`);
  show();
  loginCooldown = setInterval(() => {
    left -= 1;
    if (left > 0) return show();
    clearInterval(loginCooldown);
    ui.loginSubmit.disabled = false;
    setText(ui.loginSubmit, "Sign in");
  }, 1000);
}

ui.picker.addEventListener("change", () => {
  console_.chosen = ui.picker.value;
  drawer.close();
  startBoard();
});
ui.subAccounts.addEventListener("change", () => {
  drawer.close();
  startBoard();
});
$("#logout").addEventListener("click", () => session.logout());

session.on("ended", (reason) => showLogin(reason));
session.on("renewed", () => {
  if (console_.stream) console_.stream.restart(); // the open stream carries the old token
});

const restored = session.restore();
if (restored === "restored") startConsole();
else showLogin(restored === "expired" ? "Your session has expired. Enter your API key to continue." : "");
