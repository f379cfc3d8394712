// The live call board: one <tr data-uuid> per channel, the legs of one call together in one
// <tbody>. Events are queued and applied once per animation frame, and only the rows they
// touch are written: nothing is re-rendered whole, so 2,000 rows stay cheap.

import { h, setAttr, setText } from "./dom.js";
import {
  EMPTY_FILTER,
  STATE_LABELS,
  bridgedPartnerRow,
  callKey,
  calleeOf,
  callerOf,
  channelState,
  countStates,
  deviceLabel,
  elapsedSeconds,
  eventEffect,
  formatDuration,
  isEmptyFilter,
  makeChannel,
  matchesFilter,
  shortId,
  updateChannel,
  userLabel,
} from "./model.js";

const CONFIRM_MS = 4000;
const ANNOUNCE_MS = 5000;

export class Board {
  /**
   * `table` is the board's <table>; `handlers`: details(uuid), hangup(uuid), changed(summary)
   * after every flush (counts, users, devices), announce(text) for screen readers.
   */
  constructor(table, handlers) {
    this.table = table;
    this.handlers = handlers;
    this.channels = new Map(); // uuid -> channel (model.makeChannel)
    this.pointedBy = new Map(); // uuid -> Set of uuids whose other_leg it is
    this.keyOf = new Map(); // uuid -> key of its call
    this.groups = new Map(); // key -> {tbody, legs: Set, startedAt}
    this.order = []; // call keys in display order
    this.views = new Map(); // uuid -> {tr, cells, shown: {}}
    this.pending = new Map();
    this.scheduled = false;
    this.filter = { ...EMPTY_FILTER };
    this.downNodes = new Set();
    this.accountNames = new Map();
    this.showAccount = false;
    this.newestFirst = true;
    this.started = 0;
    this.ended = 0;
    this.announceTimer = null;
    this.empty = table.querySelector("tbody.empty");
    // durations tick only on the calls in view: 2,000 rows would otherwise mean 2,000 writes
    // (and their paint) every second for rows nobody sees
    this.inView = new Set();
    this.viewport = new IntersectionObserver((entries) => this.onViewport(entries), {
      root: table.closest(".table-wrap"),
      rootMargin: "200px 0px",
    });
    table.addEventListener("click", (e) => this.onClick(e));
  }

  onViewport(entries) {
    const now = Date.now();
    for (const entry of entries) {
      const tbody = entry.target;
      if (!entry.isIntersecting) {
        this.inView.delete(tbody);
        continue;
      }
      this.inView.add(tbody);
      for (const tr of tbody.rows) {
        const uuid = tr.dataset.uuid;
        const view = this.views.get(uuid);
        const channel = this.channels.get(uuid);
        if (view && channel) this.renderDuration(channel, view, now);
      }
    }
  }

  // --- input ------------------------------------------------------------------------------

  /** One stream event (its StreamEvent data): the row it carries replaces the channel's. */
  apply(name, data, accountId) {
    const row = data.channel;
    const effect = eventEffect(name);
    if (data.old_uuid && data.old_uuid !== row.uuid) {
      this.pending.set(data.old_uuid, { remove: true, quiet: true }); // renamed (CHANNEL_UUID)
    }
    const queued = this.pending.get(row.uuid);
    const previous = queued && queued.row ? queued.row : this.channels.get(row.uuid)?.row;
    const partner = bridgedPartnerRow(name, row, previous, { get: (uuid) => this.latestRow(uuid) });
    if (partner) {
      const known = this.pending.get(partner.uuid) || this.channels.get(partner.uuid);
      this.pending.set(partner.uuid, { remove: false, ending: known.ending, row: partner, accountId: known.accountId ?? known.account });
    }
    // a hang-up stays a hang-up until the destroy, whatever other event follows in the frame
    const ending = effect === "ending" || Boolean(queued && queued.ending && effect !== "remove");
    this.pending.set(row.uuid, { remove: effect === "remove", ending, row, accountId });
    this.schedule();
  }

  /** A channel's newest row: queued for the next frame, else on the board. */
  latestRow(uuid) {
    const queued = this.pending.get(uuid);
    if (queued) return queued.remove ? undefined : queued.row;
    return this.channels.get(uuid)?.row;
  }

  /** A fresh listing: the board becomes exactly these channels (stream events queued after it
   * still apply on top). `entries` are {row, accountId}. */
  replaceAll(entries) {
    this.pending.clear();
    const wanted = new Set(entries.map((e) => e.row.uuid));
    for (const uuid of this.channels.keys()) {
      if (!wanted.has(uuid)) this.pending.set(uuid, { remove: true, quiet: true });
    }
    for (const { row, accountId } of entries) {
      const known = this.channels.get(row.uuid);
      this.pending.set(row.uuid, { remove: false, ending: known ? known.ending : false, row, accountId, quiet: true });
    }
    this.schedule();
  }

  clear() {
    this.replaceAll([]);
  }

  schedule() {
    if (this.scheduled) return;
    this.scheduled = true;
    const run = () => {
      if (this.scheduled) this.flush();
    };
    requestAnimationFrame(run);
    setTimeout(run, 250); // a hidden tab gets no animation frames: update anyway, less often
  }

  setFilter(filter) {
    this.filter = { ...EMPTY_FILTER, ...filter };
    for (const key of this.groups.keys()) this.updateVisibility(key);
    this.afterChange();
  }

  setDownNodes(nodes) {
    const changed = new Set([...nodes].filter((n) => !this.downNodes.has(n)));
    for (const n of this.downNodes) if (!nodes.has(n)) changed.add(n);
    this.downNodes = new Set(nodes);
    if (!changed.size) return;
    for (const [uuid, channel] of this.channels) {
      if (changed.has(channel.row.node)) this.render(uuid);
    }
    this.afterChange();
  }

  setAccounts(names, showAccount) {
    this.accountNames = new Map(names);
    this.showAccount = showAccount;
    this.table.classList.toggle("with-account", showAccount);
    for (const uuid of this.views.keys()) this.render(uuid);
  }

  setNewestFirst(newestFirst) {
    if (newestFirst === this.newestFirst) return;
    this.newestFirst = newestFirst;
    this.order.reverse();
    const fragment = document.createDocumentFragment();
    for (const key of this.order) fragment.append(this.groups.get(key).tbody);
    this.table.insertBefore(fragment, this.empty);
  }

  // --- applying events --------------------------------------------------------------------

  flush() {
    this.scheduled = false;
    if (!this.pending.size) return;
    const now = Date.now();
    const touched = new Set();
    for (const [uuid, op] of this.pending) {
      const old = this.channels.get(uuid);
      if (old) this.unlink(old, touched);
      if (op.remove) {
        if (old) {
          this.channels.delete(uuid);
          if (!op.quiet) this.ended += 1;
        }
      } else {
        const channel = old
          ? updateChannel(old, op.row, op.ending || old.ending)
          : makeChannel(op.row, op.accountId, now, op.ending);
        if (!old && !op.quiet) this.started += 1;
        this.channels.set(uuid, channel);
        this.link(channel, touched);
      }
      touched.add(uuid);
    }
    this.pending.clear();
    const groupsTouched = new Set();
    for (const uuid of touched) {
      const before = this.keyOf.get(uuid);
      if (before !== undefined) groupsTouched.add(before);
      if (!this.channels.has(uuid)) {
        this.drop(uuid);
        continue;
      }
      const key = callKey(uuid, this.channels, this.pointedBy);
      if (key !== before) this.move(uuid, before, key);
      groupsTouched.add(key);
      this.render(uuid);
    }
    for (const key of groupsTouched) {
      if (this.groups.has(key)) {
        this.arrangeLegs(key);
        this.updateVisibility(key);
      }
    }
    this.afterChange();
    this.scheduleAnnouncement();
  }

  /** The channel's bridge links, and the legs they touch. */
  link(channel, touched) {
    const other = channel.row.other_leg;
    if (!other) return;
    if (!this.pointedBy.has(other)) this.pointedBy.set(other, new Set());
    this.pointedBy.get(other).add(channel.uuid);
    touched.add(other);
    for (const back of this.pointedBy.get(channel.uuid) || []) touched.add(back);
  }

  unlink(channel, touched) {
    const other = channel.row.other_leg;
    if (other) {
      const back = this.pointedBy.get(other);
      if (back) {
        back.delete(channel.uuid);
        if (!back.size) this.pointedBy.delete(other);
      }
      touched.add(other);
    }
    for (const back of this.pointedBy.get(channel.uuid) || []) touched.add(back);
  }

  /** Put a channel's row into the call `key` (creating that call's tbody if new). */
  move(uuid, from, key) {
    const view = this.views.get(uuid) || this.createView(uuid);
    if (from !== undefined) this.leaveGroup(uuid, from);
    let group = this.groups.get(key);
    if (!group) {
      const lead = this.channels.get(key) || this.channels.get(uuid);
      const tbody = h("tbody", { class: "call", "data-call": key, role: "rowgroup" });
      group = { tbody, legs: new Set(), startedAt: lead.startedAt };
      this.groups.set(key, group);
      this.insertGroup(key, group);
      this.viewport.observe(group.tbody);
    }
    group.legs.add(uuid);
    group.tbody.append(view.tr);
    this.keyOf.set(uuid, key);
  }

  leaveGroup(uuid, key) {
    const group = this.groups.get(key);
    if (!group) return;
    group.legs.delete(uuid);
    if (!group.legs.size) {
      this.viewport.unobserve(group.tbody);
      this.inView.delete(group.tbody);
      group.tbody.remove();
      this.groups.delete(key);
      const at = this.order.indexOf(key);
      if (at >= 0) this.order.splice(at, 1);
    }
  }

  drop(uuid) {
    const key = this.keyOf.get(uuid);
    const view = this.views.get(uuid);
    if (view) view.tr.remove();
    this.views.delete(uuid);
    this.keyOf.delete(uuid);
    if (key !== undefined) this.leaveGroup(uuid, key);
  }

  /** Binary search for the call's place (newest first by default) and insert its tbody. */
  insertGroup(key, group) {
    const before = (a, b) => {
      const ga = a === key ? group : this.groups.get(a);
      const gb = b === key ? group : this.groups.get(b);
      if (ga.startedAt !== gb.startedAt) {
        return this.newestFirst ? ga.startedAt > gb.startedAt : ga.startedAt < gb.startedAt;
      }
      return a < b;
    };
    let lo = 0;
    let hi = this.order.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (before(this.order[mid], key)) lo = mid + 1;
      else hi = mid;
    }
    this.order.splice(lo, 0, key);
    const next = lo + 1 < this.order.length ? this.groups.get(this.order[lo + 1]).tbody : this.empty;
    this.table.insertBefore(group.tbody, next);
  }

  /** The lead leg first; the others marked as legs of the same call. */
  arrangeLegs(key) {
    const group = this.groups.get(key);
    const lead = this.views.get(key);
    if (lead && group.tbody.firstElementChild !== lead.tr) group.tbody.prepend(lead.tr);
    const leadChannel = this.channels.get(key);
    for (const uuid of group.legs) {
      const view = this.views.get(uuid);
      const partner = uuid !== key;
      view.tr.classList.toggle("partner", partner);
      setText(view.cells.legNote, partner && leadChannel ? `Other leg of the call from ${callerOf(leadChannel.row).primary}. ` : "");
    }
    group.tbody.classList.toggle("bridged", group.legs.size > 1);
  }

  updateVisibility(key) {
    const group = this.groups.get(key);
    if (!group) return;
    let visible = isEmptyFilter(this.filter);
    if (!visible) {
      for (const uuid of group.legs) {
        const channel = this.channels.get(uuid);
        if (matchesFilter(channel, this.filter, this.accountNames.get(channel.account) || "")) {
          visible = true;
          break;
        }
      }
    }
    if (group.tbody.hidden === visible) group.tbody.hidden = !visible;
  }

  afterChange() {
    const counts = countStates(this.channels.values(), this.downNodes);
    const users = new Set();
    const devices = new Map();
    for (const channel of this.channels.values()) {
      const user = userLabel(channel.row);
      if (user) users.add(user);
      if (channel.row.authorizing_id) devices.set(channel.row.authorizing_id, deviceLabel(channel.row));
    }
    let shown = 0;
    for (const group of this.groups.values()) if (!group.tbody.hidden) shown += 1;
    this.empty.hidden = shown > 0;
    setText(
      this.empty.querySelector("td"),
      this.channels.size ? "No call matches the filters." : "No live calls right now. New calls appear here as they start.",
    );
    this.handlers.changed({ counts, calls: this.groups.size, shownCalls: shown, users, devices });
  }

  // --- rows -------------------------------------------------------------------------------

  createView(uuid) {
    const cells = {
      legNote: h("span", { class: "sr-only" }),
      callerName: h("span", { class: "primary" }),
      callerNumber: h("span", { class: "secondary" }),
      calleeName: h("span", { class: "primary" }),
      calleeNumber: h("span", { class: "secondary" }),
      state: h("span", { class: "badge" }),
      stale: h(
        "span",
        { class: "badge stale", title: "Its FreeSWITCH node is not connected: this row may be out of date", hidden: true },
        "stale",
      ),
      duration: h("span", {}),
      direction: h("span", { class: "direction" }),
      user: h("span", { class: "primary" }),
      device: h("span", { class: "secondary" }),
      node: h("span", {}),
      account: h("span", {}),
      hangup: h("button", { type: "button", class: "btn danger small", "data-act": "hangup" }, "Hang up"),
      details: h("button", { type: "button", class: "btn small ghost", "data-act": "details" }, "Details"),
    };
    // Each cell's content sits in a box of fixed height laid out on its own (CSS containment):
    // a changed badge or a ticking duration then never sends the browser back through every
    // row of the table.
    const td = (cls, ...content) => h("td", { class: cls, role: "cell" }, h("div", { class: "cell" }, ...content));
    const tr = h(
      "tr",
      { "data-uuid": uuid, role: "row" },
      td("party caller", cells.legNote, cells.callerName, cells.callerNumber),
      td("party callee", cells.calleeName, cells.calleeNumber),
      td("state", h("span", { class: "badges" }, cells.state, cells.stale)),
      td("duration num", cells.duration),
      td("dir", cells.direction),
      td("party owner", cells.user, cells.device),
      td("node", cells.node),
      td("account", cells.account),
      td("actions", h("span", { class: "buttons" }, cells.hangup, cells.details)),
    );
    const view = { tr, cells, shown: {} };
    this.views.set(uuid, view);
    return view;
  }

  render(uuid) {
    const channel = this.channels.get(uuid);
    const view = this.views.get(uuid);
    if (!channel || !view) return;
    const r = channel.row;
    const c = view.cells;
    const caller = callerOf(r);
    const callee = calleeOf(r);
    const state = channelState(channel);
    const stale = this.downNodes.has(r.node);
    setText(c.callerName, caller.primary);
    setText(c.callerNumber, caller.secondary);
    setText(c.calleeName, callee.primary);
    setText(c.calleeNumber, callee.secondary);
    if (view.shown.state !== state) {
      c.state.className = `badge state-${state}`;
      setText(c.state, STATE_LABELS[state]);
      view.tr.dataset.state = state;
      view.shown.state = state;
    }
    if (c.stale.hidden === stale) c.stale.hidden = !stale;
    view.tr.classList.toggle("is-stale", stale);
    const inbound = r.direction === "inbound";
    setText(c.direction, r.direction ? (inbound ? "In" : "Out") : "—");
    setAttr(c.direction, "class", `direction ${inbound ? "in" : "out"}`);
    setAttr(c.direction, "title", r.direction || "unknown direction");
    setText(c.user, userLabel(r) || "—");
    setAttr(c.user, "title", r.owner_id ? `user ${r.owner_id}` : null);
    setText(c.device, r.authorizing_id ? `${r.authorizing_type || "device"} ${shortId(r.authorizing_id)}` : "");
    setAttr(c.device, "title", r.authorizing_id || null);
    setText(c.node, r.node || "");
    setText(c.account, this.accountNames.get(channel.account) || shortId(channel.account));
    setAttr(c.hangup, "aria-label", `Hang up the call from ${caller.primary} to ${callee.primary}`);
    setAttr(c.details, "aria-label", `Details of the call from ${caller.primary} to ${callee.primary}`);
    this.renderDuration(channel, view, Date.now());
  }

  renderDuration(channel, view, now) {
    const seconds = elapsedSeconds(channel, now);
    if (view.shown.seconds === seconds) return;
    view.shown.seconds = seconds;
    setText(view.cells.duration, formatDuration(seconds));
  }

  /** Once a second: the durations of the calls in view. */
  tick() {
    const now = Date.now();
    for (const tbody of this.inView) {
      if (tbody.hidden) continue;
      for (const tr of tbody.rows) {
        const uuid = tr.dataset.uuid;
        const view = this.views.get(uuid);
        const channel = this.channels.get(uuid);
        if (view && channel) this.renderDuration(channel, view, now);
      }
    }
  }

  // --- buttons ----------------------------------------------------------------------------

  onClick(event) {
    const tr = event.target.closest("tr[data-uuid]");
    if (!tr) return;
    const uuid = tr.dataset.uuid;
    const button = event.target.closest("button[data-act]");
    if (!button) {
      if (!window.getSelection().toString()) this.handlers.details(uuid); // not while selecting text
      return;
    }
    if (button.dataset.act === "details") this.handlers.details(uuid);
    else if (button.dataset.act === "hangup") this.confirmHangup(button, uuid);
  }

  /** Hanging up takes two presses: the first arms the button for a few seconds. */
  confirmHangup(button, uuid) {
    if (button.dataset.armed === "1") {
      clearTimeout(button._disarm);
      button.dataset.armed = "";
      button.disabled = true;
      setText(button, "Hanging up…");
      Promise.resolve(this.handlers.hangup(uuid)).finally(() => {
        button.disabled = false;
        setText(button, "Hang up");
      });
      return;
    }
    button.dataset.armed = "1";
    setText(button, "Confirm");
    button._disarm = setTimeout(() => {
      button.dataset.armed = "";
      setText(button, "Hang up");
    }, CONFIRM_MS);
  }

  scheduleAnnouncement() {
    if (this.announceTimer || (!this.started && !this.ended)) return;
    this.announceTimer = setTimeout(() => {
      this.announceTimer = null;
      const parts = [];
      if (this.started) parts.push(`${this.started} ${this.started === 1 ? "channel" : "channels"} started`);
      if (this.ended) parts.push(`${this.ended} ended`);
      this.started = 0;
      this.ended = 0;
      if (parts.length) this.handlers.announce(`${parts.join(", ")}. ${this.groups.size} calls live.`);
    }, ANNOUNCE_MS);
  }

  // --- lookups for the drawer -------------------------------------------------------------

  channel(uuid) {
    return this.channels.get(uuid) || null;
  }

  legsOf(uuid) {
    const key = this.keyOf.get(uuid);
    const group = key === undefined ? null : this.groups.get(key);
    return group ? [key, ...[...group.legs].filter((u) => u !== key)].filter((u) => this.channels.has(u)) : [uuid];
  }
}
