// What each console action sends: the method and body of the API call (pure functions).
// Only obvious mistakes are caught here, to answer at once; every rule is the server's.

export class FormError extends Error {
  constructor(field, message) {
    super(message);
    this.field = field;
  }
}

const DTMF = /^[0-9*#A-Da-d]{1,64}$/;

function post(action, params = {}) {
  return { method: "POST", body: { data: { action, ...params } } };
}

function metaflow(node) {
  return { method: "PUT", body: { action: "metaflow", data: node } };
}

function required(fields, name, label) {
  const value = String(fields[name] ?? "").trim();
  if (!value) throw new FormError(name, `${label} is required.`);
  return value;
}

/**
 * The request for one action on a channel: {method, body}. `fields` are the form's values.
 * Hold and unhold run hold_control through PUT, because POST's `action` key names the module
 * and would hide hold_control's own `action` parameter.
 */
export function buildAction(kind, fields = {}) {
  switch (kind) {
    case "hangup":
      return post("hangup");
    case "transfer": {
      const target = required(fields, "target", "A target");
      if (fields.transfer_type === "attended") {
        const params = { target, transfer_type: "attended" };
        const takeback = String(fields.takeback_dtmf ?? "").trim();
        if (takeback) params.takeback_dtmf = takeback;
        return post("transfer", params);
      }
      return post("transfer", { target, transfer_type: "blind", leg: fields.leg || "self" });
    }
    case "hold":
      return metaflow({ module: "hold_control", data: { action: "hold" } });
    case "unhold":
      return metaflow({ module: "hold_control", data: { action: "unhold" } });
    case "play":
      return post("play", { id: required(fields, "id", "Media"), leg: fields.leg || "both" });
    case "record":
      return post("record_call"); // its default action is toggle
    case "dtmf": {
      const digits = required(fields, "digits", "Digits");
      if (!DTMF.test(digits)) throw new FormError("digits", "Digits are 0-9, *, # and A-D (up to 64).");
      return post("send_dtmf", { digits });
    }
    case "callflow":
      return metaflow({ module: "callflow", data: { id: required(fields, "id", "A stored callflow") } });
    case "metaflow":
      return metaflow(parseTree(fields.tree));
    case "eavesdrop": {
      const who = required(fields, "supervisor", "A supervisor");
      const mode = fields.mode || "listen";
      if (fields.supervisor_type === "endpoint" || who.includes("/")) return post("eavesdrop", { endpoint: who, mode });
      if (!SUPERVISOR_ID.test(who)) {
        throw new FormError("supervisor", "A device or user id is letters, digits and _ . @ - (an endpoint has a /).");
      }
      return post("eavesdrop", { supervisor_id: who, supervisor_type: fields.supervisor_type || "device", mode });
    }
    default:
      throw new Error(`unknown action ${kind}`);
  }
}

const SUPERVISOR_ID = /^[A-Za-z0-9_][A-Za-z0-9_.@-]{0,63}$/;
const CALLER_NUMBER = /^[A-Za-z0-9+*#._@-]{1,64}$/;

/**
 * The request that starts a call (PUT …/channels): {method, body}. `fields` are the form's
 * values; `callflow`, when chosen, is the stored flow to run once the call is answered.
 */
export function buildCall(fields = {}) {
  const data = { endpoint: required(fields, "endpoint", "An endpoint") };
  if (!data.endpoint.includes("/")) {
    throw new FormError("endpoint", "An endpoint looks like user/1001@acme.example (a kind, a /, an address).");
  }
  const name = String(fields.caller_id_name ?? "").trim();
  const number = String(fields.caller_id_number ?? "").trim();
  if (name) data.caller_id_name = name;
  if (number) {
    if (!CALLER_NUMBER.test(number)) throw new FormError("caller_id_number", "A caller id number has no spaces.");
    data.caller_id_number = number;
  }
  const timeout = String(fields.timeout ?? "").trim();
  if (timeout) {
    const seconds = Number(timeout);
    if (!Number.isInteger(seconds) || seconds < 1 || seconds > 600) {
      throw new FormError("timeout", "Ring for 1 to 600 seconds.");
    }
    data.timeout = seconds;
  }
  const flow = String(fields.callflow ?? "").trim();
  if (flow) data.metaflow = { module: "callflow", data: { id: flow } };
  return { method: "PUT", body: { data } };
}

/** A pasted metaflow: a node, or the whole PUT body ({"action": "metaflow", "data": node}). */
export function parseTree(text) {
  const source = String(text ?? "").trim();
  if (!source) throw new FormError("tree", "Paste a metaflow (JSON).");
  let tree;
  try {
    tree = JSON.parse(source);
  } catch (err) {
    throw new FormError("tree", `This is not valid JSON: ${err.message}`);
  }
  if (tree && typeof tree === "object" && !Array.isArray(tree) && tree.action === "metaflow" && "data" in tree) {
    tree = tree.data;
  }
  if (!tree || typeof tree !== "object" || Array.isArray(tree)) {
    throw new FormError("tree", 'A metaflow is a JSON object such as {"module": "hangup", "data": {}}.');
  }
  return tree;
}

/**
 * The trail of a run through its tree: every node with its dotted path and whether the run
 * has passed it ("done"), is on it ("current") or has not reached it ("ahead").
 * `current` is the run's `current.path` (e.g. "children._.children.1").
 */
export function runTrail(tree, current) {
  const nodes = [];
  const here = current ? current.split(".") : [];
  const walk = (node, path, depth) => {
    if (!node || typeof node !== "object") return;
    const key = path.join(".");
    let status = "ahead";
    if (key === here.join(".")) status = "current";
    else if (path.length < here.length && here.slice(0, path.length).join(".") === key) status = "done";
    nodes.push({ path: key, depth, module: node.module, branch: path.length ? path[path.length - 1] : "", status });
    for (const [branch, child] of Object.entries(node.children || {})) {
      walk(child, [...path, "children", branch], depth + 1);
    }
  };
  walk(tree, [], 0);
  return nodes;
}

/**
 * The trail of a run that is over, from the steps the server kept: each node it ran, in order,
 * with the branch that led to it.
 */
export function takenTrail(steps) {
  return (steps || []).map((step, i) => ({
    path: step.path,
    depth: step.path ? step.path.split(".").length / 2 : 0,
    module: step.module,
    branch: i === 0 ? "" : (steps[i - 1].branch || ""),
    status: "done",
  }));
}
