// The call details drawer: every field and custom variable of a channel, the legs of its
// call, its metaflow runs with their trail, and the actions. It reads GET …/channels/{UUID}
// and GET …/channels/{UUID}/metaflows, again whenever the stream says the call changed.

import { FormError, buildAction, runTrail, takenTrail } from "./actions.js";
import { $, h, setText } from "./dom.js";
import { STATE_LABELS, calleeOf, callerOf, channelState, elapsedSeconds, formatDuration } from "./model.js";

const RUNS_EVERY_MS = 2000;
const REFRESH_DEBOUNCE_MS = 150;
/** Detail fields shown first, in this order; the rest follow alphabetically. */
const FIRST_FIELDS = [
  "uuid",
  "state",
  "callstate",
  "answered",
  "is_onhold",
  "direction",
  "caller_id_name",
  "caller_id_number",
  "callee_id_name",
  "callee_id_number",
  "destination",
  "other_leg",
  "username",
  "owner_id",
  "authorizing_type",
  "authorizing_id",
  "presence_id",
  "node",
  "name",
  "context",
  "application",
  "hangup_cause",
  "stale",
];

export class Drawer {
  /** `ctx`: api, board, perform(uuid, kind, fields) -> {ok, message}, channelPath(uuid). */
  constructor(root, ctx) {
    this.root = root;
    this.ctx = ctx;
    this.uuid = null;
    this.returnFocus = null;
    this.timer = null;
    this.refreshTimer = null;
    this.generation = 0;
    this.callflows = null;
    $("#drawer-close", root).addEventListener("click", () => this.close());
    root.addEventListener("keydown", (e) => {
      if (e.key === "Escape") this.close();
    });
    for (const button of root.querySelectorAll(".toolbar button[data-action]")) {
      button.addEventListener("click", () => this.act(button.dataset.action, {}, button));
    }
    for (const form of root.querySelectorAll("form[data-action]")) {
      form.addEventListener("submit", (e) => {
        e.preventDefault();
        const fields = Object.fromEntries(new FormData(form));
        this.act(form.dataset.action, fields, form.querySelector("button[type=submit]"), form);
      });
    }
    const kind = $("#t-type", root);
    kind.addEventListener("change", () => {
      for (const el of root.querySelectorAll("[data-when]")) el.hidden = el.dataset.when !== kind.value;
    });
  }

  get isOpen() {
    return !this.root.hidden;
  }

  open(uuid) {
    if (!this.isOpen) this.returnFocus = document.activeElement;
    this.uuid = uuid;
    this.generation += 1;
    this.root.hidden = false;
    document.body.classList.add("drawer-open");
    setText($("#drawer-outcome", this.root), "");
    this.showSummary();
    this.refresh();
    this.loadCallflows();
    clearInterval(this.timer);
    this.timer = setInterval(() => this.refreshRuns(), RUNS_EVERY_MS);
    this.root.focus();
  }

  close() {
    if (!this.isOpen) return;
    this.root.hidden = true;
    document.body.classList.remove("drawer-open");
    clearInterval(this.timer);
    this.uuid = null;
    const back = this.returnFocus && this.returnFocus.isConnected ? this.returnFocus : $("#board");
    if (back) back.focus();
  }

  /** The stream touched `uuid`: refresh if it is one of the legs on show. */
  touched(uuid) {
    if (!this.isOpen) return;
    if (uuid !== this.uuid && !this.ctx.board.legsOf(this.uuid).includes(uuid)) return;
    requestAnimationFrame(() => this.showSummary()); // the board has the event by the next frame
    clearTimeout(this.refreshTimer);
    this.refreshTimer = setTimeout(() => this.refresh(), REFRESH_DEBOUNCE_MS);
  }

  /** Once a second, from the board's clock. */
  tick() {
    if (this.isOpen) this.showSummary();
  }

  showSummary() {
    const channel = this.ctx.board.channel(this.uuid);
    $("#drawer-gone", this.root).hidden = Boolean(channel);
    for (const control of this.root.querySelectorAll(".panel button, .panel input, .panel select, .panel textarea")) {
      if (control.closest(".runs")) continue;
      control.disabled = !channel;
    }
    if (!channel) return;
    const caller = callerOf(channel.row);
    const callee = calleeOf(channel.row);
    setText($("#drawer-title", this.root), `${caller.primary} → ${callee.primary}`);
    const state = channelState(channel);
    const sub = $("#drawer-sub", this.root);
    if (sub.dataset.state !== state) {
      sub.replaceChildren(h("span", { class: `badge state-${state}` }), h("span", { class: "since" }));
      sub.dataset.state = state;
    }
    setText(sub.firstChild, STATE_LABELS[state]);
    setText(sub.lastChild, ` ${formatDuration(elapsedSeconds(channel, Date.now()))} · ${channel.row.node}`);
    $('[data-action="hold"]', this.root).hidden = channel.row.is_onhold;
    $('[data-action="unhold"]', this.root).hidden = !channel.row.is_onhold;
    this.showLegs();
  }

  showLegs() {
    const list = $("#drawer-legs", this.root);
    const legs = this.ctx.board.legsOf(this.uuid);
    const key = legs.join(",") + legs.map((u) => channelState(this.ctx.board.channel(u) || { row: {}, ending: true })).join();
    if (list.dataset.key === key) return;
    list.dataset.key = key;
    list.replaceChildren(
      ...legs.map((uuid) => {
        const channel = this.ctx.board.channel(uuid);
        if (!channel) return h("li", {}, uuid);
        const state = channelState(channel);
        const current = uuid === this.uuid;
        return h(
          "li",
          { class: current ? "current" : "" },
          h("span", { class: `badge state-${state}` }, STATE_LABELS[state]),
          h("span", { class: "leg-dir" }, channel.row.direction || ""),
          h("code", { class: "leg-uuid", title: uuid }, uuid),
          current
            ? h("span", { class: "muted small" }, "shown")
            : h("button", { type: "button", class: "btn small ghost", onclick: () => this.open(uuid) }, "Show this leg"),
        );
      }),
    );
  }

  async refresh() {
    const uuid = this.uuid;
    const generation = this.generation;
    const path = this.ctx.channelPath(uuid);
    if (!path) return;
    try {
      const [detail, runs] = await Promise.all([this.ctx.api.get(path), this.ctx.api.get(`${path}/metaflows`)]);
      if (generation !== this.generation) return;
      this.showFields(detail.data);
      this.showRuns(runs.data, path);
    } catch (err) {
      if (generation !== this.generation) return;
      if (err.status === 404) {
        $("#drawer-gone", this.root).hidden = false;
        $("#drawer-runs", this.root).replaceChildren(h("p", { class: "muted" }, "The call has ended."));
      } else {
        setText($("#drawer-outcome", this.root), err.message);
      }
    }
    this.showSummary();
  }

  async refreshRuns() {
    const path = this.ctx.channelPath(this.uuid);
    const generation = this.generation;
    if (!path || !this.ctx.board.channel(this.uuid)) return;
    try {
      const runs = await this.ctx.api.get(`${path}/metaflows`);
      if (generation === this.generation) this.showRuns(runs.data, path);
    } catch {
      // the next refresh or the stream says what happened
    }
  }

  showFields(detail) {
    const dl = $("#drawer-fields", this.root);
    const keys = Object.keys(detail).filter((k) => k !== "custom_channel_vars");
    const order = [...FIRST_FIELDS.filter((k) => keys.includes(k)), ...keys.filter((k) => !FIRST_FIELDS.includes(k)).sort()];
    dl.replaceChildren(
      ...order.flatMap((key) => [h("dt", {}, key), h("dd", { class: valueClass(detail[key]) }, showValue(detail[key]))]),
    );
    const vars = detail.custom_channel_vars || {};
    const names = Object.keys(vars).sort();
    $("#drawer-vars", this.root).replaceChildren(
      names.length
        ? h(
            "table",
            { class: "vars" },
            h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "Variable"), h("th", { scope: "col" }, "Value"))),
            h("tbody", {}, ...names.map((n) => h("tr", {}, h("th", { scope: "row" }, n), h("td", {}, vars[n])))),
          )
        : h("p", { class: "muted" }, "None."),
    );
  }

  showRuns(runs, path) {
    const box = $("#drawer-runs", this.root);
    if (!runs.length) {
      box.replaceChildren(h("p", { class: "muted" }, "No metaflow has run on this channel."));
      return;
    }
    box.replaceChildren(
      h(
        "ul",
        { class: "runs" },
        ...runs.map((run) => {
          const where = run.current && run.current.path ? run.current.path : "root";
          const running = run.state === "running";
          // a run that is over shows the path it really took; a running one, where it is now
          const trail = running ? runTrail(run.tree, run.current ? run.current.path : "") : takenTrail(run.trail);
          return h(
            "li",
            { class: "run" },
            h(
              "div",
              { class: "run-head" },
              h("strong", {}, run.module),
              h("span", { class: `badge run-${run.state}` }, run.waiting ? `${run.state}, waiting` : run.state),
              h("span", { class: "muted small" }, `${run.kind} · started ${new Date(run.started * 1000).toLocaleTimeString()}`),
              running
                ? h(
                    "button",
                    {
                      type: "button",
                      class: "btn small ghost",
                      onclick: (e) => this.stopRun(`${path}/metaflows/${run.id}`, e.currentTarget),
                      "aria-label": `Stop the ${run.module} run`,
                    },
                    "Stop",
                  )
                : "",
            ),
            running
              ? h("p", { class: "muted small" }, `Now at ${where} (${run.current ? run.current.module : "?"})`)
              : h("p", { class: "muted small" }, `Ended ${new Date(run.ended * 1000).toLocaleTimeString()}`),
            h(
              "ol",
              { class: "trail", "aria-label": "The run's path through its tree" },
              ...trail.map((node) =>
                h(
                  "li",
                  { class: `trail-${node.status}`, "data-depth": Math.min(node.depth, 6) },
                  node.branch ? h("span", { class: "branch" }, node.branch === "_" ? "then" : `on ${node.branch}`) : "",
                  h("span", { class: "module" }, node.module || "?"),
                  node.status === "current" ? h("span", { class: "sr-only" }, " (current)") : "",
                  node.status === "done" ? h("span", { class: "sr-only" }, " (done)") : "",
                ),
              ),
            ),
            run.error ? h("p", { class: "form-error" }, run.error) : "",
          );
        }),
      ),
    );
  }

  async stopRun(path, button) {
    button.disabled = true;
    const outcome = await this.ctx.request("DELETE", path, "stop_run", {});
    setText($("#drawer-outcome", this.root), outcome.message);
    this.refreshRuns();
  }

  async loadCallflows() {
    if (this.callflows) return;
    const select = $("#m-stored", this.root);
    const help = $("#m-stored-help", this.root);
    try {
      const answer = await this.ctx.api.get(this.ctx.callflowsPath());
      this.callflows = answer.data;
    } catch (err) {
      help.textContent = err.message;
      return;
    }
    const usable = this.callflows.filter((f) => !f.error);
    select.replaceChildren(
      ...usable.map((f) => h("option", { value: f.id }, f.name === f.id ? f.id : `${f.name} (${f.id})`)),
    );
    help.textContent = usable.length
      ? "Flows stored on the server (metaflow.callflows_dir)."
      : "No stored callflow on this server (metaflow.callflows_dir).";
    select.closest("form").querySelector("button[type=submit]").disabled = !usable.length;
  }

  async act(kind, fields, button, form) {
    const outcome = $("#drawer-outcome", this.root);
    if (!this.uuid) return;
    if (kind === "hangup" && button.dataset.armed !== "1") {
      button.dataset.armed = "1";
      setText(button, "Confirm hang up");
      setTimeout(() => {
        button.dataset.armed = "";
        setText(button, "Hang up");
      }, 4000);
      return;
    }
    button.dataset.armed = "";
    if (kind === "hangup") setText(button, "Hang up");
    let request;
    try {
      request = buildAction(kind, fields);
    } catch (err) {
      if (!(err instanceof FormError)) throw err;
      outcome.className = "outcome error";
      setText(outcome, err.message);
      const field = form && form.elements[err.field];
      if (field) field.focus();
      return;
    }
    button.disabled = true;
    outcome.className = "outcome pending";
    setText(outcome, "Sending…");
    const result = await this.ctx.perform(this.uuid, kind, fields, request);
    button.disabled = false;
    outcome.className = `outcome ${result.ok ? "ok" : "error"}`;
    setText(outcome, result.message);
    this.touched(this.uuid);
  }
}

function showValue(value) {
  if (value === null || value === undefined) return "—";
  if (typeof value === "object") return JSON.stringify(value);
  return String(value);
}

function valueClass(value) {
  if (value === null || value === undefined) return "muted";
  return typeof value === "string" && /^[0-9a-f-]{32,36}$/.test(value) ? "mono" : "";
}
