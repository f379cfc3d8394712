// The API's answers in plain words: what an operator reads after pressing a button.

/** "data.target: Field is required but missing; data.leg: …" from Kazoo's validation shape. */
export function validationDetails(data) {
  if (!data || typeof data !== "object" || Array.isArray(data)) return "";
  const parts = [];
  for (const [path, rules] of Object.entries(data)) {
    if (rules && typeof rules === "object") {
      for (const rule of Object.values(rules)) {
        const message = rule && typeof rule === "object" ? rule.message : String(rule);
        parts.push(`${friendlyPath(path)}: ${message}`);
      }
    }
  }
  return parts.join("; ");
}

/** The account policy's reasons of a 403 ({field: {policy: {message, rule}}}), joined. */
export function policyMessages(data) {
  if (!data || typeof data !== "object" || Array.isArray(data)) return "";
  return Object.values(data)
    .map((entry) => (entry && entry.policy && entry.policy.message) || "")
    .filter(Boolean)
    .join("; ");
}

function friendlyPath(path) {
  return path.replace(/^data\./, "");
}

/**
 * A sentence for an API error. `status` is the HTTP status (0: the server could not be
 * reached), `body` the error envelope when there was one, `retryAfter` the header's seconds.
 */
export function describeError(status, body, retryAfter) {
  const data = body && typeof body === "object" ? body.data : undefined;
  const message = body && typeof body === "object" ? body.message : "";
  switch (status) {
    case 0:
      return "eslchan could not be reached. Check the connection; the console keeps trying.";
    case 400: {
      const details = validationDetails(data);
      return details ? `Not sent to FreeSWITCH: ${details}.` : `The request was refused: ${message || "invalid"}.`;
    }
    case 401:
      return "Your session has ended. Sign in again with your API key.";
    case 403: {
      const rules = policyMessages(data);
      if (rules) return `Not allowed for this account: ${rules}.`;
      const reason = data && typeof data === "object" && data.reason ? ` ${data.reason}.` : "";
      return `Not allowed for this account.${reason}`;
    }
    case 404:
      return Array.isArray(data) ? "This call has already ended." : "Not found.";
    case 409:
      return `Conflict: ${message}.`;
    case 413:
      return "The request is too large.";
    case 429: {
      const wait = retryAfter ?? (data && data.retry_after);
      return wait ? `Too many attempts. Try again in ${wait} s.` : "Too many attempts. Try again shortly.";
    }
    case 502: {
      const text = data && data.text ? String(data.text).trim() : "";
      return text ? `FreeSWITCH refused it: ${text}` : "FreeSWITCH refused it.";
    }
    case 503: {
      const node = data && data.node ? ` (${data.node})` : "";
      if (message === "too many event streams") return "eslchan serves its maximum of live streams; retrying.";
      return `The FreeSWITCH node${node} is not connected right now.`;
    }
    case 504: {
      const node = data && data.node ? ` (${data.node})` : "";
      return `FreeSWITCH${node} did not answer in time; the action may or may not have happened.`;
    }
    default:
      return `eslchan answered ${status}${message ? `: ${message}` : ""}.`;
  }
}

/** A sentence for an action that succeeded; `result` is the answer's data. */
export function describeSuccess(kind, params, result) {
  const reply = result && result.reply ? ` FreeSWITCH: ${result.reply}` : "";
  switch (kind) {
    case "hangup":
      return "Hung up.";
    case "transfer":
      return params.transfer_type === "attended"
        ? `Attended transfer to ${params.target} started.`
        : `Transferred to ${params.target}.`;
    case "hold":
      return "Put on hold.";
    case "unhold":
      return "Taken off hold.";
    case "play":
      return `Playing ${params.id}.`;
    case "record": {
      const what = result && result.result ? result.result.recording_action : undefined;
      if (what === "start") return "Recording started.";
      if (what === "stop") return "Recording stopped.";
      return "Recording toggled.";
    }
    case "dtmf":
      return `Sent DTMF ${params.digits}.`;
    case "callflow":
      return `Callflow ${params.id} started.`;
    case "metaflow":
      return `Metaflow started${result && result.id ? ` (run ${result.id.slice(0, 8)})` : ""}.`;
    case "stop_run":
      return "Metaflow run stopped.";
    case "eavesdrop": {
      const how = { listen: "listen in", whisper: "whisper to this party", barge: "barge in" }[params.mode] || "listen in";
      return `Ringing the supervisor; once they answer they ${how}.`;
    }
    case "call":
      return `Calling ${params.endpoint}: it rings.`;
    default:
      return `Done.${reply}`;
  }
}
