// Pure logic of the call board: no DOM, no network. Everything here is a function of its
// arguments, so the browser tests import this module and check it directly.

/** Unix seconds + this = Gregorian seconds (the API's `timestamp`). */
export const GREGORIAN_OFFSET = 62167219200;

/** Board states, in the order the summary shows them. */
export const STATES = ["ringing", "talking", "answered", "held", "ending"];

export const STATE_LABELS = {
  ringing: "Ringing",
  talking: "Talking",
  answered: "Answered",
  held: "On hold",
  ending: "Hanging up",
};

/**
 * The events the board follows (the stream's ?events= filter): every event that can change a
 * channel's listing row, which each message carries whole.
 */
export const BOARD_EVENTS = [
  "CHANNEL_CREATE",
  "CHANNEL_UUID",
  "CHANNEL_ANSWER",
  "CHANNEL_BRIDGE",
  "CHANNEL_UNBRIDGE",
  "CHANNEL_HOLD",
  "CHANNEL_UNHOLD",
  "CHANNEL_CALLSTATE",
  "CHANNEL_STATE",
  "CALL_UPDATE",
  "CHANNEL_EXECUTE",
  "CHANNEL_EXECUTE_COMPLETE",
  "CHANNEL_PROGRESS",
  "CHANNEL_PROGRESS_MEDIA",
  "CHANNEL_ORIGINATE",
  "CHANNEL_OUTGOING",
  "CHANNEL_PARK",
  "CHANNEL_UNPARK",
  "CHANNEL_DATA",
  "CHANNEL_HANGUP",
  "CHANNEL_HANGUP_COMPLETE",
  "CHANNEL_DESTROY",
];

/**
 * What an event does to the board: "add" (a new channel), "update" (same channel, new
 * listing row), "ending" (hung up, still listed until destroyed), or "remove".
 */
export function eventEffect(eventName) {
  switch (eventName) {
    case "CHANNEL_CREATE":
      return "add";
    case "CHANNEL_DESTROY":
      return "remove";
    case "CHANNEL_HANGUP":
    case "CHANNEL_HANGUP_COMPLETE":
      return "ending";
    default:
      return "update";
  }
}

/** One channel as the board keeps it. `nowMs` is when its row was received. */
export function makeChannel(row, accountId, nowMs, ending = false) {
  return {
    uuid: row.uuid,
    account: accountId,
    row,
    ending,
    // the start is fixed on first sight so that every row ticks from the same clock
    startedAt: nowMs - Math.max(0, Number(row.elapsed_s) || 0) * 1000,
  };
}

/** The channel after a newer listing row of it; it keeps the start it was first seen with. */
export function updateChannel(channel, row, ending = channel.ending) {
  return { ...channel, row, ending };
}

export function channelState(channel) {
  const row = channel.row;
  if (channel.ending) return "ending";
  if (row.is_onhold) return "held";
  if (!row.answered) return "ringing";
  if (row.other_leg) return "talking";
  return "answered";
}

/**
 * FreeSWITCH sends CHANNEL_BRIDGE and CHANNEL_UNBRIDGE to one leg only; eslchan then sets (or
 * clears) the other leg's other_leg without an event for it. Given the event's row and the
 * row the board had before, this is the other leg's row as eslchan now has it, or null when
 * that leg is not on the board or needs no change.
 */
export function bridgedPartnerRow(eventName, row, previousRow, partnerRows) {
  if (eventName === "CHANNEL_BRIDGE" && row.other_leg) {
    const partner = partnerRows.get(row.other_leg);
    return partner && partner.other_leg !== row.uuid ? { ...partner, other_leg: row.uuid } : null;
  }
  if (eventName === "CHANNEL_UNBRIDGE" && previousRow && previousRow.other_leg) {
    const partner = partnerRows.get(previousRow.other_leg);
    return partner && partner.other_leg === row.uuid ? { ...partner, other_leg: null } : null;
  }
  return null;
}

export function elapsedSeconds(channel, nowMs) {
  return Math.max(0, Math.floor((nowMs - channel.startedAt) / 1000));
}

/** 0:07, 12:34, 1:02:03 */
export function formatDuration(seconds) {
  const s = Math.max(0, Math.floor(seconds));
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const ss = String(s % 60).padStart(2, "0");
  return h > 0 ? `${h}:${String(m).padStart(2, "0")}:${ss}` : `${m}:${ss}`;
}

/** "1 h 2 min 3 s" for screen readers and titles. */
export function spokenDuration(seconds) {
  const s = Math.max(0, Math.floor(seconds));
  const parts = [];
  if (s >= 3600) parts.push(`${Math.floor(s / 3600)} h`);
  if (s >= 60) parts.push(`${Math.floor((s % 3600) / 60)} min`);
  parts.push(`${s % 60} s`);
  return parts.join(" ");
}

/** Who calls: the caller id name and number, whichever exist. */
export function partyLabel(name, number) {
  const n = (name || "").trim();
  const num = (number || "").trim();
  if (n && num && n !== num) return { primary: n, secondary: num };
  return { primary: n || num || "unknown", secondary: "" };
}

export function callerOf(row) {
  return partyLabel(row.caller_id_name, row.caller_id_number);
}

/** Who is called: the callee id once known, else the dialled destination. */
export function calleeOf(row) {
  if (row.callee_id_name || row.callee_id_number) {
    const label = partyLabel(row.callee_id_name, row.callee_id_number);
    if (row.destination && label.primary !== row.destination && !label.secondary) {
      label.secondary = row.destination;
    }
    return label;
  }
  return partyLabel("", row.destination);
}

/** A short form of a long id for a narrow cell (the full one goes in the title). */
export function shortId(id) {
  if (!id) return "";
  return id.length > 12 ? `${id.slice(0, 8)}…` : id;
}

export function userLabel(row) {
  return row.username || shortId(row.owner_id) || "";
}

export function deviceLabel(row) {
  return row.authorizing_id ? shortId(row.authorizing_id) : "";
}

// --- bridged legs: one call ---------------------------------------------------------------

/**
 * The channel the given one is bridged to, if it is on the board: its own other_leg, else
 * a channel that names it as its other_leg (a B-leg knows its originator before the A-leg
 * hears of the bridge). `pointedBy` maps a uuid to the uuids whose other_leg it is.
 */
export function partnerOf(uuid, channels, pointedBy) {
  const channel = channels.get(uuid);
  if (!channel) return null;
  const other = channel.row.other_leg;
  if (other && channels.has(other)) return other;
  const back = pointedBy.get(uuid);
  if (back) {
    for (const candidate of back) {
      if (candidate !== uuid && channels.has(candidate)) return candidate;
    }
  }
  return null;
}

/** Which of two bridged legs leads the call: the inbound one, else the older, else by uuid. */
export function leadOf(a, b) {
  const ain = a.row.direction === "inbound";
  const bin = b.row.direction === "inbound";
  if (ain !== bin) return ain ? a : b;
  if (a.startedAt !== b.startedAt) return a.startedAt < b.startedAt ? a : b;
  return a.uuid < b.uuid ? a : b;
}

/**
 * The call a channel belongs to, named by its lead leg's uuid. Two legs are one call only
 * when each is the other's partner, so both always compute the same key.
 */
export function callKey(uuid, channels, pointedBy) {
  const partner = partnerOf(uuid, channels, pointedBy);
  if (partner === null || partnerOf(partner, channels, pointedBy) !== uuid) return uuid;
  return leadOf(channels.get(uuid), channels.get(partner)).uuid;
}

/** Every call of a set of channels: key -> [lead, other legs...]. */
export function groupCalls(channels) {
  const pointedBy = reverseLegs(channels);
  const calls = new Map();
  for (const uuid of channels.keys()) {
    const key = callKey(uuid, channels, pointedBy);
    if (!calls.has(key)) calls.set(key, []);
    calls.get(key).push(uuid);
  }
  for (const [key, legs] of calls) legs.sort((a, b) => (a === key ? -1 : b === key ? 1 : 0));
  return calls;
}

/** uuid -> the set of uuids naming it as other_leg. */
export function reverseLegs(channels) {
  const pointedBy = new Map();
  for (const [uuid, channel] of channels) {
    const other = channel.row.other_leg;
    if (!other) continue;
    if (!pointedBy.has(other)) pointedBy.set(other, new Set());
    pointedBy.get(other).add(uuid);
  }
  return pointedBy;
}

// --- filters and counts -------------------------------------------------------------------

export const EMPTY_FILTER = Object.freeze({ text: "", direction: "", state: "", user: "", device: "" });

export function isEmptyFilter(filter) {
  return Object.keys(EMPTY_FILTER).every((key) => !filter[key]);
}

/** The words free text is matched against: names, numbers, ids, node, account name. */
export function searchText(channel, accountName = "") {
  const r = channel.row;
  return [
    r.caller_id_name,
    r.caller_id_number,
    r.callee_id_name,
    r.callee_id_number,
    r.destination,
    r.username,
    r.presence_id,
    r.owner_id,
    r.authorizing_id,
    r.uuid,
    r.node,
    accountName,
  ]
    .filter(Boolean)
    .join(" ")
    .toLowerCase();
}

/** Whether one channel passes the filter; every term of the free text must match somewhere. */
export function matchesFilter(channel, filter, accountName = "") {
  const r = channel.row;
  if (filter.direction && r.direction !== filter.direction) return false;
  if (filter.state && channelState(channel) !== filter.state) return false;
  if (filter.user && userLabel(r) !== filter.user) return false;
  if (filter.device && r.authorizing_id !== filter.device) return false;
  const text = (filter.text || "").trim().toLowerCase();
  if (!text) return true;
  const haystack = searchText(channel, accountName);
  return text.split(/\s+/).every((term) => haystack.includes(term));
}

/** Channels per state, plus `total` and `stale` (on a node whose link is down). */
export function countStates(channels, downNodes = new Set()) {
  const counts = { total: 0, stale: 0 };
  for (const state of STATES) counts[state] = 0;
  for (const channel of channels) {
    counts.total += 1;
    counts[channelState(channel)] += 1;
    if (downNodes.has(channel.row.node)) counts.stale += 1;
  }
  return counts;
}

// --- the account picker -------------------------------------------------------------------

/**
 * The accounts a board shows: the chosen one, and with `withSubAccounts` every descendant
 * below it. `descendants` is GET /v2/accounts/{own}/descendants (each with its `tree`).
 */
export function accountsInScope(chosen, descendants, withSubAccounts) {
  if (!withSubAccounts) return [chosen];
  return [chosen, ...descendants.filter((d) => d.tree.includes(chosen)).map((d) => d.id)];
}

/** Picker entries: own account first, then descendants indented by depth. */
export function pickerOptions(own, descendants) {
  const base = own.tree ? own.tree.length : 0;
  return [
    { id: own.id, label: own.name, depth: 0 },
    ...descendants.map((d) => ({ id: d.id, label: d.name, depth: d.tree.length - base })),
  ];
}

// --- tokens -------------------------------------------------------------------------------

/**
 * Milliseconds until a token of `ttlSeconds`, issued at `issuedAtMs`, should be renewed: at
 * four fifths of its life, but never later than a minute before it expires, nor in the past.
 */
export function renewDelay(issuedAtMs, ttlSeconds, nowMs) {
  const ttl = ttlSeconds * 1000;
  const at = issuedAtMs + Math.min(ttl * 0.8, Math.max(ttl - 60000, ttl / 2));
  return Math.max(0, at - nowMs);
}

// --- health -------------------------------------------------------------------------------

/**
 * Prometheus text exposition -> [{name, labels, value}] (comments and malformed lines skipped).
 */
export function parseMetrics(text) {
  const samples = [];
  const line = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)/;
  const label = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g;
  for (const raw of text.split("\n")) {
    if (!raw || raw.startsWith("#")) continue;
    const m = line.exec(raw);
    if (!m) continue;
    const labels = {};
    if (m[2]) {
      for (const l of m[2].matchAll(label)) {
        labels[l[1]] = l[2].replace(/\\(.)/g, (_, c) => (c === "n" ? "\n" : c));
      }
    }
    const value = Number(m[3]);
    if (!Number.isNaN(value)) samples.push({ name: m[1], labels, value });
  }
  return samples;
}

/** Sum of a metric's samples per value of one label: {fs1: 12, fs2: 3}. */
export function sumBy(samples, name, labelName) {
  const out = {};
  for (const s of samples) {
    if (s.name !== name) continue;
    const key = s.labels[labelName] ?? "";
    out[key] = (out[key] || 0) + s.value;
  }
  return out;
}

/** Per-second rate between two counter readings; a counter that went back (restart) is 0. */
export function ratePerSecond(previous, current, seconds) {
  if (previous === undefined || current === undefined || seconds <= 0) return null;
  const delta = current - previous;
  return delta < 0 ? 0 : delta / seconds;
}

/** Points of a sparkline for `values` in a width x height box (newest on the right). */
export function sparklinePoints(values, width, height, capacity = values.length) {
  const top = Math.max(1, ...values);
  const step = capacity > 1 ? width / (capacity - 1) : width;
  const offset = (capacity - values.length) * step;
  return values.map((v, i) => {
    const x = offset + i * step;
    const y = height - (Math.max(0, v) / top) * (height - 2) - 1;
    return [Math.round(x * 10) / 10, Math.round(y * 10) / 10];
  });
}
