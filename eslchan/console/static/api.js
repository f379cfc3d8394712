// The console's only way to the server: the public API, with the session's token.

import { describeError } from "./words.js";

export class ApiError extends Error {
  constructor(status, body, retryAfter) {
    super(describeError(status, body, retryAfter));
    this.status = status;
    this.body = body;
    this.retryAfter = retryAfter;
  }
}

async function readBody(resp) {
  const type = resp.headers.get("Content-Type") || "";
  if (type.includes("application/json")) {
    try {
      return await resp.json();
    } catch {
      return null;
    }
  }
  return resp.text();
}

/**
 * fetch() for the API: JSON in, the envelope's answer out, an ApiError with words for the
 * operator otherwise. `tokens` gives the current token and is told of a 401, after which the
 * request is tried once more if it could renew.
 */
export class Api {
  /** `base` is the daemon's root path as seen from the page ("/" unless behind a prefix). */
  constructor(tokens, base) {
    this.tokens = tokens;
    this.base = base;
  }

  async request(method, path, { body, auth = true, retry = true } = {}) {
    const headers = { Accept: "application/json" };
    if (body !== undefined) headers["Content-Type"] = "application/json";
    const token = auth ? this.tokens.token() : null;
    if (token) headers["X-Auth-Token"] = token;
    let resp;
    try {
      resp = await fetch(path, {
        method,
        headers,
        body: body === undefined ? undefined : JSON.stringify(body),
        cache: "no-store",
      });
    } catch {
      throw new ApiError(0, null);
    }
    const payload = await readBody(resp);
    if (resp.ok) return { status: resp.status, body: payload, data: payload && payload.data };
    const retryAfter = resp.headers.get("Retry-After");
    if (resp.status === 401 && auth && retry && (await this.tokens.unauthorized())) {
      return this.request(method, path, { body, auth, retry: false });
    }
    throw new ApiError(resp.status, payload, retryAfter === null ? undefined : Number(retryAfter));
  }

  get(path, options) {
    return this.request("GET", path, options);
  }
}

/** Run `worker` over `items`, at most `limit` at a time, results in order. */
export async function inBatches(items, limit, worker) {
  const results = new Array(items.length);
  let next = 0;
  const lanes = Array.from({ length: Math.min(limit, items.length) }, async () => {
    while (next < items.length) {
      const i = next++;
      results[i] = await worker(items[i], i);
    }
  });
  await Promise.all(lanes);
  return results;
}
